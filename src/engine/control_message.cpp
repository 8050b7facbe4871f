#include "engine/control_message.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>

#include <msgpack.hpp>

#include "constrain/automaton.h"
#include "core/check.h"

namespace dpserve {

namespace {

// A msgpack::sbuffer-compatible sink writing straight into a byte vector.
struct ByteSink {
  std::vector<std::byte> out;
  void write(const char* p, size_t n) {
    const auto* b = reinterpret_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  }
};
// msgpack-c packs an integral float as an integer (so -0.0 would arrive as +0.0); floats are
// written here as float 32 with their exact bits instead.
struct Packer : msgpack::packer<ByteSink> {
  explicit Packer(ByteSink& s) : msgpack::packer<ByteSink>(s), sink(s) {}
  void pack_f32(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const char b[5] = {char(0xca), char(u >> 24), char(u >> 16), char(u >> 8), char(u)};
    sink.write(b, sizeof b);
  }
  ByteSink& sink;
};
using Object = msgpack::object;

// ---- values ----
// Token ids, embeddings and id lists travel as raw little-endian arrays in a msgpack bin (every rank
// of one job runs on the same architecture), read in place from the received buffer.

template <typename T>
void write_value(Packer& pk, const std::vector<T>& v) {
  static_assert(std::is_arithmetic_v<T>);
  const uint32_t bytes = uint32_t(v.size() * sizeof(T));
  pk.pack_bin(bytes);
  pk.pack_bin_body(reinterpret_cast<const char*>(v.data()), bytes);
}

template <typename T>
void read_value(const Object& o, std::vector<T>& v) {
  if (o.type != msgpack::type::BIN || o.via.bin.size % sizeof(T) != 0) throw msgpack::type_error();
  v.resize(o.via.bin.size / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), o.via.bin.ptr, o.via.bin.size);
}

template <typename T>
void write_value(Packer& pk, const T& v) {
  pk.pack(v);
}
void write_value(Packer& pk, float v) { pk.pack_f32(v); }

// msgpack-c's conversions throw msgpack::type_error on a wrong type and on integers out of range.
template <typename T>
void read_value(const Object& o, T& v) {
  o.convert(v);
}

void write_value(Packer& pk, const std::optional<uint64_t>& v) { pk.pack(*v); }
void read_value(const Object& o, std::optional<uint64_t>& v) { v = o.as<uint64_t>(); }

void write_value(Packer& pk, Pooling p) { pk.pack(uint8_t(p)); }
void read_value(const Object& o, Pooling& p) {
  const auto v = o.as<uint8_t>();
  if (v > uint8_t(Pooling::kCls)) throw msgpack::type_error();
  p = Pooling(v);
}

void write_value(Packer& pk, Finish f) { pk.pack(uint8_t(f)); }
void read_value(const Object& o, Finish& f) {
  const auto v = o.as<uint8_t>();
  if (v > uint8_t(kLastFinish)) throw msgpack::type_error();
  f = Finish(v);
}

// The compiled constraint, as the automaton's own serialization in a bin.
void write_value(Packer& pk, const std::shared_ptr<const constrain::Automaton>& a) {
  const std::string bytes = a->serialize();
  pk.pack_bin(uint32_t(bytes.size()));
  pk.pack_bin_body(bytes.data(), uint32_t(bytes.size()));
}
void read_value(const Object& o, std::shared_ptr<const constrain::Automaton>& a) {
  if (o.type != msgpack::type::BIN) throw msgpack::type_error();
  try {
    a = constrain::Automaton::deserialize(std::string_view(o.via.bin.ptr, o.via.bin.size));
  } catch (const Error& e) {
    fail("control message: field 'constraint': {}", e.what());
  }
}

// logit_bias: (int32 token, float32 bias) records in a bin.
void write_value(Packer& pk, const std::vector<LogitBias>& v) {
  static_assert(sizeof(LogitBias) == 8);
  const uint32_t bytes = uint32_t(v.size() * sizeof(LogitBias));
  pk.pack_bin(bytes);
  pk.pack_bin_body(reinterpret_cast<const char*>(v.data()), bytes);
}
void read_value(const Object& o, std::vector<LogitBias>& v) {
  if (o.type != msgpack::type::BIN || o.via.bin.size % sizeof(LogitBias) != 0) throw msgpack::type_error();
  v.resize(o.via.bin.size / sizeof(LogitBias));
  if (!v.empty()) std::memcpy(v.data(), o.via.bin.ptr, o.via.bin.size);
}

// bad_words: one int32 bin of (length, that many ids) runs; every length >= 1 and the runs fill the
// bin exactly, so the ranks never read past it.
void write_value(Packer& pk, const std::vector<std::vector<int32_t>>& seqs) {
  std::vector<int32_t> flat;
  for (const auto& q : seqs) {
    flat.push_back(int32_t(q.size()));
    flat.insert(flat.end(), q.begin(), q.end());
  }
  write_value(pk, flat);
}
void read_value(const Object& o, std::vector<std::vector<int32_t>>& seqs) {
  std::vector<int32_t> flat;
  read_value(o, flat);
  seqs.clear();
  for (size_t i = 0; i < flat.size();) {
    const int32_t n = flat[i++];
    if (n < 1 || size_t(n) > flat.size() - i) throw msgpack::type_error();
    seqs.emplace_back(flat.begin() + ptrdiff_t(i), flat.begin() + ptrdiff_t(i) + n);
    i += size_t(n);
  }
  if (seqs.empty()) throw msgpack::type_error();  // an empty list is left out, never sent
}

// Prompt positions' logprobs: one bin of int32 n, int32 k, int32 m, then n records of (int32 token,
// float32 logprob, int32 rank, k x (int32 id, float32 logprob), m x float32 token_ids_logprob value).
// Every entry has the same k alternatives and m requested ids.
void write_value(Packer& pk, const std::vector<TokenOut>& v) {
  const int32_t k = v.empty() ? 0 : int32_t(v[0].top.size());
  const int32_t m = v.empty() ? 0 : int32_t(v[0].id_logprobs.size());
  std::vector<uint32_t> words{uint32_t(v.size()), uint32_t(k), uint32_t(m)};
  words.reserve(3 + v.size() * size_t(3 + 2 * k + m));
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
  };
  for (const TokenOut& t : v) {
    DP_CHECK(int32_t(t.top.size()) == k, "prompt logprob entries with different numbers of alternatives");
    DP_CHECK(int32_t(t.id_logprobs.size()) == m, "prompt logprob entries with different numbers of requested ids");
    words.push_back(uint32_t(t.token));
    words.push_back(bits(t.logprob));
    words.push_back(uint32_t(t.rank));
    for (const TokenLogprob& a : t.top) {
      words.push_back(uint32_t(a.token));
      words.push_back(bits(a.logprob));
    }
    for (float lp : t.id_logprobs) words.push_back(bits(lp));
  }
  write_value(pk, words);
}
void read_value(const Object& o, std::vector<TokenOut>& v) {
  std::vector<uint32_t> words;
  read_value(o, words);
  if (words.size() < 3) throw msgpack::type_error();
  const uint64_t n = words[0], k = words[1], m = words[2];
  // (n, k and m first bounded by the size, so the product cannot wrap.)
  if (n > words.size() || k > words.size() || m > words.size() || words.size() != 3 + n * (3 + 2 * k + m))
    throw msgpack::type_error();
  auto flt = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  };
  v.resize(size_t(n));
  size_t w = 3;
  for (TokenOut& t : v) {
    t.token = int32_t(words[w++]);
    t.logprob = flt(words[w++]);
    t.rank = int32_t(words[w++]);
    t.top.resize(size_t(k));
    for (TokenLogprob& a : t.top) {
      a.token = int32_t(words[w++]);
      a.logprob = flt(words[w++]);
    }
    t.id_logprobs.resize(size_t(m));
    for (float& lp : t.id_logprobs) lp = flt(words[w++]);
  }
}

