// The thinking budget as the server resolves it: the reasoning block's tags as token ids, the
// --reasoning-budget defaults, and each chat request's budget turned into the engine's ThinkBudgetSpec.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/think_budget.h"

namespace dpserve {

class Tokenizer;

struct ThinkBudgetConfig {
  int32_t open_id = -1;          // <think> as one token (-1: the vocabulary has none)
  int32_t close_id = -1;         // </think> likewise
  std::vector<int32_t> message;  // --reasoning-budget-message's ids: what a forced close starts with
  int64_t budget = -1;           // --reasoning-budget: the cap for requests that set none (-1: none)
};

// At start-up, under --reasoning-parser: looks the tags up and checks the flags (a bad flag is an
// error naming it).
ThinkBudgetConfig make_think_budget_config(const Tokenizer& tok, int64_t budget, const std::string& message);

// One chat request's cap: `requested` (a 400 naming `param` where it cannot hold) or else the
// server's. `has_parser`: the server runs a reasoning parser; `opened` / `closed`: the prompt ends
// inside a <think> block / after a closed one (thinking off: nothing to cap).
ThinkBudgetSpec resolve_think_budget(const ThinkBudgetConfig& cfg, bool has_parser, std::optional<int64_t> requested,
                                     const std::string& param, bool opened, bool closed);

}  // namespace dpserve
