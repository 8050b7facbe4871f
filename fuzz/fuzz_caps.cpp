// Linked into every libFuzzer target: lowers the work caps of the chat template interpreter and the
// constraint compiler before any input runs. Under ASan + UBSan a template step costs ~50x and an
// automaton construction step ~40x what it does in a release build, and every input, however
// hostile, must hit a cap (a clear dpserve::Error) within libFuzzer's 10 s -timeout. Everything else
// keeps the caps of its build: the ASan tests in the same tree, and the corpus replays.
#include "constrain/automaton.h"
#include "tokenizer/jinja/limits.h"

namespace {

const bool kCapsLowered = [] {
  dpserve::jinja::render_caps = {.max_output = size_t(1) << 20, .max_steps = 20'000, .max_items = 100'000};
  dpserve::constrain::Automaton::work_caps_shift = 5;  // a 32nd of each build cap
  return true;
}();

}  // namespace
