// The per-step wire format (engine/control_message.h): every field survives a round trip, optional
// fields cost nothing when unused, a message written by hand from the msgpack spec (not by our
// encoder) decodes to the values it spells, and everything a lockstep protocol must refuse is
// refused with the field's name.
#include "engine/control_message.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>

#include "constrain/automaton.h"
#include "constrain/regex_compiler.h"
#include "core/check.h"

namespace dpserve {
namespace {

// ---- a msgpack writer of our own, straight from the spec (github.com/msgpack/msgpack/spec.md) ----
struct W {
  std::vector<std::byte> b;
  W& raw(std::initializer_list<int> bytes) {
    for (int x : bytes) b.push_back(std::byte(x));
    return *this;
  }
  W& map(int n) { return raw({0x80 | n}); }  // fixmap, n < 16
  W& arr(int n) { return raw({0x90 | n}); }  // fixarray, n < 16
  W& str(const std::string& s) {
    raw({0xa0 | int(s.size())});  // fixstr, < 32 bytes
    for (char c : s) b.push_back(std::byte(c));
    return *this;
  }
  W& uint(uint64_t v) {
    if (v < 128) return raw({int(v)});  // positive fixint
    raw({0xcf});                         // uint 64, big-endian
    for (int i = 7; i >= 0; --i) b.push_back(std::byte((v >> (8 * i)) & 0xff));
    return *this;
  }
  W& neg1() { return raw({0xff}); }  // negative fixint -1
  W& f32(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    raw({0xca});
    for (int i = 3; i >= 0; --i) b.push_back(std::byte((u >> (8 * i)) & 0xff));
    return *this;
  }
  W& boolean(bool v) { return raw({v ? 0xc3 : 0xc2}); }
  W& bin(const void* p, size_t n) {  // bin 8
    raw({0xc4, int(n)});
    const auto* c = static_cast<const std::byte*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  // Key and value of one field.
  W& kv(const std::string& k) { return str(k); }
};

// The 9 required sampling fields, each spelled out.
W& greedy_params(W& w, int64_t max_new) {
  w.map(9);
  w.kv("temperature").f32(0);
  w.kv("top_k").neg1();
  w.kv("top_p").f32(1);
  w.kv("min_p").f32(0);
  w.kv("repetition_penalty").f32(1);
  w.kv("frequency_penalty").f32(0);
  w.kv("presence_penalty").f32(0);
  w.kv("max_new_tokens").uint(uint64_t(max_new));
  w.kv("ignore_eos").boolean(true);
  return w;
}

// A control message with one request (ids 5 and 70000) for group 1 and one cancel, by hand.
W hand_control(int version = 1) {
  const int32_t ids[] = {5, 70000};
  const uint64_t cancels[] = {9};
  W w;
  w.map(5);
  w.kv("v").uint(uint64_t(version));
  w.kv("step").uint(7);
  w.kv("new").arr(1);
  w.map(4);
  w.kv("id").uint(3);
  w.kv("group").uint(1);
  w.kv("input_ids").bin(ids, sizeof ids);
  w.kv("params");
  greedy_params(w, 300);
  w.kv("cancels").bin(cancels, sizeof cancels);
  w.kv("shutdown").boolean(false);
  return w;
}

StepControl decode(const W& w) { return decode_control(w.b.data(), w.b.size()); }

std::string error_of(const std::vector<std::byte>& b, bool report = false) {
  try {
    if (report)
      decode_report(b.data(), b.size());
    else
      decode_control(b.data(), b.size());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

NewRequest full_request() {
  NewRequest n;
  n.id = 0xfedcba9876543210ull;
  n.group = 3;
  n.req.input_ids = {};
  n.req.input_embeds = {0.5f, -1.25f, 3e-8f, 7.0f, -0.0f, 1e30f};
  n.req.input_embeds_rows = 2;
  auto& p = n.req.params;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.1f;
  p.frequency_penalty = -0.0f;  // the sign of a zero survives too
  p.presence_penalty = 0.25f;
  p.seed = 0xffffffffffffffffull;
  p.max_new_tokens = int64_t(1) << 40;
  p.min_new_tokens = (int64_t(1) << 40) - 1;
  p.ignore_eos = true;
  p.stop_token_ids = {2, 151645, 0};
  n.req.top_logprobs = 5;
  n.req.return_logprob = true;
  n.req.prompt_logprobs = true;
  n.req.cache_salt = std::string("tenant\0salt", 11);  // bytes, an embedded NUL included
  n.req.priority = -2147483647 - 1;
  return n;
}

void expect_same(const NewRequest& a, const NewRequest& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.group, b.group);
  EXPECT_EQ(a.req.input_ids, b.req.input_ids);
  ASSERT_EQ(a.req.input_embeds.size(), b.req.input_embeds.size());
  // Bit patterns, so -0.0 and every rounding survive.
  // (memcmp only when there are bytes: an empty vector's data() may be null, which memcmp forbids.)
  if (!a.req.input_embeds.empty()) {
    EXPECT_EQ(0, std::memcmp(a.req.input_embeds.data(), b.req.input_embeds.data(), 4 * a.req.input_embeds.size()));
  }
  EXPECT_EQ(a.req.input_embeds_rows, b.req.input_embeds_rows);
  const auto &p = a.req.params, &q = b.req.params;
  EXPECT_EQ(p.temperature, q.temperature);
  EXPECT_EQ(p.top_k, q.top_k);
  EXPECT_EQ(p.top_p, q.top_p);
  EXPECT_EQ(p.min_p, q.min_p);
  EXPECT_EQ(p.repetition_penalty, q.repetition_penalty);
  EXPECT_EQ(p.frequency_penalty, q.frequency_penalty);
  EXPECT_EQ(std::signbit(p.frequency_penalty), std::signbit(q.frequency_penalty));
  EXPECT_EQ(p.presence_penalty, q.presence_penalty);
  EXPECT_EQ(p.seed, q.seed);
  EXPECT_EQ(p.max_new_tokens, q.max_new_tokens);
  EXPECT_EQ(p.min_new_tokens, q.min_new_tokens);
  EXPECT_EQ(p.ignore_eos, q.ignore_eos);
  EXPECT_EQ(p.stop_token_ids, q.stop_token_ids);
  EXPECT_EQ(a.req.top_logprobs, b.req.top_logprobs);
  EXPECT_EQ(a.req.return_logprob, b.req.return_logprob);
  EXPECT_EQ(a.req.prompt_logprobs, b.req.prompt_logprobs);
  EXPECT_EQ(a.req.cache_salt, b.req.cache_salt);
  EXPECT_EQ(a.req.priority, b.req.priority);
}

TEST(ControlMessage, EveryFieldSurvivesTheRoundTrip) {
  StepControl c;
  c.step = 123456789012ull;
  c.new_requests.push_back(full_request());
  NewRequest plain;
  plain.id = 1;
  plain.req.input_ids = {1, 2, 3, 2147483647};
  c.new_requests.push_back(plain);
  c.cancels = {4, 0, 0xffffffffffffffffull};
  c.shutdown = true;
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  EXPECT_EQ(d.step, c.step);
  ASSERT_EQ(d.new_requests.size(), 2u);
  expect_same(d.new_requests[0], c.new_requests[0]);
  expect_same(d.new_requests[1], c.new_requests[1]);
  EXPECT_FALSE(d.new_requests[1].req.params.seed.has_value());
  EXPECT_EQ(d.cancels, c.cancels);
  EXPECT_TRUE(d.shutdown);
}

TEST(ControlMessage, ReportRoundTrip) {
  GroupReport r;
  r.group = 2;
  r.running = 64;
  r.waiting = 3;
  r.pages_used = 100;
  r.pages_total = 4096;
  r.prefix_hit_tokens = int64_t(1) << 50;
  r.prefix_query_tokens = 7;
  r.step_tokens = 65;
  r.preemptions = 11;
  r.cached_pages = 12;
  r.waiting_tokens = 4100;
  OutToken a;
  a.id = 5;
  a.has_token = true;
  a.tok.token = 151643;
  a.tok.logprob = -0.125f;
  a.tok.top = {{151643, -0.125f}, {17, -2.5f}};
  a.finish = Finish::kLength;
  a.prompt_tokens = 12;
  a.cached_tokens = 8;
  a.spec_drafted = 4;
  a.spec_accepted = 3;
  a.spec_predicted = true;
  a.prompt = {{3, -1.5f, {{3, -1.5f}, {9, -0.0f}}, {-0.75f, -INFINITY, -1.5f}, 1},
              {151935, -7.25f, {{4, -0.25f}, {1, -3.0f}}, {-9.5f, -INFINITY, -0.0f}, 151936}};
  OutToken b;
  b.id = 6;
  b.finish = Finish::kError;
  b.error = "input_embeds evicted";
  r.outs = {a, b};
  const auto bytes = encode(r);
  const GroupReport d = decode_report(bytes.data(), bytes.size());
  EXPECT_EQ(d.group, 2);
  EXPECT_EQ(d.running, 64);
  EXPECT_EQ(d.waiting, 3);
  EXPECT_EQ(d.pages_used, 100);
  EXPECT_EQ(d.pages_total, 4096);
  EXPECT_EQ(d.prefix_hit_tokens, int64_t(1) << 50);
  EXPECT_EQ(d.prefix_query_tokens, 7);
  EXPECT_EQ(d.step_tokens, 65);
  EXPECT_EQ(d.preemptions, 11);
  EXPECT_EQ(d.cached_pages, 12);
  EXPECT_EQ(d.waiting_tokens, 4100);
  ASSERT_EQ(d.outs.size(), 2u);
  EXPECT_EQ(d.outs[0].id, 5u);
  EXPECT_TRUE(d.outs[0].has_token);
  EXPECT_EQ(d.outs[0].tok.token, 151643);
  EXPECT_EQ(d.outs[0].tok.logprob, -0.125f);
  ASSERT_EQ(d.outs[0].tok.top.size(), 2u);
  EXPECT_EQ(d.outs[0].tok.top[1].token, 17);
  EXPECT_EQ(d.outs[0].tok.top[1].logprob, -2.5f);
  EXPECT_EQ(d.outs[0].finish, Finish::kLength);
  EXPECT_EQ(d.outs[0].prompt_tokens, 12);
  EXPECT_EQ(d.outs[0].cached_tokens, 8);
  EXPECT_EQ(d.outs[0].spec_drafted, 4);
  EXPECT_EQ(d.outs[0].spec_accepted, 3);
  EXPECT_TRUE(d.outs[0].spec_predicted);
  EXPECT_FALSE(d.outs[1].spec_predicted);
  ASSERT_EQ(d.outs[0].prompt.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const TokenOut &x = a.prompt[i], &y = d.outs[0].prompt[i];
    EXPECT_EQ(x.token, y.token);
    EXPECT_EQ(x.logprob, y.logprob);
    EXPECT_EQ(x.rank, y.rank);  // vLLM's prompt_logprobs rank
    ASSERT_EQ(y.top.size(), 2u);
    for (size_t k = 0; k < 2; ++k) {
      EXPECT_EQ(x.top[k].token, y.top[k].token);
      EXPECT_EQ(x.top[k].logprob, y.top[k].logprob);
      EXPECT_EQ(std::signbit(x.top[k].logprob), std::signbit(y.top[k].logprob));
    }
    ASSERT_EQ(y.id_logprobs.size(), 3u);  // token_ids_logprob over the prompt
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ(x.id_logprobs[k], y.id_logprobs[k]);
      EXPECT_EQ(std::signbit(x.id_logprobs[k]), std::signbit(y.id_logprobs[k]));
    }
  }
  EXPECT_TRUE(d.outs[1].prompt.empty());
  EXPECT_FALSE(d.outs[1].has_token);
  EXPECT_TRUE(d.outs[1].tok.top.empty());
  EXPECT_EQ(d.outs[1].finish, Finish::kError);
  EXPECT_EQ(d.outs[1].error, "input_embeds evicted");
}

TEST(ControlMessage, UnusedOptionalFieldsAreLeftOut) {
  StepControl c;
  NewRequest plain;
  plain.req.input_ids = {1};
  c.new_requests.push_back(plain);
  const auto small = encode(c);
  const std::string text(reinterpret_cast<const char*>(small.data()), small.size());
  for (const char* absent : {"input_embeds", "embed_rows", "seed", "stop_token_ids", "top_logprobs", "return_logprob",
                             "prompt_logprobs", "constraint", "logit_bias", "images", "pooling", "score_ids",
                             "token_ids_logprob", "allowed_token_ids", "bad_words"})
    EXPECT_EQ(text.find(absent), std::string::npos) << absent;
  for (const char* present : {"temperature", "max_new_tokens", "input_ids", "shutdown"})
    EXPECT_NE(text.find(present), std::string::npos) << present;
}

TEST(ControlMessage, ConstraintAndLogitBiasTravel) {
  StepControl c;
  NewRequest n;
  n.id = 7;
  n.req.input_ids = {1};
  n.req.constraint = constrain::Automaton::build(constrain::regex_grammar("a[bc]*(d|ef)"));
  n.req.logit_bias = {{5, -100.0f}, {151645, 2.5f}, {0, -0.0f}};
  c.new_requests.push_back(n);
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  const Request& r = d.new_requests[0].req;
  ASSERT_NE(r.constraint, nullptr);
  EXPECT_EQ(r.constraint->fingerprint(), n.req.constraint->fingerprint());
  EXPECT_EQ(r.constraint->serialize(), n.req.constraint->serialize());
  ASSERT_EQ(r.logit_bias.size(), 3u);
  EXPECT_EQ(r.logit_bias[1].token, 151645);
  EXPECT_EQ(r.logit_bias[1].bias, 2.5f);
  EXPECT_TRUE(std::signbit(r.logit_bias[2].bias));
}

// Embedding and rerank requests: the pooling mode and score ids go out, the pooled vector and the
// logits come back with their exact float bits; a pooling mode no rank knows is refused by name.
TEST(ControlMessage, PoolingAndScoresTravel) {
  StepControl c;
  NewRequest n;
  n.id = 4;
  n.req.input_ids = {1, 2};
  n.req.pooling = Pooling::kMean;
  n.req.score_ids = {9693, 2152};
  c.new_requests.push_back(n);
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  EXPECT_EQ(d.new_requests[0].req.pooling, Pooling::kMean);
  EXPECT_EQ(d.new_requests[0].req.score_ids, (std::vector<int32_t>{9693, 2152}));

  GroupReport r;
  OutToken o;
  o.id = 4;
  o.has_token = true;
  o.embedding = {0.25f, -0.0f, 1e-30f};
  o.scores = {3.5f, -2.0f};
  r.outs.push_back(o);
  const auto rb = encode(r);
  const GroupReport back = decode_report(rb.data(), rb.size());
  ASSERT_EQ(back.outs.size(), 1u);
  ASSERT_EQ(back.outs[0].embedding.size(), 3u);
  EXPECT_EQ(back.outs[0].embedding[0], 0.25f);
  EXPECT_TRUE(std::signbit(back.outs[0].embedding[1]));
  EXPECT_EQ(back.outs[0].embedding[2], 1e-30f);
  EXPECT_EQ(back.outs[0].scores, (std::vector<float>{3.5f, -2.0f}));

  // pooling 4 does not exist: the field is named, no rank guesses.
  std::vector<std::byte> bad = bytes;
  const std::string key = "pooling";
  auto at = std::search(bad.begin(), bad.end(), reinterpret_cast<const std::byte*>(key.data()),
                        reinterpret_cast<const std::byte*>(key.data()) + key.size());
  ASSERT_NE(at, bad.end());
  at += std::ptrdiff_t(key.size());
  ASSERT_EQ(*at, std::byte(2));  // positive fixint: kMean
  *at = std::byte(4);
  EXPECT_NE(error_of(bad).find("'pooling'"), std::string::npos) << error_of(bad);
}

// SGLang's token_ids_logprob: the ids go out in their order, each token's logprobs of them come back
// with their exact float bits (-inf for an id with no probability); a negative id is refused by name.
TEST(ControlMessage, TokenIdsLogprobTravel) {
  StepControl c;
  NewRequest n;
  n.id = 5;
  n.req.input_ids = {1, 2};
  n.req.return_logprob = true;
  n.req.token_ids_logprob = {300, 5, 17, 0};
  c.new_requests.push_back(n);
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  EXPECT_EQ(d.new_requests[0].req.token_ids_logprob, (std::vector<int32_t>{300, 5, 17, 0}));

  GroupReport r;
  OutToken o;
  o.id = 5;
  o.has_token = true;
  o.tok.token = 17;
  o.tok.logprob = -0.5f;
  o.tok.id_logprobs = {-3.25f, -1e-7f, -0.5f, -std::numeric_limits<float>::infinity()};
  r.outs.push_back(o);
  const auto rb = encode(r);
  const GroupReport back = decode_report(rb.data(), rb.size());
  ASSERT_EQ(back.outs.size(), 1u);
  EXPECT_EQ(back.outs[0].tok.id_logprobs, o.tok.id_logprobs);

  // A negative id: no rank may index the logits with it.
  StepControl neg;
  n.req.token_ids_logprob = {4, -2};
  neg.new_requests.push_back(n);
  const auto nb = encode(neg);
  try {
    decode_control(nb.data(), nb.size());
    FAIL() << "a negative token_ids_logprob id was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token_ids_logprob"), std::string::npos) << e.what();
  }
}

// LoRA: the adapter slot travels only when set; a slot the ranks did not load, or a negative one, is
// refused by name.
TEST(ControlMessage, LoraSlotTravelsAndIsRangeChecked) {
  StepControl c;
  NewRequest base, a;
  base.id = 1;
  base.req.input_ids = {1, 2};
  a = base;
  a.id = 2;
  a.req.lora = 1;
  c.new_requests = {base, a};
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size(), 2);
  ASSERT_EQ(d.new_requests.size(), 2u);
  EXPECT_EQ(d.new_requests[0].req.lora, -1);
  EXPECT_EQ(d.new_requests[1].req.lora, 1);
  const std::string key = "lora";
  const auto* kb = reinterpret_cast<const std::byte*>(key.data());
  // Exactly one "lora" key: the base request leaves it out.
  auto first = std::search(bytes.begin(), bytes.end(), kb, kb + key.size());
  ASSERT_NE(first, bytes.end());
  EXPECT_EQ(std::search(first + 1, bytes.end(), kb, kb + key.size()), bytes.end());

