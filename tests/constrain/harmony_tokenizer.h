// For constraint tests of gpt-oss's harmony format: the real Qwen3 tokenizer with harmony's tags
// added after its last id as special tokens, as gpt-oss's own tokenizer (o200k_harmony, not in
// ../shared) has them; the same construction as tests/e2e/harmony_tokenizer.py. Written once per
// process to the test scratch folder and loaded through Tokenizer::load, as a server loads one.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/tokenizer/test_data.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::constrain::test {

inline const Tokenizer& harmony_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    const std::string src = dpserve::test::shared_path("tokenizers/qwen3");
    nlohmann::json tj = nlohmann::json::parse(dpserve::test::read_file(src + "/tokenizer.json"));
    int64_t next = 0;
    for (const auto& a : tj["added_tokens"]) next = std::max<int64_t>(next, a["id"].get<int64_t>() + 1);
    for (const char* tag :
         {"<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>"})
      tj["added_tokens"].push_back({{"id", next++}, {"content", tag}, {"single_word", false}, {"lstrip", false},
                                    {"rstrip", false}, {"normalized", false}, {"special", true}});
    const auto dir = std::filesystem::path(::testing::TempDir()) / ("harmony-tokenizer-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << tj.dump();
    std::filesystem::copy_file(src + "/tokenizer_config.json", dir / "tokenizer_config.json",
                               std::filesystem::copy_options::overwrite_existing);
    auto t = Tokenizer::load(dir.string());
    std::filesystem::remove_all(dir);
    return t;
  }();
  return *tok;
}

}  // namespace dpserve::constrain::test
