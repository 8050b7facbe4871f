// SGLang server flags that mean nothing on this server (GPU, PyTorch and backend choices, LoRA,
// hierarchical cache, disaggregation, ...): `serve` refuses each at start-up with why, instead of
// CLI11's bare "not expected", so an SGLang launch command pasted here says what to drop or use.
#pragma once

#include <CLI/CLI.hpp>

namespace dpserve::app {

// Hidden from --help; docs/api.md's "SGLang server flags" table lists them.
void add_sglang_refused_flags(CLI::App* serve);

}  // namespace dpserve::app
