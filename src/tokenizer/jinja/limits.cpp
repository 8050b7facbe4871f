#include "tokenizer/jinja/limits.h"

#include <fmt/format.h>

#include "tokenizer/jinja/value_ops.h"

namespace dpserve::jinja {

// Production values. Values one render may materialize: a per-list cap alone lets nesting and macro
// recursion (256 deep) hold hundreds of such lists at once; a render-wide count bounds what is alive
// at any moment (~110 bytes a value: ~440 MB).
#ifndef DPSERVE_JINJA_MAX_OUTPUT
#define DPSERVE_JINJA_MAX_OUTPUT (64u << 20)
#endif
#ifndef DPSERVE_JINJA_MAX_STEPS
#define DPSERVE_JINJA_MAX_STEPS 2'000'000
#endif
#ifndef DPSERVE_JINJA_MAX_ITEMS
#define DPSERVE_JINJA_MAX_ITEMS 4'000'000
#endif
RenderCaps render_caps{DPSERVE_JINJA_MAX_OUTPUT, DPSERVE_JINJA_MAX_STEPS, DPSERVE_JINJA_MAX_ITEMS};

namespace {
thread_local int64_t items_charged = 0;
}  // namespace

void charge_items(int64_t n, int line) {
  items_charged += n;
  if (n < 0 || items_charged > render_caps.max_items) {
    error(line, fmt::format("template materializes too many values (more than {} list items or characters iterated)",
                            render_caps.max_items));
  }
}

void check_string_size(size_t n, int line) {
  if (n > render_caps.max_output) error(line, "string too large");
}

RenderBudget::RenderBudget() : saved_(items_charged) { items_charged = 0; }
RenderBudget::~RenderBudget() { items_charged = saved_; }

}  // namespace dpserve::jinja
