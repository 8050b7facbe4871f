// OpenAI-compatible routes: /v1/completions, /v1/chat/completions, /v1/models.
#include <algorithm>
#include <ctime>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/check.h"
#include "server/anthropic_error.h"
#include "server/anthropic_list.h"
#include "server/chat_output.h"
#include "server/generation.h"
#include "server/openai_error.h"
#include "server/openai_format.h"
#include "server/request_id.h"
#include "server/route_helpers.h"
#include "server/routes.h"
#include "server/sse.h"
#include "server/tools_parse.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

// What one choice has produced so far.
struct ChoiceState {
  std::string text;              // generated text (without the echoed prompt)
  std::vector<TokenOut> tokens;
  std::vector<TokenOut> prompt;  // echo + logprobs: the prompt positions' logprobs
  std::string finish_reason, matched_stop, error;
  bool engine_fault = false, engine_unavailable = false;
  int64_t token_bytes = 0;        // streaming: bytes of the echo and of the tokens already sent
  bool started = false;          // streaming: the choice's opening sent
  std::shared_ptr<ChatOutputParser> parser;  // chat under a reasoning / tool-call parser
  size_t calls_sent = 0;                     // streaming: tool calls already in a delta
  std::vector<int32_t> unsent_ids;  // streaming return_token_ids: ids of deltas that sent no chunk
  bool prompt_ids_sent = false;     // streaming return_token_ids (completions): the first chunk had them
  std::string reasoning;            // chat under a reasoning parser: the reasoning so far
};

// Chat under a reasoning parser: OpenAI's completion_tokens_details.reasoning_tokens over the choices.
void add_reasoning_tokens(json& usage, const std::vector<ChoiceState>& states, Generation& gen,
                          const ServerContext& ctx) {
  int64_t n = 0;
  for (size_t i = 0; i < states.size(); ++i)
    n += reasoning_token_count(gen.choice(i).output_ids(), ctx.parse.think.close_id, states[i].reasoning, ctx.tok);
  usage["completion_tokens_details"] = {{"reasoning_tokens", n}};
}

// Chat with a predicted output: OpenAI's accepted / rejected prediction tokens, as the drafts taken
// from it were verified (accepted: drafted tokens the model's own choice confirmed). Under a draft
// model, its drafts are not the prediction's and are not counted.
void add_prediction_tokens(json& usage, Generation& gen) {
  int64_t drafted = 0, accepted = 0;
  for (size_t i = 0; i < gen.size(); ++i) {
    drafted += gen.choice(i).predicted_draft_tokens();
    accepted += gen.choice(i).predicted_accepted_tokens();
  }
  json& details = usage["completion_tokens_details"];
  details["accepted_prediction_tokens"] = accepted;
  details["rejected_prediction_tokens"] = drafted - accepted;
}

json token_ids_of(const std::vector<TokenOut>& tokens) {
  json a = json::array();
  for (const TokenOut& t : tokens) a.push_back(t.token);
  return a;
}

// Chat choices are split into reasoning, content and tool calls when a parser has work to do.
std::shared_ptr<ChatOutputParser> chat_parser(const ServerContext& ctx, const GenSpec& spec, const std::string& id,
                                              size_t index) {
  const ReasoningParser r = spec.separate_reasoning ? ctx.parse.reasoning_parser : ReasoningParser::kNone;
  return chat_output_parser(r, ctx.parse.tool_parser, spec, std::hash<std::string>{}(id) + index);
}

ChatDelta feed_parser(ChatOutputParser& p, const std::string& text, bool finished) {
  ChatDelta d = p.feed(text);
  if (finished) {
    ChatDelta rest = p.finish();
    d.reasoning += rest.reasoning;
    d.content += rest.content;
    for (auto& c : rest.tool_calls) d.tool_calls.push_back(std::move(c));
  }
  return d;
}

// A stop that ended a turn of tool calls is reported as OpenAI does.
std::string chat_finish(const std::string& reason, const ChoiceState& st) {
  return reason == "stop" && st.parser && st.parser->tool_calls_made() > 0 ? "tool_calls" : reason;
}

void note_access(const std::vector<ChoiceState>& states, const json& usage) {
  AccessInfo& ai = access_info();
  ai.prompt_tokens = usage["prompt_tokens"].get<int64_t>();
  ai.completion_tokens = usage["completion_tokens"].get<int64_t>();
  if (!states.empty()) ai.finish = states[0].finish_reason;
}

