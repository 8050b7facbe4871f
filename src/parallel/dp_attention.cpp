#include "parallel/dp_attention.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

#include "core/check.h"

namespace dpserve {

const char* to_string(DpPaddingMode m) { return m == DpPaddingMode::kMaxLen ? "max_len" : "sum_len"; }

const char* to_string(DpPaddingRequest m) {
  switch (m) {
    case DpPaddingRequest::kAuto: return "auto";
    case DpPaddingRequest::kSglang: return "sglang";
    case DpPaddingRequest::kMaxLen: return "max_len";
    case DpPaddingRequest::kSumLen: return "sum_len";
  }
  return "?";
}

const char* to_string(DpTransport t) { return t == DpTransport::kGatherScatter ? "gather_scatter" : "allreduce"; }

DpPaddingMode choose_padding_mode(DpPaddingRequest req, std::span<const int64_t> group_tokens, bool any_prefill,
                                  int attn_tp_size) {
  if (req == DpPaddingRequest::kMaxLen) return DpPaddingMode::kMaxLen;
  if (req == DpPaddingRequest::kSumLen) return DpPaddingMode::kSumLen;
  int64_t max_len = 0, sum_len = 0;
  bool equal = true;
  for (int64_t n : group_tokens) {
    max_len = std::max(max_len, n);
    sum_len += n;
    equal &= n == group_tokens[0];
  }
  if (req == DpPaddingRequest::kAuto)
    return equal && max_len % std::max(1, attn_tp_size) == 0 ? DpPaddingMode::kMaxLen : DpPaddingMode::kSumLen;
  if (any_prefill) return DpPaddingMode::kSumLen;
  return sum_len * 2 > max_len * int64_t(group_tokens.size()) ? DpPaddingMode::kMaxLen : DpPaddingMode::kSumLen;
}

StepSync mlp_sync(const Comm& mlp, const Topology& topo, int64_t local_tokens, bool is_prefill) {
  DP_CHECK(mlp.size() == topo.mlp_size && mlp.rank() == topo.mlp_rank, "mlp communicator does not match topology");
  DP_CHECK(local_tokens >= 0);
  const int64_t mine[2] = {local_tokens, is_prefill ? 1 : 0};
  std::vector<int64_t> all(2 * size_t(mlp.size()));
  mlp.allgather<int64_t>(mine, all);

  StepSync s;
  const int a = topo.attn_tp_size;
  s.group_tokens.resize(topo.groups_per_mlp);
  for (int g = 0; g < topo.groups_per_mlp; ++g) {
    const int64_t n = all[2 * size_t(g * a)];
    for (int j = 1; j < a; ++j)
      if (all[2 * size_t(g * a + j)] != n)
        fail("ranks of DP group {} disagree on this step's token count ({} on slot 0, {} on slot {}): their "
             "schedulers diverged",
             g, n, all[2 * size_t(g * a + j)], j);
    s.group_tokens[g] = n;
    s.any_work |= n > 0;
  }
  for (int r = 0; r < mlp.size(); ++r) s.any_prefill |= all[2 * size_t(r) + 1] != 0;
  return s;
}

// ---- DpLayout ----

DpLayout::DpLayout(std::span<const int64_t> group_tokens, int attn_tp_size, DpPaddingMode mode)
    : mode_(mode), attn_tp_size_(attn_tp_size), tokens_(group_tokens.begin(), group_tokens.end()) {
  DP_CHECK(attn_tp_size >= 1 && !tokens_.empty());
  for (int64_t n : tokens_) {
    DP_CHECK(n >= 0, "negative token count {}", n);
    max_len_ = std::max(max_len_, n);
    sum_len_ += n;
  }
  block_ = (max_len_ + attn_tp_size - 1) / attn_tp_size;
  offsets_.resize(tokens_.size());
  int64_t at = 0;
  for (size_t g = 0; g < tokens_.size(); ++g) {
    offsets_[g] = at;
    at += group_rows(int(g));
  }
  global_rows_ = at;
}

int64_t DpLayout::group_rows(int g) const {
  return mode_ == DpPaddingMode::kMaxLen ? block_ * attn_tp_size_ : tokens_[g];
}

DpLayout::Slice DpLayout::slice(int g, int slot) const {
  DP_CHECK(g >= 0 && g < num_groups() && slot >= 0 && slot < attn_tp_size_);
  const int64_t n = tokens_[g];
  Slice s;
  if (mode_ == DpPaddingMode::kMaxLen) {
    s.local_begin = slot * block_;
    s.rows = block_;
    s.real_rows = std::clamp<int64_t>(n - s.local_begin, 0, block_);
  } else {
    // Balanced split: the first n % a slots take one extra row.
    const int64_t base = n / attn_tp_size_, extra = n % attn_tp_size_;
    s.local_begin = slot * base + std::min<int64_t>(slot, extra);
    s.rows = base + (slot < extra ? 1 : 0);
    s.real_rows = s.rows;
  }
  return s;
}

int DpLayout::group_of_row(int64_t row) const {
  DP_CHECK(row >= 0 && row < global_rows_, "row {} outside [0, {})", row, global_rows_);
  // Last group whose offset is <= row (upper_bound skips empty groups sharing an offset).
  auto it = std::upper_bound(offsets_.begin(), offsets_.end(), row);
  return int(it - offsets_.begin()) - 1;
}

bool DpLayout::is_padding(int64_t row) const {
  const int g = group_of_row(row);
  return row - offsets_[g] >= tokens_[g];
}

int64_t DpLayout::local_row(int64_t row) const { return row - offsets_[group_of_row(row)]; }

// ---- DpGatherScatter ----

DpGatherScatter::DpGatherScatter(const Comm& mlp, const Comm& attn_tp, DpTransport transport)
    : mlp_(mlp), attn_tp_(attn_tp), transport_(transport) {
  DP_CHECK(mlp.valid() && attn_tp.valid());
  DP_CHECK(mlp.size() % attn_tp.size() == 0, "attention group size {} does not divide MLP group size {}",
           attn_tp.size(), mlp.size());
  // Relies on the rank order of Comms::create: MLP rank = group * attn_tp_size + slot.
  group_ = mlp.rank() / attn_tp.size();
  slot_ = mlp.rank() % attn_tp.size();
  DP_CHECK(slot_ == attn_tp.rank(), "MLP rank {} and attention slot {} are not laid out group-major", mlp.rank(),
           attn_tp.rank());
}

void DpGatherScatter::gather(const DpLayout& L, std::span<const float> group_rows, std::span<float> global,
                             int64_t hidden) {
  const int a = attn_tp_.size();
  DP_CHECK(L.attn_tp_size() == a && L.num_groups() * a == mlp_.size(), "layout does not match communicators");
  DP_CHECK(int64_t(group_rows.size()) == L.group_tokens(group_) * hidden, "gather: group rows {} != {} x {}",
           group_rows.size(), L.group_tokens(group_), hidden);
  DP_CHECK(int64_t(global.size()) == L.global_rows() * hidden, "gather: global {} != {} x {}", global.size(),
           L.global_rows(), hidden);
  const DpLayout::Slice me = L.slice(group_, slot_);
  const float* my_rows = group_rows.data() + me.local_begin * hidden;

  if (transport_ == DpTransport::kAllReduce) {
    std::fill(global.begin(), global.end(), 0.0f);
    if (me.real_rows > 0)
      std::memcpy(global.data() + L.slice_global_begin(group_, slot_) * hidden, my_rows,
                  size_t(me.real_rows * hidden) * sizeof(float));
    mlp_.allreduce_sum(global);
    return;
  }
  if (L.mode() == DpPaddingMode::kMaxLen) {
    // Equal blocks; a slot whose block is partly padding sends zeros for those rows.
    std::span<const float> send(my_rows, size_t(me.rows * hidden));
    if (me.real_rows < me.rows) {
      scratch_.assign(size_t(me.rows * hidden), 0.0f);
      if (me.real_rows > 0) std::memcpy(scratch_.data(), my_rows, size_t(me.real_rows * hidden) * sizeof(float));
      send = scratch_;
    }
    mlp_.allgather(send, global);
  } else {
    counts_.resize(mlp_.size());
    for (int r = 0; r < mlp_.size(); ++r) counts_[r] = L.slice(r / a, r % a).rows * hidden;
    mlp_.allgatherv(std::span<const float>(my_rows, size_t(me.rows * hidden)), global, counts_);
  }
}

void DpGatherScatter::scatter(const DpLayout& L, std::span<float> partial, std::span<float> out, int64_t hidden) {
  const int a = attn_tp_.size();
  DP_CHECK(L.attn_tp_size() == a && L.num_groups() * a == mlp_.size(), "layout does not match communicators");
  DP_CHECK(int64_t(partial.size()) == L.global_rows() * hidden, "scatter: partial {} != {} x {}", partial.size(),
           L.global_rows(), hidden);
  DP_CHECK(int64_t(out.size()) == L.group_tokens(group_) * hidden, "scatter: out {} != {} x {}", out.size(),
           L.group_tokens(group_), hidden);

  if (transport_ == DpTransport::kAllReduce) {
    mlp_.allreduce_sum(partial);
    if (!out.empty())
      std::memcpy(out.data(), partial.data() + L.group_offset(group_) * hidden, out.size() * sizeof(float));
    return;
  }

  const DpLayout::Slice me = L.slice(group_, slot_);
  float* my_out = out.data() + me.local_begin * hidden;
  if (L.mode() == DpPaddingMode::kMaxLen) {
    const int64_t block = me.rows * hidden;
    if (me.real_rows == me.rows) {
      mlp_.reduce_scatter<float>(partial, std::span<float>(my_out, size_t(block)));
    } else {
      scratch_.resize(size_t(block));
      mlp_.reduce_scatter<float>(partial, scratch_);
      if (me.real_rows > 0) std::memcpy(my_out, scratch_.data(), size_t(me.real_rows * hidden) * sizeof(float));
    }
  } else {
    counts_.resize(mlp_.size());
    for (int r = 0; r < mlp_.size(); ++r) counts_[r] = L.slice(r / a, r % a).rows * hidden;
    mlp_.reduce_scatter<float>(partial, std::span<float>(my_out, size_t(me.rows * hidden)), counts_);
  }

  if (a > 1) {
    // Each slot now holds its reduced slice; the group exchanges slices so every slot has all rows.
    counts_.resize(a);
    displs_.resize(a);
    for (int j = 0; j < a; ++j) {
      const DpLayout::Slice s = L.slice(group_, j);
      counts_[j] = s.real_rows * hidden;
      displs_[j] = s.real_rows > 0 ? s.local_begin * hidden : 0;
    }
    attn_tp_.allgatherv_inplace(out, counts_, displs_);
  }
}

}  // namespace dpserve
