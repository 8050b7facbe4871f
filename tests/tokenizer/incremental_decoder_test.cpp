// Streaming detokenization: pieces never split a UTF-8 char, never show U+FFFD that the full decode
// does not have, and concatenate to exactly the full decode, for every tokenizer family.
#include <random>

#include <gtest/gtest.h>

#include "test_data.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

const char* kTexts[] = {
    "Hello, world! How's it going?",
    "你好，世界。这是一个测试。日本語のテキストも。한국어 문장.",
    "مرحبا بالعالم، هذا اختبار.",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "Family: 👨‍👩‍👧‍👦, thumbs 👍🏽👍🏿, flag 🇩🇪, rare 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and 🫠.",
    "def f(x):\n\treturn x  *  2   # spaces\n\n\n",
    "1234567890 3.14159 0x1F -42",
    "<|im_start|>user\nhi<|im_end|> <s> </s> <|begin_of_text|>",
    "   leading and trailing   ",
};

void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  const std::string full = tok.decode(ids, skip);
  IncrementalDecoder dec(tok, skip);
  std::string joined;
  for (int32_t id : ids) {
    const std::string piece = dec.push(id);
    ASSERT_TRUE(utf8::is_valid(piece)) << "piece splits a UTF-8 char";
    joined += piece;
    // Whatever was emitted is final: it must be a prefix of the full decode.
    ASSERT_EQ(full.compare(0, joined.size(), joined), 0) << "emitted text is not a prefix of the full decode";
  }
  joined += dec.flush();
  EXPECT_EQ(joined, full);
}

void check_tokenizer(const Tokenizer& tok) {
  for (const char* text : kTexts) {
    const auto ids = tok.encode(text, true);
    check_stream(tok, ids, true);
    check_stream(tok, ids, false);
    // Streams of valid text never show U+FFFD.
    if (tok.decode(ids, true).find(utf8::kReplacement) == std::string::npos) {
      IncrementalDecoder dec(tok, true);
      for (int32_t id : ids) EXPECT_EQ(dec.push(id).find(utf8::kReplacement), std::string::npos);
    }
  }
  // Random id streams (arbitrary byte tokens, specials): still consistent, never invalid UTF-8.
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(tok.vocab_size() - 1));
  std::uniform_int_distribution<int32_t> low(0, 300);
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> ids(1 + round % 40);
    for (auto& id : ids) id = (rng() & 1) ? any(rng) : low(rng);
    check_stream(tok, ids, round % 2 == 0);
    EXPECT_TRUE(utf8::is_valid(tok.decode(ids, false)));
  }
}

TEST(IncrementalDecoder, Llama2c) { check_tokenizer(*Tokenizer::load(test::shared_path("models/stories260K/tok512.bin"))); }
TEST(IncrementalDecoder, SentencePieceModel) {
  check_tokenizer(*Tokenizer::load(test::shared_path("models/llama2-tokenizer/tokenizer.model")));
}
TEST(IncrementalDecoder, Qwen3) { check_tokenizer(*Tokenizer::load(test::shared_path("tokenizers/qwen3"))); }
TEST(IncrementalDecoder, Llama3) { check_tokenizer(*Tokenizer::load(test::shared_path("tokenizers/llama3"))); }

// A decode that ends inside a char: the incomplete tail is one U+FFFD (Hugging Face's ByteLevel decoder
// uses Rust's from_utf8_lossy; Python's b"Hi\xe4\xbd".decode("utf-8", "replace") == "Hi\ufffd"), whole
// and streamed, never dropped. In byte-level vocabularies bytes 0xE4 and 0xBD are the tokens "\u00e4"
// and "\u00bd" (GPT-2's bytes_to_unicode keeps printable Latin-1 as itself).
TEST(IncrementalDecoder, IncompleteTailIsOneReplacementChar) {
  auto tok = Tokenizer::load(test::shared_path("tokenizers/qwen3"));
  const int32_t hi = tok->piece_to_id("Hi"), e4 = tok->piece_to_id("\xC3\xA4"), bd = tok->piece_to_id("\xC2\xBD");
  ASSERT_GE(hi, 0);
  ASSERT_GE(e4, 0);
  ASSERT_GE(bd, 0);
  const std::string fffd = "\xEF\xBF\xBD";
  for (const auto& ids : {std::vector<int32_t>{hi, e4}, std::vector<int32_t>{hi, e4, bd}}) {
    EXPECT_EQ(tok->decode(ids, true), "Hi" + fffd);
    IncrementalDecoder dec(*tok, true);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    EXPECT_EQ(streamed, "Hi");  // the partial char is held
    streamed += dec.flush();
    EXPECT_EQ(streamed, "Hi" + fffd);
  }
}

TEST(IncrementalDecoder, HoldsPartialCharUntilComplete) {
  auto tok = Tokenizer::load(test::shared_path("models/llama2-tokenizer/tokenizer.model"));
  // U+1F600 is spelled with four byte-fallback pieces in Llama-2: nothing may appear before the last.
  const auto ids = tok->encode("\xF0\x9F\x98\x80", false);
  const int32_t b0 = tok->piece_to_id("<0xF0>");
  ASSERT_GE(b0, 0);
  auto it = std::find(ids.begin(), ids.end(), b0);
  ASSERT_NE(it, ids.end());
  IncrementalDecoder dec(*tok, true);
  std::string out;
  for (auto i = ids.begin(); i != ids.end(); ++i) {
    const std::string piece = dec.push(*i);
    if (i >= it && i < it + 3) {
      EXPECT_EQ(piece.find('\xF0'), std::string::npos);
    }
    out += piece;
  }
  out += dec.flush();
  EXPECT_EQ(out, "\xF0\x9F\x98\x80");
}

TEST(IncrementalDecoder, ByteRunsStreamCharByChar) {
  // Two astral chars spelled with eight consecutive byte-fallback tokens: the first char must be
  // emitted on its fourth byte, not held until the run ends.
  auto tok = Tokenizer::load(test::shared_path("models/llama2-tokenizer/tokenizer.model"));
  const std::string a = "\xF0\x9D\x94\x98", b = "\xF0\x9D\x94\xAB";  // U+1D518, U+1D52B
  const auto ids = tok->encode(a + b, false);
  const int32_t first_byte = tok->piece_to_id("<0xF0>");
  auto it = std::find(ids.begin(), ids.end(), first_byte);
  ASSERT_NE(it, ids.end());
  ASSERT_GE(ids.end() - it, 8);
  IncrementalDecoder dec(*tok, true);
  std::string out;
  for (auto i = ids.begin(); i != it + 4; ++i) out += dec.push(*i);
  EXPECT_EQ(out.substr(out.size() - a.size()), a);
  for (auto i = it + 4; i != ids.end(); ++i) out += dec.push(*i);
  out += dec.flush();
  EXPECT_EQ(out, tok->decode(ids, true));
}

}  // namespace
}  // namespace dpserve
