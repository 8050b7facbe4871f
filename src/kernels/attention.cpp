// paged_attention driver: validation, the reference, and the split of (sequence, KV head,
// query block) jobs, or (row, KV head, key chunk) jobs and their merges, over the team, run by
// the per-ISA kernels.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/attention_impl.h"

namespace dpserve {

using kernels::AttnCtx;

int64_t kv_elem_bytes(KVElem e) {
  switch (e) {
    case KVElem::kF32: return 4;
    case KVElem::kBF16: return 2;
    case KVElem::kInt8:
    case KVElem::kFp8E4M3:
    case KVElem::kFp8E5M2: return 1;
  }
  return 4;
}

bool kv_elem_scaled(KVElem e) { return e == KVElem::kInt8 || e == KVElem::kFp8E4M3 || e == KVElem::kFp8E5M2; }

const char* kv_elem_name(KVElem e) {
  switch (e) {
    case KVElem::kF32: return "fp32";
    case KVElem::kBF16: return "bf16";
    case KVElem::kInt8: return "int8";
    case KVElem::kFp8E4M3: return "fp8_e4m3";
    case KVElem::kFp8E5M2: return "fp8_e5m2";
  }
  return "?";
}

static void check_args(const float* q, const AttnSeq* seqs, int64_t n_seqs, const KVLayerView& kv,
                       const AttnParams& p, float* out) {
  if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0)
    fail("attention: bad head counts ({} heads, {} kv heads, dim {})", p.n_heads, p.n_kv_heads, p.head_dim);
  if (p.n_heads % p.n_kv_heads != 0)
    fail("attention: {} query heads not a multiple of {} kv heads", p.n_heads, p.n_kv_heads);
  if (kv.n_kv_heads != p.n_kv_heads || kv.head_dim != p.head_dim)
    fail("attention: KV cache has {} heads of {}, expected {} of {}", kv.n_kv_heads, kv.head_dim, p.n_kv_heads,
         p.head_dim);
  if (kv.page_size <= 0) fail("attention: page size {} must be positive", kv.page_size);
  if (kv.v_dim < 0 || kv.k_row_stride() < kv.head_dim || kv.v_row_stride() < kv.value_dim())
    fail("attention: KV rows ({} / {} floats) narrower than the key ({}) / value ({}) width", kv.k_row_stride(),
         kv.v_row_stride(), kv.head_dim, kv.value_dim());
  if (p.window < 0) fail("attention: negative sliding window {}", p.window);
  if (!(p.softcap >= 0) || std::isinf(p.softcap))
    fail("attention: logit softcap {} must be finite and >= 0", p.softcap);
  if (p.sinks)
    for (int64_t h = 0; h < p.n_heads; ++h)
      if (!std::isfinite(p.sinks[h])) fail("attention: sink logit of head {} is {}", h, p.sinks[h]);
  if (kv_elem_scaled(kv.elem) && (!kv.k_scale || !kv.v_scale))
    fail("attention: an {} KV cache without scales", kv_elem_name(kv.elem));
  if (n_seqs < 0 || (n_seqs > 0 && !seqs)) fail("attention: bad sequence list");
  for (int64_t s = 0; s < n_seqs; ++s) {
    const AttnSeq& a = seqs[s];
    if (a.n_q < 0 || a.pos0 < 0 || a.q_row < 0) fail("attention: sequence {} has a negative field", s);
    if (a.n_q > 0 && (!a.pages || !q || !out || !kv.k || !kv.v)) fail("attention: null pointer for sequence {}", s);
  }
}

