#include "tokenizer/sentencepiece_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>

#include "core/check.h"
#include "core/mapped_file.h"
#include "tokenizer/encode_turn.h"
#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

const std::string kMetaSpace = "\xE2\x96\x81";  // U+2581

bool is_byte_piece(const std::string& p, int* value) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return false;
  char* end = nullptr;
  const std::string hex = p.substr(3, 2);  // outlives `end`, which points into it
  const long v = std::strtol(hex.c_str(), &end, 16);
  if (end == nullptr || *end != '\0') return false;
  *value = static_cast<int>(v);
  return true;
}

// Minimal protobuf reader: enough for sentencepiece's ModelProto.
class ProtoReader {
 public:
  ProtoReader(const uint8_t* p, size_t n, std::string what) : p_(p), end_(p + n), what_(std::move(what)) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) bad();
      const uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    bad();
  }
  // Reads a tag; returns field number and wire type.
  std::pair<uint32_t, uint32_t> tag() {
    const uint64_t t = varint();
    return {static_cast<uint32_t>(t >> 3), static_cast<uint32_t>(t & 7)};
  }
  std::pair<const uint8_t*, size_t> bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_)) bad();
    auto r = std::make_pair(p_, static_cast<size_t>(n));
    p_ += n;
    return r;
  }
  uint32_t fixed32() {
    if (end_ - p_ < 4) bad();
    uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end_ - p_ < 8) bad(); p_ += 8; break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: bad();
    }
  }
  [[noreturn]] void bad() { fail("{}: not a valid SentencePiece model (truncated or corrupt protobuf)", what_); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  std::string what_;
};

}  // namespace

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_llama2c(const std::string& path) {
  MappedFile f(path);
  const uint8_t* p = f.data();
  const size_t n = f.size();
  if (n < 4) fail("{}: too small for a llama2.c tokenizer", path);
  auto t = std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer());
  t->llama2c_ = true;
  int32_t max_len;
  std::memcpy(&max_len, p, 4);
  if (max_len <= 0 || max_len > 4096) fail("{}: bad max_token_length {} (not a llama2.c tokenizer?)", path, max_len);
  size_t off = 4;
  while (off < n) {
    if (n - off < 8) fail("{}: truncated at token {}", path, t->pieces_.size());
    float score;
    int32_t len;
    std::memcpy(&score, p + off, 4);
    std::memcpy(&len, p + off + 4, 4);
    off += 8;
    if (len < 0 || len > max_len || static_cast<size_t>(len) > n - off) {
      fail("{}: token {} has bad length {}", path, t->pieces_.size(), len);
    }
    t->pieces_.emplace_back(reinterpret_cast<const char*>(p + off), len);
    t->scores_.push_back(score);
    off += len;
  }
  if (t->pieces_.size() < 3) fail("{}: only {} tokens", path, t->pieces_.size());
  // llama2.c's export keeps SentencePiece's layout: 0 <unk>, 1 BOS, 2 EOS ("\n<s>\n"), bytes at 3..
  t->types_.assign(t->pieces_.size(), kNormal);
  t->types_[0] = kUnknown;
  t->types_[1] = t->types_[2] = kControl;
  t->pieces_[0] = "<unk>";
  t->pieces_[1] = "<s>";
  t->pieces_[2] = "</s>";
  for (size_t i = 3; i < t->pieces_.size(); ++i) {
    int v;
    if (is_byte_piece(t->pieces_[i], &v)) t->types_[i] = kByte;
  }
  t->finalize(" ");
  return t;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_model_proto(const std::string& path) {
  MappedFile f(path);
  auto t = std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer());
  ProtoReader r(f.data(), f.size(), path);
  int model_type = 1;  // UNIGRAM is the proto default
  t->remove_extra_whitespaces_ = true;
  while (!r.done()) {
    auto [field, wire] = r.tag();
    if (field == 1 && wire == 2) {
      auto [bp, bn] = r.bytes();
      ProtoReader pr(bp, bn, path);
      std::string piece;
      float score = 0;
      uint8_t type = kNormal;
      while (!pr.done()) {
        auto [pf, pw] = pr.tag();
        if (pf == 1 && pw == 2) {
          auto [sp, sn] = pr.bytes();
          piece.assign(reinterpret_cast<const char*>(sp), sn);
        } else if (pf == 2 && pw == 5) {
          const uint32_t u = pr.fixed32();
          std::memcpy(&score, &u, 4);
        } else if (pf == 3 && pw == 0) {
          type = static_cast<uint8_t>(pr.varint());
        } else {
          pr.skip(pw);
        }
      }
      t->pieces_.push_back(std::move(piece));
      t->scores_.push_back(score);
      t->types_.push_back(type);
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      auto [bp, bn] = r.bytes();
      ProtoReader tr(bp, bn, path);
      while (!tr.done()) {
        auto [tf, tw] = tr.tag();
        if (tw != 0) {
          tr.skip(tw);
          continue;
        }
        const auto v = static_cast<int64_t>(tr.varint());
        if (tf == 3) model_type = static_cast<int>(v);
        if (tf == 40) t->unk_ = static_cast<int32_t>(v);
        if (tf == 41) t->bos_ = static_cast<int32_t>(v);
        if (tf == 42) t->eos_ = static_cast<int32_t>(v);
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      auto [bp, bn] = r.bytes();
      ProtoReader nr(bp, bn, path);
      while (!nr.done()) {
        auto [nf, nw] = nr.tag();
        if (nw != 0) {
          nr.skip(nw);
          continue;
        }
        const auto v = nr.varint();
        if (nf == 3) t->add_dummy_prefix_ = v != 0;
        if (nf == 4) t->remove_extra_whitespaces_ = v != 0;
      }
    } else {
      r.skip(wire);
    }
  }
  if (model_type != 2) fail("{}: SentencePiece model type {} is not supported (only BPE)", path, model_type);
  if (t->pieces_.empty()) fail("{}: SentencePiece model has no pieces", path);
  const auto n = static_cast<int32_t>(t->pieces_.size());
  for (int32_t* id : {&t->bos_, &t->eos_, &t->unk_}) {
    if (*id >= n) fail("{}: special id {} out of range", path, *id);
    if (*id < 0) *id = -1;
  }
  t->finalize(kMetaSpace);
  t->use_hf_decoder_and_specials();
  return t;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_vocab(SpmVocab v) {
  const auto n = static_cast<int64_t>(v.pieces.size());
  if (n == 0) fail("SentencePiece vocabulary has no pieces");
  if (int64_t(v.scores.size()) != n || int64_t(v.types.size()) != n)
    fail("SentencePiece vocabulary has {} pieces but {} scores and {} types", n, v.scores.size(), v.types.size());
  for (int32_t id : {v.bos, v.eos, v.unk})
    if (id >= n) fail("SentencePiece vocabulary: special id {} is outside [0, {})", id, n);
  for (int32_t id : v.extra_stop_ids)
    if (id < 0 || id >= n) fail("SentencePiece vocabulary: stop id {} is outside [0, {})", id, n);
  auto t = std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer());
  t->pieces_ = std::move(v.pieces);
  t->scores_ = std::move(v.scores);
  t->types_ = std::move(v.types);
  t->bos_ = v.bos < 0 ? -1 : v.bos;
  t->eos_ = v.eos < 0 ? -1 : v.eos;
  t->unk_ = v.unk < 0 ? -1 : v.unk;
  t->add_bos_ = v.add_bos;
  t->add_eos_ = v.add_eos;
  t->add_dummy_prefix_ = v.add_dummy_prefix;
  t->remove_extra_whitespaces_ = v.remove_extra_whitespaces;
  t->extra_stop_ids_ = std::move(v.extra_stop_ids);
  t->chat_template_ = std::move(v.chat_template);
  t->finalize(kMetaSpace);
  t->use_hf_decoder_and_specials();
  return t;
}

