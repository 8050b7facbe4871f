// The paged KV cache of one rank: a fixed pool of pages, each holding
// `page_size` positions of K and V for every layer and every local KV head.
//
// Pages are reference counted so that a radix prefix cache can share them
// between sequences; a page returns to the free list when its count drops to 0.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention.h"

namespace dpserve {

struct KVPoolConfig {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;  // this rank's KV heads
  int64_t head_dim = 0;
  int64_t page_size = 16;
  int64_t n_pages = 0;
};

class KVPool {
 public:
  explicit KVPool(const KVPoolConfig& cfg);

  const KVPoolConfig& config() const { return cfg_; }
  int64_t page_size() const { return cfg_.page_size; }
  int64_t n_pages() const { return cfg_.n_pages; }
  int64_t free_pages() const { return int64_t(free_.size()); }
  int64_t bytes() const { return 2 * cfg_.n_layers * layer_stride_ * int64_t(sizeof(float)); }
  static int64_t bytes_per_page(const KVPoolConfig& cfg);

  // Takes a free page (refcount 1); returns -1 when none is left.
  int32_t alloc();
  void retain(int32_t page);
  void release(int32_t page);
  int32_t refcount(int32_t page) const { return refs_[page]; }

  KVLayerView layer(int64_t l) const;
  // Where position `slot` (0..page_size-1) of KV head h lives in page p of layer l.
  float* k_at(int64_t l, int32_t page, int64_t h, int64_t slot);
  float* v_at(int64_t l, int32_t page, int64_t h, int64_t slot);

 private:
  KVPoolConfig cfg_;
  int64_t layer_stride_ = 0;  // floats per layer for K (V follows K)
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
