// The KV cache flags `generate`, `serve` and `bench-offline` share (added by add_runtime_flags).
#pragma once

#include <CLI/CLI.hpp>

#include "engine/runtime.h"

namespace dpserve::app {

// --kv-cache-dtype auto|fp32|bf16|int8 (fp8_e4m3 / fp8_e5m2 are refused, naming the flag).
void add_kv_cache_flags(CLI::App* c, RuntimeOptions& o);

}  // namespace dpserve::app
