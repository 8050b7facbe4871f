// Errors of the Messages API routes in Anthropic's words: the context-length messages its clients
// read, made from the messages RequestLimits itself writes (so a change of those words fails here).
#include "server/anthropic_error.h"

#include <gtest/gtest.h>

#include "engine/request_limits.h"

namespace dpserve {
namespace {

std::string name(RequestParam p) { return p == RequestParam::kMaxNewTokens ? "'max_tokens'" : "'messages'"; }

TEST(AnthropicContextMessage, PromptTooLongAndOutputBeyondTheContext) {
  RequestLimits lim{.vocab = 512, .context_length = 4096, .hidden = 4};
  auto prompt = lim.check_prompt_length(5000, RequestParam::kPrompt);
  ASSERT_TRUE(prompt);
  EXPECT_EQ(anthropic_context_message(prompt->message), "prompt is too long: 5000 tokens > 4096 maximum");
  auto total = lim.check_max_new_tokens(4000, 200, name);
  ASSERT_TRUE(total);
  EXPECT_EQ(anthropic_context_message(total->message),
            "input length and `max_tokens` exceed context limit: 4000 + 200 > 4096, decrease input length or "
            "`max_tokens` and try again");
  // A server whose KV cache holds fewer positions than the context for one sequence.
  lim.kv_positions = 1000;
  auto kv = lim.check_prompt_length(1500, RequestParam::kPrompt);
  ASSERT_TRUE(kv);
  EXPECT_EQ(anthropic_context_message(kv->message), "prompt is too long: 1500 tokens > 1000 maximum");
  // Anything else is left as it is.
  EXPECT_EQ(anthropic_context_message("max_tokens: must be at least 1"), "max_tokens: must be at least 1");
}

}  // namespace
}  // namespace dpserve
