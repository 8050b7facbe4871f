// Structured-output constraints as any client may send them (response_format's json_schema,
// SGLang's regex and ebnf, structural tags): compiled by compile_constraint, then decoded against a
// vocabulary of every single byte plus a few longer tokens and an EOS. Byte 0 picks the kind (regex,
// JSON Schema, GBNF; structural tag when its high bit is set), the rest is its text. A bad constraint
// must be a dpserve::Error, compiled within the fuzz timeout; an accepted one promises
// (automaton_build.cpp) that a mask is never empty until the output ends, which with every byte a
// token means: some token or EOS is always allowed. Along a pseudo-random walk of allowed tokens,
// every allowed token is accepted, a refused one leaves the state as it was, and EOS is allowed
// exactly where the output may end.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "constrain/constraint.h"
#include "constrain/matcher_registry.h"
#include "constrain/vocab_index.h"
#include "core/check.h"
#include "fuzz_util.h"

namespace {

using dpserve::constrain::ConstraintKind;

constexpr int32_t kEos = 256 + 8;  // after the bytes and the longer tokens below

const std::shared_ptr<const dpserve::constrain::VocabIndex>& vocab() {
  static const auto v = [] {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, char(b)));
    for (const char* t : {"{\"", "\":", "true", "null", "  ", "\n  ", "ab", "\xc3\xa9"}) bytes.push_back(t);
    bytes.push_back("</s>");
    std::vector<bool> is_text(bytes.size(), true);
    is_text[size_t(kEos)] = false;
    // Two ids past the tokens: a model's logits may be wider than its vocabulary.
    return std::make_shared<const dpserve::constrain::VocabIndex>(bytes, is_text, std::vector<int32_t>{kEos},
                                                                  int64_t(bytes.size()) + 2);
  }();
  return v;
}

bool allowed(const std::vector<uint64_t>& mask, int32_t id) { return (mask[size_t(id) / 64] >> (id % 64)) & 1; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const ConstraintKind kKinds[3] = {ConstraintKind::kRegex, ConstraintKind::kJsonSchema,
                                           ConstraintKind::kEbnf};
  dpserve::constrain::ConstraintSpec spec;
  // The high bit picks a structural tag (added later: the corpus's older inputs keep their kind).
  spec.kind = data[0] & 0x80 ? ConstraintKind::kStructuralTag : kKinds[data[0] % 3];
  spec.text.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::shared_ptr<const dpserve::constrain::Automaton> a;
  try {
    a = dpserve::constrain::compile_constraint(spec);
  } catch (const dpserve::Error&) {
    return 0;
  }
  FUZZ_EXPECT(a != nullptr);

  static dpserve::constrain::MatcherRegistry registry(vocab(), 8, size_t(64) << 20, size_t(8) << 20);
  std::unique_ptr<dpserve::constrain::Matcher> m = registry.make(a);
  const size_t words = vocab()->mask_words();
  const int32_t n_ids = int32_t(vocab()->mask_size());
  std::vector<uint64_t> mask(words), again(words);
  uint64_t h = 0x9e3779b97f4a7c15ull ^ size;  // the walk's choices, fixed per input
  for (int step = 0; step < 48 && !m->ended(); ++step) {
    m->fill_mask(mask.data());
    std::vector<int32_t> ok;
    for (int32_t id = 0; id < n_ids; ++id)
      if (allowed(mask, id)) ok.push_back(id);
    FUZZ_EXPECT(!ok.empty());
    FUZZ_EXPECT(allowed(mask, kEos) == m->can_end());
    FUZZ_EXPECT(!allowed(mask, n_ids - 1) && !allowed(mask, n_ids - 2));  // ids without a token
    // A refused token changes nothing.
    for (int32_t id = 0; id < n_ids; ++id) {
      if (allowed(mask, id)) continue;
      FUZZ_EXPECT(!m->accept(id));
      m->fill_mask(again.data());
      FUZZ_EXPECT(again == mask);
      break;
    }
    h = (h ^ uint64_t(step + data[size_t(step) % size])) * 0xff51afd7ed558ccdull;
    h ^= h >> 31;
    const int32_t pick = ok[size_t(h % ok.size())];
    FUZZ_EXPECT(m->accept(pick));
    if (pick == kEos) FUZZ_EXPECT(m->ended());
  }
  return 0;
}
