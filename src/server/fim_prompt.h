// Fill-in-the-middle (completions' `suffix`): which FIM tokens the model's vocabulary has, and the
// prompt its model card writes around a prefix and a suffix, after which the model writes the middle.
#pragma once

#include <string>
#include <string_view>

namespace dpserve {

class Tokenizer;

struct FimFormat {
  std::string name;  // "qwen-codegemma", "starcoder", "deepseek", "codestral"; empty: no FIM tokens
  std::string template_name;           // --completion-template's name: SGLang's qwen_coder, ..., or codestral
  std::string prefix, suffix, middle;  // the markers ("" for a format without a middle marker)
  bool suffix_first = false;           // SPM order: the suffix, then the prefix
  bool found() const { return !name.empty(); }
};

// The first format whose markers are all single tokens of the vocabulary, or an empty one.
FimFormat find_fim_format(const Tokenizer& tok);

// The format --completion-template names (SGLang's qwen_coder, star_coder, deepseek_coder; codestral).
// Fails naming the flag when the name is unknown or the vocabulary lacks one of its markers as a token.
FimFormat fim_format_named(const Tokenizer& tok, std::string_view template_name);

// The prompt text (markers included: encode() reads them as their tokens).
std::string fim_prompt(const FimFormat& f, std::string_view prefix, std::string_view suffix);

}  // namespace dpserve
