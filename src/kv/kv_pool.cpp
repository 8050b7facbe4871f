#include "kv/kv_pool.h"

#include <cstdlib>
#include <new>

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve {

KVPoolConfig KVPoolConfig::latent(int64_t n_layers, int64_t latent_dim, int64_t rope_dim, int64_t page_size,
                                  int64_t n_pages) {
  KVPoolConfig c;
  c.n_layers = n_layers;
  c.page_size = page_size;
  c.n_pages = n_pages;
  c.kind = KVKind::kLatent;
  c.latent_dim = latent_dim;
  c.rope_dim = rope_dim;
  return c;
}

int64_t KVPoolConfig::floats_per_position() const {
  return kind == KVKind::kLatent ? latent_dim + rope_dim : 2 * n_kv_heads * head_dim;
}

std::string KVPoolConfig::describe() const {
  if (kind == KVKind::kLatent)
    return fmt::format("MLA latent c_kv {} + k_pe {} fp32 x {} layers", latent_dim, rope_dim, n_layers);
  return fmt::format("K and V of {} heads x {} fp32 x {} layers", n_kv_heads, head_dim, n_layers);
}

KVPool::KVPool(const KVPoolConfig& cfg) : cfg_(cfg) {
  DP_CHECK(cfg.n_layers > 0 && cfg.page_size > 0 && cfg.n_pages > 0);
  if (cfg.kind == KVKind::kLatent)
    DP_CHECK(cfg.latent_dim > 0 && cfg.rope_dim >= 0);
  else
    DP_CHECK(cfg.n_kv_heads > 0 && cfg.head_dim > 0);
  layer_floats_ = cfg.n_pages * cfg.page_size * cfg.floats_per_position();
  data_.reset(static_cast<float*>(std::calloc(size_t(cfg.n_layers * layer_floats_), sizeof(float))));
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
  const float* base = data_.get() + l * layer_floats_;
  if (cfg_.kind == KVKind::kLatent) {
    const int64_t row = cfg_.latent_dim + cfg_.rope_dim;
    return KVLayerView{base, base, cfg_.page_size, 1, row, cfg_.latent_dim, row, row};
  }
  return KVLayerView{base, base + layer_floats_ / 2, cfg_.page_size, cfg_.n_kv_heads, cfg_.head_dim};
}

float* KVPool::k_at(int64_t l, int32_t page, int64_t h, int64_t slot) {
  DP_CHECK(cfg_.kind == KVKind::kPerHead);
  return data_.get() + l * layer_floats_ +
         ((int64_t(page) * cfg_.n_kv_heads + h) * cfg_.page_size + slot) * cfg_.head_dim;
}

float* KVPool::v_at(int64_t l, int32_t page, int64_t h, int64_t slot) {
  return k_at(l, page, h, slot) + layer_floats_ / 2;
}

float* KVPool::latent_at(int64_t l, int32_t page, int64_t slot) {
  DP_CHECK(cfg_.kind == KVKind::kLatent);
  return data_.get() + l * layer_floats_ + (int64_t(page) * cfg_.page_size + slot) * cfg_.floats_per_position();
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
