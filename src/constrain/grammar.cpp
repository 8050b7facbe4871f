#include "constrain/grammar.h"

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve::constrain {

namespace {
Expr make(ExprKind k) {
  Expr e;
  e.kind = k;
  return e;
}
}  // namespace

ExprId Grammar::add(Expr e) {
  exprs_.push_back(std::move(e));
  return ExprId(exprs_.size() - 1);
}

ExprId Grammar::empty() { return add(make(ExprKind::kSeq)); }

ExprId Grammar::nothing() { return add(make(ExprKind::kAlt)); }

ExprId Grammar::bytes(const ByteSet& s) {
  if (s.empty()) return nothing();
  Expr e = make(ExprKind::kBytes);
  e.bytes = s;
  return add(std::move(e));
}

ExprId Grammar::literal(std::string_view text) {
  std::vector<ExprId> kids;
  kids.reserve(text.size());
  for (char c : text) kids.push_back(bytes(ByteSet::of(uint8_t(c))));
  return seq(std::move(kids));
}

ExprId Grammar::seq(std::vector<ExprId> kids) {
  // Flattened, so long concatenations stay one node.
  std::vector<ExprId> flat;
  for (ExprId k : kids) {
    const Expr& e = exprs_[size_t(k)];
    if (e.kind == ExprKind::kSeq) {
      flat.insert(flat.end(), e.kids.begin(), e.kids.end());
    } else {
      flat.push_back(k);
    }
  }
  if (flat.size() == 1) return flat[0];
  Expr e = make(ExprKind::kSeq);
  e.kids = std::move(flat);
  return add(std::move(e));
}

ExprId Grammar::alt(std::vector<ExprId> kids) {
  std::vector<ExprId> flat;
  for (ExprId k : kids) {
    const Expr& e = exprs_[size_t(k)];
    if (e.kind == ExprKind::kAlt) {
      flat.insert(flat.end(), e.kids.begin(), e.kids.end());
    } else {
      flat.push_back(k);
    }
  }
  if (flat.size() == 1) return flat[0];
  Expr e = make(ExprKind::kAlt);
  e.kids = std::move(flat);
  return add(std::move(e));
}

ExprId Grammar::repeat(ExprId kid, int32_t min, int32_t max) {
  if (min < 0) fail("repetition minimum {} is negative", min);
  if (min > kMaxRepeat || max > kMaxRepeat)
    fail("repetition count {} is above the supported maximum {}", std::max(min, max), kMaxRepeat);
  if (max >= 0 && min > max) fail("repetition minimum {} is above its maximum {}", min, max);
  if (min == 1 && max == 1) return kid;
  if (max == 0) return empty();
  Expr e = make(ExprKind::kRepeat);
  e.kids = {kid};
  e.min = min;
  e.max = max;
  return add(std::move(e));
}

ExprId Grammar::ref(int32_t rule) {
  DP_CHECK(rule >= 0 && size_t(rule) < rules_.size());
  Expr e = make(ExprKind::kRef);
  e.rule = rule;
  return add(std::move(e));
}

ExprId Grammar::chars(const CodepointSet& set) {
  std::vector<ExprId> alts;
  // Sequences sharing all but the last byte range merge into one (ASCII ranges become one byte set).
  for (const auto& s : set.utf8_sequences()) {
    std::vector<ExprId> parts;
    for (auto [lo, hi] : s) parts.push_back(bytes(ByteSet::range(lo, hi)));
    alts.push_back(seq(std::move(parts)));
  }
  return alts.empty() ? nothing() : alt(std::move(alts));
}

int32_t Grammar::add_rule(std::string name) {
  const auto [it, added] = rule_index_.emplace(name, int32_t(rules_.size()));
  DP_CHECK(added, "rule '{}' declared twice", name);
  rules_.push_back(Rule{std::move(name), -1});
  return it->second;
}

int32_t Grammar::find_rule(std::string_view name) const {
  const auto it = rule_index_.find(name);
  return it == rule_index_.end() ? -1 : it->second;
}

void Grammar::set_body(int32_t rule, ExprId body) { rules_[size_t(rule)].body = body; }

namespace {

std::string byte_text(uint8_t b) {
  if (b == '\\' || b == ']' || b == '[' || b == '-' || b == '^' || b == '"') return fmt::format("\\{}", char(b));
  if (b >= 0x20 && b < 0x7F) return std::string(1, char(b));
  return fmt::format("\\x{:02X}", b);
}

}  // namespace

std::string Grammar::to_string(ExprId id) const {
  const Expr& e = exprs_[size_t(id)];
  switch (e.kind) {
    case ExprKind::kBytes: {
      if (e.bytes.count() == 1) {
        for (int b = 0; b < 256; ++b)
          if (e.bytes.test(uint8_t(b))) return "[" + byte_text(uint8_t(b)) + "]";
      }
      std::string s = "[";
      for (int b = 0; b < 256;) {
        if (!e.bytes.test(uint8_t(b))) {
          ++b;
          continue;
        }
        int end = b;
        while (end + 1 < 256 && e.bytes.test(uint8_t(end + 1))) ++end;
        s += byte_text(uint8_t(b));
        if (end > b) s += "-" + byte_text(uint8_t(end));
        b = end + 1;
      }
      return s + "]";
    }
    case ExprKind::kSeq: {
      if (e.kids.empty()) return "\"\"";
      std::string s = "(";
      for (size_t i = 0; i < e.kids.size(); ++i) s += (i ? " " : "") + to_string(e.kids[i]);
      return s + ")";
    }
    case ExprKind::kAlt: {
      if (e.kids.empty()) return "(!)";
      std::string s = "(";
      for (size_t i = 0; i < e.kids.size(); ++i) s += (i ? " | " : "") + to_string(e.kids[i]);
      return s + ")";
    }
    case ExprKind::kRepeat:
      return to_string(e.kids[0]) + (e.max < 0 ? fmt::format("{{{},}}", e.min) : fmt::format("{{{},{}}}", e.min, e.max));
    case ExprKind::kRef:
      return rules_[size_t(e.rule)].name;
  }
  return "?";
}

std::string Grammar::to_string() const {
  std::string s;
  for (size_t r = 0; r < rules_.size(); ++r) {
    s += rules_[r].name + " ::= " + (rules_[r].body >= 0 ? to_string(rules_[r].body) : "<undefined>") + "\n";
  }
  return s;
}

}  // namespace dpserve::constrain
