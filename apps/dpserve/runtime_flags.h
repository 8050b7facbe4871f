// The flags `generate` and `serve` share: model, parallelism, scheduler, KV cache.
// Each is declared once here, with its environment variable (DPSERVE_<NAME>).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "engine/runtime.h"
#include "parallel/numa_plan.h"

namespace dpserve::app {

struct RuntimeFlags {
  RuntimeOptions rt;
  std::string tokenizer_path;
  bool disable_radix_cache = false;
  bool trust_remote_code = false;  // accepted, no effect
  NumaRequest numa;                // --numa: how the launcher maps and binds the ranks
};

void add_runtime_flags(CLI::App* cmd, RuntimeFlags& f);
// Ranks the flags ask for: tp with DP attention, tp * dp without.
int requested_world(const RuntimeFlags& f);

}  // namespace dpserve::app
