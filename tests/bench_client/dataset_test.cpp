// Datasets: ShareGPT parsing and filtering, random lengths and prompts, with the real Llama-2
// SentencePiece tokenizer from the shared reference data.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "bench_client/dataset.h"
#include "core/check.h"
#include "core/shared_dir.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::bench {
namespace {

std::unique_ptr<Tokenizer> llama2_tokenizer() {
  const std::string p = shared_dir() + "/models/llama2-tokenizer/tokenizer.model";
  if (!std::filesystem::exists(p)) {
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true") ADD_FAILURE() << "missing shared data: " << p;
    return nullptr;
  }
  return Tokenizer::load(p);
}

#define NEED_TOKENIZER(tok)                                     \
  auto tok = llama2_tokenizer();                                \
  if (!tok) {                                                   \
    if (::testing::Test::HasFailure()) return;                  \
    GTEST_SKIP() << "shared llama2 tokenizer not available";    \
  }

TEST(BenchShareGpt, ParsesFirstTwoTurnsAndSkipsShortConversations) {
  const char* text = R"([
    {"id": "a", "conversations": [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello!"},
                                  {"from": "human", "value": "ignored third turn"}]},
    {"id": "b", "conversations": [{"from": "human", "value": "only one turn"}]},
    {"id": "c", "conversations": []},
    {"id": "d", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A\nmultiline"}]}
  ])";
  const auto pairs = parse_sharegpt(text);
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].prompt, "Hi there");
  EXPECT_EQ(pairs[0].reply, "Hello!");
  EXPECT_EQ(pairs[1].prompt, "Q");
  EXPECT_EQ(pairs[1].reply, "A\nmultiline");
}

TEST(BenchShareGpt, BadFilesGiveClearErrors) {
  auto msg = [](const char* t) {
    try {
      parse_sharegpt(t);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(msg(R"({"conversations": []})").find("JSON list"), std::string::npos);
  EXPECT_NE(msg(R"([{"id": 1}])").find("entry 0"), std::string::npos);
  EXPECT_NE(msg(R"([{"conversations": [{"value": "a"}, {"from": "gpt", "value": 5}]}])").find("turn 1"),
            std::string::npos);
}

TEST(BenchShareGpt, LengthFiltersWithoutTokenizer) {
  // Without a tokenizer lengths are ceil(bytes / 4).
  std::vector<PromptReply> pairs = {
      {"abcdefgh", "0123456789"},       // 2 / 3 tokens: kept
      {"abc", "0123456789"},            // prompt 1 token: dropped
      {"abcdefgh", "x"},                // output 1 token: dropped
      {std::string(4100, 'p'), "abcdefgh"},  // prompt 1025 tokens: dropped
      {std::string(4000, 'p'), std::string(4400, 'r')},  // 1000 + 1100 > 2048: dropped unless output fixed
  };
  auto reqs = make_sharegpt_dataset(pairs, {10, 0, 3}, nullptr);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].prompt, "abcdefgh");
  EXPECT_EQ(reqs[0].prompt_len, 2);
  EXPECT_EQ(reqs[0].output_len, 3);
  EXPECT_TRUE(reqs[0].prompt_ids.empty());

  reqs = make_sharegpt_dataset(pairs, {10, 64, 3}, nullptr);  // fixed output: only the prompt filters apply
  ASSERT_EQ(reqs.size(), 3u);
  std::multiset<int64_t> lens;
  for (const auto& r : reqs) {
    EXPECT_EQ(r.output_len, 64);
    lens.insert(r.prompt_len);
  }
  EXPECT_EQ(lens, (std::multiset<int64_t>{2, 2, 1000}));
  EXPECT_EQ(make_sharegpt_dataset(pairs, {1, 64, 3}, nullptr).size(), 1u);  // num_prompts caps
}

TEST(BenchShareGpt, ShuffleIsSeeded) {
  std::vector<PromptReply> pairs;
  for (int i = 0; i < 50; ++i) pairs.push_back({"prompt number " + std::to_string(i), "a reply of some length"});
  auto order = [&](uint64_t seed) {
    std::vector<std::string> o;
    for (const auto& r : make_sharegpt_dataset(pairs, {50, 0, seed}, nullptr)) o.push_back(r.prompt);
    return o;
  };
  EXPECT_EQ(order(1), order(1));
  EXPECT_NE(order(1), order(2));
  auto sorted = order(1);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::set<std::string>(sorted.begin(), sorted.end()).size(), 50u);  // a permutation, nothing lost
}

TEST(BenchShareGpt, TokenizerGivesExactLengths) {
  NEED_TOKENIZER(tok);
  // Llama-2 SentencePiece: "Hello world" is [15043 "▁Hello", 3186 "▁world"].
  auto reqs = make_sharegpt_dataset({{"Hello world", "Hello world Hello world"}}, {1, 0, 0}, tok.get());
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].prompt_ids, (std::vector<int32_t>{15043, 3186}));
  EXPECT_EQ(reqs[0].prompt_len, 2);
  EXPECT_EQ(reqs[0].output_len, 4);
}

