#include "server/route_helpers.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <malloc.h>

#include <fmt/format.h>

#include "server/connection_watch.h"
#include "server/openai_error.h"
#include "server/http_connection.h"
#include "server/json_body.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

using json = nlohmann::json;

AccessInfo& access_info() {
  thread_local AccessInfo info;
  return info;
}

Caller& request_caller() {
  thread_local Caller caller;
  return caller;
}

std::function<bool()>& request_cancelled() {
  thread_local std::function<bool()> cancelled;
  return cancelled;
}

std::shared_ptr<void> claim_rids(ServerContext& ctx, const std::vector<std::string>& rids) {
  if (rids.empty()) return nullptr;
  std::string taken;
  const std::string owner = request_caller().owner;
  if (!ctx.registry.claim(owner, rids, &taken))
    bad_param("rid", fmt::format("'rid' '{}' is already used by a running request (or repeats in this one)", taken));
  return std::shared_ptr<void>(nullptr, [&ctx, owner, rids](void*) { ctx.registry.release(owner, rids); });
}

void send_json(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
  // echo + logprobs with a large n: a tree of millions of small nodes, freed when the route returns.
  if (res.body.size() >= (1 << 20))
    if (ConnectionState* c = ConnectionServer::current()) c->trim_after = true;
}

void require_admin(const ServerContext& ctx, const std::string& what) {
  if (!ctx.auth.has_admin_key()) return;
  const Caller& caller = request_caller();
  if (caller.admin) return;
  // A tenant's key is known but not enough (403); no key at all asks for one (401).
  if (!caller.owner.empty())
    throw ApiError(403, fmt::format("{} needs the admin API key (--admin-api-key); a tenant's API key cannot use it", what),
                   "", "permission_error", "admin_only");
  throw ApiError(401, fmt::format("{} needs the admin API key: send 'Authorization: Bearer <admin key>'", what), "",
                 "authentication_error", "invalid_api_key");
}

void check_serving(ServerContext& ctx) {
  if (ctx.draining.load())
    throw ApiError(503, "The server is shutting down and takes no new requests", "", "service_unavailable_error",
                   "server_draining");
  if (!ctx.engine.healthy())
    throw ApiError(503, "The engine is not ready (loading, or a rank failed)", "", "service_unavailable_error",
                   "engine_unavailable");
}

namespace {

// The in-flight handle of admitted work: the admission slot, and the request counted in
// dpserve_http_requests_inflight.
std::shared_ptr<void> hold(ServerContext& ctx, std::shared_ptr<void> slot) {
  ++ctx.metrics.http_inflight;
  return std::shared_ptr<void>(nullptr, [&ctx, slot](void*) { --ctx.metrics.http_inflight; });
}

// Admits `w` or throws: `too_big` (which throws a 400) when the request alone exceeds a bound; a 429
// with `busy(now)` when it does not fit beside the work in flight. The routes differ in what they say.
std::shared_ptr<void> admit_or_throw(ServerContext& ctx, const Admission::Work& w,
                                     const std::function<void(const Admission&)>& too_big,
                                     const std::function<std::string(const Admission&, const Admission::Work&)>& busy) {
  check_serving(ctx);
  std::shared_ptr<void> slot;
  const Admission& a = ctx.admission;
  switch (ctx.admission.admit(w, slot)) {
    case Admission::Verdict::kAdmitted: break;
    case Admission::Verdict::kTooBig:
      too_big(a);
      throw ApiError(500, "admission: a request over a bound was not refused", "", "server_error", "internal_error");
    case Admission::Verdict::kBusy:
      // 429 (not 503): the server is healthy but over its load bound, which OpenAI clients treat as
      // "back off and retry" (with Retry-After); 503 stays for draining and a failed engine.
      ctx.metrics.rejected_overload.fetch_add(1);
      throw ApiError(429, busy(a, a.in_flight()), "", "rate_limit_error", "queue_full");
  }
  return hold(ctx, std::move(slot));
}

}  // namespace

