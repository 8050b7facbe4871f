// OpenAI Responses API: POST /v1/responses (whole, streamed as semantic events, or run in the
// background to be polled and cancelled), GET and DELETE
// /v1/responses/{id} and GET /v1/responses/{id}/input_items on the bounded in-memory store that
// previous_response_id reads.
#include <algorithm>
#include <ctime>
#include <limits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/body_fields.h"
#include "server/chat_output.h"
#include "server/generation.h"
#include "server/openai_error.h"
#include "server/openai_format.h"
#include "server/request_id.h"
#include "server/response_input_items.h"
#include "server/response_output.h"
#include "server/responses_request.h"
#include "server/route_helpers.h"
#include "server/routes.h"
#include "server/sse.h"
#include "server/tools_parse.h"

namespace dpserve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// Everything one response is made of while it runs; shared with the streaming provider.
struct ResponseRun {
  std::string id;
  int64_t created = 0;
  ResponsesRequest rr;
  std::shared_ptr<ChatOutputParser> parser;  // null: all text is message content
  ResponseOutput out{new_underscore_id};
  std::string text;                          // the raw generated text
  ChoiceDelta end;                           // the choice's last delivery (finish, error), text-free
};

void feed(const ServerContext& ctx, ResponseRun& run, const ChoiceDelta& d, std::vector<json>& events) {
  run.text += d.text;
  const GenSpec& spec = run.rr.spec;
  const json logprobs =
      run.rr.logprobs ? token_logprobs(ctx.tok, d.tokens, spec.shown_top_logprobs, spec.tokens_as_ids) : json();
  for (auto& e : run.out.feed(parse_delivery(run.parser.get(), d.text, d.finished), logprobs))
    events.push_back(std::move(e));
}

int64_t reasoning_tokens(const ResponseRun& run, const ChoiceRun& c, const ServerContext& ctx) {
  std::string reasoning;
  for (const json& it : run.out.items())
    if (it["type"] == "reasoning")
      for (const json& p : it["content"]) reasoning += p["text"].get<std::string>();
  return reasoning_token_count(c.output_ids(), ctx.parse.think.close_id, reasoning, ctx.tok);
}

// The Response object as it stands: status queued (a background response waiting for its first
// token) or in_progress while running, then completed, incomplete (max_output_tokens), cancelled
// (aborted) or failed.
json response_json(const ServerContext& ctx, const ResponseRun& run, const std::string& status, Generation* gen) {
  json r = run.rr.echo;
  r["id"] = run.id;
  r["object"] = "response";
  r["created_at"] = run.created;
  r["model"] = run.rr.spec.model;
  r["status"] = status;
  r["output"] = status == "in_progress" || status == "queued" ? json::array() : run.out.items();
  r["error"] = nullptr;
  r["incomplete_details"] = status == "incomplete" ? json{{"reason", "max_output_tokens"}} : json(nullptr);
  r["usage"] = nullptr;
  if (gen && gen->size() == 1) {
    ChoiceRun& c = gen->choice(0);
    r["usage"] = {{"input_tokens", c.prompt_tokens()},
                  {"input_tokens_details", {{"cached_tokens", c.cached_tokens()}}},
                  {"output_tokens", c.completion_tokens()},
                  {"output_tokens_details", {{"reasoning_tokens", reasoning_tokens(run, c, ctx)}}},
                  {"total_tokens", c.prompt_tokens() + c.completion_tokens()}};
  }
  return r;
}

std::string final_status(const ResponseRun& run) {
  if (run.end.fault) return "failed";
  if (run.end.finish_reason == "length") return "incomplete";
  if (run.end.finish_reason == "abort") return "cancelled";
  return "completed";
}

