// OpenAI-compatible routes: /v1/completions, /v1/chat/completions, /v1/models.
#include <fmt/format.h>

#include "core/check.h"
#include "server/generation.h"
#include "server/openai_error.h"
#include "server/server_context.h"
#include "server/sse.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

enum class Api { kCompletion, kChat };

std::string token_text(const Tokenizer& tok, int32_t id) {
  const int32_t one[1] = {id};
  try {
    return tok.decode(std::span<const int32_t>(one, 1), false);
  } catch (const Error&) {
    return "";
  }
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

// Completions-style logprobs for `tokens`, whose text starts at `offset` in the choice's text.
json completion_logprobs(const Tokenizer& tok, const std::vector<TokenOut>& tokens, int64_t offset, bool with_top) {
  json lp{{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
  for (const auto& t : tokens) {
    std::string s = token_text(tok, t.token);
    lp["tokens"].push_back(s);
    lp["token_logprobs"].push_back(t.logprob);
    lp["text_offset"].push_back(offset);
    offset += int64_t(s.size());
    if (with_top) {
      json top = json::object();
      for (const auto& a : t.top) top[token_text(tok, a.token)] = a.logprob;
      lp["top_logprobs"].push_back(top);
    } else {
      lp["top_logprobs"].push_back(nullptr);
    }
  }
  return lp;
}

json chat_logprobs(const Tokenizer& tok, const std::vector<TokenOut>& tokens) {
  json content = json::array();
  for (const auto& t : tokens) {
    std::string s = token_text(tok, t.token);
    json top = json::array();
    for (const auto& a : t.top) {
      std::string as = token_text(tok, a.token);
      top.push_back({{"token", as}, {"logprob", a.logprob}, {"bytes", bytes_of(as)}});
    }
    content.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(s)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json usage_of(Generation& gen, int32_t n) {
  int64_t prompt = 0, cached = 0, completion = 0;
  for (size_t i = 0; i < gen.size(); ++i) {
    ChoiceRun& c = gen.choice(i);
    completion += c.completion_tokens();
    if (i % size_t(n) == 0) {  // a prompt counts once however many choices it has
      prompt += c.prompt_tokens();
      cached += c.cached_tokens();
    }
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

struct ChoiceState {
  std::string text;
  std::vector<TokenOut> tokens;
  std::string finish_reason;
  std::string matched_stop;
  std::string error;
  bool started = false;  // streaming: first chunk (role / echo) sent
};

void note_access(const std::vector<ChoiceState>& states, const json& usage) {
  AccessInfo& ai = access_info();
  ai.prompt_tokens = usage["prompt_tokens"].get<int64_t>();
  ai.completion_tokens = usage["completion_tokens"].get<int64_t>();
  if (!states.empty()) ai.finish = states[0].finish_reason;
}

void handle_generation(ServerContext& ctx, Api api, const httplib::Request& req, httplib::Response& res) {
  std::shared_ptr<void> inflight = admit_generation(ctx, req);
  json body = parse_json_body(req.body);
  GenSpec spec = api == Api::kChat ? parse_chat_request(body, ctx.parse) : parse_completion_request(body, ctx.parse);
  const std::string id = ctx.new_id(api == Api::kChat ? "chatcmpl" : "cmpl");
  const char* object = api == Api::kChat ? "chat.completion" : "text_completion";
  const char* chunk_object = api == Api::kChat ? "chat.completion.chunk" : "text_completion";
  const bool top = spec.base.top_logprobs > 0;

  // `inflight` is released with its last owner: this handler, or the streaming provider when the response is gone.
  auto gen = std::make_shared<Generation>(ctx.engine, ctx.tok, spec, &ctx.metrics, &ctx.registry, id);
  auto states = std::make_shared<std::vector<ChoiceState>>(gen->size());
  auto gone = client_gone_fn(ctx, req);

  if (!spec.stream) {
    bool completed = gen->drive(
        [&](size_t i, const ChoiceDelta& d) {
          ChoiceState& st = (*states)[i];
          st.text += d.text;
          st.tokens.insert(st.tokens.end(), d.tokens.begin(), d.tokens.end());
          if (d.finished) {
            st.finish_reason = d.finish_reason;
            st.matched_stop = d.matched_stop;
            st.error = d.error;
          }
          return true;
        },
        gone);
    if (!completed) {
      res.status = 499;  // the client is gone; nobody reads this
      access_info().finish = "client_gone";
      return;
    }
    for (const auto& st : *states)
      if (st.finish_reason == "error")
        throw ApiError(400, st.error.empty() ? "The engine could not run this request" : st.error, "",
                       "invalid_request_error", "engine_rejected");
    json choices = json::array();
    for (size_t i = 0; i < states->size(); ++i) {
      const ChoiceState& st = (*states)[i];
      json ch{{"index", i}, {"finish_reason", st.finish_reason}};
      if (api == Api::kChat) {
        ch["message"] = {{"role", "assistant"}, {"content", st.text}};
        ch["logprobs"] = spec.logprobs ? chat_logprobs(ctx.tok, st.tokens) : json(nullptr);
      } else {
        std::string prefix = spec.echo ? spec.prompt_texts[i / size_t(spec.n)] : "";
        ch["text"] = prefix + st.text;
        ch["logprobs"] = spec.logprobs ? completion_logprobs(ctx.tok, st.tokens, int64_t(prefix.size()), top)
                                       : json(nullptr);
      }
      if (!st.matched_stop.empty()) ch["matched_stop"] = st.matched_stop;
      choices.push_back(std::move(ch));
    }
    json usage = usage_of(*gen, spec.n);
    note_access(*states, usage);
    send_json(res, 200,
              {{"id", id}, {"object", object}, {"created", ctx.created}, {"model", spec.model},
               {"choices", choices}, {"usage", usage}});
    return;
  }

  // Streaming: the provider runs on this worker thread after the headers are sent.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&ctx, api, spec, id, chunk_object, gen, states, gone, top, inflight](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        auto chunk = [&](json choice) {
          json j{{"id", id}, {"object", chunk_object}, {"created", ctx.created}, {"model", spec.model},
                 {"choices", json::array({std::move(choice)})}};
          if (spec.include_usage) j["usage"] = nullptr;
          return write(sse_event(j));
        };
        bool ok = gen->drive(
            [&](size_t i, const ChoiceDelta& d) {
              ChoiceState& st = (*states)[i];
              std::string prefix;
              if (!st.started) {
                st.started = true;
                if (api == Api::kChat) {
                  if (!chunk({{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                              {"logprobs", nullptr}, {"finish_reason", nullptr}}))
                    return false;
                } else if (spec.echo) {
                  prefix = spec.prompt_texts[i / size_t(spec.n)];
                }
              }
              if (d.text.empty() && prefix.empty() && d.tokens.empty() && !d.finished) return true;
              json ch{{"index", i}};
              if (api == Api::kChat) {
                ch["delta"] = d.text.empty() && d.finished ? json::object() : json{{"content", d.text}};
                ch["logprobs"] = spec.logprobs ? chat_logprobs(ctx.tok, d.tokens) : json(nullptr);
              } else {
                ch["text"] = prefix + d.text;
                ch["logprobs"] = spec.logprobs ? completion_logprobs(ctx.tok, d.tokens,
                                                                     int64_t(st.text.size() + prefix.size()), top)
                                               : json(nullptr);
              }
              st.text += prefix + d.text;
              if (d.finished) st.finish_reason = d.finish_reason;
              ch["finish_reason"] = d.finished ? json(d.finish_reason) : json(nullptr);
              if (!d.matched_stop.empty()) ch["matched_stop"] = d.matched_stop;
              if (!chunk(std::move(ch))) return false;
              if (d.finished && d.finish_reason == "error")
                return write(sse_event(error_body(400, d.error.empty() ? "The engine could not run this request"
                                                                      : d.error,
                                                  "", "engine_rejected")));
              return true;
            },
            gone);
        json usage = usage_of(*gen, spec.n);
        note_access(*states, usage);
        if (!ok) {  // client gone: close the connection
          access_info().finish = "client_gone";
          return false;
        }
        if (spec.include_usage) {
          json j{{"id", id}, {"object", chunk_object}, {"created", ctx.created}, {"model", spec.model},
                 {"choices", json::array()}, {"usage", usage}};
          if (!write(sse_event(j))) return false;
        }
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

}  // namespace

void register_openai_routes(httplib::Server& svr, ServerContext& ctx) {
  post_route(svr, ctx, "/v1/completions", [&ctx](const httplib::Request& req, httplib::Response& res) {
    handle_generation(ctx, Api::kCompletion, req, res);
  });
  post_route(svr, ctx, "/v1/chat/completions", [&ctx](const httplib::Request& req, httplib::Response& res) {
    handle_generation(ctx, Api::kChat, req, res);
  });
  svr.Get("/v1/models", [&ctx](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"object", "list"}, {"data", json::array({model_card(ctx)})}});
  });
  svr.Get(R"(/v1/models/(.+))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != ctx.opts.served_model_name)
      throw ApiError(404, fmt::format("The model '{}' does not exist", std::string(req.matches[1])), "model",
                     "invalid_request_error", "model_not_found");
    send_json(res, 200, model_card(ctx));
  });
}

}  // namespace dpserve
