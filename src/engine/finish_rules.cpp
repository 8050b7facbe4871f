#include "engine/finish_rules.h"

#include <algorithm>

#include "core/check.h"

namespace dpserve {

Finish FinishRules::after_token(const RequestState& st) const {
  DP_CHECK(st.generated() >= 1, "request {}: finish rules before any token", st.id);
  const int32_t tok = st.tokens.back();
  const SamplingParams& p = st.req.params;
  auto has = [tok](const std::vector<int32_t>& ids) { return std::find(ids.begin(), ids.end(), tok) != ids.end(); };
  if (!p.ignore_eos && has(eos_ids)) return Finish::kStopToken;
  if (has(p.stop_token_ids)) return Finish::kStopToken;
  // A complete structured output ends here even under ignore_eos: nothing else is allowed.
  if (st.matcher && (st.matcher->ended() || st.matcher->must_end())) return Finish::kStop;
  if (st.generated() >= st.max_new) return Finish::kLength;
  return Finish::kNone;
}

}  // namespace dpserve