// Keeps a finished response for GET and for previous_response_id: the conversation it continued,
// its input, then its output items in the shapes a follow-up replays, each with its id (the output
// items keep theirs) so that input_items lists and pages them the same along a chain.
// A background response was kept when it was queued: its end replaces that entry (failed too, since
// nobody else hears of it) unless the entry was deleted or evicted meanwhile.
// A response in a conversation (completed or incomplete) appends its input and output items to it,
// stored or not: they are the conversation's.
void keep(ServerContext& ctx, const ResponseRun& run, const json& response, const std::string& owner) {
  const bool ended = response["status"] == "completed" || response["status"] == "incomplete";
  const bool in_conversation = !run.rr.conversation_id.empty() && ended;
  const bool stored = run.rr.store && (response["status"] != "failed" || run.rr.background);
  if (!in_conversation && !stored) return;
  ojson conv = run.rr.conversation;
  const size_t input_count = conv.size();
  for (const json& it : run.out.items()) {
    if (it["type"] == "message") {
      ojson parts = ojson::array();
      for (const json& p : it["content"]) parts.push_back({{"type", "output_text"}, {"text", p["text"]}});
      conv.push_back({{"type", "message"}, {"role", "assistant"}, {"content", std::move(parts)}, {"id", it["id"]}});
    } else if (it["type"] == "reasoning") {
      conv.push_back({{"type", "reasoning"}, {"content", ojson::parse(it["content"].dump())}, {"id", it["id"]}});
    } else if (it["type"] == "function_call") {
      conv.push_back({{"type", "function_call"}, {"call_id", it["call_id"]}, {"name", it["name"]},
                      {"arguments", it["arguments"]}, {"id", it["id"]}});
    }
  }
  give_item_ids(conv, new_underscore_id);
  if (in_conversation) {
    // (A conversation deleted meanwhile, or grown past the store, is left as it is.)
    ctx.conversations.update(run.rr.conversation_id, owner, [&](ResponseStore::Entry& c) {
      for (size_t i = run.rr.conversation_prefix; i < conv.size(); ++i) c.conversation.push_back(conv[i]);
    });
  }
  if (!stored) return;
  ResponseStore::Entry e{owner, response, std::move(conv), input_count};
  if (run.rr.background)
    ctx.responses.replace(run.id, e);
  else
    ctx.responses.put(run.id, e);
}

// A failed response's `error`: the engine's refusal or fault as the stream's error event names it.
void set_failure(json& response, const ChoiceDelta& end) {
  const json err = stream_error_event(end);
  response["status"] = "failed";
  response["error"] = {{"code", err["error"]["code"]}, {"message", err["error"]["message"]}};
}

std::string sse_typed(json e, int64_t& seq) {
  e["sequence_number"] = seq++;
  const std::string type = e["type"].get<std::string>();
  return "event: " + type + "\n" + sse_event(e);
}

// The body read with `known` and parsed as a Responses request; previous_response_id is looked up
// among the caller's stored responses.
ResponsesRequest read_responses_request(ServerContext& ctx, const httplib::Request& req, const std::string& owner,
                                        bool (*known)(std::string_view), bool count_past_context = false) {
  json body = read_json_body(ctx, req, known);
  auto previous = [&](const std::string& id) -> std::optional<ojson> {
    auto e = ctx.responses.get(id, owner);
    if (!e) return std::nullopt;
    const json& status = e->response["status"];
    if (status == "queued" || status == "in_progress")
      throw ApiError(400, fmt::format("Previous response with id '{}' has not finished (status {}).", id,
                                      status.get<std::string>()),
                     "previous_response_id", "invalid_request_error", "previous_response_not_finished");
    return std::move(e->conversation);
  };
  auto conversation = [&](const std::string& id) -> std::optional<ojson> {
    auto e = ctx.conversations.get(id, owner);
    if (!e) return std::nullopt;
    return std::move(e->conversation);
  };
  auto file = [&](const std::string& id) -> std::shared_ptr<const std::string> {
    auto f = ctx.files.get(id, owner);
    return f ? f->content : nullptr;
  };
  ResponsesRequest rr;
  try {
    rr = parse_responses_request(body, req.body, ctx.parse, previous, conversation, file);
  } catch (const ApiError& e) {
    // input_tokens: a conversation past the context is counted all the same (what does not fit is
    // what a client trims; truncation "auto" still drops turns first where that makes it fit).
    if (!count_past_context || e.code() != "context_length_exceeded") throw;
    rr = parse_responses_request(body, req.body, without_length_bounds(ctx.parse), previous, conversation, file);
  }
  release_body(req);
  return rr;
}

// Before admission: a background response needs the store and a free run (429 when all run).
void check_background_room(ServerContext& ctx) {
  if (ctx.opts.max_background_responses == 0)
    unsupported("background", "this server runs no background responses (--max-background-responses 0)");
  if (ctx.opts.max_stored_responses == 0)
    unsupported("background", "a background response is kept to be polled, and --max-stored-responses 0 keeps none");
  if (ctx.background.size() >= ctx.background.max_running()) background_runs_full(ctx);
}

