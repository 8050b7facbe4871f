// Caps that stop a runaway chat template (Jinja2's sandbox has similar ones): output size, steps,
// macro recursion and list sizes. Exceeding one is an error naming the cap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpserve::jinja {

// The caps that depend on the build, read at every check. A build's defaults come from the macros in
// limits.cpp (the sanitizer builds lower two: a step costs ~50x more under ASan, and the runaway-template
// test must end within seconds there); the fuzz targets lower all three at start-up
// (fuzz/fuzz_caps.cpp), so that no input outlasts libFuzzer's timeout. Set them only before any render.
struct RenderCaps {
  size_t max_output;   // bytes a template writes, and any one string it builds
  int64_t max_steps;   // loop iterations + expression evaluations
  int64_t max_items;   // values one render may materialize in total (charge_items)
};
extern RenderCaps render_caps;

constexpr int kMaxDepth = 256;             // macro recursion
// Expressions evaluated inside one another, counted across macro calls: the parser caps one
// expression's nesting at 200 and macro recursion is capped above, but together (a macro whose
// body nests 100 deep calling itself 256 times) they ran the evaluator's recursion off the stack
// (found by fuzz_chat_template under ASan). No chat template comes near: tool-schema renderers
// recurse a few levels deep over a handful of nested expressions each.
constexpr int kMaxEvalNesting = 512;
constexpr int64_t kMaxListItems = 100'000;  // range() and list repetition, as Jinja2's sandbox caps range()

// Adds n values to the running render's count; an error naming the cap once it passes
// render_caps.max_items. Counts are per thread: renders on different threads do not share one.
void charge_items(int64_t n, int line);
// A string being built (join, replace, indent, ~) that passes render_caps.max_output is an error.
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
