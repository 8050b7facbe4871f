// Benchmark prompts: bench_serving's `random` dataset (seeded lengths in [L*ratio, L], random token
// ids or words) and `sharegpt` (first human turn as prompt, first reply's length as output length).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dpserve {
class Tokenizer;
}

namespace dpserve::bench {

struct BenchRequest {
  std::string prompt;               // text sent to OpenAI-style endpoints
  std::vector<int32_t> prompt_ids;  // ids sent as input_ids to SGLang's /generate (empty: send text)
  int64_t prompt_len = 0;           // tokens in the prompt (estimated when no tokenizer was given)
  int64_t output_len = 0;           // tokens to generate (max_tokens; ignore_eos forces it)
};

struct PromptReply {
  std::string prompt, reply;
};

struct RandomDatasetSpec {
  size_t num_prompts = 0;
  int64_t input_len = 0, output_len = 0;
  double range_ratio = 1.0;  // lengths are uniform in [max(1, floor(L * ratio)), L]
  uint64_t seed = 0;
  // Non-empty: prompts are cut from these texts (SGLang's random dataset with --dataset-path).
  const std::vector<PromptReply>* source = nullptr;
};

// With a tokenizer: random non-special ids, decoded to text (prompt_len counts the re-encoded text,
// prompt_ids keeps the exact ids). Without: random English words, one word counted as one token.
// With a source: each prompt is a randomly chosen first turn, its tokens (or, without a tokenizer,
// its words) repeated until the drawn length and cut there.
std::vector<BenchRequest> make_random_dataset(const RandomDatasetSpec& spec, const Tokenizer* tok);

// ShareGPT JSON: a list of {"conversations": [{"from": ..., "value": ...}, ...]}; conversations with
// fewer than two turns are skipped, the others give (turn 0, turn 1). Throws dpserve::Error.
std::vector<PromptReply> parse_sharegpt(std::string_view json_text);

struct ShareGptSpec {
  size_t num_prompts = 0;
  int64_t fixed_output_len = 0;  // > 0: every request generates this many tokens
  uint64_t seed = 0;
};

// Shuffles (seeded), then keeps pairs the way bench_serving does: prompt and output at least 2
// tokens, prompt at most 1024, prompt + output at most 2048 unless the output length is fixed.
// Without a tokenizer, lengths are estimated as ceil(bytes / 4).
std::vector<BenchRequest> make_sharegpt_dataset(const std::vector<PromptReply>& pairs, const ShareGptSpec& spec,
                                                const Tokenizer* tok);

}  // namespace dpserve::bench
