#include "engine/control_message.h"

#include <cstring>

#include <msgpack.hpp>

#include "core/check.h"

namespace dpserve {

const char* finish_reason(Finish f) {
  switch (f) {
    case Finish::kStop: return "stop";
    case Finish::kLength: return "length";
    case Finish::kAbort: return "abort";
    case Finish::kError: return "error";
    default: return "";
  }
}

namespace {

// A msgpack::sbuffer-compatible sink writing straight into a byte vector.
struct ByteSink {
  std::vector<std::byte> out;
  void write(const char* p, size_t n) {
    const auto* b = reinterpret_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  }
};
using Packer = msgpack::packer<ByteSink>;

template <typename T>
void pack_pod_vector(Packer& pk, const std::vector<T>& v) {
  pk.pack_bin(uint32_t(v.size() * sizeof(T)));
  pk.pack_bin_body(reinterpret_cast<const char*>(v.data()), uint32_t(v.size() * sizeof(T)));
}

template <typename T>
std::vector<T> unpack_pod_vector(const msgpack::object& o) {
  if (o.type != msgpack::type::BIN || o.via.bin.size % sizeof(T) != 0) fail("control message: bad binary field");
  std::vector<T> v(o.via.bin.size / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), o.via.bin.ptr, o.via.bin.size);
  return v;
}

void pack_params(Packer& pk, const SamplingParams& p) {
  pk.pack_array(12);
  pk.pack(p.temperature);
  pk.pack(p.top_k);
  pk.pack(p.top_p);
  pk.pack(p.min_p);
  pk.pack(p.repetition_penalty);
  pk.pack(p.frequency_penalty);
  pk.pack(p.presence_penalty);
  pk.pack(p.seed.has_value());
  pk.pack(p.seed.value_or(0));
  pk.pack(p.max_new_tokens);
  pk.pack(p.ignore_eos);
  pack_pod_vector(pk, p.stop_token_ids);
}

SamplingParams unpack_params(const msgpack::object& o) {
  const auto& a = o.via.array;
  if (o.type != msgpack::type::ARRAY || a.size != 12) fail("control message: bad sampling params");
  SamplingParams p;
  p.temperature = a.ptr[0].as<float>();
  p.top_k = a.ptr[1].as<int32_t>();
  p.top_p = a.ptr[2].as<float>();
  p.min_p = a.ptr[3].as<float>();
  p.repetition_penalty = a.ptr[4].as<float>();
  p.frequency_penalty = a.ptr[5].as<float>();
  p.presence_penalty = a.ptr[6].as<float>();
  if (a.ptr[7].as<bool>()) p.seed = a.ptr[8].as<uint64_t>();
  p.max_new_tokens = a.ptr[9].as<int64_t>();
  p.ignore_eos = a.ptr[10].as<bool>();
  p.stop_token_ids = unpack_pod_vector<int32_t>(a.ptr[11]);
  return p;
}

// Binary fields (token ids, embeddings) are read in place from the received buffer instead of
// being copied into msgpack's zone first: large input_embeds are copied once, into the request.
bool reference_bin(msgpack::type::object_type type, std::size_t, void*) { return type == msgpack::type::BIN; }

msgpack::object_handle parse(const std::byte* data, size_t n) {
  try {
    return msgpack::unpack(reinterpret_cast<const char*>(data), n, &reference_bin);
  } catch (const std::exception& e) {
    fail("control message: malformed msgpack: {}", e.what());
  }
}

}  // namespace

std::vector<std::byte> encode(const StepControl& c) {
  ByteSink sink;
  size_t payload = 64 + 8 * c.cancels.size();
  for (const auto& n : c.new_requests)
    payload += 128 + 4 * (n.req.input_ids.size() + n.req.input_embeds.size() + n.req.params.stop_token_ids.size());
  sink.out.reserve(payload);  // one allocation even for megabytes of embeddings
  Packer pk(sink);
  pk.pack_array(4);
  pk.pack(c.step);
  pk.pack_array(uint32_t(c.new_requests.size()));
  for (const auto& n : c.new_requests) {
    pk.pack_array(8);
    pk.pack(n.id);
    pk.pack(n.group);
    pack_pod_vector(pk, n.req.input_ids);
    pack_pod_vector(pk, n.req.input_embeds);
    pk.pack(n.req.input_embeds_rows);
    pack_params(pk, n.req.params);
    pk.pack(n.req.top_logprobs);
    pk.pack(n.req.return_logprob);
  }
  pack_pod_vector(pk, c.cancels);
  pk.pack(c.shutdown);
  return std::move(sink.out);
}

