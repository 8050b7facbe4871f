// llama2.c tokenizer.bin: decoding greedy stories260K output as run.c prints it, and encoding as
// run.c's encode() does (checked on the Llama-2 vocabulary against Hugging Face's ids).
#include <sstream>

#include <gtest/gtest.h>

#include "core/check.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {
namespace {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  int64_t v;
  while (in >> v) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

TEST(Llama2cTokenizer, DecodesStories260KGreedyOutputAsRunC) {
  auto tok = Tokenizer::load(test::shared_path("models/stories260K/tok512.bin"));
  const auto ids = parse_ids(test::read_file(test::shared_path("models/stories260K/expected/stories260K_greedy_n200.ids.txt")));
  const std::string expected = test::read_file(test::shared_path("models/stories260K/expected/stories260K_greedy_n200.txt"));
  ASSERT_EQ(ids.size(), 201u);
  ASSERT_EQ(ids[0], 1);
  EXPECT_EQ(tok->decode(ids, true), expected);
  // Streaming gives the same bytes.
  IncrementalDecoder dec(*tok, true);
  std::string streamed;
  for (int32_t id : ids) streamed += dec.push(id);
  streamed += dec.flush();
  EXPECT_EQ(streamed, expected);
}

TEST(Llama2cTokenizer, Tok512Metadata) {
  auto tok = Tokenizer::load(test::shared_path("models/stories260K/tok512.bin"));
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{2});
  EXPECT_FALSE(tok->chat_template().has_value());
}

TEST(Llama2cTokenizer, EncodeRoundTripsStoriesText) {
  // run.c encodes the prompt with a dummy-prefix space and BOS; decoding drops that space again.
  auto tok = Tokenizer::load(test::shared_path("models/stories260K/tok512.bin"));
  const std::string text = test::read_file(test::shared_path("models/stories260K/expected/stories260K_greedy_n200.txt"));
  const auto ids = tok->encode(text, true);
  ASSERT_GT(ids.size(), 10u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_LT(ids.size(), text.size() / 2);  // merges happened
  EXPECT_EQ(tok->decode(ids, true), text);
  EXPECT_EQ(tok->encode("", true), std::vector<int32_t>{1});
  EXPECT_TRUE(tok->encode("", false).empty());
}

TEST(Llama2cTokenizer, ByteFallbackForUnknownChars) {
  auto tok = Tokenizer::load(test::shared_path("models/stories260K/tok512.bin"));
  // U+4F60 is not among the 512 pieces: its three UTF-8 bytes become <0xE4><0xBD><0xA0> (= byte + 3).
  const auto ids = tok->encode("\xE4\xBD\xA0", false);
  ASSERT_GE(ids.size(), 3u);
  const std::vector<int32_t> tail(ids.end() - 3, ids.end());
  EXPECT_EQ(tail, (std::vector<int32_t>{0xE4 + 3, 0xBD + 3, 0xA0 + 3}));
  EXPECT_EQ(tok->id_to_piece(0xE4 + 3), "<0xE4>");
  std::vector<int32_t> with_bos = {1};
  with_bos.insert(with_bos.end(), ids.begin(), ids.end());
  EXPECT_EQ(tok->decode(with_bos, true), "\xE4\xBD\xA0");
}

TEST(Llama2cTokenizer, RejectsBadFilesAndIds) {
  auto tok = Tokenizer::load(test::shared_path("models/stories260K/tok512.bin"));
  std::vector<int32_t> bad = {5, 512};
  EXPECT_THROW(tok->decode(bad, true), Error);
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.bin"), Error);
  // A model checkpoint is not a tokenizer file: the header check must catch it.
  EXPECT_THROW(Tokenizer::load(test::shared_path("models/stories260K/stories260K.bin")), Error);
}

}  // namespace
}  // namespace dpserve
