// Each `dpserve <command>` registers its flags and its action here, one file per command.
#pragma once

#include <CLI/CLI.hpp>

namespace dpserve::app {

void register_generate(CLI::App& app);
void register_serve(CLI::App& app);
void register_tokenize(CLI::App& app);  // `tokenize` and `detokenize`
void register_bench(CLI::App& app);     // `bench serve`

}  // namespace dpserve::app
