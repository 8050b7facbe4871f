// Causal attention of a ragged batch of sequences against a paged KV cache.
//
// KV layout, per layer: K and V are each [num_pages][n_kv_heads][page_size][head_dim]
// fp32, so one head's keys inside a page are contiguous. A sequence's page
// table lists its pages in position order.
#pragma once

#include <cstdint>

#include "kernels/isa.h"
#include "kernels/team.h"

namespace dpserve {

struct KVLayerView {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t page_size = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t page_stride() const { return n_kv_heads * page_size * head_dim; }
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
};

// q: [rows, n_heads * head_dim] with row stride ldq; out likewise (ldo).
// The KV of every query position must already be written to the cache.
// Collective over the team (every member calls it; returns after a barrier); the overloads
// without a Team run on the calling thread alone.
void paged_attention(Team& t, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                     const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);
void paged_attention(const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                     const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);

// paged_attention on one given ISA level (Avx512Bf16 is the same as Avx512 here).
void paged_attention_isa(KernelIsa isa, Team& t, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                         const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);
void paged_attention_isa(KernelIsa isa, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                         const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);

namespace ref {
void paged_attention(const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                     const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo);
}  // namespace ref

}  // namespace dpserve
