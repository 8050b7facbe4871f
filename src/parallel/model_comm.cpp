#include "parallel/model_comm.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/check.h"

namespace dpserve {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

CollectiveTimes::Entry diff(const CollectiveTimes::Entry& a, const CollectiveTimes::Entry& b) {
  return {a.calls - b.calls, a.seconds - b.seconds, a.bytes - b.bytes, a.wait_seconds - b.wait_seconds};
}

}  // namespace

CollectiveTimes CollectiveTimes::minus(const CollectiveTimes& b) const {
  return {diff(attn_allreduce, b.attn_allreduce), diff(mlp_allreduce, b.mlp_allreduce), diff(dp_gather, b.dp_gather),
          diff(dp_scatter, b.dp_scatter), diff(vocab_allgather, b.vocab_allgather)};
}

void DistModelComm::Counter::add(int64_t ns, int64_t b, int64_t wait_ns) {
  calls.fetch_add(1, std::memory_order_relaxed);
  nanos.fetch_add(ns, std::memory_order_relaxed);
  bytes.fetch_add(b, std::memory_order_relaxed);
  wait_nanos.fetch_add(wait_ns, std::memory_order_relaxed);
}

CollectiveTimes::Entry DistModelComm::Counter::get() const {
  return {calls.load(std::memory_order_relaxed), 1e-9 * double(nanos.load(std::memory_order_relaxed)),
          bytes.load(std::memory_order_relaxed), 1e-9 * double(wait_nanos.load(std::memory_order_relaxed))};
}

int64_t DistModelComm::wait_for_all(const Comm& c) const {
  if (!split_waits_) return 0;
  const int64_t t0 = now_ns();
  c.barrier();
  return now_ns() - t0;
}

CollectiveTimes DistModelComm::times() const {
  return {t_attn_.get(), t_mlp_.get(), t_gather_.get(), t_scatter_.get(), t_vocab_.get()};
}

ModelParallel model_parallel_for(const Topology& t) {
  ModelParallel p;
  p.attn = ShardSpec{t.attn_tp_rank, t.attn_tp_size};
  p.mlp = ShardSpec{t.mlp_rank, t.mlp_size};
  // The LM head is split inside the DP group, so logits never cross groups.
  p.vocab = ShardSpec{t.attn_tp_rank, t.attn_tp_size};
  p.ep = ShardSpec{t.ep_rank, t.ep_size};
  p.moe_tp = ShardSpec{t.moe_tp_rank, t.moe_tp_size};
  return p;
}

DistModelComm::DistModelComm(const Comms& comms, const Topology& topo, DpPaddingRequest padding,
                             DpTransport transport, bool split_waits)
    : split_waits_(split_waits), comms_(comms), topo_(topo), padding_(padding) {
  if (topo_.dp_attention) gs_ = std::make_unique<DpGatherScatter>(comms_.mlp, comms_.attn_tp, transport);
}

void DistModelComm::begin_step(const StepSync& sync) {
  if (!topo_.dp_attention) return;
  DpPaddingMode m = choose_padding_mode(padding_, sync.group_tokens, sync.any_prefill, topo_.attn_tp_size);
  layout_ = std::make_unique<DpLayout>(sync.group_tokens, topo_.attn_tp_size, m);
}

void DistModelComm::attn_allreduce(float* x, int64_t n) {
  if (comms_.attn_tp.size() <= 1) return;
  const int64_t wait = wait_for_all(comms_.attn_tp);
  const int64_t t0 = now_ns();
  comms_.attn_tp.allreduce_sum(std::span<float>(x, size_t(n)));
  t_attn_.add(now_ns() - t0, n * int64_t(sizeof(float)), wait);
}

void DistModelComm::mlp_allreduce(float* x, int64_t n) {
  if (comms_.mlp.size() <= 1) return;
  const int64_t wait = wait_for_all(comms_.mlp);
  const int64_t t0 = now_ns();
  comms_.mlp.allreduce_sum(std::span<float>(x, size_t(n)));
  t_mlp_.add(now_ns() - t0, n * int64_t(sizeof(float)), wait);
}

void DistModelComm::vocab_allgather(const float* local, int64_t rows, int64_t local_cols, float* full,
                                    int64_t vocab) {
  const Comm& c = comms_.attn_tp;
  const int n = c.size();
  std::vector<int64_t> counts(static_cast<size_t>(n)), displs(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    ShardSpec s{r, n};
    counts[r] = rows * (s.end(vocab) - s.begin(vocab));
    displs[r] = rows * s.begin(vocab);
  }
  DP_CHECK(counts[c.rank()] == rows * local_cols);
  const int64_t wait = wait_for_all(c);
  const int64_t t0 = now_ns();
  gather_buf_.resize(size_t(rows * vocab));
  c.allgatherv<float>(std::span<const float>(local, size_t(rows * local_cols)), gather_buf_, counts, displs);
  // Blocks arrive rank-major ([rank][row][cols]); logits are row-major [row][vocab].
  for (int r = 0; r < n; ++r) {
    ShardSpec s{r, n};
    const int64_t c0 = s.begin(vocab), w = s.end(vocab) - c0;
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(full + i * vocab + c0, &gather_buf_[size_t(displs[r] + i * w)], sizeof(float) * size_t(w));
  }
  t_vocab_.add(now_ns() - t0, rows * local_cols * int64_t(sizeof(float)), wait);
}

void DistModelComm::attn_allgatherv(float* buf, const int64_t* counts, const int64_t* displs, int n) {
  const Comm& c = comms_.attn_tp;
  DP_CHECK(n == c.size(), "attn_allgatherv: {} blocks for a group of {} ranks", n, c.size());
  if (n <= 1) return;
  int64_t total = 0;
  for (int r = 0; r < n; ++r) total = std::max(total, displs[r] + counts[r]);
  c.allgatherv_inplace<float>(std::span<float>(buf, size_t(total)), std::span<const int64_t>(counts, size_t(n)),
                              std::span<const int64_t>(displs, size_t(n)));
}

int64_t DistModelComm::dp_gather(const float* local, int64_t rows, int64_t hidden, std::vector<float>& global) {
  DP_CHECK(layout_, "dp_gather before begin_step");
  DP_CHECK(rows == layout_->group_tokens(gs_->group()), "rows {} vs layout {}", rows,
           layout_->group_tokens(gs_->group()));
  const int64_t g = layout_->global_rows();
  if (int64_t(global.size()) < g * hidden) global.resize(size_t(g * hidden));
  const int64_t wait = wait_for_all(comms_.mlp);
  const int64_t t0 = now_ns();
  gs_->gather(*layout_, std::span<const float>(local, size_t(rows * hidden)),
              std::span<float>(global.data(), size_t(g * hidden)), hidden);
  t_gather_.add(now_ns() - t0, rows * hidden * int64_t(sizeof(float)), wait);
  return g;
}

void DistModelComm::dp_scatter(std::vector<float>& partial, int64_t hidden, float* local, int64_t rows) {
  const int64_t g = layout_->global_rows();
  const int64_t wait = wait_for_all(comms_.mlp);
  const int64_t t0 = now_ns();
  gs_->scatter(*layout_, std::span<float>(partial.data(), size_t(g * hidden)),
               std::span<float>(local, size_t(rows * hidden)), hidden);
  t_scatter_.add(now_ns() - t0, g * hidden * int64_t(sizeof(float)), wait);
}

bool DistModelComm::dp_is_padding(int64_t row) const { return layout_ && layout_->is_padding(row); }

}  // namespace dpserve