// ---- named fields ----

template <typename T>
struct Field {
  const char* name;
  void (*write)(Packer&, const T&);
  void (*read)(const Object&, T&);
  bool (*present)(const T&);  // null: required, always written; else optional, written when true
};

// A field stored at `path` (an expression on `v`), required or optional.
#define WIRE_FIELD(T, name, path)                                               \
  Field<T> {                                                                    \
    name, [](Packer& pk, const T& v) { write_value(pk, v.path); },              \
        [](const Object& o, T& v) { read_value(o, v.path); }, nullptr           \
  }
#define WIRE_OPTIONAL(T, name, path, when)                                      \
  Field<T> {                                                                    \
    name, [](Packer& pk, const T& v) { write_value(pk, v.path); },              \
        [](const Object& o, T& v) { read_value(o, v.path); },                   \
        [](const T& v) { return bool(when); }                                   \
  }

constexpr std::string_view kVersionKey = "v";

void write_key(Packer& pk, std::string_view k) {
  pk.pack_str(uint32_t(k.size()));
  pk.pack_str_body(k.data(), uint32_t(k.size()));
}

// A field name as it may appear in an error message (bytes from the wire, so shortened).
std::string shown(std::string_view k) { return std::string(k.substr(0, 40)); }

template <typename T, size_t N>
void write_fields(Packer& pk, const T& v, const std::array<Field<T>, N>& fields, bool versioned) {
  uint32_t n = versioned ? 1 : 0;
  for (const auto& f : fields) n += !f.present || f.present(v);
  pk.pack_map(n);
  if (versioned) {
    write_key(pk, kVersionKey);
    pk.pack(kControlMessageVersion);
  }
  for (const auto& f : fields) {
    if (f.present && !f.present(v)) continue;
    write_key(pk, f.name);
    f.write(pk, v);
  }
}