std::shared_ptr<void> admit_generation(ServerContext& ctx, const GenSpec& spec) {
  check_serving(ctx);
  // SGLang refuses generation on an embedding server too: its pooled outputs are no tokens to sample.
  if (ctx.opts.embedding.enabled)
    throw ApiError(400,
                   "This server was started with --is-embedding: it serves POST /v1/embeddings (and /v1/rerank), "
                   "not text generation; start it without --is-embedding to generate",
                   "", "invalid_request_error", "embedding_server");
  const int64_t n = spec.n;
  Admission::Work w;
  // Echoed prompt logprobs cost like tokens: each prompt position carries its top_logprobs alternatives
  // into every choice of the answer (n x prompt x k entries), whatever the few positions computed.
  // token_ids_logprob's m ids count as m more alternatives, at every output position and every
  // reported prompt position.
  const int64_t k = spec.base.top_logprobs;
  auto count = [&](int64_t prompt_len, int64_t m) {
    const int64_t max_new = spec.base.params.max_new_tokens;
    const int64_t per_prompt_token = 1 + (spec.base.prompt_logprobs ? k + m : 0);
    w.sequences += n;
    w.tokens += n * (prompt_len * per_prompt_token + max_new);
    // The entries the reply will hold, each a JSON object built in memory before it is sent.
    w.logprobs += n * ((1 + k + m) * (spec.base.prompt_logprobs ? prompt_len : 0) +
                       (spec.base.return_logprob ? (1 + k) * max_new : 0) + m * max_new);
  };
  auto ids_of = [&](size_t p) {
    return p < spec.token_ids_logprob.size() ? int64_t(spec.token_ids_logprob[p].size()) : 0;
  };
  if (spec.prompts.empty()) count(spec.input_embeds_rows, ids_of(0));
  for (size_t p = 0; p < spec.prompts.size(); ++p) count(int64_t(spec.prompts[p].size()), ids_of(p));
  auto too_big = [&w](const Admission& a) {
    if (!(a.max_sequences() > 0 && w.sequences > a.max_sequences()) && !(a.max_tokens() > 0 && w.tokens > a.max_tokens()))
      bad_param("logprobs", fmt::format("This request's replies would hold {} logprob entries (each reported token "
                                        "and each of its alternatives, for every choice); the server admits at "
                                        "most {} at once (--max-queued-logprobs)",
                                        w.logprobs, a.max_logprobs()));
    bad_param("n", fmt::format("This request needs {} sequences and {} tokens (prompt + max_tokens each, and each echoed "
                               "prompt logprob alternative counts as a token); the "
                               "server admits at most {} sequences (--max-queued-requests) and {} tokens "
                               "(--max-queued-tokens) at once",
                               w.sequences, w.tokens, a.max_sequences(), a.max_tokens()));
  };
  auto busy = [&w](const Admission& a, const Admission::Work& now) {
    return fmt::format("Too much work in flight ({} of {} sequences, --max-queued-requests; {} of {} tokens, "
                       "--max-queued-tokens; {} of {} logprob entries, --max-queued-logprobs; 0 = no limit) "
                       "for this request's {} sequences, {} tokens and {} logprob entries; retry later",
                       now.sequences, a.max_sequences(), now.tokens, a.max_tokens(), now.logprobs, a.max_logprobs(),
                       w.sequences, w.tokens, w.logprobs);
  };
  return admit_or_throw(ctx, w, too_big, busy);
}

std::shared_ptr<void> admit_inputs(ServerContext& ctx, const std::vector<std::vector<int32_t>>& inputs, int64_t values,
                                   const std::string& param) {
  Admission::Work w;
  w.sequences = int64_t(inputs.size());
  for (const auto& p : inputs) w.tokens += int64_t(p.size()) + 1;  // the engine runs one position past each
  w.values = values;
  auto too_big = [&w, &param](const Admission& a) {
    if (a.max_values() > 0 && w.values > a.max_values())
      bad_param(param, fmt::format("This request's reply would hold {} embedding values ({} inputs x their "
                                   "dimensions); the server admits at most {} at once "
                                   "(--max-queued-embedding-values): send fewer inputs per request",
                                   w.values, w.sequences, a.max_values()));
    bad_param(param, fmt::format("This request has {} inputs of {} tokens in all (each input's tokens + 1); the server "
                                 "admits at most {} inputs (--max-queued-requests) and {} tokens "
                                 "(--max-queued-tokens) at once: send fewer or shorter inputs per request",
                                 w.sequences, w.tokens, a.max_sequences(), a.max_tokens()));
  };
  auto busy = [&w](const Admission& a, const Admission::Work& now) {
    return fmt::format("Too much work in flight ({} of {} sequences, --max-queued-requests; {} of {} tokens, "
                       "--max-queued-tokens; {} of {} embedding values, --max-queued-embedding-values; "
                       "0 = no limit) for this request's {} inputs, {} tokens and {} embedding values; "
                       "retry later",
                       now.sequences, a.max_sequences(), now.tokens, a.max_tokens(), now.values, a.max_values(),
                       w.sequences, w.tokens, w.values);
  };
  return admit_or_throw(ctx, w, too_big, busy);
}