void absorb(ChoiceState& st, const ChoiceDelta& d) {
  st.text += d.text;
  st.tokens.insert(st.tokens.end(), d.tokens.begin(), d.tokens.end());
  st.prompt.insert(st.prompt.end(), d.prompt.begin(), d.prompt.end());
  if (d.finished) {
    st.finish_reason = d.finish_reason;
    st.matched_stop = d.matched_stop;
    st.error = d.error;
    st.engine_fault = d.engine_fault;
    st.engine_unavailable = d.engine_unavailable;
  }
}

// A whole answer's body from its choices' states, as a request without `stream` gets it: each chat
// choice's text parsed anew (reasoning, tool calls; the parser is seeded from the id, so the calls'
// ids are the stream's). `usage` is the caller's.
json whole_body(const ServerContext& ctx, OpenAiApi api, const GenSpec& spec, const ChoiceFormatter& form,
                const std::string& id, int64_t created, std::vector<ChoiceState>& states, json usage) {
  json choices = json::array();
  for (size_t i = 0; i < states.size(); ++i) {
    ChoiceState& st = states[i];
    ChatDelta parsed;
    if (api == OpenAiApi::kChat) st.parser = chat_parser(ctx, spec, id, i);
    if (st.parser) parsed = feed_parser(*st.parser, st.text, true);
    st.reasoning = parsed.reasoning;
    json ch = form.choice(i,
                          ChoicePiece{.prefix = form.prefix(i), .echo_logprobs = form.echo_logprobs(),
                                      .prompt = st.prompt, .text = st.text, .tokens = st.tokens,
                                      .finished = true, .finish_reason = chat_finish(st.finish_reason, st),
                                      .matched_stop = st.matched_stop, .chat = st.parser ? &parsed : nullptr},
                          false);
    if (spec.return_token_ids) {
      if (api == OpenAiApi::kCompletion) ch["prompt_token_ids"] = spec.prompts[i / size_t(spec.n)];
      ch["token_ids"] = token_ids_of(st.tokens);
    }
    choices.push_back(std::move(ch));
  }
  json body{{"id", id}, {"object", form.object()}, {"created", created}, {"model", spec.model},
            {"choices", choices}, {"usage", std::move(usage)}};
  // vLLM puts chat's prompt_logprobs beside the choices (they share the one prompt).
  if (api == OpenAiApi::kChat && spec.prompt_logprobs)
    body["prompt_logprobs"] = vllm_prompt_logprobs(ctx.tok, spec.prompts[0], states[0].prompt, *spec.prompt_logprobs);
  if (api == OpenAiApi::kChat && spec.return_token_ids) body["prompt_token_ids"] = spec.prompts[0];
  return body;
}

// A chat completion created with `store: true`, kept as its whole body with the request's metadata,
// and the request's messages (GET /v1/chat/completions/{id}/messages).
struct StoredRequest {
  bool store = false;
  json metadata, messages;
};

void store_completion(ServerContext& ctx, const StoredRequest& sr, const std::string& owner, json body) {
  if (!sr.store) return;
  body["metadata"] = sr.metadata.is_null() ? json::object() : sr.metadata;
  ResponseStore::Entry e{owner, std::move(body), nlohmann::ordered_json::parse(sr.messages.dump()), 0};
  const std::string id = e.response["id"];
  if (!ctx.chat_completions.put(id, e))
    spdlog::warn("chat completion {} not stored: larger than --max-stored-responses-mb", id);
}