template <typename T, size_t N>
void read_fields(const Object& o, T& out, const std::array<Field<T>, N>& fields, const char* what, bool versioned) {
  static_assert(N <= 64);
  if (o.type != msgpack::type::MAP) fail("{}: expected a map of named fields", what);
  uint64_t seen = 0;
  bool version_seen = false;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) fail("{}: a field name is not a string", what);
    const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    if (versioned && key == kVersionKey) {
      if (version_seen) fail("{}: field 'v' appears twice", what);
      version_seen = true;
      if (kv.val.type != msgpack::type::POSITIVE_INTEGER || kv.val.via.u64 != kControlMessageVersion)
        fail("{}: format version {} but this rank reads version {}: every rank must run the same dpserve build",
             what, kv.val.type == msgpack::type::POSITIVE_INTEGER ? std::to_string(kv.val.via.u64) : "(not a number)",
             kControlMessageVersion);
      continue;
    }
    size_t f = 0;
    while (f < N && key != fields[f].name) ++f;
    if (f == N) fail("{}: unknown field '{}'", what, shown(key));
    if (seen >> f & 1) fail("{}: field '{}' appears twice", what, shown(key));
    seen |= uint64_t(1) << f;
    try {
      fields[f].read(kv.val, out);
    } catch (const msgpack::type_error&) {
      fail("{}: field '{}' has the wrong type or is out of range", what, fields[f].name);
    }
  }
  if (versioned && !version_seen) fail("{}: no format version (field 'v')", what);
  for (size_t f = 0; f < N; ++f)
    if (!fields[f].present && !(seen >> f & 1)) fail("{}: required field '{}' is missing", what, fields[f].name);
}

// ---- the messages ----

const std::array kImage = {
    WIRE_FIELD(ImageInput, "height", height),
    WIRE_FIELD(ImageInput, "width", width),
    WIRE_OPTIONAL(ImageInput, "rgb", rgb, !v.rgb.empty()),
    WIRE_FIELD(ImageInput, "hash", hash),
};

