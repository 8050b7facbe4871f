// Speculative decoding: which drafter proposes tokens, how many a request may draft this step, and
// the n-gram (prompt lookup) drafter. Drafting is a pure function of a request's own tokens and of
// its acceptance so far, so every rank of a DP group drafts the same tokens without a message; the
// drafted tokens are then checked in the step's one forward pass (engine/rank_worker.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dpserve {

// NGRAM: prompt lookup (below). STANDALONE: a smaller model with the same vocabulary drafts greedily
// (engine/draft_runner.h); the scheduler reserves the rows and the step fills them. NEXTN: the
// target's own multi-token-prediction layer (DeepSeek-V3) drafts from its hidden states
// (engine/nextn_runner.h), its rows reserved and filled the same way.
enum class SpecAlgorithm { kNone, kNgram, kStandalone, kNextn };
const char* to_string(SpecAlgorithm a);  // "none" | "NGRAM" | "STANDALONE" | "NEXTN"

inline constexpr int64_t kDefaultMaxDraft = 4;
inline constexpr int64_t kDefaultMaxStepRows = 16;

struct SpeculativeConfig {
  SpecAlgorithm algorithm = SpecAlgorithm::kNone;
  // Most drafted tokens a request verifies in one step (SGLang's --speculative-num-steps; the
  // verified chain is these plus the request's last token, --speculative-num-draft-tokens).
  int64_t max_draft = 0;  // 0: from num_draft_tokens, else kDefaultMaxDraft (validate() sets it)
  // SGLang's --speculative-num-draft-tokens, when given: max_draft + 1 (0: not given).
  int64_t num_draft_tokens = 0;
  int64_t topk = 1;  // draft branches per position: chains only
  // NGRAM: the suffix of the request's tokens looked up in its earlier tokens is at most this many
  // tokens long and at least that many (longest first).
  int64_t ngram_max_window = 4;
  int64_t ngram_min_window = 1;
  // Rows a step of a DP group gives its decoding requests and their drafts together: drafts fill
  // what its decodes leave, oldest requests first, and a step of this many decodes drafts nothing.
  // Decode rows up to about this many cost little more than one (the weights are read once); past
  // it decode is compute-bound and a draft costs as much as it may save. 0: no bound.
  int64_t max_step_rows = kDefaultMaxStepRows;
  // Whether requests' predicted outputs are drafted from (off where every row's logits are tapped,
  // --dump-logits: rejected rows would be positions that never happened). With NGRAM or without an
  // algorithm; STANDALONE and NEXTN draft with their model.
  bool prediction_drafts = true;
  // STANDALONE: the draft model (a Hugging Face folder, GGUF file or llama2.c checkpoint).
  std::string draft_model_path;
  // Per-mille cost of a verify pass of n rows against a 1-row step, [n - 1] (engine/verify_cost.h),
  // set by the rank worker from the model's shape; empty: rows are taken as free (the policy then
  // reacts to misses only).
  std::vector<int32_t> row_cost;

  bool enabled() const { return algorithm != SpecAlgorithm::kNone; }
  // The drafted tokens a request may verify per step: max_draft, or without an algorithm (drafts of
  // predicted outputs only) the default.
  int64_t draft_cap() const { return enabled() ? max_draft : kDefaultMaxDraft; }
};

// Fills max_draft from num_draft_tokens (or the default); throws dpserve::Error naming the flag when
// the combination is invalid.
void validate(SpeculativeConfig& c);

// `max_draft` tokens that followed the latest earlier occurrence of the longest suffix of `tokens`
// (between min_window and max_window tokens long) that occurred before: prompt lookup decoding.
// Where the tokens after that occurrence run out (they reach the suffix itself), the draft repeats
// them periodically. Empty when no suffix recurs; cut before the first negative id (a prompt row
// of image features or an embedding, which has no id to draft).
std::vector<int32_t> ngram_draft(const std::vector<int32_t>& tokens, int64_t max_draft, int64_t min_window,
                                 int64_t max_window);

