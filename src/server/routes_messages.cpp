// Anthropic's Messages API: POST /v1/messages (a whole Message, or streamed as Anthropic's events)
// and POST /v1/messages/count_tokens, on the chat path every other route uses. Errors are Anthropic's
// shape (anthropic_error.h).
#include "server/anthropic_error.h"
#include "server/chat_output.h"
#include "server/generation.h"
#include "server/messages_output.h"
#include "server/messages_request.h"
#include "server/openai_error.h"
#include "server/request_id.h"
#include "server/route_helpers.h"
#include "server/routes.h"
#include "server/sse.h"
#include "server/tools_parse.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

// Everything one message is made of while it runs; shared with the streaming provider.
struct MessageRun {
  std::string id;
  MessagesRequest mr;
  std::shared_ptr<ChatOutputParser> parser;  // null: all text is a text block
  MessagesOutput out;
  ChoiceDelta end;  // the finishing delta's facts (reason, matched stop, fault); its text is fed
};

void feed(MessageRun& run, const std::string& text, bool finished, std::vector<json>& events) {
  for (auto& e : run.out.feed(parse_delivery(run.parser.get(), text, finished))) events.push_back(std::move(e));
}

// Anthropic counts cached prompt tokens apart: input_tokens + cache_read_input_tokens is the prompt.
json usage_json(int64_t prompt, int64_t cached, int64_t output) {
  return {{"input_tokens", prompt - cached},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", cached},
          {"output_tokens", output}};
}

