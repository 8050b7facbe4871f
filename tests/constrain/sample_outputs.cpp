// constrain_sample: reads constraints as JSON lines {"id", "kind" (json_schema | json_object | regex |
// ebnf), "text", "n", "seed"} and writes, per line, {"id", "outputs": [...], "incomplete": k} with n
// random strings the compiled constraint accepts (drawn byte by byte through the Matcher), or
// {"id", "error": "..."} when it does not compile. With "check": [strings] instead, answers
// {"id", "accepted": [bool, ...]}: whether each string is a complete output of the constraint. The test scripts validate the outputs with
// independent validators (npm ajv, Python's re).
#include <iostream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "constrain/constraint.h"
#include "constrain/matcher.h"
#include "core/check.h"

using namespace dpserve;
using namespace dpserve::constrain;

namespace {

// Single bytes as tokens (256 = EOS): every string of the grammar can be drawn.
std::shared_ptr<const VocabIndex> byte_vocab() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, char(b)));
  bytes.push_back("");
  std::vector<bool> text(257, true);
  text[256] = false;
  return std::make_shared<VocabIndex>(bytes, text, std::vector<int32_t>{256}, 257);
}

// A random walk that drifts towards the end: past a soft length it prefers bytes that close
// things (quotes, brackets) and ends as soon as it may.
std::optional<std::string> draw(std::shared_ptr<TokenMaskCache> cache, std::mt19937_64& rng, size_t soft, size_t hard) {
  Matcher m(cache);
  std::string out;
  std::vector<uint64_t> mask(cache->vocab().mask_words());
  const std::string closers = "\"}]";
  while (out.size() < hard) {
    m.fill_mask(mask.data());
    std::vector<int> allowed;
    for (int t = 0; t < 257; ++t)
      if ((mask[size_t(t) >> 6] >> (t & 63)) & 1) allowed.push_back(t);
    if (allowed.empty()) return std::nullopt;
    const double pressure = std::min(0.95, double(out.size()) / double(soft));
    const double r = std::uniform_real_distribution<double>(0, 1)(rng);
    const bool can_end = allowed.back() == 256;
    if (can_end && (allowed.size() == 1 || r < pressure * 0.5)) return out;
    if (can_end) allowed.pop_back();
    std::vector<int> pick = allowed;
    if (r < pressure) {
      std::vector<int> close;
      for (int t : allowed)
        if (closers.find(char(t)) != std::string::npos) close.push_back(t);
      if (!close.empty()) pick = close;
    }
    const int t = pick[std::uniform_int_distribution<size_t>(0, pick.size() - 1)(rng)];
    if (!m.accept(t)) fail("an allowed byte was refused");
    out.push_back(char(t));
  }
  return std::nullopt;
}

}  // namespace

int main() {
  auto vocab = byte_vocab();
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    nlohmann::json in = nlohmann::json::parse(line), out;
    out["id"] = in["id"];
    try {
      ConstraintSpec spec;
      const std::string kind = in.value("kind", "json_schema");
      spec.kind = kind == "regex" ? ConstraintKind::kRegex
                  : kind == "ebnf" ? ConstraintKind::kEbnf
                  : kind == "json_object" ? ConstraintKind::kJsonObject
                                          : ConstraintKind::kJsonSchema;
      spec.text = in.value("text", "");
      auto cache = std::make_shared<TokenMaskCache>(compile_constraint(spec), vocab);
      if (in.contains("check")) {
        out["accepted"] = nlohmann::json::array();
        for (const auto& s : in["check"]) {
          Matcher m(cache);
          bool ok = true;
          for (char c : s.get<std::string>()) ok = ok && m.accept(uint8_t(c));
          out["accepted"].push_back(ok && m.accept(256));
        }
        std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
        continue;
      }
      std::mt19937_64 rng(in.value("seed", 1));
      out["outputs"] = nlohmann::json::array();
      int incomplete = 0;
      for (int i = 0; i < in.value("n", 5); ++i) {
        if (auto s = draw(cache, rng, in.value("soft", 60), in.value("hard", 20000))) {
          out["outputs"].push_back(*s);
        } else {
          ++incomplete;
        }
      }
      out["incomplete"] = incomplete;
    } catch (const Error& e) {
      out["error"] = e.what();
    }
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  }
  return 0;
}
