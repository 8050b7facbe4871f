// The chat template interpreter (src/tokenizer/jinja) on arbitrary template source, rendered with a
// fixed conversation. Parsing and rendering may only fail with dpserve::Error; the step and
// recursion caps must stop runaway templates (libFuzzer's -timeout and -rss_limit_mb catch misses).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.h"
#include "fuzz_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/utf8.h"

namespace {

const nlohmann::ordered_json& conversation() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": "What is 2+2? <|im_end|> {{ not code }}"},
      {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4",
       "tool_calls": [{"type": "function", "function": {"name": "calc", "arguments": {"expr": "2+2", "n": [1, 2.5, null, true]}}}]},
      {"role": "tool", "content": "4", "name": "calc"},
      {"role": "user", "content": "Thanks \u00e9\u4f60\u597d\ud83d\udc4d"}
    ],
    "tools": [{"type": "function", "function": {"name": "calc", "description": "Evaluates",
               "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}}}],
    "add_generation_prompt": true,
    "enable_thinking": false,
    "bos_token": "<s>",
    "eos_token": "</s>"
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  try {
    const dpserve::ChatTemplate tmpl(source);
    const std::string out = tmpl.render(conversation());
    (void)out;
  } catch (const dpserve::Error& e) {
    FUZZ_EXPECT(std::string(e.what()).size() > 0);
  }
  return 0;
}
