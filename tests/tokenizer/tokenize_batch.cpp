// Test helper: encodes a batch of texts (hex-encoded bytes) with dpserve's tokenizer and decodes the ids.
// Output: [{"ids": [...], "text": decode(keep specials), "text_skip": decode(skip specials)} | {"error": msg}].
// `tokenize_batch TOKENIZER --info` prints what the tokenizer says of itself instead:
// {"vocab_size", "bos_id", "eos_ids", "chat_template" (or null), "hello": encode("Hello", add_special)}.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: tokenize_batch TOKENIZER CASES.json|--info\n");
    return 2;
  }
  try {
    auto tok = dpserve::Tokenizer::load(argv[1]);
    if (std::string(argv[2]) == "--info") {
      nlohmann::json info = {{"vocab_size", tok->vocab_size()}, {"bos_id", tok->bos_id()}, {"eos_ids", tok->eos_ids()},
                             {"hello", tok->encode("Hello", true)}};
      const auto tmpl = tok->chat_template();
      info["chat_template"] = tmpl ? nlohmann::json(*tmpl) : nlohmann::json(nullptr);
      std::cout << info.dump();
      return 0;
    }
    std::ifstream f(argv[2], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const auto cases = nlohmann::json::parse(ss.str());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& c : cases) {
      const std::string hex = c.get<std::string>();
      std::string bytes;
      for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
      nlohmann::json r;
      try {
        const auto ids = tok->encode(bytes, false);
        r["ids"] = ids;
        r["text"] = tok->decode(ids, false);
        r["text_skip"] = tok->decode(ids, true);
      } catch (const dpserve::Error& e) {
        r["error"] = e.what();
      }
      out.push_back(r);
    }
    std::cout << out.dump();
  } catch (const dpserve::Error& e) {
    std::fprintf(stderr, "tokenize_batch: %s\n", e.what());
    return 1;
  }
  return 0;
}