namespace ref {

void paged_attention(const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs, const KVLayerView& kv,
                     const AttnParams& p, float* out, int64_t ldo) {
  check_args(q, seqs, n_seqs, kv, p, out);
  const int64_t hd = p.head_dim, vd = kv.value_dim(), group = p.n_heads / p.n_kv_heads;
  std::vector<double> sc, acc(vd);
  for (int64_t s = 0; s < n_seqs; ++s) {
    const AttnSeq& a = seqs[s];
    for (int64_t i = 0; i < a.n_q; ++i) {
      const int64_t n_keys = a.pos0 + i + 1;
      const int64_t first = p.first_key(n_keys - 1);
      sc.assign(n_keys, -INFINITY);
      for (int64_t h = 0; h < p.n_heads; ++h) {
        const int64_t kvh = h / group;
        const float* qh = q + (a.q_row + i) * ldq + h * hd;
        // Element e of position j's key / value as the cache holds it, scale applied, in double.
        const int64_t es = kv_elem_bytes(kv.elem);
        auto elem = [&](const void* base, int64_t page_stride, int64_t row, const float* scales, int64_t j,
                        int64_t e) -> double {
          const int64_t page = a.pages[j / kv.page_size], slot = kvh * kv.page_size + j % kv.page_size;
          const char* at = static_cast<const char*>(base) + ((page * page_stride + slot * row) + e) * es;
          switch (kv.elem) {
            case KVElem::kF32: return *reinterpret_cast<const float*>(at);
            case KVElem::kBF16: return kernels::kv_to_f32(*reinterpret_cast<const bf16_t*>(at));
            case KVElem::kInt8:
              return double(*reinterpret_cast<const int8_t*>(at)) * scales[page * kv.scale_page_stride() + slot];
            case KVElem::kFp8E4M3:
              return double(fp8_to_f32(*reinterpret_cast<const fp8_e4m3_t*>(at))) *
                     scales[page * kv.scale_page_stride() + slot];
            case KVElem::kFp8E5M2:
              return double(fp8_to_f32(*reinterpret_cast<const fp8_e5m2_t*>(at))) *
                     scales[page * kv.scale_page_stride() + slot];
          }
          return 0;
        };
        double mx = -INFINITY;
        for (int64_t j = first; j < n_keys; ++j) {
          double d = 0;
          for (int64_t e = 0; e < hd; ++e)
            d += double(qh[e]) * elem(kv.k, kv.k_page_stride(), kv.k_row_stride(), kv.k_scale, j, e);
          sc[j] = d * p.scale;
          if (p.softcap > 0) sc[j] = p.softcap * std::tanh(sc[j] / p.softcap);
          mx = std::max(mx, sc[j]);
        }
        double den = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = first; j < n_keys; ++j) {
          const double w = std::exp(sc[j] - mx);
          den += w;
          for (int64_t e = 0; e < vd; ++e)
            acc[e] += w * elem(kv.v, kv.v_page_stride(), kv.v_row_stride(), kv.v_scale, j, e);
        }
        if (p.sinks) den += std::exp(double(p.sinks[h]) - mx);
        float* oh = out + (a.q_row + i) * ldo + h * vd;
        for (int64_t e = 0; e < vd; ++e) oh[e] = float(acc[e] / den);
      }
    }
  }
}

}  // namespace ref

bool attention_uses_bf16_products(KernelIsa isa, KVElem elem) {
  return elem != KVElem::kF32 &&
         ((isa == KernelIsa::Avx512Bf16 && !kernels::bf16_fma_products()) || isa == KernelIsa::Amx);
}

static kernels::AttnJobFn pick_job(KernelIsa isa) {
  if (!kernel_isa_supported(isa)) fail("attention: kernel ISA {} not supported by this CPU", kernel_isa_name(isa));
  switch (isa) {
    case KernelIsa::Amx: return kernels::amx::attention_job;
    case KernelIsa::Avx512Bf16:  // fp32 FMAs where vdpbf16ps is the slower (kernels/isa.h)
      return kernels::bf16_fma_products() ? kernels::avx512::attention_job : kernels::avx512bf16::attention_job;
    case KernelIsa::Avx512: return kernels::avx512::attention_job;
    case KernelIsa::Avx2: return kernels::avx2::attention_job;
    case KernelIsa::Portable: return kernels::portable::attention_job;
  }
  return kernels::portable::attention_job;
}

