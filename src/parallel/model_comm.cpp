#include "parallel/model_comm.h"

#include <cstring>

#include "core/check.h"

namespace dpserve {

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
                             DpTransport transport)
    : comms_(comms), topo_(topo), padding_(padding) {
  if (topo_.dp_attention) gs_ = std::make_unique<DpGatherScatter>(comms_.mlp, comms_.attn_tp, transport);
}

void DistModelComm::begin_step(const StepSync& sync) {
  if (!topo_.dp_attention) return;
  DpPaddingMode m = choose_padding_mode(padding_, sync.group_tokens, sync.any_prefill, topo_.attn_tp_size);
  layout_ = std::make_unique<DpLayout>(sync.group_tokens, topo_.attn_tp_size, m);
}

void DistModelComm::attn_allreduce(float* x, int64_t n) {
  if (comms_.attn_tp.size() > 1) comms_.attn_tp.allreduce_sum(std::span<float>(x, size_t(n)));
}

void DistModelComm::mlp_allreduce(float* x, int64_t n) {
  if (comms_.mlp.size() > 1) comms_.mlp.allreduce_sum(std::span<float>(x, size_t(n)));
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
  gather_buf_.resize(size_t(rows * vocab));
  c.allgatherv<float>(std::span<const float>(local, size_t(rows * local_cols)), gather_buf_, counts, displs);
  // Blocks arrive rank-major ([rank][row][cols]); logits are row-major [row][vocab].
  for (int r = 0; r < n; ++r) {
    ShardSpec s{r, n};
    const int64_t c0 = s.begin(vocab), w = s.end(vocab) - c0;
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(full + i * vocab + c0, &gather_buf_[size_t(displs[r] + i * w)], sizeof(float) * size_t(w));
  }
}

int64_t DistModelComm::dp_gather(const float* local, int64_t rows, int64_t hidden, std::vector<float>& global) {
  DP_CHECK(layout_, "dp_gather before begin_step");
  DP_CHECK(rows == layout_->group_tokens(gs_->group()), "rows {} vs layout {}", rows,
           layout_->group_tokens(gs_->group()));
  const int64_t g = layout_->global_rows();
  if (int64_t(global.size()) < g * hidden) global.resize(size_t(g * hidden));
  gs_->gather(*layout_, std::span<const float>(local, size_t(rows * hidden)),
              std::span<float>(global.data(), size_t(g * hidden)), hidden);
  return g;
}

void DistModelComm::dp_scatter(std::vector<float>& partial, int64_t hidden, float* local, int64_t rows) {
  const int64_t g = layout_->global_rows();
  gs_->scatter(*layout_, std::span<float>(partial.data(), size_t(g * hidden)),
               std::span<float>(local, size_t(rows * hidden)), hidden);
}

bool DistModelComm::dp_is_padding(int64_t row) const { return layout_ && layout_->is_padding(row); }

}  // namespace dpserve