// Drafts from a predicted output (OpenAI's 'prediction'): while the output so far (`out`, n_out
// tokens) is the prediction's beginning, the prediction's next `max_draft` tokens; after they part,
// the tokens that follow the longest suffix of the output (min_window..max_window tokens) where it
// occurs in the prediction, so the drafts pick the prediction up again after an edit. Of several
// occurrences, the one ending nearest `expect` (the position in the prediction the output is
// expected to continue from; -1: the first). `at` (if given) gets the position drafted from (-1 for
// none). Empty when nothing matches or the prediction is used up.
std::vector<int32_t> prediction_draft(const std::vector<int32_t>& prediction, const int32_t* out, int64_t n_out,
                                      int64_t max_draft, int64_t min_window, int64_t max_window, int64_t expect = -1,
                                      int64_t* at = nullptr);

// The verification of drafts proposed with certainty (an n-gram lookup; any drafter that proposes
// one token per position): row r (the request's last token, then the drafts) gives the token after
// its input, drawn by `draw(r)` exactly as a decode step at that position would draw it (the same
// logits, the request's own random stream, in order); row r + 1 counts only if that token equals
// drafts[r]. This is rejection sampling for a point-mass proposal (the draft d is kept with
// probability p(d); otherwise the token drawn is from p without d, renormalised), so the output
// keeps the target's distribution, and for a seed it is token for token the output without drafts.
// `draw` returns std::nullopt when the row cannot give a token (the request failed there). Returns
// the rows that gave a token, 1..n_draft + 1 (0 if the first row failed).
template <class Draw>
int64_t verify_drafts(const int32_t* drafts, int64_t n_draft, Draw&& draw) {
  for (int64_t r = 0;; ++r) {
    const std::optional<int32_t> tok = draw(r);
    if (!tok) return r;
    if (r == n_draft || *tok != drafts[r]) return r + 1;
  }
}

// One request's draft length, adapted to how often its drafts were right and to what rows cost.
// The cap grows by one after a step whose drafts were all accepted and falls to accepted + 1
// otherwise. Without a cost table, a request whose one-token drafts fail twice in a row pauses
// drafting for a while (doubling up to 64 steps), so a request that cannot be predicted pays for
// few verifications.
// With a cost table (SpeculativeConfig::row_cost) it keeps an estimate a of the chance that a draft
// is right (a moving average over the drafts it saw judged, 1/4 weight to the newest) and drafts
// the k <= cap with the most expected tokens per cost, (1 + a + ... + a^k) / cost(k + 1). When no k
// gains 2 % over a plain decode step (on a MoE model, where each row reads other experts, that takes
// a > ~0.65), it pauses, then probes with one draft; the pause doubles up to 64 steps and is at
// least long enough that probes cost about kProbeBudgetPermille of the steps. A right draft earns
// the next step a draft, so a request whose output became predictable climbs back fast. All
// integer arithmetic: every rank of a DP group decides the same.
class DraftPolicy {
 public:
  // The tokens this request may draft in the step being formed (0: none). Counts down a pause.
  int64_t allowed(int64_t max_draft, const std::vector<int32_t>* row_cost = nullptr);
  // After a verification of `drafted` tokens, `accepted` of them matching the target.
  void on_verified(int64_t drafted, int64_t accepted, int64_t max_draft);

  int64_t drafted_total = 0;   // cumulative over the request
  int64_t accepted_total = 0;
  int64_t verify_steps = 0;    // steps that verified at least one drafted token

  static constexpr int64_t kOne = 1 << 16;             // the acceptance estimate's fixed point
  static constexpr int64_t kPriorAccept = kOne * 3 / 4;  // before any draft was judged
  static constexpr int64_t kProbeBudgetPermille = 30;
  int64_t accept_estimate() const { return accept_; }

 private:
  void pause(const std::vector<int32_t>* row_cost);

  int64_t cap_ = -1;  // -1: not yet set (max_draft)
  int64_t misses_ = 0;
  int64_t pause_left_ = 0;
  int64_t pause_len_ = 4;
  int64_t accept_ = kPriorAccept;  // chance a draft is right, in 1/kOne
  bool probe_ = false;  // drafts one token whatever it gains: after a cost pause, after a right draft
  bool costed_ = false;            // allowed() was given a cost table
};

}  // namespace dpserve