void paged_attention_isa(KernelIsa isa, Team& t, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                         const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo) {
  using kernels::AttnJob;
  check_args(q, seqs, n_seqs, kv, p, out);
  const kernels::AttnJobFn run = pick_job(isa);
  const AttnCtx c{q, ldq, seqs, kv, p, out, ldo};
  const int64_t group = p.n_heads / p.n_kv_heads, vd = kv.value_dim();

  // Jobs of kQBlock queries or more: enough of them to balance causal prefill (later queries see
  // more keys) over the members, and enough (query, head) rows to share each step's packed keys:
  // up to kJobRowHeads of them (a KV head with few query heads takes more queries), while a job's
  // queries and running sums stay within kJobBytes of the core's cache and every member has
  // several jobs. 4 rows a job repacked every page for 4 rows: 16 made bf16 prefill attention 8 %
  // faster; up to 512 (query, head) rows then made the bf16 level's prefill attention 1.03-1.09x
  // faster with 8 heads a KV head, 1.10-1.18x with 4 and 1.30-1.39x with one (MLA's decompressed
  // form), the AVX2 and fp32 levels even (docs/benchmarks.md). When that leaves members idle or
  // unevenly loaded (one long decoding sequence, few KV heads), long rows of short sequences
  // (decode, speculative verify) become one job per key chunk plus a merge, and a KV head's query
  // heads are split into groups. Neither choice changes a bit of any row (kernels::key_chunks fixes
  // the chunks from the row alone; a head's result does not depend on the heads beside it), so
  // they may follow the team's size and the batch. Every member builds the same lists.
  constexpr int64_t kQBlock = 16, kJobRowHeads = 512, kJobBytes = 512 << 10;
  const int64_t members = t.size();
  int64_t q_block = kQBlock;
  {
    const int64_t row_bytes = group * ((p.head_dim + 1) / 2 + vd) * int64_t(sizeof(float));
    int64_t all_q = 0;
    for (int64_t s = 0; s < n_seqs; ++s) all_q += seqs[s].n_q;
    q_block = std::max(kQBlock, std::min(kJobRowHeads / group, kJobBytes / row_bytes));
    while (q_block > kQBlock && (all_q + q_block - 1) / q_block * p.n_kv_heads < 4 * members) q_block /= 2;
    q_block = std::max(kQBlock, q_block);
  }
  int64_t base_jobs = 0;
  for (int64_t s = 0; s < n_seqs; ++s) base_jobs += (seqs[s].n_q + q_block - 1) / q_block * p.n_kv_heads;
  // Split when the jobs leave a member idle or do not divide evenly over a small team; jobs that
  // already divide (4 KV heads on 2 members) would only pay the merges.
  const bool split_keys =
      members > 1 && (base_jobs < members || (base_jobs < 4 * members && base_jobs % members != 0));
  // Below long_row keys a row's query heads in groups fill the team without the merge and its
  // second barrier; past it a row's key chunks do, each job keeping all its heads (MLA's sixteen
  // fill a vector's lanes on the AVX-512 BF16 level). At four chunks a member the chunks also
  // divide evenly enough: MLA's latent shape (16 heads, one KV head) on 2 threads decodes 1.55x
  // (bf16), 1.15-1.2x (int8, fp32) faster by chunks at 1k-8k keys, but 3 chunks on 2 members ran
  // 0.8-0.9x (fp32, and 32 MQA heads) (docs/benchmarks.md). The AVX-512 level gains 1.12-1.20x
  // there too; AVX2 went either way (fp32 MLA 0.93-0.96x at 4k-8k keys) and AMX is unmeasured: they
  // keep 16k keys, where chunks began until 2026-12-06 (chunk jobs then cost 0.6-0.9x at 1k-8k).
  const bool chunks_early = isa == KernelIsa::Avx512Bf16 || isa == KernelIsa::Avx512;
  const int64_t long_row = chunks_early ? 4 * members * kernels::kKeyChunk : 16384;
  const bool heads_fill = base_jobs * group >= members;
  auto chunk_seq = [&](const AttnSeq& a) {
    return split_keys && a.n_q <= kQBlock && (!heads_fill || a.pos0 + a.n_q >= long_row);
  };
  int64_t units = 0;  // jobs after the key split, before any head split
  for (int64_t s = 0; s < n_seqs; ++s) {
    const AttnSeq& a = seqs[s];
    if (chunk_seq(a)) {
      for (int64_t i = 0; i < a.n_q; ++i) units += kernels::key_chunks(a, i, p).count * p.n_kv_heads;
    } else {
      units += (a.n_q + q_block - 1) / q_block * p.n_kv_heads;
    }
  }
  // Head groups: enough for every member to have a job, in fours where the group allows (the
  // kernels score four heads per pass over a page's keys).
  int64_t sub = group;
  if (members > 1 && units > 0 && units < members && group > 1) {
    const int64_t want = std::min(group, (members + units - 1) / units);
    sub = (group + want - 1) / want;
    if (group % 4 == 0 && sub > 4) sub = (sub + 3) / 4 * 4;
  }

  thread_local std::vector<AttnJob> jobs, merges;
  jobs.clear();
  merges.clear();
  int64_t n_parts = 0;  // floats of partials
  for (int64_t s = 0; s < n_seqs; ++s) {
    const AttnSeq& a = seqs[s];
    const bool chunked = chunk_seq(a);
    for (int64_t i0 = 0; i0 < a.n_q; i0 += q_block)
      for (int64_t h = 0; h < p.n_kv_heads; ++h)
        for (int64_t g0 = 0; g0 < group; g0 += sub) {
          const int64_t g1 = std::min(group, g0 + sub);
          const int64_t i1 = std::min(a.n_q, i0 + q_block);
          for (int64_t i = i0; chunked && i < i1; ++i) {
            const int64_t n_chunks = kernels::key_chunks(a, i, p).count;
            if (n_chunks == 1) {
              jobs.push_back({AttnJob::kRows, s, h, g0, g1, i, i + 1, 0, 0});
              continue;
            }
            const int64_t pf = kernels::part_floats(g1 - g0, vd);
            for (int64_t ch = 0; ch < n_chunks; ++ch)
              jobs.push_back({AttnJob::kChunk, s, h, g0, g1, i, i + 1, ch, n_parts + ch * pf});
            merges.push_back({AttnJob::kMerge, s, h, g0, g1, i, i + 1, 0, n_parts});
            n_parts += n_chunks * pf;
          }
          if (!chunked) jobs.push_back({AttnJob::kRows, s, h, g0, g1, i0, i1, 0, 0});
        }
  }
  float* parts = n_parts > 0 ? static_cast<float*>(t.shared_scratch(1, size_t(n_parts) * sizeof(float))) : nullptr;
  const AttnJob* jp = jobs.data();
  t.dynamic(int64_t(jobs.size()), 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) run(c, jp[j], parts);
  });
  if (!merges.empty()) {  // every chunk's partial is written (dynamic ends with a barrier)
    const AttnJob* mp = merges.data();
    t.dynamic(int64_t(merges.size()), 1, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) run(c, mp[j], parts);
    });
  }
}

void paged_attention_isa(KernelIsa isa, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                         const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo) {
  paged_attention_isa(isa, Team::solo(), q, ldq, seqs, n_seqs, kv, p, out, ldo);
}

void paged_attention(Team& t, const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs,
                     const KVLayerView& kv, const AttnParams& p, float* out, int64_t ldo) {
  paged_attention_isa(best_kernel_isa(), t, q, ldq, seqs, n_seqs, kv, p, out, ldo);
}

void paged_attention(const float* q, int64_t ldq, const AttnSeq* seqs, int64_t n_seqs, const KVLayerView& kv,
                     const AttnParams& p, float* out, int64_t ldo) {
  paged_attention_isa(best_kernel_isa(), Team::solo(), q, ldq, seqs, n_seqs, kv, p, out, ldo);
}

}  // namespace dpserve
