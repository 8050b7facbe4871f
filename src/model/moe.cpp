#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/ops.h"
#include "model/weight_prep.h"

namespace dpserve {

namespace {

// Where the MoE block's tensors live, per architecture.
struct MoeNames {
  std::string block;  // the sparse block under the layer prefix
  MlpNames expert;
  std::string router = "gate.";  // the router's module under the block (weight, gpt-oss's bias)
};

MoeNames moe_names(const ModelConfig& c) {
  if (c.arch == Arch::Mixtral) return {"block_sparse_moe.", {"w1.weight", "w3.weight", "w2.weight"}};
  if (c.arch == Arch::GptOss) return {"mlp.", {}, "router."};
  return {"mlp.", {}};
}

// An expert projection's bias name from its weight's ("gate_proj.weight" -> "gate_proj.bias").
std::string bias_of(const std::string& weight) { return weight.substr(0, weight.rfind('.')) + ".bias"; }

std::vector<float> correction_bias(const WeightStore& store, const ModelConfig& c, const std::string& block) {
  if (c.routing.topk != MoeRouting::TopK::NoauxTc) return {};
  return store.vector_f32(block + "gate.e_score_correction_bias", c.n_experts);
}

}  // namespace

MoeLayer::MoeLayer(const WeightStore& store, const ModelConfig& c, const std::string& layer,
                   const ModelParallel& par)
    : cfg_(c),
      route_(c.routing, c.n_experts, c.n_experts_per_tok, correction_bias(store, c, layer + moe_names(c).block)) {
  const ShardSpec &ep = par.ep, &moe_tp = par.moe_tp;
  const MoeNames names = moe_names(c);
  const std::string p = layer + names.block;
  const int64_t H = c.hidden, F = c.moe_ffn, E = c.n_experts;
  router_ = store.matrix(p + names.router + "weight", E, H);
  if (c.moe_bias) router_bias_ = store.vector_f32(p + names.router + "bias", E);
  if (E % ep.size != 0) fail("--ep-size: {} experts cannot be split evenly over {} ranks", E, ep.size);
  if (F % moe_tp.size != 0)
    fail("--ep-size/--tp-size: moe_intermediate_size {} cannot be split over {} ranks (raise --ep-size)", F,
         moe_tp.size);
  e0_ = ep.begin(E);
  ffn_local_ = F / moe_tp.size;
  const int64_t f0 = moe_tp.rank * ffn_local_;
  for (int64_t e = e0_; e < ep.end(E); ++e) {
    const std::string q = p + "experts." + std::to_string(e) + ".";
    experts_.push_back(Expert{store.matrix(q + names.expert.gate, F, H).row_slice(f0, ffn_local_),
                              store.matrix(q + names.expert.up, F, H).row_slice(f0, ffn_local_),
                              shard_cols(store.matrix(q + names.expert.down, H, F), f0, ffn_local_,
                                         q + names.expert.down, "--tp-size / --ep-size"),
                              {}, {}, {}});
    if (c.moe_bias) {
      Expert& x = experts_.back();
      const auto slice = [&](const std::string& w) {
        const std::vector<float> b = store.vector_f32(bias_of(q + w), F);
        return std::vector<float>(b.begin() + f0, b.begin() + f0 + ffn_local_);
      };
      x.gate_bias = slice(names.expert.gate);
      x.up_bias = slice(names.expert.up);
      // The down product's partial sums over the MoE TP ranks are added up: one of them carries the bias.
      if (moe_tp.rank == 0) x.down_bias = store.vector_f32(bias_of(q + names.expert.down), H);
    }
  }
  if (c.n_shared_experts > 0)
    shared_ = DenseMlp(store, p + "shared_experts.", names.expert, H, c.n_shared_experts * F, par.mlp, "shared experts'");
  if (c.shared_expert_ffn > 0) {
    shared_ = DenseMlp(store, p + "shared_expert.", names.expert, H, c.shared_expert_ffn, par.mlp, "the shared expert's");
    // [1, hidden] in Hugging Face's files, [hidden] in GGUF's.
    const std::string g = p + "shared_expert_gate.weight";
    if (store.get(g).shape.size() == 1) {
      shared_gate_ = store.vector_f32(g, H);
    } else {
      shared_gate_.resize(size_t(H));
      weight_row_to_f32(store.matrix(g, 1, H), 0, shared_gate_.data());
    }
  }
}

int64_t MoeLayer::routed_bytes() const {
  int64_t sum = 0;
  for (const Expert& x : experts_)
    sum += x.gate.bytes() + x.up.bytes() + x.down.bytes();
  return sum;
}

int64_t MoeLayer::routed_params() const {
  int64_t sum = 0;
  for (const Expert& x : experts_)
    for (const WeightView* w : {&x.gate, &x.up, &x.down}) sum += w->rows * w->cols;
  return sum;
}

int64_t MoeLayer::token_bytes() const {
  const double picked = double(cfg_.n_experts_per_tok) / double(cfg_.n_experts);
  return router_.bytes() + shared_.weight_bytes() +
         int64_t(picked * double(routed_bytes()));
}

void MoeLayer::add_weights(WeightPrep& prep, int64_t layer, const std::string& p) {
  const MoeNames names = moe_names(cfg_);
  prep.add(&router_, WeightRole::kRouter, layer, cfg_.hidden, p + names.block + names.router + "weight");
  for (size_t i = 0; i < experts_.size(); ++i) {
    const std::string q = p + "mlp.experts." + std::to_string(e0_ + int64_t(i)) + ".";
    prep.add(&experts_[i].gate, WeightRole::kMlpGate, layer, cfg_.hidden, q + "gate_proj.weight");
    prep.add(&experts_[i].up, WeightRole::kMlpUp, layer, cfg_.hidden, q + "up_proj.weight");
    prep.add(&experts_[i].down, WeightRole::kMlpDown, layer, cfg_.moe_ffn, q + "down_proj.weight");
  }
  if (!shared_.empty())
    shared_.add_weights(prep, layer, p + moe_names(cfg_).block + (shared_gate_.empty() ? "shared_experts." : "shared_expert."),
                        moe_names(cfg_).expert);
}

void MoeLayer::reserve(MoeScratch& s, int64_t T) const {
  const int64_t E = cfg_.n_experts, K = cfg_.n_experts_per_tok;
  if (int64_t(s.logits.size()) < T * E) s.logits.resize(size_t(T * E));
  if (int64_t(s.pick_e.size()) < T * K) s.pick_e.resize(size_t(T * K)), s.pick_w.resize(size_t(T * K));
  if (int64_t(s.h.size()) < T * K * ffn_local_) s.h.resize(size_t(T * K * ffn_local_));
  if (int64_t(s.shared_h.size()) < T * shared_.ffn_local()) s.shared_h.resize(size_t(T * shared_.ffn_local()));
  if (!shared_gate_.empty() && int64_t(s.shared_gate.size()) < T) s.shared_gate.resize(size_t(T));
  if (cfg_.moe_weight_input && int64_t(s.weighted_in.size()) < T * K * cfg_.hidden)
    s.weighted_in.resize(size_t(T * K * cfg_.hidden));
}

void MoeLayer::route(const float* logits, int32_t* experts, float* weights) const {
  const int64_t E = cfg_.n_experts, K = cfg_.n_experts_per_tok;
  thread_local std::vector<float> scratch;
  thread_local std::vector<ExpertChoice> picks;
  scratch.assign(logits, logits + E);
  picks.resize(size_t(K));
  route_.route(scratch.data(), picks.data());
  // Ascending expert ids: the weighted sum then adds a token's experts in a fixed order.
  std::sort(picks.begin(), picks.end(), [](const ExpertChoice& a, const ExpertChoice& b) { return a.expert < b.expert; });
  for (int64_t k = 0; k < K; ++k) {
    experts[k] = picks[size_t(k)].expert;
    weights[k] = picks[size_t(k)].weight;
  }
}

void MoeLayer::forward(Team& t, MoeScratch& s, const float* x, int64_t T, float* out, bool accumulate,
                       const uint8_t* skip) const {
  const int64_t H = cfg_.hidden, F = ffn_local_, E = cfg_.n_experts, K = cfg_.n_experts_per_tok;
  const int64_t nloc = n_local_experts();
  DP_CHECK(int64_t(s.pick_e.size()) >= T * K && int64_t(s.h.size()) >= T * K * F &&
               int64_t(s.shared_h.size()) >= T * shared_.ffn_local(),
           "MoeLayer::forward before reserve({})", T);
  if (!accumulate) {
    const Range r = t.share(T);
    std::memset(out + r.begin * H, 0, sizeof(float) * size_t(r.size() * H));
  }
  // Router logits, then each token's top-k (split over the members for a long batch; a few
  // tokens every member routes for itself rather than wait at a barrier).
  matmul(t, x, T, H, router_, router_bias_.empty() ? nullptr : router_bias_.data(), s.logits.data(), E);
  thread_local std::vector<int32_t> own_e;
  thread_local std::vector<float> own_w;
  const int32_t* pe;
  const float* pw;
  constexpr int64_t kOwnRouting = 16;
  if (T <= kOwnRouting) {
    own_e.resize(size_t(T * K));
    own_w.resize(size_t(T * K));
    for (int64_t i = 0; i < T; ++i) {
      if (skip && skip[i]) {
        std::fill_n(&own_e[i * K], K, int32_t(-1));
        continue;
      }
      route(&s.logits[i * E], &own_e[i * K], &own_w[i * K]);
    }
    pe = own_e.data();
    pw = own_w.data();
  } else {
    const Range r = t.share(T);
    for (int64_t i = r.begin; i < r.end; ++i) {
      if (skip && skip[i]) {
        std::fill_n(&s.pick_e[i * K], K, int32_t(-1));
        continue;
      }
      route(&s.logits[i * E], &s.pick_e[i * K], &s.pick_w[i * K]);
    }
    t.barrier();
    pe = s.pick_e.data();
    pw = s.pick_w.data();
  }
  // Per local expert, its tokens in ascending order (counting sort; every member builds the same
  // lists for itself), and the rows of h they fill.
  thread_local std::vector<int32_t> count, first, tok;
  thread_local std::vector<float> wt;
  count.assign(size_t(nloc) + 1, 0);
  for (int64_t i = 0; i < T * K; ++i)
    if (pe[i] >= e0_ && pe[i] < e0_ + nloc) ++count[size_t(pe[i] - e0_)];
  first.assign(size_t(nloc) + 1, 0);
  for (int64_t e = 0; e < nloc; ++e) first[size_t(e + 1)] = first[size_t(e)] + count[size_t(e)];
  const int64_t slots = first[size_t(nloc)];
  tok.resize(size_t(slots));
  wt.resize(size_t(slots));
  std::fill(count.begin(), count.end(), 0);
  for (int64_t i = 0; i < T * K; ++i) {
    const int32_t e = pe[i];
    if (e < e0_ || e >= e0_ + nloc) continue;
    const int32_t at = first[size_t(e - e0_)] + count[size_t(e - e0_)]++;
    tok[size_t(at)] = int32_t(i / K);
    wt[size_t(at)] = pw[i];
  }
  // Llama 4: each slot's input is its token's row times the slot's weight (the products below then read
  // these rows in slot order, and the down products add unweighted).
  const bool weigh_input = cfg_.moe_weight_input;
  if (weigh_input) {
    DP_CHECK(int64_t(s.weighted_in.size()) >= slots * H, "MoeLayer::forward before reserve({})", T);
    const Range r = t.share(slots);
    for (int64_t a = r.begin; a < r.end; ++a) {
      const float* xr = x + int64_t(tok[size_t(a)]) * H;
      float* o = &s.weighted_in[size_t(a * H)];
      for (int64_t k = 0; k < H; ++k) o[k] = xr[k] * wt[size_t(a)];
    }
    t.barrier();
  }
  // The chosen experts' gate/up products, then their down products summed into each token's
  // row in ascending expert order, all as two team-wide passes.
  thread_local std::vector<MatmulJob> jobs;
  jobs.clear();
  for (int64_t e = 0; e < nloc; ++e) {
    const int64_t n = first[size_t(e + 1)] - first[size_t(e)];
    if (n == 0) continue;  // no work for an expert no token chose
    MatmulJob j;
    j.x = weigh_input ? &s.weighted_in[size_t(first[size_t(e)] * H)] : x;
    j.ldx = H;
    j.M = n;
    if (!weigh_input) j.rows = &tok[size_t(first[size_t(e)])];
    j.w = experts_[size_t(e)].gate;
    j.w_up = experts_[size_t(e)].up;
    j.gate_act = cfg_.mlp_act;
    j.gate_limit = cfg_.swiglu_limit;
    if (!experts_[size_t(e)].gate_bias.empty()) {
      j.bias = experts_[size_t(e)].gate_bias.data();
      j.bias_up = experts_[size_t(e)].up_bias.data();
    }
    j.y = &s.h[size_t(first[size_t(e)] * F)];
    j.ldy = F;
    jobs.push_back(j);
  }
  if (!jobs.empty()) matmul_jobs(t, jobs.data(), int64_t(jobs.size()));
  jobs.clear();
  for (int64_t e = 0; e < nloc; ++e) {
    const int64_t n = first[size_t(e + 1)] - first[size_t(e)];
    if (n == 0) continue;
    MatmulJob j;
    j.x = &s.h[size_t(first[size_t(e)] * F)];
    j.ldx = F;
    j.M = n;
    j.w = experts_[size_t(e)].down;
    if (!experts_[size_t(e)].down_bias.empty()) j.bias = experts_[size_t(e)].down_bias.data();
    j.y = out;
    j.ldy = H;
    j.out_rows = &tok[size_t(first[size_t(e)])];
    if (!weigh_input) j.scale = &wt[size_t(first[size_t(e)])];
    j.store = MatmulStore::Add;
    jobs.push_back(j);
  }
  if (!jobs.empty()) {
    matmul_jobs(t, jobs.data(), int64_t(jobs.size()), MatmulOrder::ColumnsInJobOrder);
  } else {
    t.barrier();  // the zeroed rows are complete before anyone reads them
  }
  // Shared experts see every row; DP padding rows are zeros and their output is ignored.
  if (!shared_gate_.empty()) {
    // Qwen2-MoE: each token's shared-expert output times sigmoid(gate . x); every MLP rank scales its
    // partial sum by the same factor, so the sum over ranks is scaled too.
    const Range r = t.share(T);
    const int64_t H2 = cfg_.hidden;
    for (int64_t i = r.begin; i < r.end; ++i) {
      double d = 0;
      for (int64_t k = 0; k < H2; ++k) d += double(x[i * H2 + k]) * shared_gate_[size_t(k)];
      s.shared_gate[size_t(i)] = float(1.0 / (1.0 + std::exp(-d)));
    }
    t.barrier();
    shared_.forward(t, x, T, out, s.shared_h.data(), s.shared_gate.data());
  } else if (!shared_.empty()) {
    shared_.forward(t, x, T, out, s.shared_h.data());
  }
}

}  // namespace dpserve
