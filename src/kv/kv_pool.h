// The paged KV cache of one rank: a fixed pool of pages, each holding `page_size`
// positions of every layer. What a position holds belongs to the attention kind:
//  * per-head (Llama, Qwen, Mixtral): K and V of every local KV head;
//  * latent (MLA, DeepSeek-V2/V3): one row [c_kv | k_pe] shared by all heads, the
//    same on every attention rank of a group (tensor parallelism cannot split it).
// The pool counts bytes per position, so budgets and metrics hold for both.
//
// Pages are reference counted so that a radix prefix cache can share them
// between sequences; a page returns to the free list when its count drops to 0.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/attention.h"

namespace dpserve {

enum class KVKind { kPerHead, kLatent };

struct KVPoolConfig {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;  // per-head: this rank's KV heads
  int64_t head_dim = 0;    // per-head: width of K and of V
  int64_t page_size = 16;
  int64_t n_pages = 0;
  KVKind kind = KVKind::kPerHead;
  int64_t latent_dim = 0;  // latent: kv_lora_rank (the normalised c_kv)
  int64_t rope_dim = 0;    // latent: qk_rope_head_dim (the rotated k_pe)

  static KVPoolConfig latent(int64_t n_layers, int64_t latent_dim, int64_t rope_dim, int64_t page_size,
                             int64_t n_pages);
  // fp32 values one position holds in one layer.
  int64_t floats_per_position() const;
  // Bytes one position costs over all layers, and one page.
  int64_t bytes_per_token() const { return n_layers * floats_per_position() * int64_t(sizeof(float)); }
  int64_t bytes_per_page() const { return bytes_per_token() * page_size; }
  // What a position holds, for logs: "MLA latent c_kv 512 + k_pe 64 fp32 x 27 layers".
  std::string describe() const;
};

class KVPool {
 public:
  explicit KVPool(const KVPoolConfig& cfg);

  const KVPoolConfig& config() const { return cfg_; }
  int64_t page_size() const { return cfg_.page_size; }
  int64_t n_pages() const { return cfg_.n_pages; }
  int64_t free_pages() const { return int64_t(free_.size()); }
  int64_t bytes() const { return cfg_.bytes_per_page() * cfg_.n_pages; }

  // Takes a free page (refcount 1); returns -1 when none is left.
  int32_t alloc();
  void retain(int32_t page);
  void release(int32_t page);
  int32_t refcount(int32_t page) const { return refs_[page]; }

  // Layer l as the attention kernel reads it (latent: one KV head, key = the whole row, value =
  // its c_kv prefix).
  KVLayerView layer(int64_t l) const;
  // Per-head: where position `slot` (0..page_size-1) of KV head h lives in page p of layer l.
  float* k_at(int64_t l, int32_t page, int64_t h, int64_t slot);
  float* v_at(int64_t l, int32_t page, int64_t h, int64_t slot);
  // Latent: the row [c_kv | k_pe] of position `slot` of page p in layer l.
  float* latent_at(int64_t l, int32_t page, int64_t slot);

 private:
  KVPoolConfig cfg_;
  int64_t layer_floats_ = 0;  // floats per layer (per-head: K then V)
  struct FreeDeleter {
    void operator()(float* p) const;
  };
  // calloc: the kernel hands out zero pages lazily, so an unused pool costs no RSS.
  std::unique_ptr<float, FreeDeleter> data_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;
};

// Positions of one sequence mapped onto pool pages.
struct PageTable {
  std::vector<int32_t> pages;
  int64_t len = 0;  // positions whose KV is written

  // Grows the table so `new_len` positions fit; false (and no change) if the pool is out of pages.
  bool reserve(KVPool& pool, int64_t new_len);
  // Returns every page to the pool.
  void release(KVPool& pool);
};

}  // namespace dpserve
