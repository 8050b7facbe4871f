// OpenAI Batch API: POST /v1/batches runs the requests of an uploaded JSONL file (/v1/files)
// through the same routes an HTTP client reaches, in the background, several at a time; the results
// become an output file (200 answers) and an error file (the others), as OpenAI's batches do. GET
// /v1/batches/{id} polls it, GET /v1/batches lists, POST /v1/batches/{id}/cancel stops it.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <unordered_set>

#include "core/check.h"
#include "server/batch_lines.h"
#include "server/openai_error.h"
#include "server/request_id.h"
#include "server/request_parse.h"
#include "server/route_helpers.h"
#include "server/routes.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxLines = 50000;     // OpenAI's bound on a batch's requests
constexpr size_t kMaxErrors = 100;      // validation errors reported
constexpr int64_t kMaxWindowSeconds = 30 * 86400;

// completion_window: OpenAI's "24h", or another span as "<N>s|m|h|d" (Groq takes "24h" to "7d"; a
// CPU host may need longer for a big batch, a test shorter), from a second to 30 days.
int64_t completion_window_seconds(const std::string& w) {
  int64_t n = 0;
  size_t i = 0;
  for (; i < w.size() && i < 8 && w[i] >= '0' && w[i] <= '9'; ++i) n = n * 10 + (w[i] - '0');
  const int64_t unit = i + 1 != w.size() ? 0
                       : w[i] == 's'     ? 1
                       : w[i] == 'm'     ? 60
                       : w[i] == 'h'     ? 3600
                       : w[i] == 'd'     ? 86400
                                         : 0;
  if (i == 0 || unit == 0 || n * unit < 1 || n * unit > kMaxWindowSeconds)
    bad_param("completion_window",
              "'completion_window' must be a span such as \"24h\" (OpenAI's value): a number "
              "and s, m, h or d, from 1s to 30d");
  return n * unit;
}

int64_t now_s() { return unix_seconds(); }

[[noreturn]] void batch_not_found(const std::string& id) {
  throw ApiError(404, fmt::format("No such Batch object: {}", id), "batch_id", "invalid_request_error",
                 "batch_not_found");
}

void set_field(BatchStore::Batch& b, const char* key, json value) {
  std::lock_guard<std::mutex> lk(b.mu);
  b.object[key] = std::move(value);
}