// Images: an array of maps. Each is checked whole once read, so the ranks never index outside rgb.
void write_value(Packer& pk, const std::vector<ImageInput>& imgs) {
  pk.pack_array(uint32_t(imgs.size()));
  for (const auto& img : imgs) write_fields(pk, img, kImage, false);
}
void read_value(const Object& o, std::vector<ImageInput>& imgs) {
  if (o.type != msgpack::type::ARRAY) throw msgpack::type_error();
  imgs.resize(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    ImageInput& img = imgs[i];
    read_fields(o.via.array.ptr[i], img, kImage, "control message: image", false);
    if (img.height <= 0 || img.width <= 0)
      fail("control message: image {} has a non-positive size {}x{}", i, img.height, img.width);
    // No bytes: they follow in image chunks (checked against images_follow with the request).
    if (!img.rgb.empty() && img.rgb.size() != uint64_t(img.height) * uint64_t(img.width) * 3)
      fail("control message: image {} is {}x{} but carries {} RGB bytes", i, img.height, img.width, img.rgb.size());
  }
}

const std::array kThinkBudget = {
    WIRE_FIELD(ThinkBudgetSpec, "budget", budget),
    WIRE_FIELD(ThinkBudgetSpec, "open", open_id),
    WIRE_FIELD(ThinkBudgetSpec, "close", close_id),
    WIRE_OPTIONAL(ThinkBudgetSpec, "open_at_start", open_at_start, v.open_at_start),
    WIRE_FIELD(ThinkBudgetSpec, "forced", forced),
};

// Checked whole once read: the ranks index `forced` while the block is being closed.
void write_value(Packer& pk, const ThinkBudgetSpec& t) { write_fields(pk, t, kThinkBudget, false); }
void read_value(const Object& o, ThinkBudgetSpec& t) {
  read_fields(o, t, kThinkBudget, "control message: think_budget", false);
  if (t.budget < 0 || t.open_id < 0 || t.close_id < 0 || t.forced.empty() || t.forced.back() != t.close_id)
    fail("control message: think_budget: needs a budget >= 0, both tags, and forced ids that end with the closing tag");
  for (int32_t id : t.forced)
    if (id < 0) fail("control message: think_budget: forced holds a negative id {}", id);
}

const std::array kParams = {
    WIRE_FIELD(SamplingParams, "temperature", temperature),
    WIRE_FIELD(SamplingParams, "top_k", top_k),
    WIRE_FIELD(SamplingParams, "top_p", top_p),
    WIRE_FIELD(SamplingParams, "min_p", min_p),
    WIRE_FIELD(SamplingParams, "repetition_penalty", repetition_penalty),
    WIRE_FIELD(SamplingParams, "frequency_penalty", frequency_penalty),
    WIRE_FIELD(SamplingParams, "presence_penalty", presence_penalty),
    WIRE_OPTIONAL(SamplingParams, "seed", seed, v.seed.has_value()),
    WIRE_FIELD(SamplingParams, "max_new_tokens", max_new_tokens),
    WIRE_OPTIONAL(SamplingParams, "min_new_tokens", min_new_tokens, v.min_new_tokens != 0),
    WIRE_FIELD(SamplingParams, "ignore_eos", ignore_eos),
    WIRE_OPTIONAL(SamplingParams, "stop_token_ids", stop_token_ids, !v.stop_token_ids.empty()),
};

void write_value(Packer& pk, const SamplingParams& p) { write_fields(pk, p, kParams, false); }
void read_value(const Object& o, SamplingParams& p) { read_fields(o, p, kParams, "control message: params", false); }

