// The paged KV cache of one rank: a fixed pool of pages, each holding `page_size`
// positions of every layer. What a position holds belongs to the attention kind:
//  * per-head (Llama, Qwen, Mixtral): K and V of every local KV head;
//  * latent (MLA, DeepSeek-V2/V3): one row [c_kv | k_pe] shared by all heads, the
//    same on every attention rank of a group (tensor parallelism cannot split it).
// Rows are stored as fp32, bf16, int8 or fp8 (kv/kv_codec.h; int8 and fp8 with one fp32 scale per
// row).
// The pool counts bytes per position, so budgets and metrics hold for every kind and type.
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
  KVElem elem = KVElem::kF32;  // how each value is stored

  static KVPoolConfig latent(int64_t n_layers, int64_t latent_dim, int64_t rope_dim, int64_t page_size,
                             int64_t n_pages);
  // Values one position holds in one layer (K and V, or the latent row).
  int64_t elems_per_position() const;
  // Rows one position holds in one layer (each has its own scale with int8 / fp8).
  int64_t rows_per_position() const { return kind == KVKind::kLatent ? 1 : 2 * n_kv_heads; }
  // Bytes one position costs over all layers (values and int8 / fp8 scales), and one page.
  int64_t bytes_per_token() const;
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
  // Per-head: stores (encodes) the key / value of KV head h at position `slot` (0..page_size-1)
  // of page p in layer l; reads it back as fp32.
  void write_k(int64_t l, int32_t page, int64_t h, int64_t slot, const float* src);
  void write_v(int64_t l, int32_t page, int64_t h, int64_t slot, const float* src);
  void read_k(int64_t l, int32_t page, int64_t h, int64_t slot, float* dst) const;
  void read_v(int64_t l, int32_t page, int64_t h, int64_t slot, float* dst) const;
  // Latent: the row [c_kv | k_pe] of position `slot` of page p in layer l.
  void write_latent(int64_t l, int32_t page, int64_t slot, const float* src);
  void read_latent(int64_t l, int32_t page, int64_t slot, float* dst) const;
  // Every byte page p holds (values and int8 / fp8 scales of every layer), bytes_per_page() of them in a
  // fixed order: the on-disk prefix cache (kv/prefix_store.h) saves and restores pages with these.
  void copy_page_out(int32_t page, unsigned char* dst) const;
  void copy_page_in(int32_t page, const unsigned char* src);

 private:
  // Byte offsets inside one layer's block: K values, V values (per-head), K scales, V scales.
  struct Slot {
    int64_t value;  // offset of the row's first value
    int64_t scale;  // offset of its scale (int8 / fp8)
  };
  Slot per_head(int64_t l, int32_t page, int64_t h, int64_t slot, bool v) const;
  Slot latent_slot(int64_t l, int32_t page, int64_t slot) const;
  // The (offset, bytes) runs of page p inside data_, in copy_page_out's order.
  template <class F> void for_each_page_run(int32_t page, F&& f) const;

  KVPoolConfig cfg_;
  int64_t row_elems_ = 0;     // values in one row (head_dim, or latent + rope)
  int64_t values_bytes_ = 0;  // one layer's K values (per-head; V's follow) or latent rows
  int64_t scales_bytes_ = 0;  // one layer's K scales (V's follow), 0 unless int8 / fp8
  int64_t layer_bytes_ = 0;
  struct FreeDeleter {
    void operator()(unsigned char* p) const;
  };
  // calloc: the kernel hands out zero pages lazily, so an unused pool costs no RSS.
  std::unique_ptr<unsigned char, FreeDeleter> data_;
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