  // Slot 1 with only one adapter loaded (or none: the default).
  try {
    decode_control(bytes.data(), bytes.size(), 1);
    ADD_FAILURE() << "slot 1 of 1 adapter decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'lora'"), std::string::npos) << e.what();
  }
  EXPECT_NE(error_of(bytes).find("'lora'"), std::string::npos) << error_of(bytes);

  // A negative slot on the wire (-1 is the default, so never written) is refused by name.
  std::vector<std::byte> bad = bytes;
  auto at = std::search(bad.begin(), bad.end(), kb, kb + key.size()) + std::ptrdiff_t(key.size());
  ASSERT_EQ(*at, std::byte(1));  // positive fixint 1
  *at = std::byte(0xff);         // negative fixint -1
  try {
    decode_control(bad.data(), bad.size(), 2);
    ADD_FAILURE() << "slot -1 on the wire decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'lora'"), std::string::npos) << e.what();
  }
}

TEST(ControlMessage, ImagesTravel) {
  StepControl c;
  NewRequest n;
  n.id = 9;
  n.req.input_ids = {1, 151655, 151655, 2};
  ImageInput a;
  a.height = 2;
  a.width = 3;
  for (int i = 0; i < 18; ++i) a.rgb.push_back(uint8_t(i * 14 + 3));
  a.hash = 0xfedcba9876543210ull;
  ImageInput b;
  b.height = 1;
  b.width = 1;
  b.rgb = {255, 0, 128};
  b.hash = 0;
  n.req.images = {a, b};
  c.new_requests.push_back(n);
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  const auto& got = d.new_requests[0].req.images;
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const ImageInput& want = n.req.images[i];
    EXPECT_EQ(got[i].height, want.height);
    EXPECT_EQ(got[i].width, want.width);
    EXPECT_EQ(got[i].rgb, want.rgb);
    EXPECT_EQ(got[i].hash, want.hash);
  }
  // Canonical: encoding what was decoded gives the same bytes.
  EXPECT_EQ(encode(d), bytes);
}

