// Causal attention of a ragged batch of sequences against a paged KV cache.
//
// KV layout, per layer: K and V are each [num_pages][n_kv_heads][page_size][row]
// elements, so one head's keys inside a page are contiguous. Elements are fp32, bf16,
// int8 or fp8 (KVElem); int8 and fp8 rows carry one fp32 scale each, in arrays laid out
// [num_pages][n_kv_heads][page_size]. The kernels read the compact forms in place. A sequence's page
// table lists its pages in position order. Keys and values may differ in width,
// and a row may be wider than what is read: MLA's latent cache is one KV head
// whose rows are [c_kv | k_pe], read whole as the key and its c_kv prefix as the
// value (v == k).
#pragma once

#include <cstdint>

#include "kernels/isa.h"
#include "kernels/team.h"

namespace dpserve {

// What one element of a cached key or value is.
enum class KVElem : uint8_t {
  kF32,
  kBF16,  // the top half of an fp32 (round to nearest even on write)
  kInt8,  // q * scale, one scale per position per KV head (max |x| / 127 of that row)
  // fp8 code (core/fp8.h) * scale, one scale per row as int8's (max |x| / the format's largest
  // finite value, so each row spends the format's whole range).
  kFp8E4M3,
  kFp8E5M2,
};
int64_t kv_elem_bytes(KVElem e);
const char* kv_elem_name(KVElem e);  // "fp32", "bf16", "int8", "fp8_e4m3", "fp8_e5m2"
// True for the elements whose rows carry a scale (int8, fp8).
bool kv_elem_scaled(KVElem e);

struct KVLayerView {
  const void* k = nullptr;  // elements of type `elem`
  const void* v = nullptr;
  int64_t page_size = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;  // width of a key (and of a query head)
  int64_t v_dim = 0;     // width of a value; 0: head_dim
  int64_t k_row = 0;     // floats from one position's key to the next; 0: head_dim
  int64_t v_row = 0;     // the same for values; 0: the value width
  KVElem elem = KVElem::kF32;
  // int8 / fp8: the scale of each key / value row, [page][n_kv_heads][page_size] (may be the same array
  // when k == v, as in MLA's latent cache).
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;

  int64_t value_dim() const { return v_dim ? v_dim : head_dim; }
  // Strides in elements.
  int64_t k_row_stride() const { return k_row ? k_row : head_dim; }
  int64_t v_row_stride() const { return v_row ? v_row : value_dim(); }
  int64_t k_page_stride() const { return n_kv_heads * page_size * k_row_stride(); }
  int64_t v_page_stride() const { return n_kv_heads * page_size * v_row_stride(); }
  int64_t scale_page_stride() const { return n_kv_heads * page_size; }
};

struct AttnSeq {
  int64_t q_row = 0;   // first row of this sequence in q / out
  int64_t n_q = 0;     // number of query tokens (new tokens this step)
  int64_t pos0 = 0;    // position of the first query token; query i sees keys [0, pos0 + i]
  const int32_t* pages = nullptr;  // page table (covers at least pos0 + n_q positions)
};

struct AttnParams {
  int64_t n_heads = 0;     // query heads (this rank's)
  int64_t n_kv_heads = 0;  // KV heads (this rank's); n_heads % n_kv_heads == 0
  int64_t head_dim = 0;
  float scale = 1.0f;      // usually 1/sqrt(head_dim)
  int64_t window = 0;      // > 0: the query at position p sees only keys (p - window, p] (sliding window)
  float softcap = 0;       // > 0: each score s becomes softcap * tanh(s / softcap) before the softmax (Gemma 2)
  // [n_heads] or null: head h's softmax also counts a key of score sinks[h] whose value is zero
  // (gpt-oss's attention sinks): its outputs are scaled by sum / (sum + exp(sinks[h] - max)).
  const float* sinks = nullptr;
  // Llama 4's chunked attention: with window > 0 the query at position p sees only its own aligned chunk
  // of `window` positions, keys [p - p % window, p], instead of the last `window`.
  bool chunked = false;

  // The first key position the query at position `pos` sees.
  int64_t first_key(int64_t pos) const {
    if (window <= 0) return 0;
    return chunked ? pos - pos % window : (pos + 1 > window ? pos + 1 - window : 0);
  }
};

// q: [rows, n_heads * head_dim] with row stride ldq; out: [rows, n_heads * value width] (ldo).
// The KV of every query position must already be written to the cache.
// Collective over the team (every member calls it; returns after a barrier); the overloads
// without a Team run on the calling thread alone.
void paged_attention(Team& t, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                     const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);
void paged_attention(const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                     const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);

// True when paged_attention on `isa` multiplies in bf16 over a cache of `elem`: at the AMX level,
// and at the AVX-512 BF16 level unless that takes fp32 FMAs (kernels::bf16_fma_products(), the
// default on Intel: it then runs the AVX-512 level's kernels), the scores of a bf16, int8 or fp8
// cache are vdpbf16ps products of the query rounded to bf16 (round to nearest even) and the keys
// (int8 and fp8 codes are bf16 exactly; their scales apply after), and each page's softmax weights
// (times the values' scales) are rounded to bf16 before they weigh the values (the sums of the
// weights stay fp32). Every other case computes in fp32 from the values the cache holds.
bool attention_uses_bf16_products(KernelIsa isa, KVElem elem);

// paged_attention on one given ISA level.
void paged_attention_isa(KernelIsa isa, Team& t, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                         const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);
void paged_attention_isa(KernelIsa isa, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                         const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);

namespace ref {
void paged_attention(const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                     const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);
}  // namespace ref

}  // namespace dpserve