void handle_generation(ServerContext& ctx, OpenAiApi api, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  StoredRequest stored;
  auto spec = std::make_shared<const GenSpec>([&] {
    const bool chat = api == OpenAiApi::kChat;
    json body = read_json_body(ctx, req, chat ? is_chat_field : is_completion_field,
                               chat ? nullptr : is_completion_id_field);
    GenSpec s = chat ? parse_chat_request(body, ctx.parse, req.body) : parse_completion_request(body, ctx.parse, req.body);
    // OpenAI stores chat completions (not legacy completions) asked to: kept for GET and listing.
    if (chat && body.value("store", json()) == true)
      stored = {true, body.value("metadata", json()), std::move(body["messages"])};
    s.log_requests = ctx.opts.log_requests;
    return s;
  }());
  release_body(req);
  std::shared_ptr<void> inflight = admit_generation(ctx, *spec);
  ctx.metrics.count_images(int64_t(spec->images.size()), spec->image_times);
  const std::string id = new_request_id(api == OpenAiApi::kChat ? "chatcmpl" : "cmpl");
  // OpenAI's "created": when this completion was made (every chunk of a stream carries the same).
  const int64_t created = unix_seconds();
  const bool reasoning_field =
      api == OpenAiApi::kChat && spec->separate_reasoning && ctx.parse.reasoning_parser != ReasoningParser::kNone;
  auto form = std::make_shared<const ChoiceFormatter>(api, *spec, ctx.tok, reasoning_field);

  // `inflight` is released with its last owner: this handler, or the streaming provider when the response is gone.
  // Every choice answers to the response's id in /abort_request.
  auto gen = std::make_shared<Generation>(ctx.engine, ctx.tok, *spec, &ctx.metrics, &ctx.registry,
                                          [&id](size_t) { return id; }, request_caller().owner);
  auto states = std::make_shared<std::vector<ChoiceState>>(gen->size());
  auto gone = client_gone_fn(ctx, req);

  if (!spec->stream) {
    if (!gen->drive([&](size_t i, const ChoiceDelta& d) { absorb((*states)[i], d); return true; }, gone)) {
      res.status = 499;  // the client is gone; nobody reads this
      access_info().finish = "client_gone";
      return;
    }
    for (const auto& st : *states)
      if (st.finish_reason == "error") throw_choice_error(st.error, st.engine_fault, st.engine_unavailable);
    json usage = usage_of(*gen, spec->n);
    json body = whole_body(ctx, api, *spec, *form, id, created, *states, json());
    if (reasoning_field) add_reasoning_tokens(usage, *states, *gen, ctx);
    if (!spec->base.prediction.empty()) add_prediction_tokens(usage, *gen);
    body["usage"] = usage;
    note_access(*states, usage);
    access_info().extra = image_timing_log(spec->images.size(), spec->image_times, *gen);
    store_completion(ctx, stored, request_caller().owner, body);
    send_json(res, 200, body);
    return;
  }

  // Streaming: the provider runs on this worker thread after the headers are sent.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  set_stream_provider(
      req, res, "text/event-stream",
      [&ctx, api, spec, form, id, created, gen, states, gone, inflight, reasoning_field, stored,
       owner = request_caller().owner](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        bool prompt_ids_sent = false;  // chat's return_token_ids: the prompt's ids ride on the first chunk
        auto chunk = [&](json choices, json usage) {
          json j{{"id", id}, {"object", form->chunk_object()}, {"created", created}, {"model", spec->model},
                 {"choices", std::move(choices)}};
          if (api == OpenAiApi::kChat && spec->return_token_ids && !std::exchange(prompt_ids_sent, true))
            j["prompt_token_ids"] = spec->prompts[0];
          // vLLM's continuous_usage_stats: every chunk says the usage so far, not only the last one.
          if (spec->include_usage)
            j["usage"] = usage.is_null() && spec->continuous_usage ? usage_of(*gen, spec->n) : std::move(usage);
          return write(sse_event(j));
        };
        bool ok = gen->drive(
            [&](size_t i, const ChoiceDelta& d) {
              ChoiceState& st = (*states)[i];
              ChoicePiece p;
              p.text = d.text;
              p.tokens = d.tokens;
              p.text_offset = st.token_bytes;
              p.finished = d.finished;
              p.finish_reason = d.finish_reason;
              p.matched_stop = d.matched_stop;
              if (!st.started) {
                st.started = true;
                if (api == OpenAiApi::kChat) st.parser = chat_parser(ctx, *spec, id, i);
                if (json open = form->opening(i); !open.is_null() && !chunk(json::array({open}), nullptr)) return false;
                p.prefix = form->prefix(i);
                p.echo_logprobs = form->echo_logprobs();
                p.prompt = d.prompt;
              }
              absorb(st, d);
              ChatDelta parsed;
              if (st.parser) {
                parsed = feed_parser(*st.parser, d.text, d.finished);
                st.reasoning += parsed.reasoning;
                p.chat = &parsed;
                p.first_call = st.calls_sent;
                st.calls_sent += parsed.tool_calls.size();
                if (d.finished) p.finish_reason = chat_finish(d.finish_reason, st);
              }
              json ch = form->choice(i, p, true);
              if (spec->return_token_ids) {
                for (const TokenOut& t : d.tokens) st.unsent_ids.push_back(t.token);
                if (ch.is_null()) return true;
                // Completions: the prompt's ids on the choice's first chunk.
                if (api == OpenAiApi::kCompletion && !std::exchange(st.prompt_ids_sent, true))
                  ch["prompt_token_ids"] = spec->prompts[i / size_t(spec->n)];
                ch["token_ids"] = std::exchange(st.unsent_ids, {});
              }
              if (ch.is_null()) return true;
              st.token_bytes += int64_t(p.prefix.size()) + form->token_bytes(p.tokens);
              if (!chunk(json::array({std::move(ch)}), nullptr)) return false;
              // A fault gets an error event right after the choice's last chunk, before [DONE].
              if (json err = stream_error_event(d); !err.is_null()) return write(sse_event(err));
              return true;
            },
            gone);
        json usage = usage_of(*gen, spec->n);
        if (reasoning_field) add_reasoning_tokens(usage, *states, *gen, ctx);
        if (!spec->base.prediction.empty()) add_prediction_tokens(usage, *gen);
        note_access(*states, usage);
        access_info().extra = image_timing_log(spec->images.size(), spec->image_times, *gen);
        if (!ok) {  // client gone: close the connection
          access_info().finish = "client_gone";
          return false;
        }
        const bool failed = std::any_of(states->begin(), states->end(),
                                        [](const ChoiceState& st) { return st.finish_reason == "error"; });
        if (stored.store && !failed) {
          // The whole answer the stream made, as the same request without `stream` would get it (a
          // failed one, which that request gets as an error, is not kept).
          std::vector<ChoiceState> whole = *states;
          json body = whole_body(ctx, api, *spec, *form, id, created, whole, usage);
          store_completion(ctx, stored, owner, std::move(body));
        }
        if (spec->include_usage && !chunk(json::array(), usage)) return false;
        if (!write(sse_done())) return false;
        sink.done();
        return true;
      });
}