void set_stream_provider(const httplib::Request& req, httplib::Response& res, const char* content_type,
                         httplib::ContentProviderWithoutLength provider) {
  if (req.version == "HTTP/1.0") {
    res.set_header("Connection", "close");
    res.set_content_provider(content_type, std::move(provider));
  } else {
    res.set_chunked_content_provider(content_type, std::move(provider));
  }
}

json read_json_body(ServerContext& ctx, const httplib::Request& req, std::function<bool(std::string_view)> known,
                    std::function<bool(std::string_view)> ids) {
  JsonLimits lim;
  if (ctx.opts.http_request_timeout_s > 0)
    lim.deadline = access_info().start +
                   std::chrono::milliseconds(int64_t(ctx.opts.http_request_timeout_s * 1000));
  lim.cancelled = client_gone_fn(ctx, req);
  lim.known_field = std::move(known);
  lim.id_field = std::move(ids);
  return parse_json_body(req.body, lim);
}

void release_body(const httplib::Request& req) {
  // cpp-httplib's Request is a non-const object in its connection loop (request_body filled it), so
  // clearing it here is well defined; nothing reads the body after the route has parsed it.
  std::string& body = const_cast<httplib::Request&>(req).body;
  const bool big = body.capacity() >= (1 << 20);
  std::string().swap(body);
  if (big) malloc_trim(0);
}

void throw_choice_error(const std::string& error, bool engine_fault, bool engine_unavailable) {
  if (engine_fault)
    throw ApiError(500, error.empty() ? "The engine failed while running this request" : error, "", "server_error",
                   "engine_fault");
  if (engine_unavailable)
    throw ApiError(503, error.empty() ? "The server is shutting down" : error, "", "service_unavailable_error",
                   "server_draining");
  throw ApiError(400, error.empty() ? "The engine could not run this request" : error, "", "invalid_request_error",
                 "engine_rejected");
}

void throw_if_failed(const ChoiceDelta& end) {
  if (end.finish_reason == "error") throw_choice_error(end.error, end.engine_fault, end.engine_unavailable);
  if (end.fault) throw ApiError(503, end.error.empty() ? "The engine stopped" : end.error, "", "", "engine_unavailable");
}

int64_t reasoning_token_count(std::span<const int32_t> ids, int32_t close_id, const std::string& reasoning,
                              const Tokenizer& tok) {
  if (reasoning.empty()) return 0;
  if (close_id >= 0) {
    const auto at = std::find(ids.begin(), ids.end(), close_id);
    return at == ids.end() ? int64_t(ids.size()) : int64_t(at - ids.begin()) + 1;
  }
  return std::min<int64_t>(int64_t(tok.encode(reasoning, false).size()), int64_t(ids.size()));
}

void keep_end(ChoiceDelta& end, const ChoiceDelta& d) {
  if (!d.finished) return;
  end = d;
  end.text.clear();
  end.tokens.clear();
  end.prompt.clear();
}

json stream_error_event(const ChoiceDelta& d) {
  if (!d.fault) return nullptr;
  if (d.engine_fault)
    return error_body(500, d.error.empty() ? "The engine failed while running this request" : d.error, "",
                      "engine_fault");
  if (d.engine_unavailable)
    return error_body(503, d.error.empty() ? "The server is shutting down" : d.error, "", "server_draining");
  if (d.finish_reason == "error")
    return error_body(400, d.error.empty() ? "The engine could not run this request" : d.error, "", "engine_rejected");
  return error_body(503, d.error.empty() ? "The engine stopped" : d.error, "", "engine_unavailable");
}

