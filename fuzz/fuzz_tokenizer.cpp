// The real tokenizers (Qwen3 and Llama-3 tokenizer.json, Llama-2 SentencePiece .model and llama2.c
// .bin) on arbitrary text and arbitrary id sequences, whole and streamed.
// Input: byte 0 picks the tokenizer (bits 0-1) and the mode (bit 2: ids, else text); bit 3 is
// add_special_tokens / skip_special_tokens. The rest is the text, or 4-byte little-endian ids.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

using dpserve::Tokenizer;

struct Loaded {
  std::unique_ptr<Tokenizer> tok;
  bool byte_level_exact;  // no normalizer: decode(encode(text)) is the repaired text itself
  bool reencode_stable;   // encode(decode(ids)) == ids; not for llama2.c's .bin, whose decode keeps
                          // the dummy-prefix space unless the previous token is BOS (as run.c does)
};

const std::vector<Loaded>& tokenizers() {
  static const std::vector<Loaded> all = [] {
    std::vector<Loaded> v;
    v.push_back({Tokenizer::load(dpserve::fuzz::shared_file("tokenizers/qwen3")), false, true});  // NFC first
    v.push_back({Tokenizer::load(dpserve::fuzz::shared_file("tokenizers/llama3")), true, true});
    v.push_back({Tokenizer::load(dpserve::fuzz::shared_file("models/llama2-tokenizer/tokenizer.model")), false, true});
    v.push_back({Tokenizer::load(dpserve::fuzz::shared_file("models/llama2-tokenizer/tokenizer.bin")), false, false});
    return v;
  }();
  return all;
}

// Streaming must give the same text as one decode, piece by piece, never splitting a char.
std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  auto s = tok.decode_stream(skip);
  std::string all;
  for (int32_t id : ids) {
    std::string piece;
    s->push(id, piece);
    FUZZ_EXPECT(dpserve::utf8::is_valid(piece));
    all += piece;
  }
  std::string tail;
  s->finish(tail);
  FUZZ_EXPECT(dpserve::utf8::is_valid(tail));
  return all + tail;
}

void fuzz_text(const Loaded& l, const std::string& text, bool add_special) {
  const Tokenizer& tok = *l.tok;
  const std::vector<int32_t> ids = tok.encode(text, add_special);  // any bytes are valid input
  for (int32_t id : ids) FUZZ_EXPECT(id >= 0 && id < tok.vocab_size());
  const std::string back = tok.decode(ids, false);
  FUZZ_EXPECT(dpserve::utf8::is_valid(back));
  FUZZ_EXPECT(stream_decode(tok, ids, false) == back);
  if (!add_special) {
    if (l.byte_level_exact) FUZZ_EXPECT(back == dpserve::utf8::repair(text));
    // Normalisation is idempotent, so re-encoding the decoded text gives the same ids.
    // Special tokens split the text, and SentencePiece adds its dummy prefix to each part: skip those.
    bool special = false;
    for (int32_t id : ids) special = special || tok.is_special(id);
    if (l.reencode_stable && !special) FUZZ_EXPECT(tok.encode(back, false) == ids);
  }
}

void fuzz_ids(const Tokenizer& tok, const uint8_t* p, size_t n, bool skip) {
  std::vector<int32_t> ids;
  bool in_range = true;
  for (size_t i = 0; i + 4 <= n; i += 4) {
    uint32_t u;
    std::memcpy(&u, p + i, 4);
    // Mostly valid ids (vocab itself is the first bad one); a 0xFF top byte keeps the raw value.
    int32_t id = (u >> 24) == 0xFF ? int32_t(u) : int32_t(u % uint32_t(tok.vocab_size() + 1));
    in_range = in_range && id >= 0 && id < tok.vocab_size();
    ids.push_back(id);
  }
  std::string whole;
  try {
    whole = tok.decode(ids, skip);
  } catch (const dpserve::Error&) {
    FUZZ_EXPECT(!in_range);
    // The stream must refuse the bad id as well.
    bool threw = false;
    try {
      stream_decode(tok, ids, skip);
    } catch (const dpserve::Error&) {
      threw = true;
    }
    FUZZ_EXPECT(threw);
    return;
  }
  FUZZ_EXPECT(in_range);
  FUZZ_EXPECT(dpserve::utf8::is_valid(whole));
  FUZZ_EXPECT(stream_decode(tok, ids, skip) == whole);
}

}  // namespace

// Loading the vocabularies takes seconds under ASan; done here so it does not count as a slow input.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& all = tokenizers();
  if (size == 0) return 0;
  const Loaded& l = all[data[0] & 3];
  const bool flag = (data[0] & 8) != 0;
  if (data[0] & 4) {
    fuzz_ids(*l.tok, data + 1, size - 1, flag);
  } else {
    fuzz_text(l, std::string(reinterpret_cast<const char*>(data + 1), size - 1), flag);
  }
  return 0;
}