json message_json(const MessageRun& run, const json& content, const json& stop_reason, const json& usage) {
  const std::string stop = stop_reason.is_string() ? stop_reason.get<std::string>() : "";
  return {{"id", run.id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", run.mr.spec.model},
          {"content", content},
          {"stop_reason", stop_reason},
          {"stop_sequence", stop == "stop_sequence" ? json(run.end.matched_stop) : json(nullptr)},
          {"usage", usage}};
}

std::string sse_named(const json& e) { return "event: " + e["type"].get<std::string>() + "\n" + sse_event(e); }

void create_message(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  const std::string owner = request_caller().owner;
  auto run = std::make_shared<MessageRun>();
  {
    json body = read_json_body(ctx, req, [](std::string_view k) { return is_messages_field(k, false); });
    run->mr = parse_messages_request(body, req.body, ctx.parse, false);
  }
  release_body(req);
  GenSpec& spec = run->mr.spec;
  spec.log_requests = ctx.opts.log_requests;
  std::shared_ptr<void> inflight = admit_generation(ctx, spec);
  ctx.metrics.count_images(int64_t(spec.images.size()), spec.image_times);
  run->id = new_underscore_id("msg");
  const ReasoningParser rp = spec.separate_reasoning ? ctx.parse.reasoning_parser : ReasoningParser::kNone;
  run->parser = chat_output_parser(rp, ctx.parse.tool_parser, spec, std::hash<std::string>{}(run->id));
  const int64_t prompt_tokens = spec.prompts.empty() ? 0 : int64_t(spec.prompts[0].size());

  const std::string id = run->id;
  auto gen = std::make_shared<Generation>(
      ctx.engine, ctx.tok, spec, &ctx.metrics, &ctx.registry, [&id](size_t) { return id; }, owner);
  auto gone = client_gone_fn(ctx, req);
  auto final_usage = [gen](AccessInfo& ai) {
    ChoiceRun& c = gen->choice(0);
    ai.prompt_tokens = c.prompt_tokens();
    ai.completion_tokens = c.completion_tokens();
    return usage_json(c.prompt_tokens(), c.cached_tokens(), c.completion_tokens());
  };
  if (!run->mr.stream) {
    std::vector<json> ignored;
    if (!gen->drive(
            [&](size_t, const ChoiceDelta& d) {
              feed(*run, d.text, d.finished, ignored);
              keep_end(run->end, d);
              return true;
            },
            gone)) {
      res.status = 499;  // the client is gone; nobody reads this
      access_info().finish = "client_gone";
      return;
    }
    throw_if_failed(run->end);
    run->out.finish();
    AccessInfo& ai = access_info();
    const json usage = final_usage(ai);
    ai.finish = run->end.finish_reason;
    const std::string stop = anthropic_stop_reason(run->end.finish_reason, run->end.matched_stop,
                                                   run->mr.spec.stop, run->out.has_tool_use());
    send_json(res, 200, message_json(*run, run->out.content(), stop, usage));
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  set_stream_provider(
      req, res, "text/event-stream",
      [run, gen, gone, inflight, prompt_tokens, final_usage](size_t, httplib::DataSink& sink) {
        auto write = [&](const json& e) {
          const std::string s = sse_named(e);
          return sink.write(s.data(), s.size());
        };
        // The prompt's length is known before it runs; how much of it the cache held, only after.
        if (!write({{"type", "message_start"},
                    {"message", message_json(*run, json::array(), nullptr, usage_json(prompt_tokens, 0, 0))}}) ||
            !write({{"type", "ping"}}))
          return false;
        bool ok = gen->drive(
            [&](size_t, const ChoiceDelta& d) {
              std::vector<json> events;
              feed(*run, d.text, d.finished, events);
              keep_end(run->end, d);
              for (auto& e : events)
                if (!write(e)) return false;
              return true;
            },
            gone);
        AccessInfo& ai = access_info();
        ai.finish = ok ? run->end.finish_reason : "client_gone";
        if (!ok) return false;  // client gone: close the connection
        for (auto& e : run->out.finish())
          if (!write(e)) return false;
        if (run->end.fault) {
          // The engine refused or lost the request after the headers went out: Anthropic's error event.
          const json err = stream_error_event(run->end);
          const json& code = err["error"]["code"];
          const int status = run->end.engine_fault ? 500 : code == "engine_rejected" ? 400 : 503;
          if (!write(anthropic_error_body(status, err))) return false;
          sink.done();
          return true;
        }
        const json usage = final_usage(ai);
        const std::string stop = anthropic_stop_reason(run->end.finish_reason, run->end.matched_stop,
                                                       run->mr.spec.stop, run->out.has_tool_use());
        json delta{{"stop_reason", stop}, {"stop_sequence", nullptr}};
        if (stop == "stop_sequence") delta["stop_sequence"] = run->end.matched_stop;
        if (!write({{"type", "message_delta"}, {"delta", delta}, {"usage", usage}}) ||
            !write({{"type", "message_stop"}}))
          return false;
        sink.done();
        return true;
      });
}

void handle_count_tokens(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  json body = read_json_body(ctx, req, [](std::string_view k) { return is_messages_field(k, true); });
  MessagesRequest mr;
  try {
    mr = parse_messages_request(body, req.body, ctx.parse, true);
  } catch (const ApiError& e) {
    // Past the context: counted all the same (Claude Code counts to decide when to compact).
    if (e.code() != "context_length_exceeded") throw;
    mr = parse_messages_request(body, req.body, without_length_bounds(ctx.parse), true);
  }
  release_body(req);
  const int64_t n = mr.spec.prompts.empty() ? 0 : int64_t(mr.spec.prompts[0].size());
  access_info().prompt_tokens = n;
  send_json(res, 200, {{"input_tokens", n}});
}

}  // namespace

void register_messages_routes(httplib::Server& svr, ServerContext& ctx) {
  // (Also the route of Anthropic's message batches' requests.)
  ctx.batch_routes["/v1/messages"] = [&ctx](const httplib::Request& req, httplib::Response& res) {
    create_message(ctx, req, res);
  };
  svr.Post("/v1/messages", ctx.batch_routes["/v1/messages"]);
  svr.Post("/v1/messages/count_tokens",
           [&ctx](const httplib::Request& req, httplib::Response& res) { handle_count_tokens(ctx, req, res); });
}

}  // namespace dpserve