// Pipelined images (engine/image_transfer.h): the request carries sizes and hashes only, the bytes
// follow as chunk records; a request whose images and images_follow disagree is refused by name.
TEST(ControlMessage, ImagesFollowInChunks) {
  StepControl c;
  NewRequest n;
  n.id = 4;
  n.group = 1;
  n.req.input_ids = {1, 151655, 2};
  ImageInput a;
  a.height = 28;
  a.width = 56;
  a.hash = 77;
  n.req.images = {a};
  n.images_follow = true;
  c.new_requests.push_back(n);
  c.image_chunks = {{4, 1, 0, 0, 3000}, {4, 1, 0, 3000, 1704}, {9, 0, 2, (uint64_t(1) << 33), 1}};
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  EXPECT_TRUE(d.new_requests[0].images_follow);
  ASSERT_EQ(d.new_requests[0].req.images.size(), 1u);
  EXPECT_TRUE(d.new_requests[0].req.images[0].rgb.empty());
  EXPECT_EQ(d.new_requests[0].req.images[0].hash, 77u);
  ASSERT_EQ(d.image_chunks.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(d.image_chunks[i].id, c.image_chunks[i].id);
    EXPECT_EQ(d.image_chunks[i].group, c.image_chunks[i].group);
    EXPECT_EQ(d.image_chunks[i].image, c.image_chunks[i].image);
    EXPECT_EQ(d.image_chunks[i].offset, c.image_chunks[i].offset);
    EXPECT_EQ(d.image_chunks[i].size, c.image_chunks[i].size);
  }
  EXPECT_EQ(encode(d), bytes);

  StepControl bad = c;
  bad.image_chunks.clear();
  bad.new_requests[0].images_follow = false;  // no bytes, and none to follow
  auto b = encode(bad);
  EXPECT_NE(error_of(b).find("an image without RGB bytes but images_follow is false"), std::string::npos) << error_of(b);
  bad.new_requests[0].images_follow = true;
  bad.new_requests[0].req.images[0].rgb.assign(28 * 56 * 3, 1);  // bytes, and more to follow
  b = encode(bad);
  EXPECT_NE(error_of(b).find("an image with RGB bytes but images_follow is true"), std::string::npos) << error_of(b);
  bad = c;
  bad.image_chunks[1].size = 0;
  b = encode(bad);
  EXPECT_NE(error_of(b).find("'image_chunks' has the wrong type or is out of range"), std::string::npos) << error_of(b);
}

