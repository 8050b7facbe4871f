// Caps that stop a runaway chat template (Jinja2's sandbox has similar ones): output size, steps,
// macro recursion and list sizes. Exceeding one is an error naming the cap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpserve::jinja {

// A template that writes more is runaway; every string it builds is capped the same. The fuzz build
// lowers it: copying 64 MiB strings for 20000 steps under ASan outlasts libFuzzer's -timeout.
#ifndef DPSERVE_JINJA_MAX_OUTPUT
#define DPSERVE_JINJA_MAX_OUTPUT (64u << 20)
#endif
constexpr size_t kMaxOutput = DPSERVE_JINJA_MAX_OUTPUT;
// loop iterations + expression evaluations. The fuzz build (scripts/fuzz.sh) and the sanitizer builds
// (scripts/sanitize.sh) lower it: a step costs ~50x more under ASan, and the cap must stop a template
// within libFuzzer's timeout there, and the runaway-template test within seconds.
#ifndef DPSERVE_JINJA_MAX_STEPS
#define DPSERVE_JINJA_MAX_STEPS 2'000'000
#endif
constexpr int64_t kMaxSteps = DPSERVE_JINJA_MAX_STEPS;
constexpr int kMaxDepth = 256;             // macro recursion
// Expressions evaluated inside one another, counted across macro calls: the parser caps one
// expression's nesting at 200 and macro recursion is capped above, but together (a macro whose
// body nests 100 deep calling itself 256 times) they ran the evaluator's recursion off the stack
// (found by fuzz_chat_template under ASan). No chat template comes near: tool-schema renderers
// recurse a few levels deep over a handful of nested expressions each.
constexpr int kMaxEvalNesting = 512;
constexpr int64_t kMaxListItems = 100'000;  // range() and list repetition, as Jinja2's sandbox caps range()
// Values one render may materialize in total: iteration copies, string code points, range(), list + and
// *. A per-list cap alone lets nesting and macro recursion (256 deep) hold hundreds of such lists at
// once; a render-wide count bounds what is alive at any moment (~110 bytes a value: ~440 MB). The
// sanitizer and fuzz builds lower it with the step cap: sorting millions of values under ASan
// outlasts libFuzzer's -timeout.
#ifndef DPSERVE_JINJA_MAX_ITEMS
#define DPSERVE_JINJA_MAX_ITEMS 4'000'000
#endif
constexpr int64_t kMaxItemsPerRender = DPSERVE_JINJA_MAX_ITEMS;

// Adds n values to the running render's count; an error naming the cap once it passes
// kMaxItemsPerRender. Counts are per thread: renders on different threads do not share one.
void charge_items(int64_t n, int line);
// A string being built (join, replace, indent, ~) that passes kMaxOutput is an error.
void check_string_size(size_t n, int line);

// Starts a render's count at zero and restores the outer count when it ends.
class RenderBudget {
 public:
  RenderBudget();
  ~RenderBudget();
  RenderBudget(const RenderBudget&) = delete;
  RenderBudget& operator=(const RenderBudget&) = delete;

 private:
  int64_t saved_;
};

}  // namespace dpserve::jinja
