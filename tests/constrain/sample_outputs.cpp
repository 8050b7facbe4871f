// constrain_sample: reads constraints as JSON lines {"id", "kind" (json_schema | json_object | regex |
// ebnf), "text", "n", "seed", "soft", "hard"} and writes, per line, {"id", "outputs": [...],
// "incomplete": k} with n random strings the compiled constraint accepts (drawn byte by byte through
// the Matcher; a walk that has not ended after "hard" bytes is counted in "incomplete"), or
// {"id", "error": "..."} when it does not compile. With "check": [strings] instead, answers
// {"id", "accepted": [bool, ...]}: whether each string is a complete output of the constraint. The
// test scripts validate the outputs with independent validators (npm ajv, Python's re).
#include <algorithm>
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

// Whether the output may end after byte `t` and, when `t` starts a multi-byte UTF-8 character, the
// rest of that character (its first allowed continuation at each byte).
bool may_end_after(Matcher ahead, int t, std::vector<uint64_t>& mask) {
  if (!ahead.accept(t)) return false;
  const int more = t >= 0xF0 ? 3 : t >= 0xE0 ? 2 : t >= 0xC0 ? 1 : 0;
  for (int k = 0; k < more; ++k) {
    ahead.fill_mask(mask.data());
    int next = -1;
    for (int c = 0x80; c < 0xC0 && next < 0; ++c)
      if ((mask[size_t(c) >> 6] >> (c & 63)) & 1) next = c;
    if (next < 0 || !ahead.accept(next)) return false;
  }
  return ahead.can_end();
}

// A random walk that drifts towards the end: past a soft length it prefers bytes after which it may
// end, then bytes in `closers` (for JSON: quotes, brackets), and ends as soon as it may.
std::optional<std::string> draw(std::shared_ptr<TokenMaskCache> cache, std::mt19937_64& rng, size_t soft, size_t hard,
                                const std::string& closers) {
  Matcher m(cache);
  std::string out;
  std::vector<uint64_t> mask(cache->vocab().mask_words()), scratch(mask.size());
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
      // Without the look-ahead a regex such as /(?:[^\d]{2}){2,}\./ ran to thousands of bytes,
      // where Python's backtracking `re` (the oracle) takes hours. It costs a Matcher copy per
      // byte, so at most 32 random bytes are tried.
      std::vector<int> ending, close, tried = allowed;
      std::shuffle(tried.begin(), tried.end(), rng);
      tried.resize(std::min<size_t>(tried.size(), 32));
      for (int t : tried)
        if (may_end_after(m, t, scratch)) ending.push_back(t);
      for (int t : allowed)
        if (closers.find(char(t)) != std::string::npos) close.push_back(t);
      if (!ending.empty()) pick = ending;
      else if (!close.empty()) pick = close;
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
        // Quotes and brackets close JSON; in a regex they are bytes like any other.
        const std::string closers = spec.kind == ConstraintKind::kRegex ? "" : "\"}]";
        if (auto s = draw(cache, rng, in.value("soft", 60), in.value("hard", 20000), closers)) {
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
