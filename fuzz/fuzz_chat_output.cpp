// The chat output parser (src/server/chat_output.h) on arbitrary model output: what a client can
// steer a model into writing (prompts, regex, logit_bias). Byte 0 picks the configuration (reasoning
// parser, tool format (bits 2, 16, 32 and 64: Hermes, Llama-3, DeepSeek-V3, DeepSeek-V3.1, Mistral, Qwen3-Coder with
// typed parameters), a prompt that
// opened <think>, parallel_tool_calls false; bit 128: gpt-oss's harmony format, bit 1 its calls), byte 1 seeds the
// split of the rest into stream pieces. Properties: no crash; the pieces give the same reasoning,
// content and calls as the whole text; every call names a known tool and its arguments are JSON
// text (what clients parse).
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "server/chat_output.h"

namespace {

using dpserve::ChatDelta;
using dpserve::ChatOutputParser;
using dpserve::ReasoningParser;
using dpserve::ToolCallParser;

const std::vector<std::string> kTools = {"get_weather", "get_time"};
// Qwen3-Coder types its values by these: a string, JSON of each kind, a nullable string.
const std::vector<nlohmann::ordered_json> kParams = {
    nlohmann::ordered_json::parse(R"({"type": "object", "properties": {"city": {"type": "string"},
        "days": {"type": "integer"}, "ok": {"type": "boolean"}, "at": {"type": "object"}, "l": {"type": "array"},
        "x": {"type": "number"}, "n": {"type": ["string", "null"]}}})"),
    nlohmann::ordered_json::parse(R"({"type": "object"})")};

void add(ChatDelta& acc, ChatDelta d) {
  acc.reasoning += d.reasoning;
  acc.content += d.content;
  for (auto& c : d.tool_calls) acc.tool_calls.push_back(std::move(c));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > 1 << 16) return 0;
  const uint8_t cfg = data[0];
  const bool harmony = cfg & 128;
  const ReasoningParser r = harmony   ? ReasoningParser::kGptOss
                            : cfg & 1 ? ReasoningParser::kQwen3
                                      : ReasoningParser::kNone;
  const ToolCallParser formats[] = {ToolCallParser::kHermes, ToolCallParser::kLlama3, ToolCallParser::kDeepSeekV3,
                                    ToolCallParser::kDeepSeekV31, ToolCallParser::kMistral};
  const ToolCallParser t = harmony    ? (cfg & 1 ? ToolCallParser::kGptOss : ToolCallParser::kNone)
                           : cfg & 64 ? (cfg & 2 ? ToolCallParser::kGlm45 : ToolCallParser::kQwen3Coder)
                           : cfg & 32 ? formats[4]
                                      : formats[(cfg & 2 ? 1 : 0) + (cfg & 16 ? 2 : 0)];
  const bool in_reasoning = cfg & 4, single = cfg & 8;
  const std::string text(reinterpret_cast<const char*>(data) + 2, size - 2);

  ChatOutputParser whole(r, t, kTools, in_reasoning, 7, single);
  whole.set_tool_parameters(kParams);
  ChatDelta ref = whole.feed(text);
  add(ref, whole.finish());

  std::mt19937 rng(data[1]);
  ChatOutputParser pieces(r, t, kTools, in_reasoning, 7, single);
  pieces.set_tool_parameters(kParams);
  ChatDelta got;
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::uniform_int_distribution<size_t>(1, 17)(rng);
    add(got, pieces.feed(text.substr(i, n)));
    i += n;
  }
  add(got, pieces.finish());

  FUZZ_EXPECT(got.reasoning == ref.reasoning);
  FUZZ_EXPECT(got.content == ref.content);
  FUZZ_EXPECT(got.tool_calls.size() == ref.tool_calls.size());
  FUZZ_EXPECT(!single || ref.tool_calls.size() <= 1);
  for (size_t k = 0; k < ref.tool_calls.size(); ++k) {
    const auto& c = ref.tool_calls[k];
    FUZZ_EXPECT(got.tool_calls[k].name == c.name && got.tool_calls[k].arguments == c.arguments);
    FUZZ_EXPECT(c.name == kTools[0] || c.name == kTools[1]);
    FUZZ_EXPECT(nlohmann::json::accept(c.arguments));
  }
  return 0;
}
