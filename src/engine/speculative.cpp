#include "engine/speculative.h"

#include <algorithm>
#include <cstdlib>

#include "core/check.h"

namespace dpserve {

const char* to_string(SpecAlgorithm a) {
  switch (a) {
    case SpecAlgorithm::kNgram: return "NGRAM";
    case SpecAlgorithm::kStandalone: return "STANDALONE";
    case SpecAlgorithm::kNextn: return "NEXTN";
    case SpecAlgorithm::kNone: break;
  }
  return "none";
}

void validate(SpeculativeConfig& c) {
  if (!c.draft_model_path.empty() && c.algorithm == SpecAlgorithm::kNextn)
    fail("--speculative-draft-model-path is not used with --speculative-algorithm NEXTN: it drafts with the target's "
         "own multi-token-prediction layer (num_nextn_predict_layers in the model's config.json)");
  if (!c.draft_model_path.empty() && c.algorithm != SpecAlgorithm::kStandalone)
    fail("--speculative-draft-model-path needs --speculative-algorithm STANDALONE (got {})", to_string(c.algorithm));
  if (c.algorithm == SpecAlgorithm::kStandalone && c.draft_model_path.empty())
    fail("--speculative-algorithm STANDALONE needs --speculative-draft-model-path (the draft model)");
  if (!c.enabled()) return;
  if (c.topk != 1) fail("--speculative-eagle-topk must be 1 (got {}): dpserve verifies chains of drafts", c.topk);
  // Either flag sets the other; given both, they must agree.
  if (c.max_draft == 0) c.max_draft = c.num_draft_tokens > 0 ? c.num_draft_tokens - 1 : kDefaultMaxDraft;
  if (c.num_draft_tokens > 0) {
    if (c.num_draft_tokens != c.max_draft + 1)
      fail("--speculative-num-draft-tokens ({}) must be --speculative-num-steps + 1 ({}) with chain drafts",
           c.num_draft_tokens, c.max_draft + 1);
  }
  if (c.max_draft < 1 || c.max_draft > 64)
    fail("--speculative-num-steps must be in [1, 64] (got {}): the drafted tokens verified per step", c.max_draft);
  if (c.ngram_min_window < 1)
    fail("--speculative-ngram-min-match-window-size must be >= 1 (got {})", c.ngram_min_window);
  if (c.ngram_max_window < c.ngram_min_window)
    fail("--speculative-ngram-max-match-window-size ({}) is below --speculative-ngram-min-match-window-size ({})",
         c.ngram_max_window, c.ngram_min_window);
  if (c.max_step_rows < 0) fail("--speculative-max-step-rows must be >= 0 (got {})", c.max_step_rows);
}

std::vector<int32_t> ngram_draft(const std::vector<int32_t>& tokens, int64_t max_draft, int64_t min_window,
                                 int64_t max_window) {
  const int64_t n = int64_t(tokens.size());
  std::vector<int32_t> out;
  if (max_draft <= 0) return out;
  for (int64_t w = std::min(max_window, n - 1); w >= min_window; --w) {
    const int32_t* suffix = tokens.data() + n - w;
    // The latest earlier occurrence: recent context predicts the continuation best. Start at the
    // last place the window can end before the suffix itself.
    for (int64_t s = n - w - 1; s >= 0; --s) {
      if (!std::equal(suffix, suffix + w, tokens.data() + s)) continue;
      // What followed it, continued periodically once it runs into the suffix: a loop of period
      // n - from (a repeated phrase, greedy decoding's cycles) drafts its whole length, not just
      // the one period that is already written.
      // A prompt row given as image features or an embedding has no token id (its placeholder is
      // negative): the draft stops before it, as the verifying step can only feed ids.
      const int64_t from = s + w;
      for (int64_t i = 0; i < max_draft; ++i) {
        const int64_t at = from + i;
        const int32_t t = at < n ? tokens[size_t(at)] : out[size_t(at - n)];
        if (t < 0) break;
        out.push_back(t);
      }
      return out;
    }
  }
  return out;
}

std::vector<int32_t> prediction_draft(const std::vector<int32_t>& prediction, const int32_t* out, int64_t n_out,
                                      int64_t max_draft, int64_t min_window, int64_t max_window, int64_t expect,
                                      int64_t* at) {
  const int64_t np = int64_t(prediction.size());
  auto from = [&](int64_t pos) {
    if (at) *at = pos;
    const int64_t end = std::min(np, pos + std::max<int64_t>(0, max_draft));
    return std::vector<int32_t>(prediction.begin() + pos, prediction.begin() + end);
  };
  if (at) *at = -1;
  // Still on the prediction's track: its next tokens.
  if (n_out <= np && std::equal(out, out + n_out, prediction.begin())) return from(n_out);
  for (int64_t w = std::min(max_window, n_out); w >= std::max<int64_t>(1, min_window); --w) {
    const int32_t* suffix = out + n_out - w;
    // Text repeats (a closing brace, a recurring phrase): of the places the suffix occurs, the one
    // nearest where the output is expected to be in the prediction, the first of equals.
    int64_t best = -1, best_gap = 0;
    for (int64_t s = 0; s + w < np; ++s) {
      if (!std::equal(suffix, suffix + w, prediction.begin() + s)) continue;
      const int64_t gap = std::abs(s + w - expect);
      if (best < 0 || gap < best_gap) best = s + w, best_gap = gap;
      if (s + w >= expect) break;  // later ones are farther
    }
    if (best >= 0) return from(best);
  }
  return {};
}

int64_t DraftPolicy::allowed(int64_t max_draft, const std::vector<int32_t>* row_cost) {
  if (cap_ < 0) cap_ = max_draft;
  if (pause_left_ > 0) {
    --pause_left_;
    return 0;
  }
  const int64_t cap = std::min(cap_, max_draft);
  if (!row_cost || row_cost->empty() || cap <= 0) return cap;
  costed_ = true;
  const bool probe = probe_;
  probe_ = false;
  // The k with the most expected tokens per cost; a plain step (k = 0) makes 1 token for 1.
  const auto cost = [&](int64_t rows) {
    return int64_t((*row_cost)[size_t(std::min<int64_t>(rows, int64_t(row_cost->size())) - 1)]);
  };
  int64_t best_k = 0, best_tokens = kOne, best_cost = cost(1);
  int64_t tokens = kOne, p = kOne;  // expected tokens of a k-draft chain: sum of a^i, i = 0..k
  for (int64_t k = 1; k <= cap; ++k) {
    p = p * accept_ / kOne;
    tokens += p;
    // tokens / cost(k + 1) > best_tokens / best_cost, with a 2 % margin over the plain step.
    const int64_t c = cost(k + 1) * (best_k == 0 ? 102 : 100);
    if (tokens * best_cost * 100 > best_tokens * c) {
      best_k = k;
      best_tokens = tokens;
      best_cost = cost(k + 1);
    }
  }
  if (best_k > 0 || probe) return std::max<int64_t>(best_k, 1);
  pause(row_cost);
  return 0;
}

void DraftPolicy::pause(const std::vector<int32_t>* row_cost) {
  int64_t len = pause_len_;
  if (row_cost && row_cost->size() >= 2) {
    // A one-draft probe costs cost(2) - 1 steps extra: space probes to keep that near the budget.
    const int64_t extra = std::max<int64_t>(0, int64_t((*row_cost)[1]) - int64_t((*row_cost)[0]));
    len = std::max(len, (extra + kProbeBudgetPermille - 1) / kProbeBudgetPermille);
    probe_ = true;
  }
  pause_left_ = len;
  pause_len_ = std::min<int64_t>(64, len * 2);
  misses_ = 0;
}

void DraftPolicy::on_verified(int64_t drafted, int64_t accepted, int64_t max_draft) {
  if (drafted <= 0) return;
  drafted_total += drafted;
  accepted_total += accepted;
  ++verify_steps;
  // Each accepted draft was judged right; the first rejected one (if any) wrong; later ones unseen.
  for (int64_t i = 0; i < accepted; ++i) accept_ += (kOne - accept_) / 4;
  if (accepted < drafted) accept_ -= accept_ / 4;
  // A right draft earns the next step a draft even where the estimate says it does not pay yet
  // (one right draft already gains): a request whose output became predictable climbs back fast.
  if (costed_ && accepted > 0) probe_ = true;
  if (accepted == drafted) {
    cap_ = std::min(max_draft, std::max<int64_t>(cap_, 1) + 1);
    misses_ = 0;
    pause_len_ = 4;
    return;
  }
  cap_ = std::max<int64_t>(1, accepted + 1);
  if (accepted > 0) {
    misses_ = 0;
    pause_len_ = 4;
    return;
  }
  // Two misses in a row at one token: this request's continuation is not in its past (for now).
  // With a cost table the estimate decides instead (a miss is cheap on a dense model).
  if (!costed_ && ++misses_ >= 2) {
    pause_left_ = pause_len_;
    pause_len_ = std::min<int64_t>(64, pause_len_ * 2);
    misses_ = 0;
  }
}

}  // namespace dpserve