TEST(ControlMessage, CorruptConstraintIsRefusedByName) {
  const int32_t ids[] = {5};
  const char junk[] = "DPA?not an automaton";
  W w;
  w.map(4);
  w.kv("v").uint(1);
  w.kv("step").uint(1);
  w.kv("new").arr(1);
  w.map(5);
  w.kv("id").uint(3);
  w.kv("group").uint(0);
  w.kv("input_ids").bin(ids, sizeof ids);
  w.kv("params");
  greedy_params(w, 10);
  w.kv("constraint").bin(junk, sizeof junk);
  w.kv("shutdown").boolean(false);
  const std::string e = error_of(w.b);
  EXPECT_NE(e.find("field 'constraint'"), std::string::npos) << e;
  // Odd-sized logit_bias records are a type error naming the field.
  W v;
  v.map(4);
  v.kv("v").uint(1);
  v.kv("step").uint(1);
  v.kv("new").arr(1);
  v.map(5);
  v.kv("id").uint(3);
  v.kv("group").uint(0);
  v.kv("input_ids").bin(ids, sizeof ids);
  v.kv("params");
  greedy_params(v, 10);
  v.kv("logit_bias").bin(ids, 4);
  v.kv("shutdown").boolean(false);
  EXPECT_NE(error_of(v.b).find("field 'logit_bias'"), std::string::npos);
}

