#include "constrain/trigger_text.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve::constrain {
namespace {

constexpr size_t kMaxPatternBytes = 4096;

std::u32string codepoints(const std::string& s) {
  // Callers pass strings from parsed JSON or literals: valid UTF-8 (nlohmann checks what it parses).
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto c0 = uint8_t(s[i]);
    const int n = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : 4;
    uint32_t cp = n == 1 ? c0 : n == 2 ? (c0 & 0x1F) : n == 3 ? (c0 & 0x0F) : (c0 & 0x07);
    for (int k = 1; k < n && i + size_t(k) < s.size(); ++k) cp = (cp << 6) | (uint8_t(s[i + size_t(k)]) & 0x3F);
    out.push_back(cp);
    i += size_t(n);
  }
  return out;
}

std::string json_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

// One rule per automaton state. As no pattern contains another, the state that completes a pattern
// is a leaf and completes only it.
void scan_text(Grammar& g, int32_t start, std::vector<TextPattern> pats, bool may_stop, const std::string& at) {
  // The same string twice: an end or a trigger wins over an exclude (excluding a tag's own end,
  // as xgrammar's think example does, means nothing more); two of the same role are one.
  const std::string where = at.empty() ? "the text" : "'" + at + "'";
  std::vector<TextPattern> uniq;
  size_t total = 0;
  for (auto& p : pats) {
    if (p.text.empty()) fail("{}: an empty {} string", where, p.role);
    auto same = std::find_if(uniq.begin(), uniq.end(), [&](const TextPattern& u) { return u.text == p.text; });
    if (same == uniq.end()) {
      total += p.text.size();
      uniq.push_back(std::move(p));
    } else if (same->then < 0) {
      *same = std::move(p);
    } else if (p.then >= 0 && std::string_view(same->role) != p.role) {
      fail("{}: {} is both a {} and an {} string", where, json_quoted(p.text), same->role, p.role);
    }
  }
  if (total > kMaxPatternBytes) fail("{}: trigger, exclude and end strings above {} bytes", where, kMaxPatternBytes);
  for (const auto& a : uniq)
    for (const auto& b : uniq)
      if (&a != &b && b.text.find(a.text) != std::string::npos)
        fail("{}: the {} string {} contains the {} string {}, so which one the text reaches is ambiguous", where,
             b.role, json_quoted(b.text), a.role, json_quoted(a.text));

  struct Node {
    std::map<uint32_t, int32_t> next;
    int32_t fail = 0;
    int32_t pattern = -1;
    int32_t rule = -1;
  };
  std::vector<Node> nodes(1);
  std::set<uint32_t> alphabet;
  for (size_t p = 0; p < uniq.size(); ++p) {
    int32_t n = 0;
    for (uint32_t c : codepoints(uniq[p].text)) {
      alphabet.insert(c);
      auto it = nodes[size_t(n)].next.find(c);
      if (it == nodes[size_t(n)].next.end()) {
        nodes.push_back(Node{});
        it = nodes[size_t(n)].next.emplace(c, int32_t(nodes.size() - 1)).first;
      }
      n = it->second;
    }
    nodes[size_t(n)].pattern = int32_t(p);
  }
  // Failure links, breadth first.
  std::vector<int32_t> order{0};
  for (size_t i = 0; i < order.size(); ++i)
    for (const auto& [c, kid] : nodes[size_t(order[i])].next) {
      order.push_back(kid);
      if (order[i] == 0) continue;
      int32_t f = nodes[size_t(order[i])].fail;
      while (f > 0 && !nodes[size_t(f)].next.count(c)) f = nodes[size_t(f)].fail;
      const auto it = nodes[size_t(f)].next.find(c);
      nodes[size_t(kid)].fail = it != nodes[size_t(f)].next.end() && it->second != kid ? it->second : 0;
    }
  auto go = [&](int32_t n, uint32_t c) {
    for (;;) {
      const auto it = nodes[size_t(n)].next.find(c);
      if (it != nodes[size_t(n)].next.end()) return it->second;
      if (n == 0) return int32_t(0);
      n = nodes[size_t(n)].fail;
    }
  };
  nodes[0].rule = start;
  for (size_t n = 1; n < nodes.size(); ++n)
    if (nodes[n].pattern < 0) nodes[n].rule = g.add_rule(fmt::format("(text {} {})", start, n));
  CodepointSet in;  // characters of the patterns; any other one sends every state back to the root
  for (uint32_t c : alphabet) in.add(c);
  const CodepointSet others = in.complement();
  for (size_t n = 0; n < nodes.size(); ++n) {
    if (nodes[n].pattern >= 0) continue;
    std::map<int32_t, CodepointSet> to;
    for (uint32_t c : alphabet) to[go(int32_t(n), c)].add(c);
    to[0].add(others);
    std::vector<ExprId> alts;
    if (may_stop) alts.push_back(g.empty());
    for (const auto& [target, set] : to) {
      if (set.empty()) continue;
      const Node& t = nodes[size_t(target)];
      if (t.pattern < 0) {
        alts.push_back(g.seq({g.chars(set), g.ref(t.rule)}));
      } else if (uniq[size_t(t.pattern)].then >= 0) {
        alts.push_back(g.seq({g.chars(set), uniq[size_t(t.pattern)].then}));
      }
    }
    g.set_body(nodes[n].rule, g.alt(std::move(alts)));
  }
}

}  // namespace dpserve::constrain
