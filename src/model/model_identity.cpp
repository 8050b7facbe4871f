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

// Every field of the parsed config, in a fixed order: the forward pass reads them all, so any
// difference (a rope_scaling added, norm_topk_prob flipped, another MLA width) must change the
// digest. A field added to these structs changes their size and stops the build below until it is
// added here too.
static_assert(sizeof(ModelConfig) == 840 && sizeof(RopeScaling) == 160 && sizeof(MlaConfig) == 40 &&
                  sizeof(MoeRouting) == 48 && sizeof(VisionConfig) == 104,
              "a config field was added or removed: digest it in config_text()");

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
  s += fmt::format("|{}|{}|{}|{}", c.decoder_sparse_step, c.first_k_dense_replace, c.moe_layer_freq, c.nextn_layers);
  const RopeScaling& r = c.rope_scaling;
  s += fmt::format("|rope {} {:.17g} {:.17g} {:.17g} {:.17g} {:.17g} {:.17g} {:.17g} {:.17g} {:.17g} {}", int(r.type),
                   r.factor, r.low_freq_factor, r.high_freq_factor, r.original_max_position_embeddings, r.beta_fast,
                   r.beta_slow, r.mscale, r.mscale_all_dim, r.attention_factor, r.truncate);
  for (float f : r.freq_factors) s += fmt::format(",{:.9g}", f);
  for (const auto* set : {&r.short_factors, &r.long_factors}) {
    s += ";";
    for (float f : *set) s += fmt::format(",{:.9g}", f);
  }
  s += fmt::format("|rotary {}", c.rotary_dim);
  const MlaConfig& m = c.mla;
  s += fmt::format("|mla {} {} {} {} {}", m.q_lora_rank, m.kv_lora_rank, m.qk_nope_head_dim, m.qk_rope_head_dim,
                   m.v_head_dim);
  const MoeRouting& g = c.routing;
  s += fmt::format("|routing {} {} {} {} {} {:.17g} {}", int(g.scoring), int(g.topk), g.n_group, g.topk_group,
                   g.normalize, g.scaling, g.scale_normalized);
  const VisionConfig& v = c.vision;
  s += fmt::format("|vision {} {} {} {} {} {} {} {} {} {}", v.depth, v.hidden, v.ffn, v.n_heads, v.patch, v.merge,
                   v.temporal_patch, v.in_chans, v.window_size, v.out_hidden);
  for (int64_t b : v.fullatt_blocks) s += fmt::format(",{}", b);
  s += fmt::format("|gemma {} {:.9g} {:.17g} {:.9g} {} {:.17g} {:.9g} {:.9g}", int(c.mlp_act), c.embed_scale,
                   c.attn_scale, c.norm_offset, c.sandwich_norms, c.rope_local_theta, c.attn_softcap, c.final_softcap);
  for (uint8_t l : c.layer_sliding) s += l ? "s" : "f";
  s += fmt::format("|qtemp {:.17g} {:.17g} {:.17g} {}", c.q_temp_beta, c.q_temp_period, c.q_temp_offset,
                   c.q_temp_nope_only);
  s += fmt::format("|llama4 {} {} {}", c.attn_chunked, c.qk_l2_norm, c.moe_weight_input);
  s += fmt::format("|gpt-oss {} {} {} {:.9g}", c.o_bias, c.attn_sinks, c.moe_bias, c.swiglu_limit);
  s += "|nope ";
  for (uint8_t l : c.layer_nope) s += l ? "n" : "r";
  s += fmt::format("|granite {:.17g} {:.17g}|olmo2 {} {}|qwen2moe {}", c.residual_scale, c.logit_divisor,
                   c.qk_norm_whole, c.post_norms_only, c.shared_expert_ffn);
  s += fmt::format("|fp8 {} {} {}", c.fp8_block_rows, c.fp8_block_cols, c.fp8_compressed_tensors);
  return s;
}

bool is_weight_file(const std::filesystem::path& p) {
  const std::string e = p.extension().string();
  return e == ".safetensors" || e == ".gguf" || e == ".bin";
}

}  // namespace

std::vector<std::string> model_weight_files(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) {
    for (const auto& e : fs::directory_iterator(model_path, ec))
      if (e.is_regular_file(ec) && is_weight_file(e.path())) files.push_back(e.path().string());
  } else {
    files.push_back(model_path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::pair<std::string, int64_t>> model_identity(const std::string& model_path, const ModelConfig& cfg) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::vector<std::string> files = model_weight_files(model_path);
  int64_t bytes = 0;
  uint64_t contents = kFnvOffset;
  // The first and last 64 KiB (headers: tensor names, shapes, metadata) and 4 KiB of every MiB in
  // between: a fine-tune or a merged adapter changes whole tensors, and any tensor of 1 MiB or more
  // holds a sample (0.4 % of the bytes: ~40 MB of a 10 GB model, read once at start).
  constexpr int64_t kEnds = 64 << 10, kStride = 1 << 20, kSample = 4 << 10;
  std::vector<char> buf(kEnds);
  for (const auto& f : files) {
    const int64_t size = int64_t(fs::file_size(f, ec));
    if (ec) continue;
    bytes += size;
    contents = mix(contents, fs::path(f).filename().string() + "|" + std::to_string(size));
    std::ifstream in(f, std::ios::binary);
    auto sample = [&](int64_t at, int64_t n) {
      in.clear();
      in.seekg(at);
      in.read(buf.data(), std::min(n, size - at));
      contents = fnv1a(contents, buf.data(), size_t(in.gcount()));
    };
    sample(0, kEnds);
    for (int64_t at = kEnds; at + kSample <= size - kEnds; at += kStride) sample(at, kSample);
    sample(std::max<int64_t>(0, size - kEnds), kEnds);
  }
  return {{"model config digest", int64_t(mix(kFnvOffset, config_text(cfg)))},
          {"model weight file bytes", bytes},
          {"model weights digest", int64_t(contents)}};
}

}  // namespace dpserve
