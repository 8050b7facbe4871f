// Placeholder until the tokenizer lands: registers nothing.
#include "apps/dpserve/commands.h"

namespace dpserve::app {
void register_tokenize(CLI::App&) {}
}  // namespace dpserve::app