TEST(BenchRandomDataset, LengthsStayInTheRequestedRange) {
  auto reqs = make_random_dataset({500, 100, 40, 0.5, 9}, nullptr);
  ASSERT_EQ(reqs.size(), 500u);
  std::set<int64_t> in_lens, out_lens;
  for (const auto& r : reqs) {
    EXPECT_GE(r.prompt_len, 50);
    EXPECT_LE(r.prompt_len, 100);
    EXPECT_GE(r.output_len, 20);
    EXPECT_LE(r.output_len, 40);
    in_lens.insert(r.prompt_len);
    out_lens.insert(r.output_len);
    // Without a tokenizer a prompt is prompt_len words.
    std::istringstream ws(r.prompt);
    std::string w;
    int64_t words = 0;
    while (ws >> w) ++words;
    EXPECT_EQ(words, r.prompt_len);
  }
  EXPECT_TRUE(in_lens.count(50) && in_lens.count(100));  // both ends reachable (51 values, 500 draws)
  EXPECT_TRUE(out_lens.count(20) && out_lens.count(40));
  for (const auto& r : make_random_dataset({20, 7, 5, 1.0, 9}, nullptr)) {
    EXPECT_EQ(r.prompt_len, 7);
    EXPECT_EQ(r.output_len, 5);
  }
}

TEST(BenchRandomDataset, SeededAndValidated) {
  auto a = make_random_dataset({10, 30, 30, 0.0, 4}, nullptr);
  auto b = make_random_dataset({10, 30, 30, 0.0, 4}, nullptr);
  auto c = make_random_dataset({10, 30, 30, 0.0, 5}, nullptr);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].prompt, b[i].prompt);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) differs |= a[i].prompt != c[i].prompt;
  EXPECT_TRUE(differs);
  EXPECT_THROW(make_random_dataset({1, 0, 5, 1.0, 1}, nullptr), Error);
  EXPECT_THROW(make_random_dataset({1, 5, 0, 1.0, 1}, nullptr), Error);
  EXPECT_THROW(make_random_dataset({1, 5, 5, 1.5, 1}, nullptr), Error);
}

TEST(BenchRandomDataset, TokenIdsDecodeToThePromptText) {
  NEED_TOKENIZER(tok);
  auto reqs = make_random_dataset({8, 64, 16, 1.0, 11}, tok.get());
  for (const auto& r : reqs) {
    ASSERT_EQ(r.prompt_ids.size(), 64u);
    for (int32_t id : r.prompt_ids) {
      EXPECT_GE(id, 3);  // <unk> <s> </s> are 0..2 in Llama-2 and never drawn
      EXPECT_LT(id, 32000);
    }
    EXPECT_EQ(r.prompt, tok->decode(r.prompt_ids, true));
    EXPECT_EQ(r.prompt_len, int64_t(tok->encode(r.prompt, false).size()));
    EXPECT_GT(r.prompt_len, 0);
    EXPECT_EQ(r.output_len, 16);
  }
}

TEST(BenchRandomDataset, PromptsCutFromSourceTextsWithoutTokenizer) {
  // Two texts of 3 and 2 words and one with none (never chosen): each prompt is one text's words, repeated
  // from its start and cut at the drawn length.
  const std::vector<PromptReply> texts = {{"alpha beta gamma", "r"}, {"  \n ", "r"}, {"one\ttwo", "r"}};
  std::vector<BenchRequest> reqs;
  {
    RandomDatasetSpec spec{200, 7, 3, 0.0, 5};
    spec.source = &texts;
    reqs = make_random_dataset(spec, nullptr);
  }
  ASSERT_EQ(reqs.size(), 200u);
  std::set<std::string> firsts;
  for (const auto& r : reqs) {
    std::istringstream ws(r.prompt);
    std::vector<std::string> words;
    for (std::string w; ws >> w;) words.push_back(w);
    ASSERT_EQ(int64_t(words.size()), r.prompt_len) << r.prompt;
    ASSERT_GE(r.prompt_len, 1);
    ASSERT_LE(r.prompt_len, 7);
    const bool greek = words[0] == "alpha";
    const std::vector<std::string> cycle =
        greek ? std::vector<std::string>{"alpha", "beta", "gamma"} : std::vector<std::string>{"one", "two"};
    for (size_t j = 0; j < words.size(); ++j) EXPECT_EQ(words[j], cycle[j % cycle.size()]) << r.prompt;
    firsts.insert(words[0]);
  }
  EXPECT_EQ(firsts, (std::set<std::string>{"alpha", "one"}));  // both texts drawn (200 draws)

  const std::vector<PromptReply> empty_texts = {{"", "r"}, {" ", "r"}};
  RandomDatasetSpec spec{2, 4, 2, 1.0, 1};
  spec.source = &empty_texts;
  EXPECT_THROW(make_random_dataset(spec, nullptr), Error);
}

TEST(BenchRandomDataset, PromptsCutFromSourceTextsWithTokenizer) {
  NEED_TOKENIZER(tok);
  // Llama-2 SentencePiece: "Hello world" is [15043 "▁Hello", 3186 "▁world"], so a 5-token prompt cut from
  // it is those two ids repeated: 15043 3186 15043 3186 15043.
  const std::vector<PromptReply> texts = {{"Hello world", "r"}};
  RandomDatasetSpec spec{3, 5, 2, 1.0, 2};
  spec.source = &texts;
  for (const auto& r : make_random_dataset(spec, tok.get())) {
    EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{15043, 3186, 15043, 3186, 15043}));
    EXPECT_EQ(r.prompt, tok->decode(r.prompt_ids, true));
    EXPECT_EQ(r.prompt_len, int64_t(tok->encode(r.prompt, false).size()));
    EXPECT_EQ(r.output_len, 2);
  }
}

}  // namespace
}  // namespace dpserve::bench