void SentencePieceTokenizer::use_hf_decoder_and_specials() {
  // HF's Llama tokenizer decodes with Replace(▁→' '), ByteFallback, Fuse, Strip(1 leading space).
  using K = TokenDecoder::Kind;
  std::vector<TokenDecoder::Step> steps = {{K::kReplace, kMetaSpace, " "}, {K::kByteFallback, "", ""},
                                           {K::kFuse, "", ""}, {K::kStrip, " ", ""}};
  steps[3].start = add_dummy_prefix_ ? 1 : 0;
  decoder_ = TokenDecoder::from_steps(std::move(steps));
  const auto n = static_cast<int32_t>(pieces_.size());
  for (int32_t i = 0; i < n; ++i) {
    if (types_[i] == kControl || types_[i] == kUnknown || types_[i] == kUserDefined) {
      AddedToken a;
      a.id = i;
      a.content = pieces_[i];
      a.special = types_[i] != kUserDefined;
      specials_.add(a);
    }
  }
}

void SentencePieceTokenizer::finalize(const std::string& space) {
  space_ = space;
  byte_ids_.fill(-1);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    all_.emplace(pieces_[i], id);
    int v;
    if (types_[i] == kByte && is_byte_piece(pieces_[i], &v)) {
      byte_ids_[v] = id;
    } else if (types_[i] == kNormal || types_[i] == kUserDefined) {
      mergeable_.emplace(pieces_[i], id);
    }
  }
}