// vLLM's allowed_token_ids and bad_words: the ids and the word sequences (of different lengths) go out
// and come back as they were; a hand-written bad_words bin whose runs do not fill it, a run of length
// 0, an empty bin or a negative id is refused by name.
TEST(ControlMessage, AllowedTokenIdsAndBadWordsTravel) {
  StepControl c;
  NewRequest n;
  n.id = 9;
  n.req.input_ids = {1};
  n.req.allowed_token_ids = {151645, 0, 7, 7};
  n.req.bad_words = {{42}, {5, 6, 7}, {151000, 3}};
  c.new_requests.push_back(n);
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  EXPECT_EQ(d.new_requests[0].req.allowed_token_ids, n.req.allowed_token_ids);
  EXPECT_EQ(d.new_requests[0].req.bad_words, n.req.bad_words);

  auto with_bad_words = [](const std::vector<int32_t>& flat) {
    const int32_t ids[] = {5};
    const uint64_t none = 0;
    W w;
    w.map(5);
    w.kv("v").uint(1);
    w.kv("step").uint(1);
    w.kv("new").arr(1);
    w.map(5);
    w.kv("id").uint(3);
    w.kv("group").uint(0);
    w.kv("input_ids").bin(ids, sizeof ids);
    w.kv("params");
    greedy_params(w, 10);
    w.kv("bad_words").bin(flat.data(), flat.size() * sizeof(int32_t));
    w.kv("cancels").bin(&none, 0);
    w.kv("shutdown").boolean(false);
    return w.b;
  };
  // The spec's bytes for (length 2: 5, 6), (length 1: 9) decode to those two sequences.
  const auto good = with_bad_words({2, 5, 6, 1, 9});
  const StepControl g = decode_control(good.data(), good.size());
  ASSERT_EQ(g.new_requests.size(), 1u);
  EXPECT_EQ(g.new_requests[0].req.bad_words, (std::vector<std::vector<int32_t>>{{5, 6}, {9}}));
  for (const auto& flat : std::vector<std::vector<int32_t>>{{3, 5, 6}, {0, 5}, {1, 5, 0}, {}, {1, 5, -1}, {2, 5}}) {
    const auto b = with_bad_words(flat);
    const std::string e = error_of(b);
    EXPECT_NE(e.find("bad_words"), std::string::npos) << e;
  }
  StepControl neg;
  n.req.bad_words.clear();
  n.req.allowed_token_ids = {3, -4};
  neg.new_requests.push_back(n);
  const auto nb = encode(neg);
  EXPECT_NE(error_of(nb).find("allowed_token_ids holds a negative id -4"), std::string::npos) << error_of(nb);
}

// Run-time LoRA loads / unloads (/load_lora_adapter): optional, checked against the slots this rank
// holds, one change per step.
TEST(ControlMessage, LoraLoadAndUnloadTravelAndAreChecked) {
  StepControl c;
  c.step = 3;
  c.lora_load_slot = 1;
  c.lora_load_path = "/adapters/a";
  auto bytes = encode(c);
  // Slot 1 free (slot 0 held): decodes; slot 1 held, or past the next new slot: refused by name.
  StepControl d = decode_control(bytes.data(), bytes.size(), std::vector<bool>{true, false});
  EXPECT_EQ(d.lora_load_slot, 1);
  EXPECT_EQ(d.lora_load_path, "/adapters/a");
  EXPECT_EQ(d.lora_unload_slot, -1);
  d = decode_control(bytes.data(), bytes.size(), std::vector<bool>{true});  // the next new slot
  EXPECT_EQ(d.lora_load_slot, 1);
  for (const std::vector<bool>& held : {std::vector<bool>{true, true}, std::vector<bool>{}}) {
    try {
      decode_control(bytes.data(), bytes.size(), held);
      ADD_FAILURE() << "a load into slot 1 decoded with " << held.size() << " slots";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'lora_load_slot'"), std::string::npos) << e.what();
    }
  }

  StepControl u;
  u.lora_unload_slot = 0;
  bytes = encode(u);
  d = decode_control(bytes.data(), bytes.size(), std::vector<bool>{true});
  EXPECT_EQ(d.lora_unload_slot, 0);
  EXPECT_EQ(d.lora_load_slot, -1);
  EXPECT_TRUE(d.lora_load_path.empty());
  try {  // not held
    decode_control(bytes.data(), bytes.size(), std::vector<bool>{false, true});
    ADD_FAILURE() << "an unload of a free slot decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'lora_unload_slot'"), std::string::npos) << e.what();
  }
  // A request naming a slot that exists but is free is refused like one past the end.
  StepControl r;
  NewRequest nr;
  nr.id = 5;
  nr.req.input_ids = {1};
  nr.req.lora = 0;
  r.new_requests = {nr};
  bytes = encode(r);
  EXPECT_EQ(decode_control(bytes.data(), bytes.size(), std::vector<bool>{true}).new_requests[0].req.lora, 0);
  try {
    decode_control(bytes.data(), bytes.size(), std::vector<bool>{false, true});
    ADD_FAILURE() << "a request on a free slot decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'lora'"), std::string::npos) << e.what();
  }
  // Absent when unused: a plain step carries none of the keys.
  bytes = encode(StepControl{});
  const std::string plain(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  EXPECT_EQ(plain.find("lora"), std::string::npos);
}

