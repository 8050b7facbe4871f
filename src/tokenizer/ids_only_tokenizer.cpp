#include "tokenizer/ids_only_tokenizer.h"

#include "core/check.h"

namespace dpserve {

namespace {

class NoText final : public DecodeStream {
 public:
  void push(int32_t, std::string&) override {}
  void finish(std::string&) override {}
};

class IdsOnlyTokenizer final : public Tokenizer {
 public:
  IdsOnlyTokenizer(int64_t vocab, int32_t bos, std::vector<int32_t> eos) : vocab_(vocab), bos_(bos), eos_(std::move(eos)) {}

  std::vector<int32_t> encode(std::string_view, bool) const override {
    fail("this server runs without a tokenizer (--skip-tokenizer-init): it takes token ids only");
  }
  std::string decode(std::span<const int32_t> ids, bool) const override {
    for (int32_t id : ids)
      if (id < 0 || id >= vocab_) fail("token id {} is outside the vocabulary [0, {})", id, vocab_);
    return {};
  }
  int32_t bos_id() const override { return bos_; }
  std::vector<int32_t> eos_ids() const override { return eos_; }
  int64_t vocab_size() const override { return vocab_; }
  std::optional<std::string> chat_template() const override { return std::nullopt; }
  std::string id_to_piece(int32_t) const override { return {}; }
  int32_t piece_to_id(std::string_view) const override { return -1; }
  bool is_special(int32_t) const override { return false; }
  std::string token_bytes(int32_t) const override { return {}; }
  std::string bos_token() const override { return {}; }
  std::string eos_token() const override { return {}; }
  std::unique_ptr<DecodeStream> decode_stream(bool) const override { return std::make_unique<NoText>(); }

 private:
  int64_t vocab_;
  int32_t bos_;
  std::vector<int32_t> eos_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_ids_only_tokenizer(int64_t vocab_size, int32_t bos_id, std::vector<int32_t> eos_ids) {
  return std::make_unique<IdsOnlyTokenizer>(vocab_size, bos_id, std::move(eos_ids));
}

}  // namespace dpserve
