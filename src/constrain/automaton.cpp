#include "constrain/automaton.h"

#include <cstring>

#include "core/check.h"

namespace dpserve::constrain {
namespace {

constexpr uint32_t kMagic = 0x31415044;  // "DPA1"
constexpr uint32_t kVersion = 2;

class Writer {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void i32(int32_t v) { raw(&v, 4); }
  void bytes(const void* p, size_t n) {
    u32(uint32_t(n));
    raw(p, n);
  }
  template <typename T>
  void vec(const std::vector<T>& v) {
    u32(uint32_t(v.size()));
    raw(v.data(), v.size() * sizeof(T));
  }
  std::string out;

 private:
  void raw(const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }
};

class Reader {
 public:
  explicit Reader(std::string_view d) : d_(d) {}
  uint32_t u32() {
    uint32_t v;
    raw(&v, 4);
    return v;
  }
  int32_t i32() {
    int32_t v;
    raw(&v, 4);
    return v;
  }
  std::string str() {
    const uint32_t n = u32();
    need(n);
    std::string s(d_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  template <typename T>
  std::vector<T> vec() {
    const uint32_t n = u32();
    need(size_t(n) * sizeof(T));
    std::vector<T> v(n);
    if (n > 0) std::memcpy(v.data(), d_.data() + pos_, size_t(n) * sizeof(T));  // an empty v's data() may be null
    pos_ += size_t(n) * sizeof(T);
    return v;
  }
  void raw(void* p, size_t n) {
    need(n);
    if (n > 0) std::memcpy(p, d_.data() + pos_, n);
    pos_ += n;
  }
  bool done() const { return pos_ == d_.size(); }

 private:
  void need(size_t n) const {
    if (d_.size() - pos_ < n) fail("constraint automaton: truncated data");
  }
  std::string_view d_;
  size_t pos_ = 0;
};

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

size_t Automaton::num_states() const {
  size_t n = 0;
  for (const auto& r : rules_) n += r.flags.size();
  return n;
}

size_t Automaton::bytes() const {
  size_t n = sizeof(Automaton) + rules_.capacity() * sizeof(Rule);
  for (const auto& r : rules_)
    n += r.name.capacity() + r.next.capacity() * sizeof(int32_t) + r.flags.capacity() +
         r.call_begin.capacity() * sizeof(uint32_t) + r.calls.capacity() * sizeof(Call);
  return n;
}

void Automaton::finish() {
  for (Rule& r : rules_) {
    r.has_calls = !r.calls.empty();
    for (int32_t s = 0; s < r.num_states(); ++s) {
      uint8_t f = r.flags[size_t(s)] & kAccepting;
      for (uint32_t c = 0; c < r.n_classes; ++c)
        if (r.next[size_t(s) * r.n_classes + c] >= 0) f |= kHasBytes;
      if (r.call_begin[size_t(s) + 1] > r.call_begin[size_t(s)]) f |= kHasCalls;
      r.flags[size_t(s)] = f;
    }
  }
  fingerprint_ = fnv1a(serialize());
}

// Transitions are sparse (a state reads a few byte classes), so they travel as (class, target)
// lists rather than the dense table: a tool schema is tens of kilobytes, not megabytes.
std::string Automaton::serialize() const {
  Writer w;
  w.u32(kMagic);
  w.u32(kVersion);
  w.u32(uint32_t(rules_.size()));
  for (const Rule& r : rules_) {
    w.bytes(r.name.data(), r.name.size());
    w.i32(r.start);
    w.u32(r.n_classes);
    w.out.append(reinterpret_cast<const char*>(r.byte_class.data()), 256);
    std::vector<uint16_t> counts;
    std::vector<uint8_t> classes;
    std::vector<int32_t> targets;
    for (int32_t s = 0; s < r.num_states(); ++s) {
      uint16_t k = 0;
      for (uint32_t c = 0; c < r.n_classes; ++c) {
        const int32_t t = r.next[size_t(s) * r.n_classes + c];
        if (t < 0) continue;
        ++k;
        classes.push_back(uint8_t(c));
        targets.push_back(t);
      }
      counts.push_back(k);
    }
    w.vec(r.flags);
    w.vec(counts);
    w.vec(classes);
    w.vec(targets);
    w.vec(r.call_begin);
    w.vec(r.calls);
  }
  return std::move(w.out);
}

std::shared_ptr<const Automaton> Automaton::deserialize(std::string_view data) {
  Reader rd(data);
  if (rd.u32() != kMagic) fail("constraint automaton: bad magic");
  if (const uint32_t v = rd.u32(); v != kVersion) fail("constraint automaton: version {} is not {}", v, kVersion);
  auto a = std::make_shared<Automaton>();
  const uint32_t n = rd.u32();
  if (n == 0 || n > (1u << 20)) fail("constraint automaton: bad rule count {}", n);
  for (uint32_t i = 0; i < n; ++i) {
    Rule r;
    r.name = rd.str();
    r.start = rd.i32();
    r.n_classes = rd.u32();
    rd.raw(r.byte_class.data(), 256);
    r.flags = rd.vec<uint8_t>();
    const auto counts = rd.vec<uint16_t>();
    const auto classes = rd.vec<uint8_t>();
    const auto targets = rd.vec<int32_t>();
    r.call_begin = rd.vec<uint32_t>();
    r.calls = rd.vec<Call>();
    // Everything the run time indexes with is checked, so a corrupt buffer cannot read out of bounds.
    const size_t ns = r.flags.size();
    if (r.n_classes == 0 || r.n_classes > 256 || ns == 0 || counts.size() != ns || classes.size() != targets.size() ||
        r.call_begin.size() != ns + 1 || r.start < 0 || size_t(r.start) >= ns || r.call_begin.back() != r.calls.size())
      fail("constraint automaton: inconsistent tables in rule {}", i);
    for (uint8_t c : r.byte_class)
      if (c >= r.n_classes) fail("constraint automaton: bad byte class in rule {}", i);
    r.next.assign(ns * r.n_classes, -1);
    size_t k = 0;
    for (size_t s = 0; s < ns; ++s) {
      for (uint16_t j = 0; j < counts[s]; ++j, ++k) {
        if (k >= classes.size() || classes[k] >= r.n_classes || targets[k] < 0 || size_t(targets[k]) >= ns)
          fail("constraint automaton: bad transition in rule {}", i);
        r.next[s * r.n_classes + classes[k]] = targets[k];
      }
    }
    if (k != classes.size()) fail("constraint automaton: bad transition count in rule {}", i);
    for (size_t s = 0; s < ns; ++s)
      if (r.call_begin[s] > r.call_begin[s + 1]) fail("constraint automaton: bad call table in rule {}", i);
    for (const Call& c : r.calls)
      if (c.rule >= n || c.target < 0 || size_t(c.target) >= ns) fail("constraint automaton: bad call in rule {}", i);
    a->rules_.push_back(std::move(r));
  }
  if (!rd.done()) fail("constraint automaton: trailing data");
  a->finish();
  return a;
}

}  // namespace dpserve::constrain
