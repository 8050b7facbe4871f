// Each `dpserve <command>` registers its flags and its action here, one file per command.
#pragma once

#include <CLI/CLI.hpp>

namespace dpserve::app {

void register_generate(CLI::App& app);
void register_serve(CLI::App& app);
void register_tokenize(CLI::App& app);  // `tokenize` and `detokenize`
void register_bench(CLI::App& app);     // `bench serve`, `bench offline`
void register_bench_offline(CLI::App& bench);  // `bench offline`, under the `bench` command

}  // namespace dpserve::app