// The run of a background response on its own thread: its progress and end replace the entry kept
// when it was queued (in_progress at the first delivery). Cancelled (POST .../cancel, DELETE, the
// server stopping) it ends as `cancelled` with the output so far. Streamed, its events go to `log`
// (after response.created, which the create call put there), numbered on from `seq`.
void run_in_background(ServerContext& ctx, ResponseRun& run, Generation& gen, const std::string& owner,
                       const std::function<bool()>& cancelled, EventLog* log, int64_t seq) {
  const auto entry = [&](const json& r) {
    return ResponseStore::Entry{owner, r, run.rr.conversation, run.rr.conversation.size()};
  };
  auto emit = [&](std::vector<json>& events) {
    if (log)
      for (auto& e : events) log->append(sse_typed(std::move(e), seq));
    events.clear();
  };
  bool started = false;
  std::vector<json> events;
  std::string status;
  try {
    const bool ok = gen.drive(
        [&](size_t, const ChoiceDelta& d) {
          if (!started) {
            const json progress = response_json(ctx, run, "in_progress", nullptr);
            ctx.responses.replace(run.id, entry(progress));
            events.push_back({{"type", "response.in_progress"}, {"response", progress}});
          }
          started = true;
          feed(ctx, run, d, events);
          keep_end(run.end, d);
          emit(events);
          return true;
        },
        [&] { return cancelled() || ctx.stopping.load(); });
    status = ok ? final_status(run) : "cancelled";
  } catch (const std::exception& e) {
    // A delivery the parsers could not take: the run fails with what the thread knows.
    run.end.fault = true;
    run.end.error = e.what();
    status = "failed";
  }
  events = run.out.finish(status == "incomplete");
  emit(events);
  json response = response_json(ctx, run, status, &gen);
  if (status == "failed") set_failure(response, run.end);
  keep(ctx, run, response, owner);
  if (log) {
    // As the foreground stream ends: a cancelled response's status says so in response.completed.
    const char* type = status == "incomplete" ? "response.incomplete"
                       : status == "failed"   ? "response.failed"
                                              : "response.completed";
    log->append(sse_typed({{"type", type}, {"response", response}}, seq));
    log->finish();
    ctx.background_events.finished(run.id);
  }
  const json& usage = response["usage"];
  spdlog::info("background response {} {}: prompt_tokens={} completion_tokens={}", run.id, status,
               usage.is_null() ? 0 : usage["input_tokens"].get<int64_t>(),
               usage.is_null() ? 0 : usage["output_tokens"].get<int64_t>());
}

// Streams `log` from event `from` on: until its run has ended (then the connection stays open for
// the next request), the client leaves or the server stops. The run goes on whatever the reader does.
void stream_log(ServerContext& ctx, const httplib::Request& req, httplib::Response& res,
                std::shared_ptr<EventLog> log, size_t from) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto gone = client_gone_fn(ctx, req);
  set_stream_provider(req, res, "text/event-stream", [log, from, gone](size_t, httplib::DataSink& sink) {
    size_t next = from;
    for (;;) {
      bool done = false;
      for (const std::string& e : log->read(next, std::chrono::milliseconds(200), done)) {
        if (!sink.write(e.data(), e.size())) return false;
        ++next;
      }
      if (done && next >= log->size()) break;
      if (gone()) return false;
    }
    sink.done();
    return true;
  });
}

// Keeps the response as queued (its input items get their ids now, so that input_items lists the
// same ids before and after it ran) and starts its run; streamed, its log opens with
// response.created. Returns what the create call answers when not streamed.
json start_background(ServerContext& ctx, const std::shared_ptr<ResponseRun>& run, std::shared_ptr<Generation> gen,
                      std::shared_ptr<void> inflight, const std::string& owner, std::shared_ptr<EventLog>& log) {
  give_item_ids(run->rr.conversation, new_underscore_id);
  json queued = response_json(ctx, *run, "queued", nullptr);
  if (!ctx.responses.put(run->id, ResponseStore::Entry{owner, queued, run->rr.conversation,
                                                       run->rr.conversation.size()}))
    throw ApiError(400,
                   "The response is larger than --max-stored-responses-mb holds, so it cannot run in the background",
                   "background", "invalid_request_error", "response_too_large");
  int64_t seq = 0;
  if (run->rr.stream) {
    log = ctx.background_events.open(run->id);
    log->append(sse_typed({{"type", "response.created"}, {"response", queued}}, seq));
  }
  const bool started = ctx.background.start(
      run->id, [&ctx, run, gen, inflight, owner, log, seq](const std::function<bool()>& cancelled) {
        try {
          run_in_background(ctx, *run, *gen, owner, cancelled, log.get(), seq);
        } catch (const std::exception& e) {  // out of memory keeping its end: the thread must not throw
          spdlog::error("background response {}: {}", run->id, e.what());
          if (log) {
            log->finish();
            ctx.background_events.finished(run->id);
          }
        }
      });
  if (!started) {
    ctx.responses.erase(run->id, owner);
    if (log) ctx.background_events.erase(run->id);
    background_runs_full(ctx);
  }
  access_info().finish = "background";
  return queued;
}