const std::array kNewRequest = {
    WIRE_FIELD(NewRequest, "id", id),
    WIRE_FIELD(NewRequest, "group", group),
    WIRE_FIELD(NewRequest, "input_ids", req.input_ids),
    WIRE_OPTIONAL(NewRequest, "input_embeds", req.input_embeds, !v.req.input_embeds.empty()),
    WIRE_OPTIONAL(NewRequest, "embed_rows", req.input_embeds_rows, v.req.input_embeds_rows != 0),
    WIRE_FIELD(NewRequest, "params", req.params),
    WIRE_OPTIONAL(NewRequest, "top_logprobs", req.top_logprobs, v.req.top_logprobs != 0),
    WIRE_OPTIONAL(NewRequest, "return_logprob", req.return_logprob, v.req.return_logprob),
    WIRE_OPTIONAL(NewRequest, "prompt_logprobs", req.prompt_logprobs, v.req.prompt_logprobs),
    WIRE_OPTIONAL(NewRequest, "constraint", req.constraint, v.req.constraint != nullptr),
    WIRE_OPTIONAL(NewRequest, "logit_bias", req.logit_bias, !v.req.logit_bias.empty()),
    WIRE_OPTIONAL(NewRequest, "allowed_token_ids", req.allowed_token_ids, !v.req.allowed_token_ids.empty()),
    WIRE_OPTIONAL(NewRequest, "bad_words", req.bad_words, !v.req.bad_words.empty()),
    WIRE_OPTIONAL(NewRequest, "think_budget", req.think_budget, v.req.think_budget.active()),
    WIRE_OPTIONAL(NewRequest, "prediction", req.prediction, !v.req.prediction.empty()),
    WIRE_OPTIONAL(NewRequest, "images", req.images, !v.req.images.empty()),
    WIRE_OPTIONAL(NewRequest, "images_follow", images_follow, v.images_follow),
    WIRE_OPTIONAL(NewRequest, "pooling", req.pooling, v.req.pooling != Pooling::kNone),
    WIRE_OPTIONAL(NewRequest, "score_ids", req.score_ids, !v.req.score_ids.empty()),
    WIRE_OPTIONAL(NewRequest, "token_ids_logprob", req.token_ids_logprob, !v.req.token_ids_logprob.empty()),
    WIRE_OPTIONAL(NewRequest, "cache_salt", req.cache_salt, !v.req.cache_salt.empty()),
    WIRE_OPTIONAL(NewRequest, "priority", req.priority, v.req.priority != 0),
    // The LoRA adapter slot: present only for an adapter (>= 0); decode_control checks it names one.
    Field<NewRequest>{"lora", [](Packer& pk, const NewRequest& v) { pk.pack(v.req.lora); },
                      [](const Object& o, NewRequest& v) {
                        const auto slot = o.as<int32_t>();
                        if (slot < 0) throw msgpack::type_error();
                        v.req.lora = slot;
                      },
                      [](const NewRequest& v) { return v.req.lora >= 0; }},
};

void write_value(Packer& pk, const std::vector<NewRequest>& reqs) {
  pk.pack_array(uint32_t(reqs.size()));
  for (const auto& r : reqs) write_fields(pk, r, kNewRequest, false);
}
void read_value(const Object& o, std::vector<NewRequest>& reqs) {
  if (o.type != msgpack::type::ARRAY) throw msgpack::type_error();
  reqs.resize(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    NewRequest& r = reqs[i];
    read_fields(o.via.array.ptr[i], r, kNewRequest, "control message: new request", false);
    if (r.images_follow && r.req.images.empty()) fail("control message: request {}: images_follow without images", r.id);
    for (int32_t id : r.req.token_ids_logprob)
      if (id < 0) fail("control message: request {}: token_ids_logprob holds a negative id {}", r.id, id);
    for (int32_t id : r.req.allowed_token_ids)
      if (id < 0) fail("control message: request {}: allowed_token_ids holds a negative id {}", r.id, id);
    for (int32_t id : r.req.prediction)
      if (id < 0) fail("control message: request {}: prediction holds a negative id {}", r.id, id);
    for (const auto& q : r.req.bad_words)
      for (int32_t id : q)
        if (id < 0) fail("control message: request {}: bad_words holds a negative id {}", r.id, id);
    for (const ImageInput& img : r.req.images)
      if (img.rgb.empty() != r.images_follow)
        fail("control message: request {}: an image {} RGB bytes but images_follow is {}", r.id,
             img.rgb.empty() ? "without" : "with", r.images_follow);
  }
}

