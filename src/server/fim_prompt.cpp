#include "server/fim_prompt.h"

#include <array>

#include "tokenizer/tokenizer.h"

namespace dpserve {

namespace {

// From the models' own cards: Qwen2.5-Coder / Qwen3-Coder and CodeGemma, StarCoder / StarCoder2 (and
// others trained on The Stack's FIM format), DeepSeek-Coder, Codestral (suffix first, no middle marker).
const std::array<FimFormat, 4>& formats() {
  static const std::array<FimFormat, 4> f = {
      FimFormat{"qwen-codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", false},
      FimFormat{"starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", false},
      FimFormat{"deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", false},
      FimFormat{"codestral", "[PREFIX]", "[SUFFIX]", "", true},
  };
  return f;
}

}  // namespace

FimFormat find_fim_format(const Tokenizer& tok) {
  for (const FimFormat& f : formats())
    if (single_token_id(tok, f.prefix) >= 0 && single_token_id(tok, f.suffix) >= 0 &&
        (f.middle.empty() || single_token_id(tok, f.middle) >= 0))
      return f;
  return {};
}

std::string fim_prompt(const FimFormat& f, std::string_view prefix, std::string_view suffix) {
  std::string p;
  if (f.suffix_first) {
    p.append(f.suffix).append(suffix).append(f.prefix).append(prefix);
  } else {
    p.append(f.prefix).append(prefix).append(f.suffix).append(suffix).append(f.middle);
  }
  return p;
}

}  // namespace dpserve
