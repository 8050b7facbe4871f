#include "tokenizer/jinja/limits.h"

#include <fmt/format.h>

#include "tokenizer/jinja/value_ops.h"

namespace dpserve::jinja {

namespace {
thread_local int64_t items_charged = 0;
}  // namespace

void charge_items(int64_t n, int line) {
  items_charged += n;
  if (n < 0 || items_charged > kMaxItemsPerRender) {
    error(line, fmt::format("template materializes too many values (more than {} list items or characters iterated)",
                            kMaxItemsPerRender));
  }
}

void check_string_size(size_t n, int line) {
  if (n > kMaxOutput) error(line, "string too large");
}

RenderBudget::RenderBudget() : saved_(items_charged) { items_charged = 0; }
RenderBudget::~RenderBudget() { items_charged = saved_; }

}  // namespace dpserve::jinja