// Image chunks: (u64 id, i32 group, u32 image, u64 offset, u64 size) records in one bin.
static_assert(sizeof(ImageChunk) == 32);
void write_value(Packer& pk, const std::vector<ImageChunk>& v) {
  const uint32_t bytes = uint32_t(v.size() * sizeof(ImageChunk));
  pk.pack_bin(bytes);
  pk.pack_bin_body(reinterpret_cast<const char*>(v.data()), bytes);
}
void read_value(const Object& o, std::vector<ImageChunk>& v) {
  if (o.type != msgpack::type::BIN || o.via.bin.size % sizeof(ImageChunk) != 0) throw msgpack::type_error();
  v.resize(o.via.bin.size / sizeof(ImageChunk));
  if (!v.empty()) std::memcpy(v.data(), o.via.bin.ptr, o.via.bin.size);
  for (const ImageChunk& c : v)
    if (c.size == 0 || c.offset + c.size < c.offset) throw msgpack::type_error();
}

const std::array kStepControl = {
    WIRE_FIELD(StepControl, "step", step),
    WIRE_FIELD(StepControl, "new", new_requests),
    WIRE_FIELD(StepControl, "cancels", cancels),
    WIRE_FIELD(StepControl, "shutdown", shutdown),
    WIRE_OPTIONAL(StepControl, "flush_cache", flush_cache, v.flush_cache),
    WIRE_OPTIONAL(StepControl, "image_chunks", image_chunks, !v.image_chunks.empty()),
    WIRE_OPTIONAL(StepControl, "lora_load_slot", lora_load_slot, v.lora_load_slot >= 0),
    WIRE_OPTIONAL(StepControl, "lora_load_path", lora_load_path, !v.lora_load_path.empty()),
    WIRE_OPTIONAL(StepControl, "lora_unload_slot", lora_unload_slot, v.lora_unload_slot >= 0),
};

// The chosen token's alternatives, as two parallel arrays.
void write_top_ids(Packer& pk, const OutToken& t) {
  std::vector<int32_t> ids;
  for (const auto& a : t.tok.top) ids.push_back(a.token);
  write_value(pk, ids);
}
void write_top_logprobs(Packer& pk, const OutToken& t) {
  std::vector<float> lps;
  for (const auto& a : t.tok.top) lps.push_back(a.logprob);
  write_value(pk, lps);
}
// Read into tok.top: ids first fill the tokens, logprobs the values; the sizes must agree
// (checked once the whole entry is read).
void read_top_ids(const Object& o, OutToken& t) {
  std::vector<int32_t> ids;
  read_value(o, ids);
  t.tok.top.resize(std::max(t.tok.top.size(), ids.size()));
  for (size_t i = 0; i < ids.size(); ++i) t.tok.top[i].token = ids[i];
  if (t.tok.top.size() != ids.size()) throw msgpack::type_error();
}
void read_top_logprobs(const Object& o, OutToken& t) {
  std::vector<float> lps;
  read_value(o, lps);
  t.tok.top.resize(std::max(t.tok.top.size(), lps.size()));
  for (size_t i = 0; i < lps.size(); ++i) t.tok.top[i].logprob = lps[i];
  if (t.tok.top.size() != lps.size()) throw msgpack::type_error();
}
bool has_top(const OutToken& t) { return !t.tok.top.empty(); }

