// Anthropic's Message Batches API: POST /v1/messages/batches runs a list of Messages requests in the
// background through the /v1/messages route, as many at a time as the engine runs (batch_lines.h);
// GET /v1/messages/batches/{id} polls it, GET /v1/messages/batches lists, POST .../{id}/cancel stops
// it, GET .../{id}/results gives its results (JSONL) once it has ended, DELETE .../{id} drops an ended
// one. Errors are Anthropic's shape (the routes are under /v1/messages: anthropic_error.h).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <optional>
#include <unordered_set>

#include "server/anthropic_error.h"
#include "server/anthropic_list.h"
#include "server/batch_lines.h"
#include "server/openai_error.h"
#include "server/request_id.h"
#include "server/route_helpers.h"
#include "server/routes.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxRequests = 100000;    // Anthropic's bound on a batch's requests
constexpr int64_t kWindowSeconds = 86400;  // a batch ends within 24 hours, as Anthropic's (then: expired)
constexpr const char* kRoute = "/v1/messages";

[[noreturn]] void message_batch_not_found(const std::string& id) {
  throw ApiError(404, fmt::format("No Message Batch with id {}", id), "message_batch_id", "invalid_request_error",
                 "not_found");
}

void add_count(BatchStore::Batch& b, const char* from, const char* to) {  // under b.mu
  json& c = b.object["request_counts"];
  c[from] = c[from].get<int64_t>() - 1;
  c[to] = c[to].get<int64_t>() + 1;
}

// The batch's run: each request through /v1/messages; then its results, one line per request in the
// input's order, become a file of the file store (--max-file-store-mb). Cancelled or past its 24
// hours, the requests in flight stop and the rest never start: those are "canceled" / "expired".
// Results that outgrow the store's room stop it the same way, and every request is then "errored"
// (the file holds a line each, not the answers).
void run_message_batch(ServerContext& ctx, const std::shared_ptr<BatchStore::Batch>& batch,
                       const std::vector<BatchLine>& lines, const Caller& caller,
                       std::chrono::steady_clock::time_point deadline, const std::function<bool()>& cancelled) {
  std::vector<std::string> results(lines.size());
  const size_t room = ctx.files.max_bytes() - std::min(ctx.files.max_bytes(), ctx.files.bytes());
  std::atomic<size_t> held{0};
  std::atomic<bool> full{false};
  const auto expired = [&] { return std::chrono::steady_clock::now() >= deadline; };
  const std::function<bool()> stop = [&] { return cancelled() || full.load() || expired(); };
  run_batch_lines(ctx, ctx.batch_routes.at(kRoute), kRoute, lines, caller, stop, [&](size_t i, int status, json body) {
    const bool ok = status == 200;
    json result = ok ? json{{"type", "succeeded"}, {"message", std::move(body)}}
                     : json{{"type", "errored"}, {"error", anthropic_error_body(status, body)}};
    results[i] = json{{"custom_id", lines[i].custom_id}, {"result", std::move(result)}}.dump();
    if (held.fetch_add(results[i].size() + 1) + results[i].size() + 1 > room) full = true;
    std::lock_guard<std::mutex> lk(batch->mu);
    add_count(*batch, "processing", ok ? "succeeded" : "errored");
  });
  const bool was_cancelled = cancelled();
  std::string text;
  {
    std::lock_guard<std::mutex> lk(batch->mu);
    if (full) {
      batch->object["request_counts"] = {
          {"processing", 0}, {"succeeded", 0}, {"errored", int64_t(lines.size())}, {"canceled", 0}, {"expired", 0}};
      const json error = anthropic_error_body(
          500, error_body(500, "The batch's results outgrew the server's file store (--max-file-store-mb)"));
      for (const BatchLine& l : lines)
        text += json{{"custom_id", l.custom_id}, {"result", {{"type", "errored"}, {"error", error}}}}.dump() + "\n";
    } else {
      for (size_t i = 0; i < lines.size(); ++i) {
        if (results[i].empty()) {
          const char* how = was_cancelled ? "canceled" : "expired";
          add_count(*batch, "processing", how);
          results[i] = json{{"custom_id", lines[i].custom_id}, {"result", {{"type", how}}}}.dump();
        }
        text += results[i] + "\n";
        results[i] = {};
      }
    }
  }
  auto f = ctx.files.put(new_request_id("file"), caller.owner, batch->id + "_results.jsonl", "batch_output",
                         std::move(text), 0);
  if (!f) spdlog::error("message batch {}: its results do not fit in --max-file-store-mb", batch->id);
  std::lock_guard<std::mutex> lk(batch->mu);
  if (f) batch->results_file = f->id;
  batch->object["processing_status"] = "ended";
  batch->object["ended_at"] = rfc3339(unix_seconds());
  const json& c = batch->object["request_counts"];
  spdlog::info("message batch {} ended: {} requests, {} succeeded, {} errored, {} canceled, {} expired", batch->id,
               lines.size(), c["succeeded"].get<int64_t>(), c["errored"].get<int64_t>(), c["canceled"].get<int64_t>(),
               c["expired"].get<int64_t>());
}

