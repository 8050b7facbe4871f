// Text <-> token ids for the models dpserve serves: Hugging Face tokenizer.json (byte-level BPE and
// SentencePiece-style BPE), SentencePiece tokenizer.model, llama2.c tokenizer.bin files and the
// vocabulary inside a GGUF model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dpserve {

// Decoding runs as a stream of ids in every tokenizer, so a full decode and an incremental
// (streaming) decode share one code path and cannot disagree.
class DecodeStream {
 public:
  virtual ~DecodeStream() = default;
  // Appends to `out` the text that is final once `id` is known (never a partial UTF-8 char).
  virtual void push(int32_t id, std::string& out) = 0;
  // Appends whatever is still held back (an incomplete UTF-8 tail becomes U+FFFD).
  virtual void finish(std::string& out) = 0;
};

class Tokenizer {
 public:
  // path: a folder holding tokenizer.json (+ tokenizer_config.json, special_tokens_map.json,
  // generation_config.json where present) or tokenizer.model / tokenizer.bin, or a tokenizer file
  // itself (tokenizer.json, a SentencePiece .model, a llama2.c .bin), or a GGUF model (file or a
  // folder holding one, see find_gguf_model). Throws dpserve::Error.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  virtual ~Tokenizer();

  // Invalid UTF-8 in `text` is replaced by U+FFFD (one per maximal invalid subsequence, as
  // WHATWG TextDecoder and Rust's from_utf8_lossy do) before tokenizing.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const = 0;
  // Ids outside [0, vocab_size) throw dpserve::Error.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;
  virtual int32_t bos_id() const = 0;                // -1 when the model has none
  virtual std::vector<int32_t> eos_ids() const = 0;  // from config / generation_config
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<std::string> chat_template() const = 0;

  // The token's text as the vocabulary spells it ("Ġhello", "<0x0A>", "<|im_end|>"); "" if unknown.
  virtual std::string id_to_piece(int32_t id) const = 0;
  // Id of a vocabulary entry or added token spelled exactly `piece`, or -1.
  virtual int32_t piece_to_id(std::string_view piece) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // The bytes `id` adds to the text when decoded in the middle of a sequence, before any UTF-8
  // repair (a byte-fallback token or a partial byte-level token gives its raw byte): what
  // grammar-constrained decoding matches. "" for ids outside the vocabulary.
  virtual std::string token_bytes(int32_t id) const = 0;
  // Text of the BOS / EOS tokens for chat templates ("" when none).
  virtual std::string bos_token() const = 0;
  virtual std::string eos_token() const = 0;

  virtual std::unique_ptr<DecodeStream> decode_stream(bool skip_special_tokens) const = 0;
};

// The id of the one token whose text is exactly `text` (an added token such as "<think>" or
// "<|fim_prefix|>", as encode() reads it from text), or -1 when the vocabulary spells it otherwise.
int32_t single_token_id(const Tokenizer& tok, std::string_view text);

// Streaming: push ids one by one, get text pieces that never split a UTF-8 char; concat == full decode.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tok, bool skip_special_tokens);
  std::string push(int32_t id);
  std::string flush();

 private:
  std::unique_ptr<DecodeStream> stream_;
};

}  // namespace dpserve