json model_card(const ServerContext& ctx) {
  return {{"id", ctx.opts.served_model_name}, {"object", "model"}, {"created", ctx.created},
          {"owned_by", "dpserve"}, {"root", ctx.opts.served_model_name},
          {"max_model_len", ctx.parse.limits.context_length}};
}

// A LoRA adapter (--lora-paths or loaded at run time) as vLLM lists it: its name, the base model as
// parent, its folder as root.
json lora_card(const ServerContext& ctx, const LoraRegistry::Adapter& a) {
  return {{"id", a.name}, {"object", "model"}, {"created", ctx.created}, {"owned_by", "dpserve"},
          {"root", a.path}, {"parent", ctx.opts.served_model_name},
          {"max_model_len", ctx.parse.limits.context_length}};
}

// A model as Anthropic's Models API describes one.
json anthropic_model(const json& card) {
  return {{"type", "model"},
          {"id", card["id"]},
          {"display_name", card["id"]},
          {"created_at", rfc3339(card["created"].get<int64_t>())}};
}

}  // namespace

void register_openai_routes(httplib::Server& svr, ServerContext& ctx) {
  ctx.batch_routes["/v1/completions"] = [&ctx](const httplib::Request& req, httplib::Response& res) {
    handle_generation(ctx, OpenAiApi::kCompletion, req, res);
  };
  ctx.batch_routes["/v1/chat/completions"] = [&ctx](const httplib::Request& req, httplib::Response& res) {
    handle_generation(ctx, OpenAiApi::kChat, req, res);
  };
  svr.Post("/v1/completions", ctx.batch_routes["/v1/completions"]);
  svr.Post("/v1/chat/completions", ctx.batch_routes["/v1/chat/completions"]);
  // Anthropic's clients (client.models.list / retrieve) get Anthropic's Models API shapes.
  svr.Get("/v1/models", [&ctx](const httplib::Request& req, httplib::Response& res) {
    json data = json::array({model_card(ctx)});
    if (const auto loras = ctx.engine.loras())
      for (const auto& a : loras->list()) data.push_back(lora_card(ctx, a));
    if (!is_anthropic_request(req)) return send_json(res, 200, {{"object", "list"}, {"data", data}});
    std::vector<std::string> ids;
    for (const json& card : data) ids.push_back(card["id"].get<std::string>());
    const auto element = [&](size_t i) { return anthropic_model(data[i]); };
    send_json(res, 200, anthropic_page(ids, element, req, "model"));
  });
  svr.Get(R"(/v1/models/(.+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const bool anthropic = is_anthropic_request(req);
    if (const auto loras = ctx.engine.loras())
      if (const auto a = loras->find(req.matches[1])) {
        const json card = lora_card(ctx, *a);
        return send_json(res, 200, anthropic ? anthropic_model(card) : card);
      }
    if (req.matches[1] != ctx.opts.served_model_name)
      throw ApiError(404, fmt::format("The model '{}' does not exist", std::string(req.matches[1])), "model",
                     "invalid_request_error", "model_not_found");
    send_json(res, 200, anthropic ? anthropic_model(model_card(ctx)) : model_card(ctx));
  });
}

}  // namespace dpserve