const std::array kOutToken = {
    WIRE_FIELD(OutToken, "id", id),
    WIRE_OPTIONAL(OutToken, "token", tok.token, v.has_token),
    WIRE_OPTIONAL(OutToken, "logprob", tok.logprob, v.has_token),
    Field<OutToken>{"top_ids", &write_top_ids, &read_top_ids, &has_top},
    Field<OutToken>{"top_logprobs", &write_top_logprobs, &read_top_logprobs, &has_top},
    WIRE_OPTIONAL(OutToken, "prompt", prompt, !v.prompt.empty()),
    WIRE_OPTIONAL(OutToken, "finish", finish, v.finish != Finish::kNone),
    WIRE_OPTIONAL(OutToken, "error", error, !v.error.empty()),
    WIRE_FIELD(OutToken, "prompt_tokens", prompt_tokens),
    WIRE_FIELD(OutToken, "cached_tokens", cached_tokens),
    WIRE_OPTIONAL(OutToken, "spec_drafted", spec_drafted, v.spec_drafted != 0),
    WIRE_OPTIONAL(OutToken, "spec_accepted", spec_accepted, v.spec_accepted != 0),
    WIRE_OPTIONAL(OutToken, "spec_predicted", spec_predicted, v.spec_predicted),
    WIRE_OPTIONAL(OutToken, "embedding", embedding, !v.embedding.empty()),
    WIRE_OPTIONAL(OutToken, "scores", scores, !v.scores.empty()),
    WIRE_OPTIONAL(OutToken, "id_logprobs", tok.id_logprobs, !v.tok.id_logprobs.empty()),
};

void write_value(Packer& pk, const std::vector<OutToken>& outs) {
  pk.pack_array(uint32_t(outs.size()));
  for (const auto& t : outs) write_fields(pk, t, kOutToken, false);
}
void read_value(const Object& o, std::vector<OutToken>& outs) {
  if (o.type != msgpack::type::ARRAY) throw msgpack::type_error();
  outs.resize(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    const Object& e = o.via.array.ptr[i];
    read_fields(e, outs[i], kOutToken, "group report: output", false);
    // The token and its logprob come together, and so do the two halves of the alternatives.
    bool has_token = false, has_logprob = false, has_ids = false, has_lps = false;
    for (uint32_t k = 0; k < e.via.map.size; ++k) {
      const std::string_view key(e.via.map.ptr[k].key.via.str.ptr, e.via.map.ptr[k].key.via.str.size);
      has_token |= key == "token";
      has_logprob |= key == "logprob";
      has_ids |= key == "top_ids";
      has_lps |= key == "top_logprobs";
    }
    if (has_token != has_logprob || has_ids != has_lps)
      fail("group report: output: 'token' / 'logprob' and 'top_ids' / 'top_logprobs' come in pairs");
    outs[i].has_token = has_token;
  }
}

const std::array kGroupReport = {
    WIRE_FIELD(GroupReport, "group", group),
    WIRE_FIELD(GroupReport, "running", running),
    WIRE_FIELD(GroupReport, "waiting", waiting),
    WIRE_FIELD(GroupReport, "pages_used", pages_used),
    WIRE_FIELD(GroupReport, "pages_total", pages_total),
    WIRE_FIELD(GroupReport, "prefix_hit_tokens", prefix_hit_tokens),
    WIRE_FIELD(GroupReport, "prefix_query_tokens", prefix_query_tokens),
    WIRE_FIELD(GroupReport, "step_tokens", step_tokens),
    WIRE_FIELD(GroupReport, "preemptions", preemptions),
    WIRE_FIELD(GroupReport, "cached_pages", cached_pages),
    WIRE_FIELD(GroupReport, "outs", outs),
    WIRE_OPTIONAL(GroupReport, "waiting_tokens", waiting_tokens, v.waiting_tokens != 0),
};

#undef WIRE_FIELD
#undef WIRE_OPTIONAL

// Binary fields (token ids, embeddings) are read in place from the received buffer instead of
// being copied into msgpack's zone first: large input_embeds are copied once, into the request.
bool reference_bin(msgpack::type::object_type type, std::size_t, void*) { return type == msgpack::type::BIN; }

