#include "server/fim_prompt.h"

#include <array>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

namespace {

// From the models' own cards: Qwen2.5-Coder / Qwen3-Coder and CodeGemma, StarCoder / StarCoder2 (and
// others trained on The Stack's FIM format), DeepSeek-Coder, Codestral (suffix first, no middle marker).
const std::array<FimFormat, 4>& formats() {
  static const std::array<FimFormat, 4> f = {
      FimFormat{"qwen-codegemma", "qwen_coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", false},
      FimFormat{"starcoder", "star_coder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", false},
      FimFormat{"deepseek", "deepseek_coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", false},
      FimFormat{"codestral", "codestral", "[PREFIX]", "[SUFFIX]", "", true},
  };
  return f;
}

bool has_markers(const Tokenizer& tok, const FimFormat& f) {
  return single_token_id(tok, f.prefix) >= 0 && single_token_id(tok, f.suffix) >= 0 &&
         (f.middle.empty() || single_token_id(tok, f.middle) >= 0);
}

}  // namespace

FimFormat find_fim_format(const Tokenizer& tok) {
  for (const FimFormat& f : formats())
    if (has_markers(tok, f)) return f;
  return {};
}

FimFormat fim_format_named(const Tokenizer& tok, std::string_view template_name) {
  std::string names;
  for (const FimFormat& f : formats()) {
    if (f.template_name != template_name) {
      names += (names.empty() ? "" : ", ") + f.template_name;
      continue;
    }
    if (!has_markers(tok, f))
      fail("--completion-template {}: this tokenizer has no single token for {}{}{} (the model was not trained for "
           "this fill-in-the-middle format)",
           template_name, f.prefix, f.suffix.empty() ? "" : ", " + f.suffix, f.middle.empty() ? "" : ", " + f.middle);
    return f;
  }
  fail("--completion-template {}: not a completion template; the names are {}", template_name, names);
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
