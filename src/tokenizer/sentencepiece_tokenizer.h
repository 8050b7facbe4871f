// SentencePiece-style BPE driven by piece scores: the llama2.c tokenizer.bin format (encoded and
// decoded as llama2.c run.c does) and SentencePiece tokenizer.model files (as HF's Llama tokenizer).
#pragma once

#include <array>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/token_decoder.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

// A SentencePiece vocabulary given as arrays (a GGUF `llama` vocabulary).
struct SpmVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<uint8_t> types;  // SentencePieceTokenizer::Type of each piece
  int32_t bos = 1, eos = 2, unk = 0;  // -1: none
  bool add_bos = true, add_eos = false;
  bool add_dummy_prefix = true, remove_extra_whitespaces = false;
  std::vector<int32_t> extra_stop_ids;  // end-of-turn ids besides EOS
  std::optional<std::string> chat_template;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // llama2.c: int32 max_token_length, then per token float32 score, int32 len, bytes.
  static std::unique_ptr<SentencePieceTokenizer> from_llama2c(const std::string& path);
  // sentencepiece ModelProto (BPE models only).
  static std::unique_ptr<SentencePieceTokenizer> from_model_proto(const std::string& path);
  // Encodes as HF's Llama tokenizer does with these pieces; throws dpserve::Error on bad ids / sizes.
  static std::unique_ptr<SentencePieceTokenizer> from_vocab(SpmVocab v);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  int32_t bos_id() const override { return add_bos_ ? bos_ : -1; }
  std::vector<int32_t> eos_ids() const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  std::optional<std::string> chat_template() const override { return chat_template_; }
  std::string id_to_piece(int32_t id) const override;
  int32_t piece_to_id(std::string_view piece) const override;
  bool is_special(int32_t id) const override;
  std::string token_bytes(int32_t id) const override;
  std::string bos_token() const override { return bos_ >= 0 ? pieces_[bos_] : ""; }
  std::string eos_token() const override { return eos_ >= 0 ? pieces_[eos_] : ""; }
  std::unique_ptr<DecodeStream> decode_stream(bool skip_special_tokens) const override;

  // sentencepiece piece types
  enum Type : uint8_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

 private:
  class Llama2cStream;
  class SpmStream;
  void finalize(const std::string& space);
  void use_hf_decoder_and_specials();
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;

  bool llama2c_ = false;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<uint8_t> types_;
  std::unordered_map<std::string, int32_t> mergeable_;  // normal / user-defined pieces by text
  std::unordered_map<std::string, int32_t> all_;        // every piece by spelling
  std::array<int32_t, 256> byte_ids_{};                 // -1 where the vocab has no <0xNN>
  std::string space_;                                   // " " (llama2.c) or "\u2581"
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = false;
  int32_t bos_ = 1, eos_ = 2, unk_ = 0;
  bool add_bos_ = true, add_eos_ = false;
  std::vector<int32_t> extra_stop_ids_;
  std::optional<std::string> chat_template_;
  AddedTokens specials_;  // control pieces matched in text (HF LlamaTokenizerFast behaviour)
  TokenDecoder decoder_;
};

}  // namespace dpserve