msgpack::object_handle parse(const std::byte* data, size_t n, const char* what) {
  // No container can hold more elements than the message has bytes; without these limits a few
  // bytes declaring a 4-billion-element array would make msgpack allocate that many objects. The
  // format nests 5 levels deep (message, list, entry, params or images, image).
  const size_t cap = std::min<size_t>(n, UINT32_MAX);
  const msgpack::unpack_limit limit(cap, cap, cap, cap, cap, 8);
  try {
    return msgpack::unpack(reinterpret_cast<const char*>(data), n, &reference_bin, nullptr, limit);
  } catch (const std::exception& e) {
    fail("{}: malformed msgpack: {}", what, e.what());
  }
}

template <typename T, size_t N>
T decode(const std::byte* data, size_t n, const std::array<Field<T>, N>& fields, const char* what) {
  auto h = parse(data, n, what);
  T out;
  read_fields(h.get(), out, fields, what, true);
  return out;
}

}  // namespace

std::vector<std::byte> encode(const StepControl& c) {
  ByteSink sink;
  size_t payload = 64 + 8 * c.cancels.size() + sizeof(ImageChunk) * c.image_chunks.size();
  for (const auto& n : c.new_requests) {
    payload += 256 + 4 * (n.req.input_ids.size() + n.req.input_embeds.size() + n.req.params.stop_token_ids.size() +
                          n.req.allowed_token_ids.size());
    for (const auto& img : n.req.images) payload += 64 + img.rgb.size();
  }
  sink.out.reserve(payload);  // one allocation even for megabytes of embeddings
  Packer pk(sink);
  write_fields(pk, c, kStepControl, true);
  return std::move(sink.out);
}

StepControl decode_control(const std::byte* data, size_t n, const std::vector<bool>& lora_loaded) {
  StepControl c = decode(data, n, kStepControl, "control message");
  const int32_t slots = int32_t(lora_loaded.size());
  auto held = [&](int32_t s) { return s >= 0 && s < slots && lora_loaded[size_t(s)]; };
  for (const NewRequest& r : c.new_requests)
    if (r.req.lora >= 0 && !held(r.req.lora))
      fail("control message: request {}: field 'lora' is adapter slot {}, which is not loaded ({} slots)", r.id,
           r.req.lora, slots);
  if (c.lora_load_slot < -1) fail("control message: field 'lora_load_slot' is {}: a slot is >= 0", c.lora_load_slot);
  const bool load = c.lora_load_slot >= 0 || !c.lora_load_path.empty();
  if (load && (c.lora_load_slot < 0 || c.lora_load_path.empty()))
    fail("control message: field 'lora_load_slot' and 'lora_load_path' come together (slot {}, path '{}')",
         c.lora_load_slot, c.lora_load_path);
  if (load && (c.lora_load_slot > slots || held(c.lora_load_slot)))
    fail("control message: field 'lora_load_slot' is slot {}, which is loaded or past the next new one ({} slots)",
         c.lora_load_slot, slots);
  if (c.lora_unload_slot < -1 || (c.lora_unload_slot >= 0 && !held(c.lora_unload_slot)))
    fail("control message: field 'lora_unload_slot' is slot {}, which is not loaded", c.lora_unload_slot);
  if (load && c.lora_unload_slot >= 0)
    fail("control message: fields 'lora_load_slot' and 'lora_unload_slot' in one step (one adapter change per step)");
  return c;
}

StepControl decode_control(const std::byte* data, size_t n, int32_t lora_count) {
  return decode_control(data, n, std::vector<bool>(size_t(std::max(lora_count, 0)), true));
}

std::vector<std::byte> encode(const GroupReport& r) {
  ByteSink sink;
  size_t payload = 256 + 96 * r.outs.size();
  for (const auto& o : r.outs) payload += 4 * (o.embedding.size() + o.scores.size());
  sink.out.reserve(payload);
  Packer pk(sink);
  write_fields(pk, r, kGroupReport, true);
  return std::move(sink.out);
}

GroupReport decode_report(const std::byte* data, size_t n) { return decode(data, n, kGroupReport, "group report"); }

}  // namespace dpserve
