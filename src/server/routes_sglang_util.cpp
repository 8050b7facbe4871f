// SGLang's utility routes: /get_model_info, /tokenize and /detokenize (also under /v1/, with the
// shapes SGLang and vLLM share), and /flush_cache (every rank drops its prefix cache when nothing
// is in flight, else 400 as SGLang answers; an operator's route: the admin key when one is set).
#include <chrono>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "server/openai_error.h"
#include "server/request_parse.h"
#include "server/route_helpers.h"
#include "server/routes.h"
#include "server/server_context.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

void check_model_field(const ServerContext& ctx, const json& b) {
  auto m = b.find("model");
  if (m == b.end() || m->is_null()) return;
  if (!m->is_string()) bad_param("model", "'model' must be a string");
  if (*m != ctx.opts.served_model_name)
    throw ApiError(404, fmt::format("The model '{}' does not exist", m->get<std::string>()), "model",
                   "invalid_request_error", "model_not_found");
}

void handle_tokenize(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const json b = read_json_body(ctx, req, [](std::string_view k) {
    return k == "model" || k == "prompt" || k == "add_special_tokens" || k == "messages" || k == "tools" ||
           k == "chat_template_kwargs" || k == "add_generation_prompt" || k == "continue_final_message" ||
           k == "chat_template" || k == "documents" || k == "reasoning_effort";
  });
  check_model_field(ctx, b);
  const bool chat = b.contains("messages");
  if (ctx.opts.skip_tokenizer_init)
    refuse_text_without_tokenizer(chat ? "messages" : "prompt", "there is nothing to tokenize with");
  // vLLM's chat form: the prompt the chat template renders, which already spells its special tokens.
  bool add_special = !chat;
  if (auto a = b.find("add_special_tokens"); a != b.end() && !a->is_null()) {
    if (!a->is_boolean()) bad_param("add_special_tokens", "'add_special_tokens' must be a boolean");
    add_special = a->get<bool>();
  }
  if (chat) {
    if (b.contains("prompt")) bad_param("prompt", "'prompt' and 'messages' are exclusive: send one");
    const std::string text = render_chat_prompt(b, ctx.parse, nullptr, req.body);
    const auto ids = ctx.tok.encode(text, add_special);
    send_json(res, 200, {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", ctx.parse.limits.context_length}});
    return;
  }
  for (const char* k : {"tools", "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
                        "chat_template", "documents", "reasoning_effort"})
    if (b.contains(k)) bad_param(k, fmt::format("'{}' goes with 'messages'", k));
  auto p = b.find("prompt");
  if (p == b.end() || !(p->is_string() || p->is_array()))
    bad_param("prompt", "'prompt' must be a string or an array of strings");
  auto encode = [&](const json& s) {
    if (!s.is_string()) bad_param("prompt", "'prompt' must be a string or an array of strings");
    return ctx.tok.encode(s.get<std::string>(), add_special);
  };
  json out{{"max_model_len", ctx.parse.limits.context_length}};
  if (p->is_string()) {
    const auto ids = encode(*p);
    out["tokens"] = ids;
    out["count"] = ids.size();
  } else {
    json tokens = json::array(), counts = json::array();
    for (const auto& s : *p) {
      const auto ids = encode(s);
      tokens.push_back(ids);
      counts.push_back(ids.size());
    }
    out["tokens"] = tokens;
    out["count"] = counts;
  }
  send_json(res, 200, out);
}

void handle_detokenize(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const json b = read_json_body(
      ctx, req, [](std::string_view k) { return k == "model" || k == "tokens" || k == "skip_special_tokens"; });
  check_model_field(ctx, b);
  bool skip = false;
  if (auto s = b.find("skip_special_tokens"); s != b.end() && !s->is_null()) {
    if (!s->is_boolean()) bad_param("skip_special_tokens", "'skip_special_tokens' must be a boolean");
    skip = s->get<bool>();
  }
  if (ctx.opts.skip_tokenizer_init) refuse_text_without_tokenizer("tokens", "there is nothing to detokenize with");
  auto t = b.find("tokens");
  if (t == b.end() || !t->is_array()) bad_param("tokens", "'tokens' must be an array of token ids (or of arrays)");
  auto decode = [&](const json& ids) {
    std::vector<int32_t> v;
    for (const auto& x : ids) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= ctx.tok.vocab_size())
        bad_param("tokens", fmt::format("'tokens' holds {}, not a token id in [0, {})", x.dump(), ctx.tok.vocab_size()));
      v.push_back(x.get<int32_t>());
    }
    return ctx.tok.decode(v, skip);
  };
  json out;
  if (!t->empty() && (*t)[0].is_array()) {
    out["text"] = json::array();
    for (const auto& ids : *t) {
      if (!ids.is_array()) bad_param("tokens", "'tokens' mixes arrays with ids");
      out["text"].push_back(decode(ids));
    }
  } else {
    out["text"] = decode(*t);
  }
  send_json(res, 200, out);
}

}  // namespace

