// Caps that stop a runaway chat template (Jinja2's sandbox has similar ones): output size, steps,
// macro recursion and list sizes. Exceeding one is an error naming the cap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpserve::jinja {

constexpr size_t kMaxOutput = 64u << 20;   // a template that writes more is runaway
// loop iterations + expression evaluations. The fuzz build (scripts/fuzz.sh) and the sanitizer builds
// (scripts/sanitize.sh) lower it: a step costs ~50x more under ASan, and the cap must stop a template
// within libFuzzer's timeout there, and the runaway-template test within seconds.
#ifndef DPSERVE_JINJA_MAX_STEPS
#define DPSERVE_JINJA_MAX_STEPS 2'000'000
#endif
constexpr int64_t kMaxSteps = DPSERVE_JINJA_MAX_STEPS;
constexpr int kMaxDepth = 256;             // macro recursion
constexpr int64_t kMaxListItems = 100'000;  // range() and list repetition, as Jinja2's sandbox caps range()

}  // namespace dpserve::jinja