std::vector<int32_t> SentencePieceTokenizer::eos_ids() const {
  std::vector<int32_t> ids;
  if (eos_ >= 0) ids.push_back(eos_);
  for (int32_t id : extra_stop_ids_)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

std::string SentencePieceTokenizer::id_to_piece(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) return "";
  return pieces_[id];
}

int32_t SentencePieceTokenizer::piece_to_id(std::string_view piece) const {
  auto it = all_.find(std::string(piece));
  return it == all_.end() ? -1 : it->second;
}

bool SentencePieceTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(types_.size()) &&
         (types_[id] == kControl || types_[id] == kUnknown);
}

std::string SentencePieceTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) return "";
  int v;
  if (types_[size_t(id)] == kByte && is_byte_piece(pieces_[size_t(id)], &v)) return std::string(1, static_cast<char>(v));
  if (llama2c_) return pieces_[size_t(id)];
  return decoder_.raw_bytes(pieces_[size_t(id)]);
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view raw, bool add_special_tokens) const {
  const EncodeTurn turn(raw.size());  // a large text waits for its share of memory (encode_turn.h)
  const std::string text = utf8::repair(raw);
  std::vector<int32_t> out;
  if (add_special_tokens && add_bos_ && bos_ >= 0) out.push_back(bos_);
  if (llama2c_ || specials_.empty()) {
    encode_segment(text, out);
  } else {
    for (const auto& seg : specials_.split(text, false)) {
      if (seg.id >= 0) {
        out.push_back(seg.id);
      } else {
        encode_segment(seg.text, out);
      }
    }
  }
  if (add_special_tokens && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

void SentencePieceTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string s;
  std::string_view body = text;
  std::string collapsed;
  if (remove_extra_whitespaces_ && !llama2c_) {
    // sentencepiece: drop leading/trailing spaces and squeeze runs of spaces to one.
    for (char c : text) {
      if (c == ' ' && (collapsed.empty() || collapsed.back() == ' ')) continue;
      collapsed.push_back(c);
    }
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
    if (collapsed.empty()) return;
    body = collapsed;
  }
  s.reserve(body.size() + 8);
  if (add_dummy_prefix_) s += space_;
  for (char c : body) {
    if (c == ' ') {
      s += space_;
    } else {
      s.push_back(c);
    }
  }

  // One symbol per UTF-8 char; chars missing from the vocabulary become byte pieces.
  struct Sym {
    uint32_t start, len;
    int32_t id;
    int32_t prev, next;
    bool mergeable;
  };
  std::vector<Sym> syms;
  syms.reserve(s.size());
  std::string key;
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    utf8::decode_at(s, i, &len);
    key.assign(s, i, len);
    auto it = mergeable_.find(key);
    if (it != mergeable_.end()) {
      syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len), it->second, 0, 0, true});
    } else {
      for (size_t k = 0; k < len; ++k) {
        int32_t id = byte_ids_[static_cast<uint8_t>(s[i + k])];
        if (llama2c_ && id < 0) id = static_cast<uint8_t>(s[i + k]) + 3;  // run.c's rule
        if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) id = unk_;
        if (id < 0) fail("text has a character the vocabulary cannot spell (no byte fallback, no <unk>)");
        syms.push_back({static_cast<uint32_t>(i + k), 1, id, 0, 0, false});
        if (!llama2c_ && byte_ids_[static_cast<uint8_t>(s[i + k])] < 0) break;  // one <unk> per char
      }
    }
    i += len;
  }
  const auto n = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i < n; ++i) {
    syms[i].prev = i - 1;
    syms[i].next = i + 1 < n ? i + 1 : -1;
  }

  // Best score first, leftmost on ties (run.c's scan and sentencepiece's queue agree on this).
  struct Cand {
    float score;
    int32_t left;
    uint32_t len;  // combined length when queued; stale entries no longer match
    int32_t id;
    bool operator<(const Cand& o) const {
      if (score != o.score) return score < o.score;
      return syms_start > o.syms_start;
    }
    uint32_t syms_start;
  };
  std::priority_queue<Cand> q;
  auto try_pair = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = syms[l].next;
    if (r < 0 || !syms[l].mergeable || !syms[r].mergeable) return;
    key.assign(s, syms[l].start, syms[l].len + syms[r].len);
    auto it = mergeable_.find(key);
    if (it == mergeable_.end()) return;
    q.push({scores_[it->second], l, syms[l].len + syms[r].len, it->second, syms[l].start});
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_pair(i);
  while (!q.empty()) {
    const Cand c = q.top();
    q.pop();
    Sym& l = syms[c.left];
    if (l.len == 0 || l.next < 0) continue;
    Sym& r = syms[l.next];
    if (l.len + r.len != c.len) continue;
    l.len += r.len;
    l.id = c.id;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    try_pair(l.prev);
    try_pair(c.left);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) out.push_back(syms[i].id);
}

