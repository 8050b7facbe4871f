#include "model/llama2c.h"

#include <cstring>

#include "core/check.h"

namespace dpserve {

namespace {

struct Cursor {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& path;

  const void* take(int64_t numel) {
    int64_t bytes = numel * 4;
    if (bytes < 0 || end - p < bytes)
      fail("llama2.c checkpoint {} is truncated (needs {} more bytes, {} left)", path, bytes, int64_t(end - p));
    const void* r = p;
    p += bytes;
    return r;
  }
};

}  // namespace

void load_llama2c(const std::string& path, ModelConfig& c, WeightStore& store) {
  auto f = std::make_shared<MappedFile>(path);
  const uint8_t* p = f->data();
  if (f->size() < 28) fail("llama2.c checkpoint {} is truncated ({} bytes)", path, f->size());
  int32_t hdr[9];
  std::memcpy(hdr, p, sizeof(int32_t) * 7);
  int version = 0;
  bool shared_classifier = true;
  const uint8_t* data = p + 28;
  if (uint32_t(hdr[0]) == 0x616b3432u) {  // "ak42": version-tagged export
    if (f->size() < 256) fail("llama2.c checkpoint {} is truncated", path);
    std::memcpy(&version, p + 4, 4);
    if (version != 1) fail("llama2.c checkpoint {}: export version {} is not supported (only 1, fp32)", path, version);
    std::memcpy(hdr, p + 8, sizeof(int32_t) * 7);
    shared_classifier = p[8 + 28] != 0;
    data = p + 256;
  }
  int dim = hdr[0], hidden = hdr[1], layers = hdr[2], heads = hdr[3], kv_heads = hdr[4], vocab = hdr[5],
      seq_len = hdr[6];
  if (version == 0) {
    shared_classifier = vocab > 0;
    vocab = vocab == INT32_MIN ? 0 : vocab < 0 ? -vocab : vocab;  // INT32_MIN has no positive twin
  }
  if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || vocab <= 0 || seq_len <= 0 ||
      dim % heads != 0 || heads % kv_heads != 0 || dim > (1 << 16) || layers > 1024 || vocab > (1 << 22))
    fail("llama2.c checkpoint {}: implausible header (dim={} hidden={} layers={} heads={} kv_heads={} vocab={} "
         "seq_len={})",
         path, dim, hidden, layers, heads, kv_heads, vocab, seq_len);
  if ((dim / heads) % 2 != 0)  // RoPE rotates pairs of a head's dimensions
    fail("llama2.c checkpoint {}: head dimension {} (dim {} / heads {}) must be even for RoPE", path, dim / heads,
         dim, heads);

  c = ModelConfig{};
  c.arch = Arch::Llama;
  c.arch_name = "llama2.c";
  c.hidden = dim;
  c.ffn = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.vocab = vocab;
  c.max_pos = seq_len;
  c.rms_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.rope_interleaved = true;
  c.tie_embeddings = shared_classifier;
  c.bos_id = 1;
  c.eos_ids = {2};
  c.dtype = DType::F32;

  const int64_t kv_dim = int64_t(kv_heads) * (dim / heads);
  Cursor cur{data, p + f->size(), path};
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const void* ptr) {
    store.add(name, TensorInfo{DType::F32, std::move(shape), ptr, path});
  };
  auto per_layer = [&](const std::string& suffix, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    for (int l = 0; l < layers; ++l) add("model.layers." + std::to_string(l) + "." + suffix, shape, cur.take(n));
  };
  auto emb = [&] { add("model.embed_tokens.weight", {vocab, dim}, cur.take(int64_t(vocab) * dim)); };
  if (version == 0) {
    emb();
    per_layer("input_layernorm.weight", {dim});
  } else {
    per_layer("input_layernorm.weight", {dim});
    per_layer("post_attention_layernorm.weight", {dim});
    add("model.norm.weight", {dim}, cur.take(dim));
    emb();
  }
  per_layer("self_attn.q_proj.weight", {dim, dim});
  per_layer("self_attn.k_proj.weight", {kv_dim, dim});
  per_layer("self_attn.v_proj.weight", {kv_dim, dim});
  per_layer("self_attn.o_proj.weight", {dim, dim});
  if (version == 0) per_layer("post_attention_layernorm.weight", {dim});
  per_layer("mlp.gate_proj.weight", {hidden, dim});
  per_layer("mlp.down_proj.weight", {dim, hidden});
  per_layer("mlp.up_proj.weight", {hidden, dim});
  if (version == 0) {
    add("model.norm.weight", {dim}, cur.take(dim));
    cur.take(int64_t(seq_len) * (dim / heads) / 2);  // freq_cis_real (recomputed instead)
    cur.take(int64_t(seq_len) * (dim / heads) / 2);  // freq_cis_imag
  }
  if (!shared_classifier) add("lm_head.weight", {vocab, dim}, cur.take(int64_t(vocab) * dim));
  store.add_file(std::move(f));
}

}  // namespace dpserve
