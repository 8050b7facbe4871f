// What every route handler does alike: admission of generation work, JSON replies, noticing that
// the client left, and the facts the access log prints. (Bodies are read, bounded, before any route
// runs: see http_connection.h.)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server/admission.h"
#include "server/generation.h"
#include "server/server_context.h"

namespace dpserve {

// Per-request facts for the access log line, filled by the route on the worker thread that also
// writes the response and logs it.
struct AccessInfo {
  std::chrono::steady_clock::time_point start;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::string finish;
  std::string extra;  // more " key=value" fields for the log line (image_timing_log)
};
AccessInfo& access_info();
// Who sent the request being served on this thread (set from its headers, before its body is read).
Caller& request_caller();
// A request served on this thread without a connection (a batch line) is stopped when this says so
// (empty: never); client_gone_fn includes it.
std::function<bool()>& request_cancelled();

void send_json(httplib::Response& res, int status, const nlohmann::json& j);
// Operator routes (/flush_cache): with --admin-api-key set, only that key passes (a tenant's key is
// a 403, no key a 401). Without it they stay open to every caller the key check let in, as SGLang's
// ADMIN_OPTIONAL routes do. `what` names the route in the message.
void require_admin(const ServerContext& ctx, const std::string& what);
// 503 when the server drains or the engine is down (checked before the body is parsed).
void check_serving(ServerContext& ctx);
// Takes on a parsed request's sequences and tokens: 429 when what is in flight leaves no room under
// --max-queued-requests / --max-queued-tokens, 400 when the request alone exceeds them. Returns its
// in-flight slot, released with its last owner.
// Under --is-embedding every generation route is a 400 naming the flag.
std::shared_ptr<void> admit_generation(ServerContext& ctx, const GenSpec& spec);
// Admission of prefill-only inputs (embeddings, rerank documents): one sequence and its tokens + 1
// each, and `values` floats the reply holds; its 400 / 429 speak of inputs, naming `param`.
std::shared_ptr<void> admit_inputs(ServerContext& ctx, const std::vector<std::vector<int32_t>>& inputs, int64_t values,
                                   const std::string& param);
// The request's JSON body, parsed under JsonLimits: done within --http-request-timeout of the end of
// its headers, stopped when the client leaves or the server stops, top-level fields refused as
// soon as `known` says no; integer arrays under the fields `ids` names are packed int32 token ids
// (JsonLimits::id_field).
nlohmann::json read_json_body(ServerContext& ctx, const httplib::Request& req,
                              std::function<bool(std::string_view)> known = nullptr,
                              std::function<bool(std::string_view)> ids = nullptr);
// Frees the body text once it is parsed; after a big one, gives the freed memory back to the
// system (glibc keeps freed small blocks otherwise, and RSS stays high).
void release_body(const httplib::Request& req);
// Reserves the client-chosen rids of a request for its caller while it runs: a 400 naming 'rid' when
// one is live already. Released with the returned handle's last owner.
std::shared_ptr<void> claim_rids(ServerContext& ctx, const std::vector<std::string>& rids);
// Streams `provider`'s writes as the response body: chunked for HTTP/1.1, and for an HTTP/1.0
// request (which has no chunked encoding, RFC 9112 6.1) as plain bytes ended by closing the connection.
void set_stream_provider(const httplib::Request& req, httplib::Response& res, const char* content_type,
                         httplib::ContentProviderWithoutLength provider);

// The SSE error event for a streamed choice that ended by a fault (null when it did not): the
// engine refused the request (400 engine_rejected), failed while running it (500 server_error,
// engine_fault: the watchdog, a lost rank), was shutting down as it came (503 server_draining), or
// stopped (503 engine_unavailable).
nlohmann::json stream_error_event(const ChoiceDelta& d);
// A non-streamed choice that ended in "error": a 400 (engine_rejected) when the engine refused the
// request, a 500 server_error (engine_fault) when the engine itself failed (watchdog, lost rank), a
// 503 (server_draining) when it was shutting down as the request came: clients retry a 5xx, never a 400.
[[noreturn]] void throw_choice_error(const std::string& error, bool engine_fault, bool engine_unavailable = false);
// A whole (non-streamed) answer whose one choice ended as `end` did: throws the choice's error
// (throw_choice_error) or, for another fault (the engine stopped), a 503; returns when it succeeded.
void throw_if_failed(const ChoiceDelta& end);
// Keeps a choice's last delivery as its end (without its text and tokens, which the route has taken).
void keep_end(ChoiceDelta& end, const ChoiceDelta& d);
// OpenAI's reasoning_tokens of one choice whose parsed reasoning is `reasoning`: its output ids up to and
// including the first `close_id` (</think> as one token; all of them when it never came), or, without
// such a token (-1), the reasoning text's length in tokens; 0 without reasoning.
int64_t reasoning_token_count(std::span<const int32_t> ids, int32_t close_id, const std::string& reasoning,
                              const Tokenizer& tok);
// True once the client of `req` hung up or the server is stopping.
std::function<bool()> client_gone_fn(ServerContext& ctx, const httplib::Request& req);

// All --max-background-responses runs (background responses and batches) are going: a 429, counted
// with the other overload refusals.
[[noreturn]] void background_runs_full(ServerContext& ctx);

// A query parameter's integer value in [lo, hi]; else a 400 naming it.
int64_t query_integer(const std::string& name, const std::string& value, int64_t lo, int64_t hi);
// A query parameter the route does not take: a 400 naming it.
[[noreturn]] void unknown_query_parameter(const std::string& name);
// For a route that takes no query parameters: a 400 naming the first one given.
void reject_query_parameters(const httplib::Request& req);

// OpenAI's list paging (after / limit / order) over a list kept in creation order.
struct ListPage {
  std::string after;  // the id the page starts after ("": the first)
  int64_t limit = 20;
  bool asc = true;
};
// Reads after, limit (1 to `max_limit`) and order into a page with these defaults; `other` takes any other
// parameter (true: it was the route's), else it is a 400 naming it.
ListPage read_list_page(const httplib::Request& req, ListPage defaults, int64_t max_limit,
                        const std::function<bool(const std::string&, const std::string&)>& other);
// One page of `all` (in creation order) as OpenAI's list object (data, first_id, last_id, has_more);
// `id_of` names an element; an `after` that names none is a 400 ("No such <what>").
nlohmann::json list_page(std::vector<nlohmann::json> all, const ListPage& p,
                         const std::function<std::string(const nlohmann::json&)>& id_of, std::string_view what);
// OpenAI's expires_after of a file (`param`: expires_after, a batch's output_expires_after): anchor
// "created_at" and seconds from 3600 (an hour) to 2592000 (30 days); the seconds, else a 400 naming it.
int64_t expires_after_seconds(const std::string& param, const std::string& anchor, const std::string& seconds);
// The same given as a JSON body's object {"anchor", "seconds"}; null: 0 (never).
int64_t expires_after_object(const std::string& param, const nlohmann::json& e);

// Unix seconds now, from the precise realtime clock: std::time reads the coarse one (a kernel tick
// behind), so a "created" stamped just after a client read its own clock could come out a second early.
inline int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace dpserve