// The requests, checked as Anthropic checks them: each {"custom_id", "params"}, the id 1-64 of
// [A-Za-z0-9_-] and no other request's, the params an object (the Messages route checks the rest
// when the request runs: its 400 is that request's "errored" result).
std::vector<BatchLine> read_requests(const json& body) {
  for (const auto& [k, v] : body.items())
    if (k != "requests")
      throw ApiError(400, fmt::format("{}: Extra inputs are not permitted", k), k, "invalid_request_error",
                     "unknown_parameter");
  if (!body.contains("requests")) bad_param("requests", "requests: Field required");
  const json& rs = body["requests"];
  if (!rs.is_array() || rs.empty()) bad_param("requests", "requests: must be a non-empty list");
  if (rs.size() > kMaxRequests)
    bad_param("requests", fmt::format("requests: a batch holds at most {} requests", kMaxRequests));
  std::vector<BatchLine> lines;
  std::unordered_set<std::string> ids;
  for (size_t i = 0; i < rs.size(); ++i) {
    const std::string at = fmt::format("requests.{}", i);
    const json& r = rs[i];
    if (!r.is_object()) bad_param(at, at + ": must be an object");
    for (const auto& [k, v] : r.items())
      if (k != "custom_id" && k != "params") bad_param(at + "." + k, at + "." + k + ": Extra inputs are not permitted");
    const std::string id =
        r.contains("custom_id") && r["custom_id"].is_string() ? r["custom_id"].get<std::string>() : "";
    const auto good_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; };
    if (id.empty() || id.size() > 64 || !std::all_of(id.begin(), id.end(), good_char))
      bad_param(at + ".custom_id", at + ".custom_id: must be a string of 1 to 64 letters, digits, '_' or '-'");
    if (!ids.insert(id).second)
      bad_param(at + ".custom_id", fmt::format("{}.custom_id: '{}' is the custom_id of another request", at, id));
    if (!r.contains("params") || !r["params"].is_object()) bad_param(at + ".params", at + ".params: must be an object");
    const json& p = r["params"];
    // (Compared, not read as a boolean: another type is the route's own 400 when the request runs.)
    const bool stream = p.contains("stream") && p["stream"] == true;
    lines.push_back(BatchLine{id, p.dump(), stream ? "stream" : ""});
  }
  return lines;
}

// The batch as a client sees it: results_url (absolute, as Anthropic's, on the host the client
// reached) once the results are there.
json batch_json(const BatchStore::Batch& b, const httplib::Request& req) {
  std::lock_guard<std::mutex> lk(b.mu);
  json out = b.object;
  if (!b.results_file.empty()) {
    const std::string host = req.get_header_value("Host");
    const bool plain = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == ':' || c == '-' || c == '[' || c == ']';
    });
    const std::string path = "/v1/messages/batches/" + b.id + "/results";
    out["results_url"] = plain ? "http://" + host + path : path;
  }
  return out;
}

