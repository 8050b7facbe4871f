// GGUF files from untrusted sources: the container reader (src/model/gguf_file.h), the model
// loader on top (config from metadata, tensor names, Model::load) and the vocabulary reader
// (src/tokenizer/gguf_vocab.h). Truncations, lying counts/offsets/sizes, overlapping data, absurd
// dimensions, unknown types, huge arrays and bad UTF-8 must give dpserve::Error. What is accepted
// must hold: tensors inside the file and apart, sizes matching shapes; a loaded model's weights
// readable; a loaded tokenizer's ids in range and decodable.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/check.h"
#include "fuzz_util.h"
#include "model/gguf_file.h"
#include "model/gguf_types.h"
#include "model/model.h"
#include "tokenizer/gguf_vocab.h"

namespace {

const std::string& temp_path() {
  static const std::string p = "/tmp/dpserve_fuzz_" + std::to_string(::getpid()) + ".gguf";
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

// The accepted file against its bytes: every tensor lies in the file, holds exactly the bytes its
// shape and type need, starts on the alignment, and shares no byte with another.
void check_file(const dpserve::GgufFile& f, const uint8_t* data, size_t size) {
  const uint8_t* base = f.mapping()->data();
  FUZZ_EXPECT(f.mapping()->size() == size);
  std::vector<std::pair<const uint8_t*, const uint8_t*>> ranges;
  for (const auto& t : f.tensors()) {
    const dpserve::GgmlTypeInfo* ti = dpserve::ggml_type_info(t.type);
    FUZZ_EXPECT(ti != nullptr);
    FUZZ_EXPECT(!t.ne.empty() && t.ne.size() <= 4);
    for (int64_t d : t.ne) FUZZ_EXPECT(d >= 1);
    FUZZ_EXPECT(t.ne[0] % ti->block_elems == 0);
    FUZZ_EXPECT(t.bytes == uint64_t(t.numel() / ti->block_elems * ti->block_bytes));
    FUZZ_EXPECT(t.data >= base && t.data + t.bytes <= base + size);
    FUZZ_EXPECT(t.offset % f.alignment() == 0);
    // The mapping holds the file's bytes there (a wrong pointer differs, a bad one faults).
    const size_t at = size_t(t.data - base);
    FUZZ_EXPECT(std::equal(t.data, t.data + t.bytes, data + at));
    ranges.emplace_back(t.data, t.data + t.bytes);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) FUZZ_EXPECT(ranges[i].first >= ranges[i - 1].second);
  // Every metadata value reads back within the file.
  for (const auto& [key, v] : f.metadata().all()) {
    if (v.type == dpserve::GgufType::Array) {
      FUZZ_EXPECT(v.elem == dpserve::GgufType::String ? v.strings.size() == v.count : v.raw != nullptr || v.count == 0);
      for (const auto& s : v.strings) FUZZ_EXPECT(s.data() >= reinterpret_cast<const char*>(base) &&
                                                  s.data() + s.size() <= reinterpret_cast<const char*>(base + size));
    }
  }
}

void check_model(const dpserve::Model& m) {
  const dpserve::ModelConfig& c = m.config();
  FUZZ_EXPECT(c.hidden > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.vocab > 0);
  FUZZ_EXPECT(c.head_dim > 0 && c.head_dim % 2 == 0 && c.n_heads % c.n_kv_heads == 0);
  FUZZ_EXPECT(std::isfinite(c.rms_eps) && c.rms_eps > 0 && std::isfinite(c.rope_theta) && c.rope_theta > 0);
  FUZZ_EXPECT(c.n_experts_per_tok <= c.n_experts);
  FUZZ_EXPECT(m.weight_bytes() > 0);
}

void check_tokenizer(const dpserve::Tokenizer& tok) {
  const int64_t n = tok.vocab_size();
  FUZZ_EXPECT(n > 0);
  for (const char* text : {"Hello w\xc3\xb6rld <s> 123\n\t", "", " <|im_end|>\xe2\x96\x81 x"}) {
    const auto ids = tok.encode(text, true);
    for (int32_t id : ids) FUZZ_EXPECT(id >= 0 && id < n);
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
  }
  for (int32_t id : tok.eos_ids()) FUZZ_EXPECT(id >= 0 && id < n);
  FUZZ_EXPECT(tok.bos_id() < n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = temp_path();
  write_file(path, data, size);
  try {
    const dpserve::GgufFile f(path);
    check_file(f, data, size);
  } catch (const dpserve::Error& e) {
    FUZZ_EXPECT(std::string(e.what()).find("GGUF") != std::string::npos);
    return 0;
  }
  try {
    check_model(*dpserve::Model::load(path));
  } catch (const dpserve::Error&) {
  }
  try {
    check_tokenizer(*dpserve::load_gguf_tokenizer(path));
  } catch (const dpserve::Error&) {
  }
  return 0;
}