void register_sglang_util_routes(httplib::Server& svr, ServerContext& ctx) {
  // SGLang's current name and its older one.
  for (const char* path : {"/model_info", "/get_model_info"})
    svr.Get(path, [&ctx](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                {{"model_path", ctx.info.value("model_path", "")},
                 {"tokenizer_path", ctx.info.value("tokenizer_path", "")},
                 {"served_model_name", ctx.opts.served_model_name},
                 {"is_generation", !ctx.opts.embedding.enabled},
                 {"preferred_sampling_params", ctx.opts.preferred_sampling.empty()
                                                   ? json(nullptr)
                                                   : ctx.opts.preferred_sampling.to_json()},
                 {"weight_version", "default"},
                 {"has_image_understanding", ctx.info.value("has_image_understanding", false)},
                 {"has_audio_understanding", false},
                 {"model_type", ctx.info.value("model_type", ctx.info.value("architecture", ""))},
                 {"architectures", json::array({ctx.info.value("architecture", "")})}});
    });
  for (const char* path : {"/tokenize", "/v1/tokenize"})
    svr.Post(path, [&ctx](const httplib::Request& req, httplib::Response& res) { handle_tokenize(ctx, req, res); });
  for (const char* path : {"/detokenize", "/v1/detokenize"})
    svr.Post(path, [&ctx](const httplib::Request& req, httplib::Response& res) { handle_detokenize(ctx, req, res); });
  auto flush = [&ctx](const httplib::Request& req, httplib::Response& res) {
    // One tenant must not be able to throw away every tenant's cached prefixes.
    require_admin(ctx, "/flush_cache");
    // The route takes no parameters (as SGLang's): a body asking for something is refused by name
    // rather than ignored. An empty body or {} is a plain flush.
    if (req.body.find_first_not_of(" \t\r\n") != std::string::npos)
      read_json_body(ctx, req, [](std::string_view) { return false; });
    // SGLang's ?timeout=S: keep trying while requests are in flight, up to S seconds.
    double timeout_s = 0;
    for (const auto& [k, v] : req.params) {
      if (k != "timeout")
        throw ApiError(400, fmt::format("'{}' is not a parameter of /flush_cache", k.substr(0, 64)), k.substr(0, 64));
      char* end = nullptr;
      timeout_s = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(timeout_s >= 0 && timeout_s <= 3600))
        bad_param("timeout", "'timeout' must be a number of seconds in [0, 3600]");
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    bool flushed = ctx.engine.flush_cache();
    while (!flushed && std::chrono::steady_clock::now() < deadline && !ctx.stopping.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      flushed = ctx.engine.flush_cache();
    }
    if (flushed) {
      res.status = 200;
      res.set_content("Cache flushed.\n", "text/plain");
    } else {
      res.status = 400;
      res.set_content("Cache not flushed: requests are queued or running (retry when the server is idle).\n",
                      "text/plain");
    }
  };
  svr.Get("/flush_cache", flush);
  svr.Post("/flush_cache", flush);
}

}  // namespace dpserve
