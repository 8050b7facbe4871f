// `dpserve tokenize` / `dpserve detokenize`: text <-> ids with a model's tokenizer, for users and scripts.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/dpserve/commands.h"
#include "core/check.h"
#include "model/default_model.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::app {
namespace {

struct TokenizeArgs {
  std::string model_path, tokenizer_path, text, file, ids;
  bool has_text = false, add_special = false, json = false, keep_special = false;
};

std::unique_ptr<Tokenizer> open_tokenizer(const TokenizeArgs& a) {
  if (!a.tokenizer_path.empty()) return Tokenizer::load(a.tokenizer_path);
  // A folder (model or tokenizer-only) loads directly; a llama2.c checkpoint finds its tok*.bin.
  if (!a.model_path.empty() && std::filesystem::is_directory(a.model_path)) return Tokenizer::load(a.model_path);
  return Tokenizer::load(resolve_model(a.model_path, "").tokenizer);
}

// "-" is standard input, so the commands sit in a pipe (as llama-tokenize's --stdin).
std::string read_all(const std::string& path) {
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    if (std::cin.bad()) fail("cannot read standard input");
    return ss.str();
  }
  // A folder opens as an empty stream on Linux: its "text" would silently be no tokens.
  if (std::filesystem::is_directory(path)) fail("--file: {} is a folder, not a file", path);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("--file: cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::string t = s;
  for (char& c : t) {
    if (c == ',' || c == '[' || c == ']' || c == '\n') c = ' ';
  }
  std::istringstream in(t);
  std::string item;
  while (in >> item) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < INT32_MIN || v > INT32_MAX) fail("--ids: '{}' is not a token id", item);
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

void add_common(CLI::App* c, TokenizeArgs& a) {
  c->add_option("--model-path", a.model_path,
                "Model folder, tokenizer-only folder, GGUF model, or llama2.c checkpoint. Default: the bundled "
                "stories260K")
      ->envname("DPSERVE_MODEL_PATH");
  c->add_option("--tokenizer-path", a.tokenizer_path, "Tokenizer folder or file (overrides --model-path)");
  c->add_flag("--json", a.json, "Machine-readable JSON output");
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* t = app.add_subcommand("tokenize", "Print the token ids of a text");
  add_common(t, *a);
  t->add_option("--text", a->text, "Text to tokenize")->each([a](const std::string&) { a->has_text = true; });
  t->add_option("--file", a->file, "Read the text from this file (byte for byte); - reads standard input");
  t->add_flag("--add-special-tokens", a->add_special, "Add the model's BOS/EOS as its post-processor does");
  t->callback([a] {
    if (a->has_text == !a->file.empty()) fail("tokenize: give exactly one of --text or --file");
    auto tok = open_tokenizer(*a);
    const std::string text = a->has_text ? a->text : read_all(a->file);
    const auto ids = tok->encode(text, a->add_special);
    if (a->json) {
      std::cout << nlohmann::json(ids).dump() << "\n";
    } else {
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << "\n";
    }
  });

  CLI::App* d = app.add_subcommand("detokenize", "Print the text of token ids");
  add_common(d, *a);
  d->add_option("--ids", a->ids,
                "Token ids, comma- or space-separated (e.g. 1,2,3, or tokenize's output); - reads them from "
                "standard input")
      ->required();
  d->add_flag("--keep-special-tokens", a->keep_special, "Print special tokens instead of skipping them");
  d->callback([a] {
    auto tok = open_tokenizer(*a);
    const std::string text = tok->decode(parse_ids(a->ids == "-" ? read_all("-") : a->ids), !a->keep_special);
    if (a->json) {
      std::cout << nlohmann::json(text).dump() << "\n";
    } else {
      std::cout << text;
      std::cout.flush();
    }
  });
}

}  // namespace dpserve::app
