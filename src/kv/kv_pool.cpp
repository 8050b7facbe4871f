#include "kv/kv_pool.h"

#include <cstdlib>
#include <new>

#include "core/check.h"

namespace dpserve {

int64_t KVPool::bytes_per_page(const KVPoolConfig& c) {
  return 2 * c.n_layers * c.n_kv_heads * c.page_size * c.head_dim * int64_t(sizeof(float));
}

KVPool::KVPool(const KVPoolConfig& cfg) : cfg_(cfg) {
  DP_CHECK(cfg.n_layers > 0 && cfg.n_kv_heads > 0 && cfg.head_dim > 0 && cfg.page_size > 0 && cfg.n_pages > 0);
  layer_stride_ = cfg.n_pages * cfg.n_kv_heads * cfg.page_size * cfg.head_dim;
  data_.reset(static_cast<float*>(std::calloc(size_t(2 * cfg.n_layers * layer_stride_), sizeof(float))));
  if (!data_) fail("KV cache: cannot allocate {} MiB for {} pages", bytes() >> 20, cfg.n_pages);
  refs_.assign(size_t(cfg.n_pages), 0);
  free_.reserve(size_t(cfg.n_pages));
  // Hand out low page numbers first: deterministic, and keeps early pages warm.
  for (int64_t p = cfg.n_pages - 1; p >= 0; --p) free_.push_back(int32_t(p));
}

int32_t KVPool::alloc() {
  if (free_.empty()) return -1;
  int32_t p = free_.back();
  free_.pop_back();
  refs_[p] = 1;
  return p;
}

void KVPool::retain(int32_t page) {
  DP_CHECK(page >= 0 && page < cfg_.n_pages && refs_[page] > 0);
  ++refs_[page];
}

void KVPool::release(int32_t page) {
  DP_CHECK(page >= 0 && page < cfg_.n_pages && refs_[page] > 0, "page {}", page);
  if (--refs_[page] == 0) free_.push_back(page);
}

void KVPool::FreeDeleter::operator()(float* p) const { std::free(p); }

KVLayerView KVPool::layer(int64_t l) const {
  const float* base = data_.get() + 2 * l * layer_stride_;
  return KVLayerView{base, base + layer_stride_, cfg_.page_size, cfg_.n_kv_heads, cfg_.head_dim};
}

float* KVPool::k_at(int64_t l, int32_t page, int64_t h, int64_t slot) {
  return data_.get() + 2 * l * layer_stride_ +
         ((int64_t(page) * cfg_.n_kv_heads + h) * cfg_.page_size + slot) * cfg_.head_dim;
}

float* KVPool::v_at(int64_t l, int32_t page, int64_t h, int64_t slot) {
  return k_at(l, page, h, slot) + layer_stride_;
}

bool PageTable::reserve(KVPool& pool, int64_t new_len) {
  int64_t need = (new_len + pool.page_size() - 1) / pool.page_size();
  int64_t extra = need - int64_t(pages.size());
  if (extra <= 0) return true;
  if (extra > pool.free_pages()) return false;
  for (int64_t i = 0; i < extra; ++i) pages.push_back(pool.alloc());
  return true;
}

void PageTable::release(KVPool& pool) {
  for (auto p : pages) pool.release(p);
  pages.clear();
  len = 0;
}

}  // namespace dpserve
