// The grammar of a tool-calling turn, for tool_choice "required" (one or more calls, any tool) and
// a named function (exactly one call of it), in the format the model's template teaches:
//   hermes (Qwen 2.5 / 3, Hermes):  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
//   llama3 (Llama 3.1 JSON):        {"name": "f", "parameters": {...}}, calls joined by "; "
//   deepseekv3 (DeepSeek-V3 / R1):   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{...}
//                                    \n```<｜tool▁call▁end｜>, calls joined by "\n", then <｜tool▁calls▁end｜>
//   deepseekv31 (DeepSeek-V3.1):     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{...}<｜tool▁call▁end｜>
//                                    calls back to back, then <｜tool▁calls▁end｜>
//   mistral (Mistral v3 tokenizer):  [TOOL_CALLS] [{"name": "f", "arguments": {...}}, ...]
//   qwen3_coder (Qwen3-Coder):       <tool_call>\n<function=f>\n<parameter=k>\nVALUE\n</parameter>\n...
//                                    </function>\n</tool_call>, blocks joined by "\n"; a string VALUE is raw text,
//                                    any other is JSON (qwen3_coder_raw_string)
//   glm45 (GLM-4.5 / 4.6):           <tool_call>f\n<arg_key>k</arg_key>\n<arg_value>VALUE</arg_value>\n...
//                                    </tool_call>, blocks joined by "\n"; values as qwen3_coder's
//   glm47 (GLM-4.7):                 the same without the line breaks inside a block
//   harmony (gpt-oss):               analysis messages and preambles, then one message to functions.f
//                                    (harmony_grammar.h); a call ends the turn (<|call|> is EOS), so one a
//                                    turn; with `text`, the turn may end with a final message instead
// Arguments follow each tool's JSON Schema. With `think`, a <think>...</think> block may come first.
// With `text` (tool_choice "auto" with strict tools, as SGLang enforces them), the turn is free text
// in which writing the format's opener (<tool_call>, [TOOL_CALLS], <｜tool▁calls▁begin｜>; for llama3
// a `{` opening the turn) starts calls that must be valid.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "constrain/grammar.h"
#include "constrain/json_schema_compiler.h"

namespace dpserve::constrain {

// kMistral: "[TOOL_CALLS] [" calls "]" (tokenizer v3); kMistralV11: "[TOOL_CALLS]NAME[ARGS]{...}" per call
// (tokenizer v11 and later, whose vocabulary has an [ARGS] token).
enum class ToolCallFormat {
  kHermes, kLlama3, kDeepSeekV3, kDeepSeekV31, kMistral, kMistralV11, kQwen3Coder, kGlm45, kGlm47, kHarmony
};

const char* format_name(ToolCallFormat f);

struct ToolCallSpec {
  ToolCallFormat format = ToolCallFormat::kHermes;
  std::vector<std::pair<std::string, nlohmann::ordered_json>> tools;  // name, parameters schema
  std::optional<std::string> only;  // a named function: exactly one call of it
  bool parallel = true;             // several calls in one turn (ignored with `only`)
  bool think = false;               // a reasoning block may precede the calls
  bool think_open = false;          // the prompt opened it: reasoning, then </think>, then the calls
  bool text = false;                // free text around the calls, which may be none (see above)
  // Mistral: [TOOL_CALLS] (and [ARGS]) are special tokens of the tokenizer, written as those tokens
  // (Grammar::special_token) rather than spelled in text. Not under `text`, whose free text is watched
  // for the opener as text.
  bool special_tags = false;

  // Canonical text (the compile cache key) and back.
  std::string to_text() const;
  static ToolCallSpec from_text(std::string_view text);  // throws dpserve::Error
};

// Whether Qwen3-Coder's (and GLM's) format writes a parameter of this schema as raw text (a string: its type is
// "string", or a list holding "string", or it has no type and no enum / const but strings), or as JSON
// text (every other schema). The grammar and the output parser read a value the same way by it.
bool qwen3_coder_raw_string(const nlohmann::ordered_json& property);

// Throws dpserve::Error naming the tool whose schema cannot be enforced.
Grammar tool_call_grammar(const ToolCallSpec& spec, const JsonSchemaOptions& opt = {});

}  // namespace dpserve::constrain
