// parse_tokenizer_json against nlohmann's own document parser (the reference): the real Qwen3 and
// Llama-3 files read to the same vocab, merges and rest; malformed files are refused by name.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_json.h"

namespace dpserve {
namespace {

using nlohmann::json;

void expect_same_as_document(const std::string& text) {
  const json ref = json::parse(text);
  const TokenizerJson got = parse_tokenizer_json(text, "tokenizer.json");

  ASSERT_TRUE(got.has_vocab);
  ASSERT_TRUE(got.has_merges);
  // The document maps each token once (the last of repeated keys); the file has no repeats.
  const json& vocab = ref.at("model").at("vocab");
  ASSERT_EQ(got.vocab.size(), vocab.size());
  std::map<std::string, int32_t> ours(got.vocab.begin(), got.vocab.end());
  ASSERT_EQ(ours.size(), vocab.size());
  for (const auto& [tok, id] : vocab.items()) {
    auto it = ours.find(tok);
    ASSERT_NE(it, ours.end()) << tok;
    ASSERT_EQ(it->second, id.get<int32_t>()) << tok;
  }

  const json& merges = ref.at("model").at("merges");
  ASSERT_EQ(got.merges.size(), merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    std::string a, b;
    if (merges[i].is_string()) {
      const std::string s = merges[i].get<std::string>();
      const size_t sp = s.find(' ', 1);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      a = merges[i].at(0).get<std::string>();
      b = merges[i].at(1).get<std::string>();
    }
    ASSERT_EQ(got.merges[i].first, a) << "merge " << i;
    ASSERT_EQ(got.merges[i].second, b) << "merge " << i;
  }

  json rest = ref;
  rest["model"].erase("vocab");
  rest["model"].erase("merges");
  EXPECT_EQ(got.doc, rest);
  EXPECT_GT(got.doc.at("added_tokens").size(), 0u);
}

TEST(TokenizerJson, Qwen3ReadsAsTheDocumentDoes) {
  expect_same_as_document(test::read_file(test::shared_path("tokenizers/qwen3/tokenizer.json")));
}

TEST(TokenizerJson, Llama3ReadsAsTheDocumentDoes) {
  expect_same_as_document(test::read_file(test::shared_path("tokenizers/llama3/tokenizer.json")));
}

TEST(TokenizerJson, BothMergeSpellingsAndNestedValues) {
  const std::string text = R"({"version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "special": true}],
    "model": {"type": "BPE", "dropout": null, "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3},
              "merges": ["a b", ["ab", "a"]], "byte_fallback": false},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel", "add_prefix_space": false}]},
    "scores": [1.5, -2, 3e2, true, null]})";
  const TokenizerJson got = parse_tokenizer_json(text, "t.json");
  EXPECT_EQ(got.vocab, (std::vector<std::pair<std::string, int32_t>>{{"a", 0}, {"b", 1}, {"ab", 2}, {"<s>", 3}}));
  EXPECT_EQ(got.merges, (std::vector<std::pair<std::string, std::string>>{{"a", "b"}, {"ab", "a"}}));
  json rest = json::parse(text);
  rest["model"].erase("vocab");
  rest["model"].erase("merges");
  EXPECT_EQ(got.doc, rest);
}

TEST(TokenizerJson, OnlyTheTopLevelModelIsReadApart) {
  // A Unigram model's vocab is an array of [piece, score]: it stays in the document (the model type is
  // refused later, by name). A "model" that is not the top-level one is a plain value.
  const std::string text = R"({"model": {"type": "Unigram", "vocab": [["a", -1.0], ["b", -2.5]]},
    "other": {"model": {"vocab": {"x": 1}, "merges": ["x x"]}}})";
  const TokenizerJson got = parse_tokenizer_json(text, "t.json");
  EXPECT_FALSE(got.has_vocab);
  EXPECT_FALSE(got.has_merges);
  EXPECT_TRUE(got.vocab.empty());
  EXPECT_EQ(got.doc, json::parse(text));
}

void expect_refused(const std::string& text, const std::string& needle) {
  try {
    parse_tokenizer_json(text, "bad/tokenizer.json");
    ADD_FAILURE() << "accepted: " << text;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("bad/tokenizer.json"), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(TokenizerJson, MalformedFilesAreRefusedByName) {
  expect_refused(R"({"model": {"vocab": {"a": 0,)", "not valid JSON");
  expect_refused(R"({"model": {"vocab": {"a": 0}} trailing)", "not valid JSON");
  expect_refused(R"([1, 2])", "not a JSON object");
  expect_refused(R"({"model": {"vocab": {"a": "0"}}})", "the id of 'a' is not an integer");
  expect_refused(R"({"model": {"vocab": {"a": 1.5}}})", "the id of 'a' is not an integer");
  expect_refused(R"({"model": {"vocab": {"a": -1}}})", "the id of 'a' is not an integer");
  expect_refused(R"({"model": {"vocab": {"a": 2147483648}}})", "the id of 'a' is not an integer");
  expect_refused(R"({"model": {"vocab": {"a": {"id": 1}}}})", "model.vocab");
  expect_refused(R"({"model": {"merges": ["ab"]}})", "merge 'ab' has no space");
  expect_refused(R"({"model": {"merges": [["a", "b", "c"]]}})", "merge 0 is not a pair of tokens (it has 3)");
  expect_refused(R"({"model": {"merges": [["a"]]}})", "merge 0 is not a pair of tokens (it has 1)");
  expect_refused(R"({"model": {"merges": [1]}})", "model.merges");
  expect_refused(R"({"model": {"merges": [["a", 1]]}})", "model.merges");
  expect_refused(R"({"model": {"merges": [{"a": "b"}]}})", "model.merges");
}

// Through Tokenizer::load: a small BPE file encodes by its merges; a model the reader could not stream
// into arrays is refused by name.
std::unique_ptr<Tokenizer> load_text(const std::string& name, const std::string& text) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / ("tokenizer_json_" + name);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << text;
  return Tokenizer::load(dir.string());
}

std::string load_error(const std::string& name, const std::string& text) {
  try {
    load_text(name, text);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

TEST(TokenizerJson, LoadedModelMergesByRank) {
  // "a b" outranks "b c": "abc" is ab + c; "bc" alone merges to bc.
  const auto t = load_text("ok", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4},
                                               "merges": [["a", "b"], "b c"]}})");
  EXPECT_EQ(t->encode("abc", false), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(t->encode("bc", false), (std::vector<int32_t>{4}));
  EXPECT_EQ(t->encode("cab", false), (std::vector<int32_t>{2, 3}));
}

TEST(TokenizerJson, ModelsTheReaderCouldNotStreamAreRefused) {
  EXPECT_NE(load_error("unigram", R"({"model": {"type": "Unigram", "vocab": [["a", -1.0]]}})")
                .find("model type 'Unigram' is not supported"), std::string::npos);
  EXPECT_NE(load_error("vocab_array", R"({"model": {"type": "BPE", "vocab": [["a", 0]], "merges": []}})")
                .find("vocab is not an object of token ids"), std::string::npos);
  EXPECT_NE(load_error("no_vocab", R"({"model": {"type": "BPE", "merges": []}})").find("has no vocab"), std::string::npos);
  EXPECT_NE(load_error("merge_oov", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})")
                .find("uses tokens missing from the vocabulary"), std::string::npos);
}

}  // namespace
}  // namespace dpserve