// The batch's run: its lines through the route, lines_in_flight() at a time (a 429 from the queue
// bounds is retried), then its output and error files. Cancelled, the lines not yet started never
// run and those running stop (a line stopped counts nowhere); the files hold the lines that ended.
// Results that outgrow the file store stop it the same way, and it fails (file_store_full). At the
// completion window's end it stops the same way and expires: as OpenAI's, each line that did not end
// goes to the error file as batch_expired.
void run_batch(ServerContext& ctx, const std::shared_ptr<BatchStore::Batch>& batch, const std::vector<BatchLine>& lines,
               const std::string& endpoint, const Caller& caller, int64_t output_expires_after,
               std::chrono::steady_clock::time_point deadline, const std::function<bool()>& cancelled) {
  const auto& route = ctx.batch_routes.at(endpoint);
  set_field(*batch, "status", "in_progress");
  set_field(*batch, "in_progress_at", now_s());
  std::vector<std::string> results(lines.size());
  std::vector<char> ok(lines.size(), 0), ran(lines.size(), 0);
  // The results are held here until the end, then become files: once they outgrow the store's room,
  // nothing more runs (memory stays bounded by --max-file-store-mb, not by the input's 50,000 lines).
  const size_t room = ctx.files.max_bytes() - std::min(ctx.files.max_bytes(), ctx.files.bytes());
  std::atomic<size_t> held{0};
  std::atomic<bool> full{false};
  const auto expired = [&] { return std::chrono::steady_clock::now() >= deadline; };
  const std::function<bool()> stop = [&] { return cancelled() || full.load() || expired(); };
  run_batch_lines(ctx, route, endpoint, lines, caller, stop, [&](size_t i, int status, json body) {
    results[i] = json{
        {"id", new_underscore_id("batch_req")},
        {"custom_id", lines[i].custom_id},
        {"response", {{"status_code", status}, {"request_id", new_underscore_id("req")}, {"body", body}}},
        {"error",
         nullptr}}.dump();
    ok[i] = status == 200;
    ran[i] = 1;
    if (held.fetch_add(results[i].size() + 1) + results[i].size() + 1 > room) full = true;
    std::lock_guard<std::mutex> lk(batch->mu);
    json& counts = batch->object["request_counts"];
    counts[status == 200 ? "completed" : "failed"] = counts[status == 200 ? "completed" : "failed"].get<int64_t>() + 1;
  });
  // (A batch whose last line ended just at the deadline is complete.)
  const bool expire = !cancelled() && !full && expired() && std::find(ran.begin(), ran.end(), char(0)) != ran.end();
  set_field(*batch, "status", cancelled() ? "cancelling" : "finalizing");
  set_field(*batch, "finalizing_at", now_s());
  std::string out, err;
  size_t not_ended = 0;
  for (size_t i = 0; i < lines.size() && !full; ++i) {
    if (ran[i]) {
      (ok[i] ? out : err) += results[i] + "\n";
    } else if (expire) {
      ++not_ended;
      err += json{{"id", new_underscore_id("batch_req")},
                  {"custom_id", lines[i].custom_id},
                  {"response", nullptr},
                  {"error",
                   {{"code", "batch_expired"},
                    {"message", "This request could not be executed before the completion window expired."}}}}
                 .dump() +
             "\n";
    }
  }
  results = {};
  auto keep = [&](std::string& text, const char* key, const char* name) {
    if (text.empty()) return true;
    auto f = ctx.files.put(new_request_id("file"), caller.owner, fmt::format("{}_{}.jsonl", batch->id, name),
                           "batch_output", std::move(text), output_expires_after);
    if (f) set_field(*batch, key, f->id);
    return bool(f);
  };
  const bool kept = !full && keep(out, "output_file_id", "output") && keep(err, "error_file_id", "error");
  std::lock_guard<std::mutex> lk(batch->mu);
  if (!kept) {
    batch->object["status"] = "failed";
    batch->object["failed_at"] = now_s();
    batch->object["errors"] = {{"object", "list"},
                               {"data", json::array({{{"code", "file_store_full"},
                                                      {"message", "The results do not fit in --max-file-store-mb"},
                                                      {"param", nullptr},
                                                      {"line", nullptr}}})}};
  } else if (cancelled()) {
    batch->object["status"] = "cancelled";
    batch->object["cancelled_at"] = now_s();
  } else if (expire) {
    batch->object["status"] = "expired";
    batch->object["expired_at"] = now_s();
    json& counts = batch->object["request_counts"];
    counts["failed"] = counts["failed"].get<int64_t>() + int64_t(not_ended);
  } else {
    batch->object["status"] = "completed";
    batch->object["completed_at"] = now_s();
  }
  spdlog::info("batch {} {}: {} requests, {} completed, {} failed", batch->id,
               batch->object["status"].get<std::string>(), lines.size(),
               batch->object["request_counts"]["completed"].get<int64_t>(),
               batch->object["request_counts"]["failed"].get<int64_t>());
}