void create_message_batch(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  const Caller caller = request_caller();
  const json body = read_json_body(ctx, req, [](std::string_view k) { return k == "requests"; });
  auto lines = std::make_shared<std::vector<BatchLine>>(read_requests(body));
  if (ctx.background.max_running() == 0)
    throw ApiError(400, "This server runs no batches (--max-background-responses 0)", "", "invalid_request_error",
                   "unsupported_parameter");
  if (ctx.background.size() >= ctx.background.max_running()) background_runs_full(ctx);
  const int64_t created = unix_seconds();
  json object = {
      {"id", new_underscore_id("msgbatch")},
      {"type", "message_batch"},
      {"processing_status", "in_progress"},
      {"request_counts",
       {{"processing", int64_t(lines->size())}, {"succeeded", 0}, {"errored", 0}, {"canceled", 0}, {"expired", 0}}},
      {"ended_at", nullptr},
      {"created_at", rfc3339(created)},
      {"expires_at", rfc3339(created + kWindowSeconds)},
      {"archived_at", nullptr},
      {"cancel_initiated_at", nullptr},
      {"results_url", nullptr}};
  auto batch = ctx.message_batches.add(caller.owner, std::move(object));
  const json answer = batch_json(*batch, req);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kWindowSeconds);
  const bool started =
      ctx.background.start(batch->id, [&ctx, batch, lines, caller, deadline](const std::function<bool()>& cancelled) {
        try {
          run_message_batch(ctx, batch, *lines, caller, deadline, cancelled);
        } catch (const std::exception& e) {
          spdlog::error("message batch {}: {}", batch->id, e.what());
          std::lock_guard<std::mutex> lk(batch->mu);
          batch->object["processing_status"] = "ended";
          batch->object["ended_at"] = rfc3339(unix_seconds());
        }
      });
  if (!started) {
    ctx.message_batches.erase(batch->id);
    background_runs_full(ctx);
  }
  send_json(res, 200, answer);
}

std::shared_ptr<BatchStore::Batch> find_message_batch(ServerContext& ctx, const httplib::Request& req) {
  reject_query_parameters(req);
  auto b = ctx.message_batches.get(req.matches[1], request_caller().owner);
  if (!b) message_batch_not_found(req.matches[1]);
  return b;
}

void handle_list(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto batches = ctx.message_batches.list(request_caller().owner);
  std::reverse(batches.begin(), batches.end());  // newest first
  std::vector<std::string> ids;
  for (const auto& b : batches) ids.push_back(b->id);
  const auto element = [&](size_t i) { return batch_json(*batches[i], req); };
  send_json(res, 200, anthropic_page(ids, element, req, "Message Batch"));
}

}  // namespace

void register_message_batch_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/messages/batches",
           [&ctx](const httplib::Request& req, httplib::Response& res) { create_message_batch(ctx, req, res); });
  svr.Get("/v1/messages/batches",
          [&ctx](const httplib::Request& req, httplib::Response& res) { handle_list(ctx, req, res); });
  svr.Get(R"(/v1/messages/batches/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    send_json(res, 200, batch_json(*find_message_batch(ctx, req), req));
  });
  // Cancelling: the requests not yet started never run and those in flight stop; all of them are
  // "canceled" in the results. A batch that has ended is returned as it is.
  svr.Post(R"(/v1/messages/batches/([^/]+)/cancel)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    auto b = find_message_batch(ctx, req);
    if (ctx.background.cancel(b->id)) {
      std::lock_guard<std::mutex> lk(b->mu);
      if (b->object["processing_status"] == "in_progress") {
        b->object["processing_status"] = "canceling";
        b->object["cancel_initiated_at"] = rfc3339(unix_seconds());
      }
    }
    send_json(res, 200, batch_json(*b, req));
  });
  svr.Get(R"(/v1/messages/batches/([^/]+)/results)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    auto b = find_message_batch(ctx, req);
    std::string file_id, status;
    {
      std::lock_guard<std::mutex> lk(b->mu);
      file_id = b->results_file;
      status = b->object["processing_status"].get<std::string>();
    }
    if (status != "ended")
      bad_param("message_batch_id",
                fmt::format("Message Batch {} has not ended yet (processing_status: {})", b->id, status));
    std::optional<FileStore::File> f;
    if (!file_id.empty()) f = ctx.files.get(file_id, request_caller().owner);
    if (!f)
      throw ApiError(404, fmt::format("The results of Message Batch {} are not kept (the file store was full)", b->id),
                     "message_batch_id", "invalid_request_error", "not_found");
    res.status = 200;
    res.set_content(*f->content, "application/x-jsonl");
  });
  // Only a batch that has ended can be deleted (cancel one that runs first); its results go with it.
  svr.Delete(R"(/v1/messages/batches/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    auto b = find_message_batch(ctx, req);
    std::string file_id;
    {
      std::lock_guard<std::mutex> lk(b->mu);
      if (b->object["processing_status"] != "ended")
        bad_param("message_batch_id", fmt::format("Message Batch {} is still processing: cancel it first", b->id));
      file_id = b->results_file;
    }
    if (!file_id.empty()) ctx.files.erase(file_id, request_caller().owner);
    ctx.message_batches.erase(b->id);
    send_json(res, 200, {{"id", b->id}, {"type", "message_batch_deleted"}});
  });
}

}  // namespace dpserve
