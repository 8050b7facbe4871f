#include "model/gguf_end_of_generation.h"

#include <algorithm>
#include <array>
#include <string_view>

namespace dpserve {

namespace {

// The end markers of the chat formats in use (the texts llama.cpp's vocabulary loader also matches).
constexpr std::array<std::string_view, 12> kEndMarkers = {
    "<|eot_id|>",        // Llama 3
    "<|eom_id|>",        // Llama 3.1: end of a message that called a tool
    "<|end_of_text|>",   // Llama 3 base, Granite
    "<|im_end|>",        // ChatML: Qwen, Yi, Hermes
    "<|endoftext|>",     // Qwen, GPT-2 style
    "<|end|>",           // Phi-3
    "<end_of_turn>",     // Gemma
    "<EOT>",             // CodeLlama infill
    "_<EOT>",            // CodeLlama infill, SentencePiece form
    "<end_of_utterance>",  // SmolVLM
    "<|return|>",        // harmony (gpt-oss)
    "<|call|>",          // harmony (gpt-oss)
};

}  // namespace

std::vector<int32_t> gguf_end_of_generation_ids(const GgufMetadata& m) {
  std::vector<int32_t> ids;
  const GgufValue* toks = m.get_array("tokenizer.ggml.tokens", GgufType::String);
  const int64_t n = toks ? int64_t(toks->count) : 0;
  auto add = [&](int64_t id) {
    if (id >= 0 && id < n && std::find(ids.begin(), ids.end(), int32_t(id)) == ids.end()) ids.push_back(int32_t(id));
  };
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (const auto v = m.get_int(k)) add(*v);
  for (int64_t i = 0; i < n; ++i)
    if (std::find(kEndMarkers.begin(), kEndMarkers.end(), toks->strings[size_t(i)]) != kEndMarkers.end()) add(i);
  return ids;
}

}  // namespace dpserve