// The input file's lines, checked as OpenAI checks them: each a JSON object with a unique
// custom_id, method POST, the batch's url and a body object. Problems go to `errors` with their line.
std::vector<BatchLine> read_lines(const std::string& text, const std::string& endpoint, json& errors) {
  std::vector<BatchLine> lines;
  std::unordered_set<std::string> ids;
  size_t at = 0, number = 0;
  auto error = [&](const std::string& code, const std::string& message, const json& param) {
    if (errors.size() < kMaxErrors)
      errors.push_back({{"code", code}, {"message", message}, {"param", param}, {"line", number}});
  };
  while (at < text.size()) {
    size_t eol = text.find('\n', at);
    if (eol == std::string::npos) eol = text.size();
    std::string_view raw(text.data() + at, eol - at);
    at = eol + 1;
    ++number;
    while (!raw.empty() && (raw.back() == '\r' || raw.back() == ' ')) raw.remove_suffix(1);
    if (raw.empty()) continue;
    json j = json::parse(raw, nullptr, false);
    if (!j.is_object()) {
      error("invalid_json_line", "This line is not a JSON object", nullptr);
      continue;
    }
    bool good = true;
    for (const auto& [k, v] : j.items())
      if (k != "custom_id" && k != "method" && k != "url" && k != "body") {
        error("invalid_request", fmt::format("Unrecognized field: {}", k), k);
        good = false;
      }
    if (!j.contains("custom_id") || !j["custom_id"].is_string()) {
      error("missing_required_parameter", "'custom_id' must be a string", "custom_id");
      good = false;
    } else if (!ids.insert(j["custom_id"].get<std::string>()).second) {
      error("duplicate_custom_id", "The custom_id of this line is used by another line", "custom_id");
      good = false;
    }
    if (j.value("method", std::string()) != "POST") {
      error("invalid_method", "'method' must be POST", "method");
      good = false;
    }
    if (j.value("url", std::string()) != endpoint) {
      error("invalid_url", fmt::format("'url' must be the batch's endpoint, {}", endpoint), "url");
      good = false;
    }
    if (!j.contains("body") || !j["body"].is_object()) {
      error("invalid_request", "'body' must be an object", "body");
      good = false;
    }
    if (!good) continue;
    if (lines.size() == kMaxLines) {
      error("too_many_requests", fmt::format("A batch holds at most {} requests", kMaxLines), nullptr);
      break;
    }
    const json& b = j["body"];
    // (Compared, not read as booleans: another type is the route's own 400 when the line runs.)
    auto set = [&](const char* k) { return b.contains(k) && b[k] == true; };
    std::string refused = set("stream") ? "stream" : set("background") ? "background" : "";
    lines.push_back(BatchLine{j["custom_id"].get<std::string>(), b.dump(), std::move(refused)});
  }
  if (lines.empty() && errors.empty()) error("empty_file", "The input file holds no requests", nullptr);
  return lines;
}

void create_batch(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  const Caller caller = request_caller();
  json body = read_json_body(ctx, req, [](std::string_view k) {
    return k == "input_file_id" || k == "endpoint" || k == "completion_window" || k == "metadata" ||
           k == "output_expires_after";
  });
  auto string_field = [&](const char* k) {
    if (!body.contains(k)) bad_param(k, fmt::format("'{}' is required", k));
    if (!body[k].is_string()) bad_param(k, fmt::format("'{}' must be a string", k));
    return body[k].get<std::string>();
  };
  const std::string file_id = string_field("input_file_id");
  const std::string endpoint = string_field("endpoint");
  const std::string window = string_field("completion_window");
  const int64_t window_s = completion_window_seconds(window);
  if (!ctx.batch_routes.count(endpoint) || endpoint == "/v1/messages")  // (Anthropic's own batches run those)
    bad_param("endpoint", fmt::format("'{}' is not a batch endpoint here: /v1/chat/completions, /v1/completions, "
                                      "/v1/responses or /v1/embeddings",
                                      endpoint));
  json metadata = nullptr;
  if (body.contains("metadata") && !body["metadata"].is_null()) {
    check_metadata(body["metadata"]);
    metadata = body["metadata"];
  }
  // OpenAI's output_expires_after: the output and error files expire that long after they are made.
  const int64_t output_expires_after =
      expires_after_object("output_expires_after", body.value("output_expires_after", json()));
  auto file = ctx.files.get(file_id, caller.owner);
  if (!file)
    throw ApiError(404, fmt::format("No such File object: {}", file_id), "input_file_id", "", "file_not_found");
  if (file->purpose != "batch")
    bad_param("input_file_id", fmt::format("File {} has purpose '{}', not 'batch'", file_id, file->purpose));
  if (ctx.background.max_running() == 0)
    throw ApiError(400, "This server runs no batches (--max-background-responses 0)", "", "invalid_request_error",
                   "unsupported_parameter");
  if (ctx.background.size() >= ctx.background.max_running()) background_runs_full(ctx);

  json errors = json::array();
  auto lines = std::make_shared<std::vector<BatchLine>>(read_lines(*file->content, endpoint, errors));
  const int64_t created = now_s();
  json object = {{"id", new_underscore_id("batch")},
                 {"object", "batch"},
                 {"endpoint", endpoint},
                 {"errors", nullptr},
                 {"input_file_id", file_id},
                 {"completion_window", window},
                 {"status", "validating"},
                 {"output_file_id", nullptr},
                 {"error_file_id", nullptr},
                 {"created_at", created},
                 {"in_progress_at", nullptr},
                 {"expires_at", created + window_s},
                 {"finalizing_at", nullptr},
                 {"completed_at", nullptr},
                 {"failed_at", nullptr},
                 {"expired_at", nullptr},
                 {"cancelling_at", nullptr},
                 {"cancelled_at", nullptr},
                 {"request_counts", {{"total", errors.empty() ? lines->size() : 0}, {"completed", 0}, {"failed", 0}}},
                 {"metadata", metadata}};
  if (!errors.empty()) {
    // As OpenAI: a file that does not validate makes a failed batch, its errors by line.
    object["status"] = "failed";
    object["failed_at"] = created;
    object["errors"] = {{"object", "list"}, {"data", errors}};
    send_json(res, 200, ctx.batches.add(caller.owner, std::move(object))->snapshot());
    return;
  }
  auto batch = ctx.batches.add(caller.owner, std::move(object));
  const json answer = batch->snapshot();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(window_s);
  const bool started = ctx.background.start(batch->id, [&ctx, batch, lines, endpoint, caller, output_expires_after,
                                                        deadline](const std::function<bool()>& cancelled) {
    try {
      run_batch(ctx, batch, *lines, endpoint, caller, output_expires_after, deadline, cancelled);
    } catch (const std::exception& e) {
      spdlog::error("batch {}: {}", batch->id, e.what());
      set_field(*batch, "status", "failed");
      set_field(*batch, "failed_at", now_s());
    }
  });
  if (!started) {
    ctx.batches.erase(batch->id);
    background_runs_full(ctx);
  }
  send_json(res, 200, answer);
}