void background_runs_full(ServerContext& ctx) {
  ctx.metrics.rejected_overload.fetch_add(1);
  throw ApiError(429,
                 fmt::format("{} background runs (responses and batches) are going, as many as "
                             "--max-background-responses allows; retry when one has ended",
                             ctx.background.max_running()),
                 "", "rate_limit_error", "queue_full");
}

int64_t query_integer(const std::string& name, const std::string& value, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end || errno == ERANGE || v < lo || v > hi)
    throw ApiError(400, fmt::format("'{}' must be an integer from {} to {}", name, lo, hi), name, "", "invalid_value");
  return v;
}

int64_t expires_after_seconds(const std::string& param, const std::string& anchor, const std::string& seconds) {
  if (anchor != "created_at")
    throw ApiError(400, fmt::format("'{}.anchor' must be \"created_at\"", param), param + ".anchor", "",
                   "invalid_value");
  return query_integer(param + ".seconds", seconds, 3600, 2592000);
}

int64_t expires_after_object(const std::string& param, const nlohmann::json& e) {
  if (e.is_null()) return 0;
  if (!e.is_object()) bad_param(param, fmt::format("'{}' must be an object", param));
  for (const auto& [k, v] : e.items())
    if (k != "anchor" && k != "seconds")
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}.{}", param, k), param + "." + k, "",
                     "unknown_parameter");
  const nlohmann::json anchor = e.value("anchor", nlohmann::json()), seconds = e.value("seconds", nlohmann::json());
  return expires_after_seconds(param, anchor.is_string() ? anchor.get<std::string>() : anchor.dump(),
                               seconds.is_number_integer() ? std::to_string(seconds.get<int64_t>()) : seconds.dump());
}

void unknown_query_parameter(const std::string& name) {
  throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", name), name, "", "unknown_parameter");
}

void reject_query_parameters(const httplib::Request& req) {
  for (const auto& [k, v] : req.params) unknown_query_parameter(k);
}

ListPage read_list_page(const httplib::Request& req, ListPage p, int64_t max_limit,
                        const std::function<bool(const std::string&, const std::string&)>& other) {
  for (const auto& [k, v] : req.params) {
    if (k == "after") {
      p.after = v;
    } else if (k == "limit") {
      p.limit = query_integer(k, v, 1, max_limit);
    } else if (k == "order") {
      if (v != "asc" && v != "desc") throw ApiError(400, "'order' must be asc or desc", k, "", "invalid_value");
      p.asc = v == "asc";
    } else if (!other(k, v)) {
      unknown_query_parameter(k);
    }
  }
  return p;
}

nlohmann::json list_page(std::vector<nlohmann::json> all, const ListPage& p,
                         const std::function<std::string(const nlohmann::json&)>& id_of, std::string_view what) {
  using json = nlohmann::json;
  if (!p.asc) std::reverse(all.begin(), all.end());
  size_t from = 0;
  if (!p.after.empty()) {
    auto it = std::find_if(all.begin(), all.end(), [&](const json& x) { return id_of(x) == p.after; });
    if (it == all.end())
      throw ApiError(400, fmt::format("No such {}: {}", what, p.after), "after", "", "invalid_value");
    from = size_t(it - all.begin()) + 1;
  }
  json data = json::array();
  for (size_t i = from; i < all.size() && int64_t(data.size()) < p.limit; ++i) data.push_back(std::move(all[i]));
  const bool more = from + data.size() < all.size();
  json first = data.empty() ? json(nullptr) : json(id_of(data.front()));
  json last = data.empty() ? json(nullptr) : json(id_of(data.back()));
  return {{"object", "list"}, {"data", std::move(data)}, {"first_id", first}, {"last_id", last}, {"has_more", more}};
}

std::function<bool()> client_gone_fn(ServerContext& ctx, const httplib::Request&) {
  const ConnectionState* conn = ConnectionServer::current();
  ConnectionWatch watch(conn ? conn->fd : -1);
  std::function<bool()> cancelled = request_cancelled();
  return [watch, &ctx, cancelled] { return ctx.stopping.load() || watch.closed() || (cancelled && cancelled()); };
}

}  // namespace dpserve
