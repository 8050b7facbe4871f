#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "core/check.h"
#include "model/gguf_set.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"

namespace dpserve {

namespace fs = std::filesystem;

Tokenizer::~Tokenizer() = default;

int32_t single_token_id(const Tokenizer& tok, std::string_view text) {
  const std::vector<int32_t> ids = tok.encode(text, false);
  return ids.size() == 1 && tok.token_bytes(ids[0]) == text ? ids[0] : -1;
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::error_code ec;
  if (!find_gguf_model(path).empty()) return load_gguf_tokenizer(path);
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / "tokenizer.json")) return HfTokenizer::load((dir / "tokenizer.json").string());
    if (fs::exists(dir / "tokenizer.model")) return SentencePieceTokenizer::from_model_proto((dir / "tokenizer.model").string());
    if (fs::exists(dir / "tokenizer.bin")) return SentencePieceTokenizer::from_llama2c((dir / "tokenizer.bin").string());
    fail("{}: no tokenizer.json, tokenizer.model or tokenizer.bin in this folder", path);
  }
  if (!fs::exists(path, ec)) fail("{}: no such tokenizer file or folder", path);
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".json") return HfTokenizer::load(path);
  if (ext == ".model") return SentencePieceTokenizer::from_model_proto(path);
  return SentencePieceTokenizer::from_llama2c(path);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  auto s = decode_stream(skip_special_tokens);
  std::string out;
  for (int32_t id : ids) s->push(id, out);
  s->finish(out);
  return out;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : stream_(tok.decode_stream(skip_special_tokens)) {}

std::string IncrementalDecoder::push(int32_t id) {
  std::string out;
  stream_->push(id, out);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out;
  stream_->finish(out);
  return out;
}

}  // namespace dpserve