void create_response(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  const std::string owner = request_caller().owner;
  auto run = std::make_shared<ResponseRun>();
  run->rr = read_responses_request(ctx, req, owner, is_responses_field);
  GenSpec& spec = run->rr.spec;
  spec.log_requests = ctx.opts.log_requests;
  if (run->rr.background) check_background_room(ctx);
  std::shared_ptr<void> inflight = admit_generation(ctx, spec);
  ctx.metrics.count_images(int64_t(spec.images.size()), spec.image_times);
  run->id = new_underscore_id("resp");
  run->created = unix_seconds();
  const ReasoningParser rp = spec.separate_reasoning ? ctx.parse.reasoning_parser : ReasoningParser::kNone;
  run->parser = chat_output_parser(rp, ctx.parse.tool_parser, spec, std::hash<std::string>{}(run->id));
  if (run->rr.logprobs) {
    std::set<std::string> markup;
    if (rp == ReasoningParser::kQwen3) markup = {"<think>", "</think>"};
    if (rp == ReasoningParser::kGptOss)
      for (std::string_view m : harmony_markers()) markup.emplace(m);
    if (!spec.tool_names.empty())
      for (std::string_view m : tool_call_markers(ctx.parse.tool_parser)) markup.emplace(m);
    run->out.set_markup(std::move(markup));
  }

  const std::string id = run->id;
  auto gen = std::make_shared<Generation>(ctx.engine, ctx.tok, spec, &ctx.metrics, &ctx.registry,
                                          [id](size_t) { return id; }, owner);
  if (run->rr.background) {
    std::shared_ptr<EventLog> log;
    json queued = start_background(ctx, run, gen, std::move(inflight), owner, log);
    if (log)
      stream_log(ctx, req, res, log, 0);
    else
      send_json(res, 200, queued);
    return;
  }
  auto gone = client_gone_fn(ctx, req);
  if (!run->rr.stream) {
    std::vector<json> ignored;
    if (!gen->drive(
            [&](size_t, const ChoiceDelta& d) {
              feed(ctx, *run, d, ignored);
              keep_end(run->end, d);
              return true;
            },
            gone)) {
      res.status = 499;  // the client is gone; nobody reads this
      access_info().finish = "client_gone";
      return;
    }
    throw_if_failed(run->end);
    const std::string status = final_status(*run);
    run->out.finish(status == "incomplete");
    json response = response_json(ctx, *run, status, gen.get());
    access_info().prompt_tokens = response["usage"]["input_tokens"].get<int64_t>();
    access_info().completion_tokens = response["usage"]["output_tokens"].get<int64_t>();
    access_info().finish = run->end.finish_reason;
    keep(ctx, *run, response, owner);
    send_json(res, 200, response);
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  set_stream_provider(
      req, res, "text/event-stream", [&ctx, run, gen, gone, inflight, owner](size_t, httplib::DataSink& sink) {
        int64_t seq = 0;
        auto write = [&](json e) {
          const std::string s = sse_typed(std::move(e), seq);
          return sink.write(s.data(), s.size());
        };
        const json start = response_json(ctx, *run, "in_progress", nullptr);
        if (!write({{"type", "response.created"}, {"response", start}}) ||
            !write({{"type", "response.in_progress"}, {"response", start}}))
          return false;
        bool ok = gen->drive(
            [&](size_t, const ChoiceDelta& d) {
              std::vector<json> events;
              feed(ctx, *run, d, events);
              keep_end(run->end, d);
              for (auto& e : events)
                if (!write(std::move(e))) return false;
              return true;
            },
            gone);
        AccessInfo& ai = access_info();
        ai.finish = ok ? run->end.finish_reason : "client_gone";
        if (!ok) return false;  // client gone: close the connection
        const std::string status = final_status(*run);
        for (auto& e : run->out.finish(status == "incomplete"))
          if (!write(std::move(e))) return false;
        json response = response_json(ctx, *run, status, gen.get());
        ai.prompt_tokens = response["usage"]["input_tokens"].get<int64_t>();
        ai.completion_tokens = response["usage"]["output_tokens"].get<int64_t>();
        keep(ctx, *run, response, owner);
        const char* type = status == "incomplete" ? "response.incomplete"
                           : status == "failed"   ? "response.failed"
                                                  : "response.completed";
        if (status == "failed") {
          // The engine refused or lost the request after the headers went out: say so, then fail.
          set_failure(response, run->end);
          type = "response.failed";
        }
        if (!write({{"type", type}, {"response", response}})) return false;
        sink.done();
        return true;
      });
}

std::optional<ResponseStore::Entry> stored(ServerContext& ctx, const httplib::Request& req) {
  for (const auto& [k, v] : req.params)
    throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", k), k, "", "unknown_parameter");
  return ctx.responses.get(req.matches[1], request_caller().owner);
}

[[noreturn]] void not_found(const std::string& id) {
  throw ApiError(404, fmt::format("Response with id '{}' not found.", id), "response_id", "invalid_request_error",
                 "response_not_found");
}

}  // namespace

