#include "model/model_identity.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

namespace dpserve {

uint64_t fnv1a(uint64_t h, const void* bytes, size_t n) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

namespace {

uint64_t mix(uint64_t h, const std::string& s) { return fnv1a(h, s.data(), s.size() + 1); }

std::string config_text(const ModelConfig& c) {
  std::string s = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{:.17g}|{:.17g}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                              int(c.arch), c.arch_name, c.hidden, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim,
                              c.ffn, c.vocab, c.max_pos, c.rms_eps, c.rope_theta, c.rope_interleaved,
                              c.tie_embeddings, c.qkv_bias, c.qk_norm, c.sliding_window, c.mla.enabled(),
                              c.vision.enabled(), c.n_experts, c.n_experts_per_tok, c.moe_ffn, c.n_shared_experts,
                              c.bos_id, int(c.dtype));
  for (int32_t e : c.eos_ids) s += fmt::format(",{}", e);
  for (int64_t m : c.mrope_section) s += fmt::format(";{}", m);
  for (int64_t m : c.mlp_only_layers) s += fmt::format(":{}", m);
  s += fmt::format("|{}|{}|{}", c.decoder_sparse_step, c.first_k_dense_replace, c.moe_layer_freq);
  return s;
}

bool is_weight_file(const std::filesystem::path& p) {
  const std::string e = p.extension().string();
  return e == ".safetensors" || e == ".gguf" || e == ".bin";
}

}  // namespace

std::vector<std::pair<std::string, int64_t>> model_identity(const std::string& model_path, const ModelConfig& cfg) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) {
    for (const auto& e : fs::directory_iterator(model_path, ec))
      if (e.is_regular_file(ec) && is_weight_file(e.path())) files.push_back(e.path());
  } else {
    files.push_back(model_path);
  }
  std::sort(files.begin(), files.end());
  int64_t bytes = 0;
  uint64_t contents = kFnvOffset;
  constexpr int64_t kSample = 64 << 10;
  std::vector<char> buf(kSample);
  for (const auto& f : files) {
    const int64_t size = int64_t(fs::file_size(f, ec));
    if (ec) continue;
    bytes += size;
    contents = mix(contents, f.filename().string() + "|" + std::to_string(size));
    std::ifstream in(f, std::ios::binary);
    for (const int64_t at : {int64_t(0), std::max<int64_t>(0, size - kSample)}) {
      in.clear();
      in.seekg(at);
      in.read(buf.data(), std::min(kSample, size));
      contents = fnv1a(contents, buf.data(), size_t(in.gcount()));
    }
  }
  return {{"model config digest", int64_t(mix(kFnvOffset, config_text(cfg)))},
          {"model weight file bytes", bytes},
          {"model weights digest", int64_t(contents)}};
}

}  // namespace dpserve