std::shared_ptr<BatchStore::Batch> find_batch(ServerContext& ctx, const httplib::Request& req) {
  reject_query_parameters(req);
  auto b = ctx.batches.get(req.matches[1], request_caller().owner);
  if (!b) batch_not_found(req.matches[1]);
  return b;
}

}  // namespace

void register_batch_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/batches",
           [&ctx](const httplib::Request& req, httplib::Response& res) { create_batch(ctx, req, res); });
  svr.Get(R"(/v1/batches/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    send_json(res, 200, find_batch(ctx, req)->snapshot());
  });
  // Cancelling: the lines not yet started never run, the running ones stop, and the files keep
  // the lines that ended. A batch that already ended is returned as it is.
  svr.Post(R"(/v1/batches/([^/]+)/cancel)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    auto b = find_batch(ctx, req);
    if (ctx.background.cancel(b->id)) {
      std::lock_guard<std::mutex> lk(b->mu);
      if (!batch_finished(b->object["status"].get<std::string>())) {
        b->object["status"] = "cancelling";
        b->object["cancelling_at"] = now_s();
      }
    }
    send_json(res, 200, b->snapshot());
  });
  svr.Get("/v1/batches", [&ctx](const httplib::Request& req, httplib::Response& res) {
    std::string after;
    int64_t limit = 20;
    for (const auto& [k, v] : req.params) {
      if (k == "after") {
        after = v;
      } else if (k == "limit") {
        limit = query_integer(k, v, 1, 100);
      } else {
        unknown_query_parameter(k);
      }
    }
    auto all = ctx.batches.list(request_caller().owner);
    std::reverse(all.begin(), all.end());  // newest first, as OpenAI lists them
    size_t from = 0;
    if (!after.empty()) {
      auto it = std::find_if(all.begin(), all.end(), [&](const auto& b) { return b->id == after; });
      if (it == all.end())
        throw ApiError(400, fmt::format("No such Batch object: {}", after), "after", "", "invalid_value");
      from = size_t(it - all.begin()) + 1;
    }
    json data = json::array();
    for (size_t i = from; i < all.size() && int64_t(data.size()) < limit; ++i) data.push_back(all[i]->snapshot());
    send_json(res, 200,
              {{"object", "list"},
               {"data", data},
               {"first_id", data.empty() ? json(nullptr) : data.front()["id"]},
               {"last_id", data.empty() ? json(nullptr) : data.back()["id"]},
               {"has_more", from + data.size() < all.size()}});
  });
}

}  // namespace dpserve
