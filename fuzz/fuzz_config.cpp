// Model hyper-parameters from untrusted files: Hugging Face config.json (ModelConfig::from_hf_json,
// parsed as model.cpp parses it) and llama2.c checkpoint headers (load_llama2c).
// Input: byte 0 even -> the rest is config.json; odd -> the rest is a llama2.c checkpoint.
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "fuzz_util.h"
#include "model/config.h"
#include "model/llama2c.h"
#include "model/weight_store.h"

namespace {

using dpserve::ModelConfig;

// What the model, KV pool and RoPE tables assume of any accepted config.
void check_config(const ModelConfig& c) {
  FUZZ_EXPECT(c.hidden > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.vocab > 0);
  FUZZ_EXPECT(c.head_dim > 0 && c.head_dim % 2 == 0);
  FUZZ_EXPECT(c.n_heads % c.n_kv_heads == 0);
  FUZZ_EXPECT(c.max_pos > 0);
  FUZZ_EXPECT(std::isfinite(c.rms_eps) && c.rms_eps > 0);
  FUZZ_EXPECT(std::isfinite(c.rope_theta) && c.rope_theta > 0);
  FUZZ_EXPECT(c.n_experts_per_tok <= c.n_experts);
  for (int64_t l = 0; l < std::min<int64_t>(c.n_layers, 4); ++l) (void)c.layer_is_moe(l);
  // An fp8 checkpoint's scale blocks cover at least one element each way (or none: not fp8).
  FUZZ_EXPECT((c.fp8_block_rows > 0) == (c.fp8_block_cols > 0) && c.fp8_block_rows >= 0);
}

void fuzz_hf_config(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return;  // model.cpp turns a parse failure into dpserve::Error before from_hf_json
  }
  try {
    check_config(ModelConfig::from_hf_json(j));
  } catch (const dpserve::Error& e) {
    FUZZ_EXPECT(std::string(e.what()).rfind("config.json", 0) == 0);
  }
}

void fuzz_llama2c(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/dpserve_fuzz_" + std::to_string(::getpid()) + ".llama2c.bin";
  static const bool cleanup = std::atexit([] { std::remove(path.c_str()); }) == 0;  // runs before path dies
  (void)cleanup;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) dpserve::fuzz::violated("cannot write the temp file", __FILE__, __LINE__);
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  ModelConfig c;
  dpserve::WeightStore store;
  try {
    dpserve::load_llama2c(path, c, store);
  } catch (const dpserve::Error& e) {
    FUZZ_EXPECT(std::string(e.what()).find("llama2.c") != std::string::npos);
    return;
  }
  check_config(c);
  // Tensors follow the header back to back; each must lie inside the file and hold its bytes.
  const size_t header = (size >= 4 && std::memcmp(data, "24ka", 4) == 0) ? 256 : 28;
  const uint8_t* first = nullptr;
  for (const auto& [name, t] : store.all())
    if (!first || static_cast<const uint8_t*>(t.data) < first) first = static_cast<const uint8_t*>(t.data);
  FUZZ_EXPECT(first != nullptr);
  const uint8_t* base = first - header;
  for (const auto& [name, t] : store.all()) {
    const uint64_t off = uint64_t(static_cast<const uint8_t*>(t.data) - base);
    const uint64_t bytes = uint64_t(t.numel()) * 4;
    FUZZ_EXPECT(off >= header && off + bytes <= size);
    FUZZ_EXPECT(std::memcmp(t.data, data + off, bytes) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0) {
    fuzz_hf_config(data + 1, size - 1);
  } else {
    fuzz_llama2c(data + 1, size - 1);
  }
  return 0;
}