// run.c: pieces printed in order; the leading space of the piece right after BOS is dropped;
// <0xNN> pieces are raw bytes.
class SentencePieceTokenizer::Llama2cStream final : public DecodeStream {
 public:
  Llama2cStream(const SentencePieceTokenizer& t, bool skip) : t_(t), skip_(skip) {}
  void push(int32_t id, std::string& out) override {
    if (id < 0 || id >= static_cast<int32_t>(t_.pieces_.size())) fail("token id {} is out of range [0, {})", id, t_.pieces_.size());
    const int32_t prev = prev_;
    prev_ = id;
    if (t_.is_special(id)) {
      if (!skip_) sink_.push(t_.pieces_[id], out);
      return;
    }
    std::string_view piece = t_.pieces_[id];
    if (prev == t_.bos_ && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
    int v;
    if (t_.types_[id] == kByte && is_byte_piece(t_.pieces_[id], &v)) {
      sink_.push_byte(static_cast<uint8_t>(v), out);
    } else {
      sink_.push(piece, out);
    }
  }
  void finish(std::string& out) override { sink_.finish(out); }

 private:
  const SentencePieceTokenizer& t_;
  bool skip_;
  int32_t prev_ = -1;
  utf8::Sink sink_;
};

class SentencePieceTokenizer::SpmStream final : public DecodeStream {
 public:
  SpmStream(const SentencePieceTokenizer& t, bool skip) : t_(t), skip_(skip), state_(t.decoder_) {}
  void push(int32_t id, std::string& out) override {
    if (id < 0 || id >= static_cast<int32_t>(t_.pieces_.size())) fail("token id {} is out of range [0, {})", id, t_.pieces_.size());
    if (skip_ && t_.is_special(id)) return;
    state_.push(t_.pieces_[id], out);
  }
  void finish(std::string& out) override { state_.finish(out); }

 private:
  const SentencePieceTokenizer& t_;
  bool skip_;
  TokenDecoder::State state_;
};

std::unique_ptr<DecodeStream> SentencePieceTokenizer::decode_stream(bool skip_special_tokens) const {
  if (llama2c_) return std::make_unique<Llama2cStream>(*this, skip_special_tokens);
  return std::make_unique<SpmStream>(*this, skip_special_tokens);
}

}  // namespace dpserve
