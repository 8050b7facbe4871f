#include "kv/kv_pool.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "core/check.h"
#include "kv/kv_codec.h"

namespace dpserve {

namespace {

int64_t round_up64(int64_t b) { return (b + 63) / 64 * 64; }

}  // namespace

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

int64_t KVPoolConfig::elems_per_position() const {
  return kind == KVKind::kLatent ? latent_dim + rope_dim : 2 * n_kv_heads * head_dim;
}

int64_t KVPoolConfig::bytes_per_token() const {
  const int64_t scales = kv_elem_scaled(elem) ? rows_per_position() * int64_t(sizeof(float)) : 0;
  return n_layers * (elems_per_position() * kv_elem_bytes(elem) + scales);
}

std::string KVPoolConfig::describe() const {
  const std::string per_row = kv_elem_scaled(elem) ? " (+ an fp32 scale per row)" : "";
  if (kind == KVKind::kLatent)
    return fmt::format("MLA latent c_kv {} + k_pe {} {}{} x {} layers", latent_dim, rope_dim, kv_elem_name(elem),
                       per_row, n_layers);
  return fmt::format("K and V of {} heads x {} {}{} x {} layers", n_kv_heads, head_dim, kv_elem_name(elem), per_row,
                     n_layers);
}

KVPool::KVPool(const KVPoolConfig& cfg) : cfg_(cfg) {
  DP_CHECK(cfg.n_layers > 0 && cfg.page_size > 0 && cfg.n_pages > 0);
  if (cfg.kind == KVKind::kLatent)
    DP_CHECK(cfg.latent_dim > 0 && cfg.rope_dim >= 0);
  else
    DP_CHECK(cfg.n_kv_heads > 0 && cfg.head_dim > 0);
  const int64_t positions = cfg.n_pages * cfg.page_size;
  const bool latent = cfg.kind == KVKind::kLatent;
  row_elems_ = latent ? cfg.latent_dim + cfg.rope_dim : cfg.head_dim;
  const int64_t rows = latent ? positions : positions * cfg.n_kv_heads;  // of K (or of latent)
  // Each array starts on a cache line, so the kernels' loads of a row never straddle two arrays.
  values_bytes_ = round_up64(rows * row_elems_ * kv_elem_bytes(cfg.elem));
  scales_bytes_ = kv_elem_scaled(cfg.elem) ? round_up64(rows * int64_t(sizeof(float))) : 0;
  layer_bytes_ = latent ? values_bytes_ + scales_bytes_ : 2 * (values_bytes_ + scales_bytes_);
  data_.reset(static_cast<unsigned char*>(std::calloc(size_t(cfg.n_layers * layer_bytes_), 1)));
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

void KVPool::FreeDeleter::operator()(unsigned char* p) const { std::free(p); }

KVLayerView KVPool::layer(int64_t l) const {
  const unsigned char* base = data_.get() + l * layer_bytes_;
  const bool scaled = kv_elem_scaled(cfg_.elem);
  KVLayerView v;
  v.page_size = cfg_.page_size;
  v.elem = cfg_.elem;
  if (cfg_.kind == KVKind::kLatent) {
    const int64_t row = row_elems_;
    v.k = v.v = base;
    v.n_kv_heads = 1;
    v.head_dim = row;
    v.v_dim = cfg_.latent_dim;
    v.k_row = v.v_row = row;
    if (scaled) v.k_scale = v.v_scale = reinterpret_cast<const float*>(base + values_bytes_);
    return v;
  }
  v.k = base;
  v.v = base + values_bytes_;
  v.n_kv_heads = cfg_.n_kv_heads;
  v.head_dim = cfg_.head_dim;
  if (scaled) {
    v.k_scale = reinterpret_cast<const float*>(base + 2 * values_bytes_);
    v.v_scale = reinterpret_cast<const float*>(base + 2 * values_bytes_ + scales_bytes_);
  }
  return v;
}

KVPool::Slot KVPool::per_head(int64_t l, int32_t page, int64_t h, int64_t slot, bool v) const {
  DP_CHECK(cfg_.kind == KVKind::kPerHead);
  DP_CHECK(page >= 0 && page < cfg_.n_pages && h >= 0 && h < cfg_.n_kv_heads && slot >= 0 && slot < cfg_.page_size);
  const int64_t row = (int64_t(page) * cfg_.n_kv_heads + h) * cfg_.page_size + slot;
  const int64_t base = l * layer_bytes_;
  return {base + (v ? values_bytes_ : 0) + row * row_elems_ * kv_elem_bytes(cfg_.elem),
          base + 2 * values_bytes_ + (v ? scales_bytes_ : 0) + row * int64_t(sizeof(float))};
}

KVPool::Slot KVPool::latent_slot(int64_t l, int32_t page, int64_t slot) const {
  DP_CHECK(cfg_.kind == KVKind::kLatent);
  DP_CHECK(page >= 0 && page < cfg_.n_pages && slot >= 0 && slot < cfg_.page_size);
  const int64_t row = int64_t(page) * cfg_.page_size + slot;
  const int64_t base = l * layer_bytes_;
  return {base + row * row_elems_ * kv_elem_bytes(cfg_.elem), base + values_bytes_ + row * int64_t(sizeof(float))};
}

void KVPool::write_k(int64_t l, int32_t page, int64_t h, int64_t slot, const float* src) {
  const Slot s = per_head(l, page, h, slot, false);
  float* scale = reinterpret_cast<float*>(data_.get() + s.scale);
  kv_encode_row(cfg_.elem, src, row_elems_, data_.get() + s.value, scale);
}

void KVPool::write_v(int64_t l, int32_t page, int64_t h, int64_t slot, const float* src) {
  const Slot s = per_head(l, page, h, slot, true);
  float* scale = reinterpret_cast<float*>(data_.get() + s.scale);
  kv_encode_row(cfg_.elem, src, row_elems_, data_.get() + s.value, scale);
}

void KVPool::read_k(int64_t l, int32_t page, int64_t h, int64_t slot, float* dst) const {
  const Slot s = per_head(l, page, h, slot, false);
  const float scale = scales_bytes_ ? *reinterpret_cast<const float*>(data_.get() + s.scale) : 1.0f;
  kv_decode_row(cfg_.elem, data_.get() + s.value, row_elems_, scale, dst);
}

void KVPool::read_v(int64_t l, int32_t page, int64_t h, int64_t slot, float* dst) const {
  const Slot s = per_head(l, page, h, slot, true);
  const float scale = scales_bytes_ ? *reinterpret_cast<const float*>(data_.get() + s.scale) : 1.0f;
  kv_decode_row(cfg_.elem, data_.get() + s.value, row_elems_, scale, dst);
}

void KVPool::write_latent(int64_t l, int32_t page, int64_t slot, const float* src) {
  const Slot s = latent_slot(l, page, slot);
  float* scale = reinterpret_cast<float*>(data_.get() + s.scale);
  kv_encode_row(cfg_.elem, src, row_elems_, data_.get() + s.value, scale);
}

void KVPool::read_latent(int64_t l, int32_t page, int64_t slot, float* dst) const {
  const Slot s = latent_slot(l, page, slot);
  const float scale = scales_bytes_ ? *reinterpret_cast<const float*>(data_.get() + s.scale) : 1.0f;
  kv_decode_row(cfg_.elem, data_.get() + s.value, row_elems_, scale, dst);
}

template <class F>
void KVPool::for_each_page_run(int32_t page, F&& f) const {
  DP_CHECK(page >= 0 && page < cfg_.n_pages, "page {}", page);
  const bool latent = cfg_.kind == KVKind::kLatent;
  // A page's rows are contiguous in each array: page * rows_per_page .. + rows_per_page.
  const int64_t rows = latent ? cfg_.page_size : cfg_.n_kv_heads * cfg_.page_size;
  const int64_t row_bytes = row_elems_ * kv_elem_bytes(cfg_.elem);
  const int64_t first = int64_t(page) * rows;
  const int64_t arrays = latent ? 1 : 2;  // K and V (per-head), or the latent rows
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const int64_t base = l * layer_bytes_;
    for (int64_t a = 0; a < arrays; ++a) f(base + a * values_bytes_ + first * row_bytes, rows * row_bytes);
    if (scales_bytes_)
      for (int64_t a = 0; a < arrays; ++a)
        f(base + arrays * values_bytes_ + a * scales_bytes_ + first * int64_t(sizeof(float)),
          rows * int64_t(sizeof(float)));
  }
}

void KVPool::copy_page_out(int32_t page, unsigned char* dst) const {
  int64_t at = 0;
  for_each_page_run(page, [&](int64_t off, int64_t n) {
    std::memcpy(dst + at, data_.get() + off, size_t(n));
    at += n;
  });
  DP_CHECK(at == cfg_.bytes_per_page(), "page copy: {} bytes, a page is {}", at, cfg_.bytes_per_page());
}

void KVPool::copy_page_in(int32_t page, const unsigned char* src) {
  int64_t at = 0;
  for_each_page_run(page, [&](int64_t off, int64_t n) {
    std::memcpy(data_.get() + off, src + at, size_t(n));
    at += n;
  });
  DP_CHECK(at == cfg_.bytes_per_page(), "page copy: {} bytes, a page is {}", at, cfg_.bytes_per_page());
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