StepControl decode_control(const std::byte* data, size_t n) {
  auto h = parse(data, n);
  const msgpack::object& o = h.get();
  StepControl c;
  try {
    const auto& a = o.via.array;
    c.step = a.ptr[0].as<uint64_t>();
    const auto& reqs = a.ptr[1].via.array;
    for (uint32_t i = 0; i < reqs.size; ++i) {
      const auto& r = reqs.ptr[i].via.array;
      NewRequest nr;
      nr.id = r.ptr[0].as<uint64_t>();
      nr.group = r.ptr[1].as<int32_t>();
      nr.req.input_ids = unpack_pod_vector<int32_t>(r.ptr[2]);
      nr.req.input_embeds = unpack_pod_vector<float>(r.ptr[3]);
      nr.req.input_embeds_rows = r.ptr[4].as<int64_t>();
      nr.req.params = unpack_params(r.ptr[5]);
      nr.req.top_logprobs = r.ptr[6].as<int32_t>();
      nr.req.return_logprob = r.ptr[7].as<bool>();
      c.new_requests.push_back(std::move(nr));
    }
    c.cancels = unpack_pod_vector<uint64_t>(a.ptr[2]);
    c.shutdown = a.ptr[3].as<bool>();
  } catch (const msgpack::type_error&) {
    fail("control message: unexpected field types");
  }
  return c;
}

std::vector<std::byte> encode(const GroupReport& r) {
  ByteSink sink;
  Packer pk(sink);
  pk.pack_array(11);
  pk.pack(r.group);
  pk.pack(r.running);
  pk.pack(r.waiting);
  pk.pack(r.pages_used);
  pk.pack(r.pages_total);
  pk.pack(r.prefix_hit_tokens);
  pk.pack(r.prefix_query_tokens);
  pk.pack(r.step_tokens);
  pk.pack_array(uint32_t(r.outs.size()));
  for (const auto& o : r.outs) {
    pk.pack_array(9);
    pk.pack(o.id);
    pk.pack(o.has_token);
    pk.pack(o.tok.token);
    pk.pack(o.tok.logprob);
    std::vector<int32_t> ids;
    std::vector<float> lps;
    for (auto& t : o.tok.top) ids.push_back(t.token), lps.push_back(t.logprob);
    pack_pod_vector(pk, ids);
    pack_pod_vector(pk, lps);
    pk.pack(uint8_t(o.finish));
    pk.pack(o.error);
    pk.pack_array(2);
    pk.pack(o.prompt_tokens);
    pk.pack(o.cached_tokens);
  }
  pk.pack(r.preemptions);
  pk.pack(r.cached_pages);
  return std::move(sink.out);
}

GroupReport decode_report(const std::byte* data, size_t n) {
  auto h = parse(data, n);
  const msgpack::object& o = h.get();
  GroupReport r;
  try {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 11) fail("group report: expected 11 fields");
    const auto& a = o.via.array;
    r.group = a.ptr[0].as<int32_t>();
    r.running = a.ptr[1].as<int64_t>();
    r.waiting = a.ptr[2].as<int64_t>();
    r.pages_used = a.ptr[3].as<int64_t>();
    r.pages_total = a.ptr[4].as<int64_t>();
    r.prefix_hit_tokens = a.ptr[5].as<int64_t>();
    r.prefix_query_tokens = a.ptr[6].as<int64_t>();
    r.step_tokens = a.ptr[7].as<int64_t>();
    const auto& outs = a.ptr[8].via.array;
    for (uint32_t i = 0; i < outs.size; ++i) {
      const auto& e = outs.ptr[i].via.array;
      OutToken t;
      t.id = e.ptr[0].as<uint64_t>();
      t.has_token = e.ptr[1].as<bool>();
      t.tok.token = e.ptr[2].as<int32_t>();
      t.tok.logprob = e.ptr[3].as<float>();
      auto ids = unpack_pod_vector<int32_t>(e.ptr[4]);
      auto lps = unpack_pod_vector<float>(e.ptr[5]);
      for (size_t k = 0; k < ids.size() && k < lps.size(); ++k) t.tok.top.push_back({ids[k], lps[k]});
      t.finish = Finish(e.ptr[6].as<uint8_t>());
      t.error = e.ptr[7].as<std::string>();
      t.prompt_tokens = e.ptr[8].via.array.ptr[0].as<int64_t>();
      t.cached_tokens = e.ptr[8].via.array.ptr[1].as<int64_t>();
      r.outs.push_back(std::move(t));
    }
    r.preemptions = a.ptr[9].as<int64_t>();
    r.cached_pages = a.ptr[10].as<int64_t>();
  } catch (const msgpack::type_error&) {
    fail("group report: unexpected field types");
  }
  return r;
}

}  // namespace dpserve
