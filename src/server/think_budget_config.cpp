#include "server/think_budget_config.h"

#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "core/check.h"
#include "server/openai_error.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

}  // namespace

ThinkBudgetConfig make_think_budget_config(const Tokenizer& tok, int64_t budget, const std::string& message) {
  ThinkBudgetConfig c;
  c.open_id = single_token_id(tok, kOpen);  // a forced close must be the token the model and parser know
  c.close_id = single_token_id(tok, kClose);
  if (budget < -1 || budget > std::numeric_limits<int32_t>::max())
    fail("--reasoning-budget must be -1 (no cap) or a token count >= 0 (got {})", budget);
  if ((budget >= 0 || !message.empty()) && (c.open_id < 0 || c.close_id < 0))
    fail("--reasoning-budget{}: this tokenizer has no single token for <think> and </think>, so a thinking block "
         "cannot be closed by force",
         message.empty() ? "" : "-message");
  if (message.find(kOpen) != std::string::npos || message.find(kClose) != std::string::npos)
    fail("--reasoning-budget-message must not contain <think> or </think> (the closing tag follows it)");
  c.budget = budget;
  if (!message.empty()) c.message = tok.encode(message, false);
  return c;
}

ThinkBudgetSpec resolve_think_budget(const ThinkBudgetConfig& cfg, bool has_parser, std::optional<int64_t> requested,
                                     const std::string& param, bool opened, bool closed) {
  if (requested && (*requested < -1 || *requested > std::numeric_limits<int32_t>::max()))
    bad_param(param, fmt::format("'{}' must be -1 (no cap) or a token count from 0 to {}, got {}", param,
                                 std::numeric_limits<int32_t>::max(), *requested));
  if (requested && *requested >= 0) {
    if (!has_parser)
      bad_param(param, fmt::format("'{}' needs a server started with --reasoning-parser (without it the thinking "
                                   "cannot be told from the answer)",
                                   param));
    if (cfg.open_id < 0 || cfg.close_id < 0)
      bad_param(param, fmt::format("'{}' needs <think> and </think> as single tokens; this model's vocabulary has "
                                   "none",
                                   param));
  }
  ThinkBudgetSpec t;
  const int64_t budget = requested.value_or(cfg.budget);
  if (!has_parser || budget < 0 || closed) return t;
  t.budget = int32_t(budget);
  t.open_id = cfg.open_id;
  t.close_id = cfg.close_id;
  t.open_at_start = opened;
  t.forced = cfg.message;
  t.forced.push_back(cfg.close_id);
  return t;
}

}  // namespace dpserve