TEST(ControlMessage, LoraFieldsRefuseHalfAndDoubleChanges) {
  const uint64_t none = 0;
  auto msg = [&](const std::function<void(W&)>& extra, int n_extra) {
    W w;
    w.map(5 + n_extra).kv("v").uint(1).kv("step").uint(1).kv("new").arr(0);
    w.kv("cancels").bin(&none, 0).kv("shutdown").boolean(false);
    extra(w);
    return w.b;
  };
  const std::vector<bool> held{true, false};
  auto err = [&](const std::vector<std::byte>& b) {
    try {
      decode_control(b.data(), b.size(), held);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // A slot without a folder, a folder without a slot.
  EXPECT_NE(err(msg([](W& w) { w.kv("lora_load_slot").uint(1); }, 1)).find("'lora_load_path'"), std::string::npos);
  EXPECT_NE(err(msg([](W& w) { w.kv("lora_load_path").str("/x"); }, 1)).find("'lora_load_slot'"), std::string::npos);
  // A load and an unload in one step.
  EXPECT_NE(err(msg([](W& w) { w.kv("lora_load_slot").uint(1).kv("lora_load_path").str("/x").kv("lora_unload_slot").uint(0); }, 3))
                .find("one adapter change per step"),
            std::string::npos);
  // Wrong types are named.
  EXPECT_NE(err(msg([](W& w) { w.kv("lora_unload_slot").str("0"); }, 1)).find("'lora_unload_slot'"), std::string::npos);
  EXPECT_NE(err(msg([](W& w) { w.kv("lora_load_slot").neg1().kv("lora_load_path").str("/x"); }, 2)).find("lora_load"),
            std::string::npos);
  // The well-formed forms decode.
  EXPECT_EQ(err(msg([](W& w) { w.kv("lora_load_slot").uint(1).kv("lora_load_path").str("/x"); }, 2)), "");
  EXPECT_EQ(err(msg([](W& w) { w.kv("lora_unload_slot").uint(0); }, 1)), "");
}

TEST(ControlMessage, HandWrittenMessageDecodesToWhatItSpells) {
  const StepControl c = decode(hand_control());
  EXPECT_EQ(c.step, 7u);
  ASSERT_EQ(c.new_requests.size(), 1u);
  const NewRequest& n = c.new_requests[0];
  EXPECT_EQ(n.id, 3u);
  EXPECT_EQ(n.group, 1);
  EXPECT_EQ(n.req.input_ids, (std::vector<int32_t>{5, 70000}));
  EXPECT_EQ(n.req.params.temperature, 0.0f);
  EXPECT_EQ(n.req.params.top_k, -1);
  EXPECT_EQ(n.req.params.max_new_tokens, 300);
  EXPECT_TRUE(n.req.params.ignore_eos);
  EXPECT_FALSE(n.req.params.seed.has_value());
  EXPECT_TRUE(n.req.params.stop_token_ids.empty());
  EXPECT_EQ(c.cancels, (std::vector<uint64_t>{9}));
  EXPECT_FALSE(c.shutdown);
  // Fields may come in any order: the same message with "shutdown" first.
  W w;
  w.map(5).kv("shutdown").boolean(true).kv("v").uint(1).kv("step").uint(8).kv("new").arr(0);
  const uint64_t none = 0;
  w.kv("cancels").bin(&none, 0);
  const StepControl d = decode(w);
  EXPECT_TRUE(d.shutdown);
  EXPECT_EQ(d.step, 8u);
}

TEST(ControlMessage, RefusesWhatRanksCouldReadDifferently) {
  EXPECT_NE(error_of(hand_control(2).b).find("version 2"), std::string::npos) << error_of(hand_control(2).b);
  auto with_extra = [](const std::string& key) {
    W w = hand_control();
    w.b[0] = std::byte(0x86);  // six fields
    w.kv(key).uint(1);
    return w.b;
  };
  // A field this build does not know (e.g. from a newer dpserve) is an error, never skipped.
  EXPECT_NE(error_of(with_extra("constraint")).find("unknown field 'constraint'"), std::string::npos);
  EXPECT_NE(error_of(with_extra("step")).find("'step' appears twice"), std::string::npos);
  // Missing required field.
  W w;
  w.map(4).kv("v").uint(1).kv("step").uint(1).kv("new").arr(0).kv("shutdown").boolean(false);
  EXPECT_NE(error_of(w.b).find("required field 'cancels' is missing"), std::string::npos) << error_of(w.b);
  // No version at all.
  W nv;
  nv.map(1).kv("step").uint(1);
  EXPECT_NE(error_of(nv.b).find("version"), std::string::npos);
  // Wrong type, and an integer out of its field's range (group is int32).
  W t = hand_control();
  const std::string s(reinterpret_cast<const char*>(t.b.data()), t.b.size());
  const size_t at = s.find("shutdown") + 8;
  t.b[at] = std::byte(0x01);  // 1 instead of false
  EXPECT_NE(error_of(t.b).find("field 'shutdown' has the wrong type"), std::string::npos) << error_of(t.b);
  W g;
  g.map(5).kv("v").uint(1).kv("step").uint(1).kv("new").arr(1);
  g.map(4).kv("id").uint(1).kv("group").uint(uint64_t(1) << 40).kv("input_ids").bin("", 0).kv("params");
  greedy_params(g, 1);
  const uint64_t none = 0;
  g.kv("cancels").bin(&none, 0).kv("shutdown").boolean(false);
  EXPECT_NE(error_of(g.b).find("field 'group' has the wrong type or is out of range"), std::string::npos)
      << error_of(g.b);
  // Token ids whose byte count is not a multiple of 4.
  W odd;
  odd.map(5).kv("v").uint(1).kv("step").uint(1).kv("new").arr(1);
  odd.map(4).kv("id").uint(1).kv("group").uint(0).kv("input_ids").bin("\1\0\0\0\2\0\0", 7).kv("params");
  greedy_params(odd, 1);
  odd.kv("cancels").bin(&none, 0).kv("shutdown").boolean(false);
  EXPECT_NE(error_of(odd.b).find("field 'input_ids' has the wrong type"), std::string::npos) << error_of(odd.b);
}

TEST(ControlMessage, MalformedBytesAreErrorsNotCrashes) {
  const auto good = hand_control().b;
  for (size_t cut = 0; cut < good.size(); ++cut) {
    std::vector<std::byte> t(good.begin(), good.begin() + long(cut));
    EXPECT_NE(error_of(t), "") << "accepted a message cut at " << cut;
  }
  // 5 bytes declaring an array of 2^32 - 1 elements: refused before anything is allocated.
  std::vector<std::byte> huge = {std::byte(0xdd), std::byte(0xff), std::byte(0xff), std::byte(0xff), std::byte(0xff)};
  EXPECT_NE(error_of(huge).find("size overflow"), std::string::npos) << error_of(huge);
  // Nesting deeper than the format ever goes.
  std::vector<std::byte> deep(64, std::byte(0x91));
  deep.push_back(std::byte(0x00));
  EXPECT_NE(error_of(deep), "");
  EXPECT_NE(error_of(good, /*report=*/true), "") << "a control message read as a report";
}

TEST(ControlMessage, ReportRefusesUnpairedAndUnknownValues) {
  auto report_with_out = [](auto&& fill_out, int n_fields) {
    W w;
    w.map(12).kv("v").uint(1);
    for (const char* k : {"group", "running", "waiting", "pages_used", "pages_total", "prefix_hit_tokens",
                          "prefix_query_tokens", "step_tokens", "preemptions", "cached_pages"})
      w.kv(k).uint(0);
    w.kv("outs").arr(1).map(n_fields);
    w.kv("id").uint(1).kv("prompt_tokens").uint(1).kv("cached_tokens").uint(0);
    fill_out(w);
    return w.b;
  };
  const auto ok = report_with_out([](W& w) { w.kv("token").uint(3).kv("logprob").f32(-1); }, 5);
  EXPECT_EQ(error_of(ok, true), "");
  const auto unpaired = report_with_out([](W& w) { w.kv("token").uint(3); }, 4);
  EXPECT_NE(error_of(unpaired, true).find("pairs"), std::string::npos) << error_of(unpaired, true);
  const auto bad_finish = report_with_out([](W& w) { w.kv("finish").uint(9); }, 4);
  EXPECT_NE(error_of(bad_finish, true).find("'finish'"), std::string::npos) << error_of(bad_finish, true);
  const int32_t ids[] = {1, 2};
  const float lps[] = {-1};
  const auto ragged = report_with_out([&](W& w) { w.kv("top_ids").bin(ids, 8).kv("top_logprobs").bin(lps, 4); }, 5);
  EXPECT_NE(error_of(ragged, true), "");
  // Prompt logprobs: n = 1 entry (token, logprob, rank) with k = 1 alternative and m = 1 requested id
  // is 3 + 1 * (3 + 2 + 1) words; one short is refused.
  uint32_t words[9] = {1, 1, 1, 7, 0, 3, 7, 0, 0};
  const float half = -0.5f, quarter = -0.25f;
  std::memcpy(&words[4], &half, 4);
  std::memcpy(&words[7], &half, 4);
  std::memcpy(&words[8], &quarter, 4);
  const auto prompt_ok = report_with_out([&](W& w) { w.kv("prompt").bin(words, 36); }, 4);
  EXPECT_EQ(error_of(prompt_ok, true), "");
  const GroupReport pr = decode_report(prompt_ok.data(), prompt_ok.size());
  ASSERT_EQ(pr.outs.at(0).prompt.size(), 1u);
  EXPECT_EQ(pr.outs[0].prompt[0].token, 7);
  EXPECT_EQ(pr.outs[0].prompt[0].logprob, -0.5f);
  EXPECT_EQ(pr.outs[0].prompt[0].rank, 3);
  ASSERT_EQ(pr.outs[0].prompt[0].top.size(), 1u);
  EXPECT_EQ(pr.outs[0].prompt[0].top[0].token, 7);
  ASSERT_EQ(pr.outs[0].prompt[0].id_logprobs.size(), 1u);
  EXPECT_EQ(pr.outs[0].prompt[0].id_logprobs[0], -0.25f);
  const auto prompt_short = report_with_out([&](W& w) { w.kv("prompt").bin(words, 32); }, 4);
  EXPECT_NE(error_of(prompt_short, true).find("'prompt'"), std::string::npos) << error_of(prompt_short, true);
  words[0] = 0xffffffffu;  // a count the bytes cannot hold
  const auto prompt_huge = report_with_out([&](W& w) { w.kv("prompt").bin(words, 36); }, 4);
  EXPECT_NE(error_of(prompt_huge, true), "");
}

// The fuzz corpus seeds are written by fuzz/seeds/make_seeds.py with its own msgpack writer: the
// valid ones must decode to the values that script spells.
std::vector<std::byte> seed(const std::string& name) {
  std::ifstream in(std::string(DPSERVE_SOURCE_DIR) + "/fuzz/corpus/control_message/seed_" + name, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_FALSE(c.empty()) << name;
  std::vector<std::byte> b;
  for (size_t i = 1; i < c.size(); ++i) b.push_back(std::byte(c[i]));  // byte 0 picks the format
  return b;
}

TEST(ControlMessage, SeedsWrittenByPythonDecode) {
  const auto s = seed("step");
  const StepControl c = decode_control(s.data(), s.size());
  EXPECT_EQ(c.step, 7u);
  ASSERT_EQ(c.new_requests.size(), 2u);
  EXPECT_EQ(c.new_requests[0].req.input_ids, (std::vector<int32_t>{1, 2, 3}));
  const Request& e = c.new_requests[1].req;
  EXPECT_EQ(c.new_requests[1].group, 1);
  EXPECT_EQ(e.input_embeds, (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(e.input_embeds_rows, 2);
  EXPECT_EQ(e.params.temperature, 0.7f);
  EXPECT_EQ(e.params.seed, 0xffffffffffffffffull);
  EXPECT_EQ(e.params.max_new_tokens, int64_t(1) << 40);
  EXPECT_EQ(e.params.stop_token_ids, (std::vector<int32_t>{2, 151645}));
  EXPECT_EQ(e.top_logprobs, 5);
  EXPECT_TRUE(e.return_logprob);
  EXPECT_EQ(c.cancels, (std::vector<uint64_t>{9, 10}));
  const auto r = seed("report");
  const GroupReport g = decode_report(r.data(), r.size());
  EXPECT_EQ(g.group, 1);
  ASSERT_EQ(g.outs.size(), 2u);
  EXPECT_EQ(g.outs[0].tok.token, 17);
  ASSERT_EQ(g.outs[0].tok.top.size(), 2u);
  EXPECT_EQ(g.outs[0].tok.top[1].logprob, -2.0f);
  EXPECT_EQ(g.outs[0].finish, Finish::kLength);
  EXPECT_EQ(g.outs[1].finish, Finish::kError);
  EXPECT_EQ(g.outs[1].error, "evicted");
  for (const char* bad : {"version2", "unknown_field", "missing_field", "wrong_type", "group_range", "ragged_ids"}) {
    const auto b = seed(bad);
    EXPECT_NE(error_of(b), "") << bad;
  }
  const auto im = seed("images");
  const StepControl ic = decode_control(im.data(), im.size());
  ASSERT_EQ(ic.new_requests.size(), 1u);
  const auto& imgs = ic.new_requests[0].req.images;
  ASSERT_EQ(imgs.size(), 2u);
  EXPECT_EQ(imgs[0].height, 1);
  EXPECT_EQ(imgs[0].width, 2);
  EXPECT_EQ(imgs[0].rgb, (std::vector<uint8_t>{0, 1, 2, 253, 254, 255}));
  EXPECT_EQ(imgs[0].hash, 0xffffffffffffffffull);
  EXPECT_EQ(imgs[1].hash, 5u);
  const std::pair<const char*, const char*> bad_images[] = {
      {"image_ragged", "is 1x2 but carries 5 RGB bytes"},
      {"image_zero", "non-positive size 0x2"},
      {"image_no_hash", "required field 'hash' is missing"},
      {"image_not_map", "image: expected a map"},
  };
  for (const auto& [name, want] : bad_images) {
    const std::string e = error_of(seed(name));
    EXPECT_NE(e.find(want), std::string::npos) << name << ": " << e;
  }
}

// The thinking budget: every field comes back; a spec whose forced ids do not end with the closing tag
// (the ranks would never leave the forcing phase cleanly), or with a negative budget, is refused by name.
TEST(ControlMessage, PredictionTravels) {
  StepControl c;
  NewRequest n;
  n.id = 12;
  n.req.input_ids = {1};
  n.req.prediction = {5, 151668, 0};
  c.new_requests.push_back(n);
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  EXPECT_EQ(d.new_requests[0].req.prediction, (std::vector<int32_t>{5, 151668, 0}));
  StepControl b;
  n.req.prediction = {5, -1};
  b.new_requests.push_back(n);
  const std::string e = error_of(encode(b));
  EXPECT_NE(e.find("prediction holds a negative id"), std::string::npos) << e;
}

TEST(ControlMessage, ThinkBudgetTravels) {
  StepControl c;
  NewRequest n;
  n.id = 11;
  n.req.input_ids = {1};
  n.req.think_budget = ThinkBudgetSpec{7, 151667, 151668, true, {5, 6, 151668}};
  c.new_requests.push_back(n);
  const auto bytes = encode(c);
  const StepControl d = decode_control(bytes.data(), bytes.size());
  ASSERT_EQ(d.new_requests.size(), 1u);
  const ThinkBudgetSpec& t = d.new_requests[0].req.think_budget;
  EXPECT_EQ(t.budget, 7);
  EXPECT_EQ(t.open_id, 151667);
  EXPECT_EQ(t.close_id, 151668);
  EXPECT_TRUE(t.open_at_start);
  EXPECT_EQ(t.forced, (std::vector<int32_t>{5, 6, 151668}));

  for (const ThinkBudgetSpec& bad : {ThinkBudgetSpec{7, 1, 2, false, {5}}, ThinkBudgetSpec{7, 1, 2, false, {}},
                                     ThinkBudgetSpec{7, 1, 2, false, {-3, 2}}}) {
    StepControl b;
    NewRequest m = n;
    m.req.think_budget = bad;
    b.new_requests.push_back(m);
    const std::string e = error_of(encode(b));
    EXPECT_NE(e.find("think_budget"), std::string::npos) << e;
  }
  // An inactive budget (-1) is not sent at all.
  StepControl off;
  NewRequest m = n;
  m.req.think_budget = ThinkBudgetSpec{};
  off.new_requests.push_back(m);
  const auto off_bytes = encode(off);
  const std::string text(reinterpret_cast<const char*>(off_bytes.data()), off_bytes.size());
  EXPECT_EQ(text.find("think_budget"), std::string::npos);
}

}  // namespace
}  // namespace dpserve