void register_responses_routes(httplib::Server& svr, ServerContext& ctx) {
  ctx.batch_routes["/v1/responses"] = [&ctx](const httplib::Request& req, httplib::Response& res) {
    create_response(ctx, req, res);
  };
  svr.Post("/v1/responses", ctx.batch_routes["/v1/responses"]);
  // OpenAI's token count of a Responses request: the prompt /v1/responses would run, nothing generated.
  svr.Post("/v1/responses/input_tokens", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const ResponsesRequest rr = read_responses_request(ctx, req, request_caller().owner, is_input_tokens_field, true);
    const int64_t n = rr.spec.prompts.empty() ? 0 : int64_t(rr.spec.prompts[0].size());
    access_info().prompt_tokens = n;
    send_json(res, 200, {{"object", "response.input_tokens"}, {"input_tokens", n}});
  });
  // ?stream=true[&starting_after=N]: a streamed background response's events again (after the
  // one numbered N), then on as it runs, for a client whose connection dropped.
  svr.Get(R"(/v1/responses/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    bool stream = false;
    int64_t after = -1;
    for (const auto& [k, v] : req.params) {
      if (k == "stream" && (v == "true" || v == "false")) {
        stream = v == "true";
      } else if (k == "starting_after") {
        after = query_integer(k, v, 0, std::numeric_limits<int64_t>::max());
      } else {
        unknown_query_parameter(k);
      }
    }
    if (after >= 0 && !stream)
      throw ApiError(400, "'starting_after' is only allowed with stream=true", "starting_after", "", "invalid_value");
    auto e = ctx.responses.get(id, request_caller().owner);
    if (!e) not_found(id);
    if (!stream) return send_json(res, 200, e->response);
    auto log = ctx.background_events.find(id);
    if (!log)
      throw ApiError(400,
                     "This response's events are not kept: only a background response created with stream: true "
                     "can be streamed again, while it runs or as one of the last --max-background-responses to "
                     "finish; GET it without stream",
                     "stream", "invalid_request_error", "response_not_streamable");
    stream_log(ctx, req, res, log, size_t(after + 1));
  });
  svr.Get(R"(/v1/responses/([^/]+)/input_items)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const InputItemsQuery q = parse_input_items_query(req.params);
    auto e = ctx.responses.get(req.matches[1], request_caller().owner);
    if (!e) not_found(req.matches[1]);
    e->conversation.erase(e->conversation.begin() + ptrdiff_t(e->input_count), e->conversation.end());
    send_json(res, 200, json::parse(list_input_items(e->conversation, q).dump()));
  });
  // OpenAI cancels background responses only. A running one is stopped and its end (cancelled, with
  // the output so far) returned; one that already ended is returned as it is (cancelling is idempotent).
  svr.Post(R"(/v1/responses/([^/]+)/cancel)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    auto e = stored(ctx, req);
    if (!e) not_found(id);
    if (e->response.value("background", false) != true)
      throw ApiError(400, "Only responses created with background: true can be cancelled; this one has already "
                          "finished.",
                     "response_id", "invalid_request_error", "response_not_cancellable");
    if (ctx.background.cancel(id)) {
      // The engine drops it within a step; a stuck engine is not waited for past this.
      ctx.background.wait(id, std::chrono::seconds(30));
      e = ctx.responses.get(id, request_caller().owner);
      if (!e) not_found(id);
    }
    send_json(res, 200, e->response);
  });
  svr.Delete(R"(/v1/responses/([^/]+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    // A background run of it stops (its end finds no entry to replace) before the answer, so that its
    // place under --max-background-responses is free again when the client hears of the deletion.
    if (!ctx.responses.erase(req.matches[1], request_caller().owner)) not_found(req.matches[1]);
    if (ctx.background.cancel(req.matches[1])) ctx.background.wait(req.matches[1], std::chrono::seconds(30));
    ctx.background_events.erase(req.matches[1]);
    send_json(res, 200, {{"id", std::string(req.matches[1])}, {"object", "response"}, {"deleted", true}});
  });
}

}  // namespace dpserve
