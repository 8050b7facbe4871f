// The safetensors loader (src/model/weight_store.h) on arbitrary files: huge or negative shapes,
// out-of-range or overlapping offsets and truncated data must give dpserve::Error. Every tensor it
// accepts is checked against an independent reading of the header, and read in full (ASan/SEGV); fp8
// weights are then paired with their block scales and read through them.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/dtype.h"
#include "fuzz_util.h"
#include "model/config.h"
#include "model/fp8_checkpoint.h"
#include "model/weight_store.h"

namespace {

const std::string& temp_path() {
  static const std::string p = "/tmp/dpserve_fuzz_" + std::to_string(::getpid()) + ".safetensors";
  static const bool cleanup = std::atexit([] { std::remove(p.c_str()); }) == 0;  // runs before p dies
  (void)cleanup;
  return p;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) dpserve::fuzz::violated("cannot write the temp file", __FILE__, __LINE__);
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

// The accepted store against the file bytes: each tensor's data must be exactly its byte range.
void check_store(const dpserve::WeightStore& store, const uint8_t* data, size_t size) {
  uint64_t hlen = 0;
  std::memcpy(&hlen, data, 8);
  const auto h = nlohmann::json::parse(data + 8, data + 8 + hlen);
  FUZZ_EXPECT(store.all().size() == h.size() - (h.contains("__metadata__") ? 1 : 0));
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, t] : store.all()) {
    const auto& off = h.at(name).at("data_offsets");
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    FUZZ_EXPECT(b <= e && e <= size - 8 - hlen);
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      FUZZ_EXPECT(d >= 0);
      numel *= d;
    }
    FUZZ_EXPECT(numel == t.numel());
    FUZZ_EXPECT(uint64_t(numel) * dpserve::dtype_size(t.dtype) == e - b);
    // Reads the mapping: an out-of-bounds pointer faults here, a wrong one differs.
    if (e > b) FUZZ_EXPECT(std::memcmp(t.data, data + 8 + hlen + b, e - b) == 0);
    if (e > b) ranges.emplace_back(b, e);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) FUZZ_EXPECT(ranges[i].first >= ranges[i - 1].second);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = temp_path();
  write_file(path, data, size);
  dpserve::WeightStore store;
  try {
    dpserve::load_safetensors_file(path, store);
  } catch (const dpserve::Error& e) {
    FUZZ_EXPECT(std::string(e.what()).find("safetensors") != std::string::npos);
    return 0;
  }
  check_store(store, data, size);
  // 1-D tensors go through the fp32 conversion the model uses for norms (an fp8 one is refused).
  for (const auto& [name, t] : store.all())
    if (t.shape.size() == 1 && t.dtype != dpserve::DType::F8_E4M3)
      FUZZ_EXPECT(store.vector_f32(name, t.shape[0]).size() == size_t(t.shape[0]));
  // fp8 weights and their block scales (model/fp8_checkpoint.h), as a 2 x 3-block checkpoint pairs them:
  // scales that do not fit are refused; accepted ones are read for every element (ASan: no scale or code
  // outside its tensor).
  dpserve::ModelConfig c;
  c.fp8_block_rows = 2;
  c.fp8_block_cols = 3;
  try {
    dpserve::attach_fp8_scales(c, store);
  } catch (const dpserve::Error& e) {
    FUZZ_EXPECT(std::string(e.what()).rfind("weights:", 0) == 0);
    return 0;
  }
  for (const auto& [name, t] : store.all()) {
    if (t.dtype != dpserve::DType::F8_E4M3) continue;
    FUZZ_EXPECT(t.shape.size() == 2 && t.fp8);
    if (t.shape[0] * t.shape[1] > (int64_t(1) << 22)) continue;  // the file holds them; reading is just slow
    const dpserve::WeightView w = store.matrix(name, t.shape[0], t.shape[1]);
    std::vector<float> row(size_t(t.shape[1]));
    for (int64_t r = 0; r < t.shape[0]; ++r) dpserve::weight_row_to_f32(w, r, row.data());
  }
  return 0;
}
