// SGLang-style routes: /generate, /health, /health_generate, /get_server_info, /abort_request, /get_load,
// /metrics.
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "server/generation.h"
#include "server/load_report.h"
#include "server/openai_format.h"
#include "server/openai_error.h"
#include "server/request_id.h"
#include "server/route_helpers.h"
#include "server/routes.h"
#include "server/sse.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

struct GenState {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<TokenOut> tokens;
  std::vector<TokenOut> prompt;  // prompt logprobs (logprob_start_len), positions 1..
  std::string finish_reason, matched_stop, error;
  int32_t matched_token = -1;
  bool engine_fault = false, engine_unavailable = false;
};

// SGLang's logprob entries: [logprob, token id, token text or null (return_text_in_logprobs)].
struct LogprobWriter {
  const Tokenizer* tok = nullptr;  // null: no text
  json entry(std::optional<float> logprob, int32_t id) const {
    return {logprob ? json(*logprob) : json(nullptr), id, tok ? json(token_text(*tok, id)) : json(nullptr)};
  }
  json alternatives(const TokenOut& t) const {
    json alts = json::array();
    for (const auto& a : t.top) alts.push_back(entry(a.logprob, a.token));
    return alts;
  }
};

// SGLang's finish_reason object: {"type": "stop", "matched": <string or token id>}, {"type": "length",
// "length": <max_new_tokens>}, {"type": "abort", "message": ...}.
json finish_reason_json(const GenSpec& spec, const GenState& st) {
  if (st.finish_reason.empty()) return nullptr;
  json fr = {{"type", st.finish_reason}};
  if (!st.matched_stop.empty()) fr["matched"] = st.matched_stop;
  else if (st.matched_token >= 0) fr["matched"] = st.matched_token;
  if (st.finish_reason == "length") fr["length"] = spec.prompt_only ? 0 : spec.base.params.max_new_tokens;
  if (!st.error.empty()) fr["message"] = st.error;
  else if (st.finish_reason == "abort") fr["message"] = "The request was aborted";
  return fr;
}

// `prompt`: the choice's prompt ids (empty for input_embeds).
// `token_ids`: the choice's token_ids_logprob (empty: none).
json meta_info(const GenSpec& spec, ChoiceRun& run, const GenState& st, const std::string& rid, double e2e,
               const std::vector<int32_t>& prompt, const LogprobWriter& lw, const std::vector<int32_t>& token_ids) {
  json m{{"id", rid},
         {"finish_reason", finish_reason_json(spec, st)},
         {"prompt_tokens", run.prompt_tokens()},
         {"completion_tokens", run.completion_tokens()},
         {"cached_tokens", run.cached_tokens()},
         {"weight_version", "default"},
         {"dp_rank", run.dp_rank()}};
  if (!st.finish_reason.empty()) m["e2e_latency"] = e2e;  // as SGLang: on the final answer only
  if (run.spec_verify_ct() > 0) {  // speculative decoding ran for this request (SGLang's field, and ours)
    m["spec_verify_ct"] = run.spec_verify_ct();
    m["spec_draft_tokens"] = run.spec_draft_tokens();
    m["spec_accepted_tokens"] = run.spec_accepted_tokens();
  }
  if (spec.logprobs) {
    const bool top = spec.base.top_logprobs > 0;
    // The prompt from logprob_start_len (by default its last token): the first entry has no logprob,
    // the rest are the prompt's own (position k is prompt logprob k - 1).
    // token_ids_logprob's entries at one position: one per requested id, in the request's order.
    auto id_row = [&](const TokenOut& t) {
      json row = json::array();
      for (size_t k = 0; k < token_ids.size(); ++k)
        row.push_back(lw.entry(k < t.id_logprobs.size() ? std::optional<float>(t.id_logprobs[k]) : std::nullopt,
                               token_ids[k]));
      return row;
    };
    json in = json::array(), in_top = json::array(), in_ids = json::array({nullptr});
    if (!prompt.empty()) {
      const int64_t from = spec.logprob_start_len >= 0 ? spec.logprob_start_len : int64_t(prompt.size()) - 1;
      in.push_back(lw.entry(std::nullopt, prompt[size_t(from)]));
      in_top.push_back(nullptr);
      for (int64_t pos = from + 1; pos < int64_t(prompt.size()) && size_t(pos - 1) < st.prompt.size(); ++pos) {
        const TokenOut& t = st.prompt[size_t(pos - 1)];
        in.push_back(lw.entry(t.logprob, t.token));
        in_top.push_back(lw.alternatives(t));
        in_ids.push_back(id_row(t));
      }
    }
    json lp = json::array(), out_top = json::array();
    for (const auto& t : st.tokens) {
      lp.push_back(lw.entry(t.logprob, t.token));
      out_top.push_back(lw.alternatives(t));
    }
    m["input_token_logprobs"] = std::move(in);
    m["output_token_logprobs"] = std::move(lp);
    if (!token_ids.empty()) {
      // SGLang's token_ids_logprob: the prompt's positions as input_top_logprobs (the start position
      // null), then every output position.
      json ids_out = json::array();
      for (const auto& t : st.tokens) ids_out.push_back(id_row(t));
      m["input_token_ids_logprobs"] = std::move(in_ids);
      m["output_token_ids_logprobs"] = std::move(ids_out);
    }
    if (top) {
      m["input_top_logprobs"] = std::move(in_top);
      m["output_top_logprobs"] = std::move(out_top);
    }
  }
  return m;
}

void handle_generate(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  GenSpec spec = [&] {
    json body = read_json_body(ctx, req, is_generate_field, is_generate_id_field);
    GenSpec s = parse_generate_request(body, ctx.parse, req.body);
    s.log_requests = ctx.opts.log_requests;
    return s;
  }();
  release_body(req);
  std::shared_ptr<void> inflight = admit_generation(ctx, spec);
  ctx.metrics.count_images(int64_t(spec.images.size()), spec.image_times);
  std::shared_ptr<void> rids = claim_rids(ctx, spec.rids);
  const std::string id = new_request_id("gen");
  const auto t0 = Clock::now();
  // Choice i answers to its prompt's client rid, else to "<id>-<i>" (what meta_info.id reports).
  auto rid_of = [spec, id](size_t i) {
    size_t p = i / size_t(spec.n);
    return p < spec.rids.size() ? spec.rids[p] : fmt::format("{}-{}", id, i);
  };
  auto gen = std::make_shared<Generation>(ctx.engine, ctx.tok, spec, &ctx.metrics, &ctx.registry, rid_of,
                                          request_caller().owner);
  auto states = std::make_shared<std::vector<GenState>>(gen->size());
  auto gone = client_gone_fn(ctx, req);
  auto absorb = [states](size_t i, const ChoiceDelta& d) {
    GenState& st = (*states)[i];
    st.text += d.text;
    for (const auto& t : d.tokens) st.ids.push_back(t.token);
    st.tokens.insert(st.tokens.end(), d.tokens.begin(), d.tokens.end());
    st.prompt.insert(st.prompt.end(), d.prompt.begin(), d.prompt.end());
    if (d.finished) {
      st.finish_reason = d.finish_reason;
      st.matched_stop = d.matched_stop;
      st.matched_token = d.matched_token;
      st.error = d.error;
      st.engine_fault = d.engine_fault;
      st.engine_unavailable = d.engine_unavailable;
    }
  };
  auto seconds_since = [t0] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  auto note = [gen, states, images = spec.images.size(), times = spec.image_times]() {
    AccessInfo& ai = access_info();
    ai.extra = image_timing_log(images, times, *gen);
    for (size_t i = 0; i < gen->size(); ++i) {
      ai.prompt_tokens += gen->choice(i).prompt_tokens();
      ai.completion_tokens += gen->choice(i).completion_tokens();
    }
    if (!states->empty()) ai.finish = (*states)[0].finish_reason;
  };
  const bool as_list = spec.batched || spec.n > 1;
  const bool ids_only = ctx.opts.skip_tokenizer_init;  // SGLang: no detokenizer, ids are the output
  const LogprobWriter lw{spec.return_text_in_logprobs && !ids_only ? &ctx.tok : nullptr};
  auto prompt_of = [prompts = std::make_shared<const std::vector<std::vector<int32_t>>>(spec.prompts),
                    n = size_t(std::max(1, spec.n))](size_t i) -> const std::vector<int32_t>& {
    static const std::vector<int32_t> kNone;
    return i / n < prompts->size() ? (*prompts)[i / n] : kNone;
  };
  auto ids_of = [ids = std::make_shared<const std::vector<std::vector<int32_t>>>(spec.token_ids_logprob),
                 n = size_t(std::max(1, spec.n))](size_t i) -> const std::vector<int32_t>& {
    static const std::vector<int32_t> kNone;
    return i / n < ids->size() ? (*ids)[i / n] : kNone;
  };

  if (!spec.stream) {
    if (!gen->drive([&](size_t i, const ChoiceDelta& d) { absorb(i, d); return true; }, gone)) {
      res.status = 499;
      access_info().finish = "client_gone";
      return;
    }
    note();
    json out = json::array();
    for (size_t i = 0; i < gen->size(); ++i) {
      const GenState& st = (*states)[i];
      if (st.finish_reason == "error" && !as_list) throw_choice_error(st.error, st.engine_fault, st.engine_unavailable);
      out.push_back({{"text", st.text}, {"output_ids", st.ids},
                     {"meta_info", meta_info(spec, gen->choice(i), st, rid_of(i), seconds_since(), prompt_of(i), lw, ids_of(i))}});
      if (ids_only) out.back().erase("text");
    }
    send_json(res, 200, as_list ? out : out[0]);
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  set_stream_provider(
      req, res, "text/event-stream",
      [gen, states, spec, absorb, rid_of, seconds_since, note, gone, as_list, ids_only, inflight, rids, lw, prompt_of,
       ids_of](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        bool ok = gen->drive(
            [&](size_t i, const ChoiceDelta& d) {
              absorb(i, d);
              if (d.tokens.empty() && d.text.empty() && !d.finished) return true;
              const GenState& st = (*states)[i];
              // As SGLang does, each event carries the text and ids so far.
              json j{{"text", st.text}, {"output_ids", st.ids},
                     {"meta_info", meta_info(spec, gen->choice(i), st, rid_of(i), seconds_since(), prompt_of(i), lw, ids_of(i))}};
              if (ids_only) j.erase("text");
              if (as_list) j["index"] = i;
              if (!write(sse_event(j))) return false;
              // A fault gets an error event right after the choice's last event, before [DONE].
              if (json err = stream_error_event(d); !err.is_null()) {
                if (as_list) err["index"] = i;
                return write(sse_event(err));
              }
              return true;
            },
            gone);
        note();
        if (!ok) {
          access_info().finish = "client_gone";
          return false;
        }
        if (!write(sse_done())) return false;
        sink.done();
        return true;
      });
}

// One greedy token through the engine per DP group (the router spreads concurrent requests).
void handle_health_generate(ServerContext& ctx, httplib::Response& res) {
  if (ctx.draining.load() || !ctx.engine.healthy()) {
    send_json(res, 503, error_body(503, "The engine is not healthy", "", "engine_unavailable"));
    return;
  }
  GenSpec spec;
  spec.base.params.temperature = 0;
  spec.base.params.max_new_tokens = 1;
  spec.base.params.ignore_eos = true;
  const int32_t bos = ctx.tok.bos_id();
  const int32_t groups = std::max(1, ctx.engine.dp_size());
  for (int32_t g = 0; g < groups; ++g) spec.prompts.push_back({bos >= 0 ? bos : 0});
  spec.prompt_texts.resize(spec.prompts.size());
  Generation gen(ctx.engine, ctx.tok, spec, nullptr, &ctx.registry, [](size_t) { return std::string("health_generate"); },
                 "");
  std::vector<std::string> reasons(gen.size());
  std::vector<int64_t> counts(gen.size(), 0);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  gen.drive(
      [&](size_t i, const ChoiceDelta& d) {
        counts[i] += int64_t(d.tokens.size());
        if (d.finished) reasons[i] = d.finish_reason;
        return true;
      },
      [&] { return ctx.stopping.load() || Clock::now() > deadline; });
  json ranks = json::array();
  bool ok = true;
  for (size_t i = 0; i < gen.size(); ++i) {
    ranks.push_back(gen.choice(i).dp_rank());
    ok = ok && counts[i] == 1 && reasons[i] == "length";
  }
  if (!ok) {
    send_json(res, 503, error_body(503, "A test generation did not complete", "", "engine_unavailable"));
    return;
  }
  send_json(res, 200, {{"status", "ok"}, {"dp_ranks", ranks}});
}

// /v1/loads' query: dp_rank, include (comma-separated sections), format; a bad one is a 400 naming it.
LoadReportQuery load_report_query(const httplib::Request& req, int64_t groups) {
  static const std::set<std::string> kSections = {"core", "memory", "spec", "lora", "disagg", "queues", "all"};
  LoadReportQuery q;
  for (const auto& [k, v] : req.params) {
    if (k == "dp_rank") {
      q.dp_rank = query_integer("dp_rank", v, 0, groups - 1);
    } else if (k == "include") {
      for (size_t at = 0; at <= v.size();) {
        const size_t comma = std::min(v.find(',', at), v.size());
        std::string s = v.substr(at, comma - at);
        s.erase(0, s.find_first_not_of(' '));
        s.erase(s.find_last_not_of(' ') + 1);
        if (!kSections.count(s))
          throw ApiError(400,
                         fmt::format("Invalid include section '{}': core, memory, spec, lora, disagg, queues or all",
                                     s.substr(0, 100)),
                         "include", "", "invalid_value");
        q.include.insert(s);
        at = comma + 1;
      }
    } else if (k == "format") {
      if (v != "json" && v != "prometheus")
        throw ApiError(400, "'format' must be json or prometheus", "format", "", "invalid_value");
      q.prometheus = v == "prometheus";
    } else {
      unknown_query_parameter(k);
    }
  }
  return q;
}

}  // namespace

void register_sglang_routes(httplib::Server& svr, ServerContext& ctx) {
  // SGLang takes both methods.
  svr.Post("/generate", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_generate(ctx, req, res); });
  svr.Put("/generate", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_generate(ctx, req, res); });
  svr.Get("/health", [&ctx](const httplib::Request&, httplib::Response& res) {
    // stalled(): requests are pending and the engine has made no step for --stall-timeout.
    const bool stalled = ctx.engine.stalled();
    const bool ok = ctx.engine.healthy() && !ctx.draining.load() && !stalled;
    res.status = ok ? 200 : 503;
    res.set_content(ok ? "ok\n" : stalled ? "stalled: no engine step while requests are pending\n" : "unavailable\n",
                    "text/plain");
  });
  svr.Get("/health_generate",
          [&ctx](const httplib::Request&, httplib::Response& res) { handle_health_generate(ctx, res); });
  // SGLang's current name and its older one.
  for (const char* path : {"/server_info", "/get_server_info"})
    svr.Get(path, [&ctx](const httplib::Request&, httplib::Response& res) {
      json info = ctx.info.is_object() ? ctx.info : json::object();
      info["served_model_name"] = ctx.opts.served_model_name;
      // SGLang's server args: lora_paths maps each adapter's name to its folder (null: none), as
      // loaded now (--lora-paths and /load_lora_adapter).
      json loras = json::object();
      const auto reg = ctx.engine.loras();
      const auto adapters = reg ? reg->list() : std::vector<LoraRegistry::Adapter>{};
      for (const auto& a : adapters) loras[a.name] = a.path;
      info["lora_paths"] = adapters.empty() ? json() : loras;
      info["max_loras_per_batch"] = adapters.size();
      info["enable_lora"] = ctx.opts.enable_lora;
      info["context_length"] = ctx.parse.limits.context_length;
      info["dp_size"] = ctx.engine.dp_size();
      info["vocab_size"] = ctx.tok.vocab_size();
      info["has_chat_template"] = ctx.parse.chat_template != nullptr;
      info["max_body_bytes"] = ctx.opts.max_body_bytes;
      info["max_queued_requests"] = ctx.opts.max_queued_requests;
      info["max_queued_tokens"] = ctx.opts.max_queued_tokens;
      info["api_key_required"] = ctx.auth.keys_required();
      info["admin_api_key_set"] = ctx.auth.has_admin_key();
      info["draining"] = ctx.draining.load();
      info["requests_in_flight"] = ctx.registry.size();
      send_json(res, 200, info);
    });
  svr.Post("/abort_request", [&ctx](const httplib::Request& req, httplib::Response& res) {
    json body = read_json_body(ctx, req, [](std::string_view k) { return k == "rid" || k == "abort_all"; });
    bool all = false;
    std::string rid;
    if (auto it = body.find("abort_all"); it != body.end() && !it->is_null()) {
      if (!it->is_boolean()) bad_param("abort_all", "'abort_all' must be a boolean");
      all = it->get<bool>();
    }
    if (auto it = body.find("rid"); it != body.end() && !it->is_null()) {
      if (!it->is_string()) bad_param("rid", "'rid' must be a string");
      rid = it->get<std::string>();
    }
    if (!all && rid.empty()) bad_param("rid", "give 'rid' (the request's id) or 'abort_all': true");
    const Caller& caller = request_caller();
    // As SGLang's --admin-api-key: aborting everyone's requests takes the admin key, and is refused
    // outright when the server has none.
    if (all && !caller.admin)
      throw ApiError(403,
                     ctx.auth.has_admin_key() ? "'abort_all' needs the admin API key (--admin-api-key)"
                                              : "'abort_all' is disabled: the server was started without --admin-api-key",
                     "abort_all", "", "admin_only");
    // A caller aborts its own requests; the admin, anyone's.
    auto ids = all ? ctx.registry.all() : ctx.registry.find(rid, caller);
    for (uint64_t id : ids) ctx.engine.cancel(id);
    send_json(res, 200, {{"aborted", ids.size()}});
  });
  // SGLang's load report, one entry per DP group (what sgl-router's load-aware policies poll):
  // requests running and queued, and tokens: the KV positions requests hold plus the tokens queued
  // (num_pending_tokens), as SGLang counts them. ts_tic: seconds on a monotonic clock.
  svr.Get("/get_load", [&ctx](const httplib::Request&, httplib::Response& res) {
    const EngineStats stats = ctx.engine.stats();
    const int64_t page_size = ctx.info.value("page_size", int64_t(1));
    const double tic = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    json loads = json::array();
    for (const GroupStats& g : stats.groups)
      loads.push_back({{"dp_rank", g.dp_rank},
                       {"num_reqs", g.running + g.waiting},
                       {"num_waiting_reqs", g.waiting},
                       {"num_tokens", held_kv_tokens(g, page_size) + g.waiting_tokens},
                       {"num_pending_tokens", g.waiting_tokens},
                       {"ts_tic", tic}});
    send_json(res, 200, loads);
  });
  // SGLang's /v1/loads (its supported load API, which newer routers poll): per DP group the requests
  // and KV tokens held and queued, how full it is, and the sections the query includes.
  svr.Get("/v1/loads", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const EngineStats stats = ctx.engine.stats();
    const LoadReportQuery q = load_report_query(req, int64_t(stats.groups.size()));
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const int64_t micros =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
    std::tm utc{};
    gmtime_r(&secs, &utc);
    const json report = load_report(stats, ctx.info, q, fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06d}+00:00", utc, micros));
    if (q.prometheus)
      res.set_content(load_report_prometheus(report), "text/plain; version=0.0.4; charset=utf-8");
    else
      send_json(res, 200, report);
  });
  svr.Get("/metrics", [&ctx](const httplib::Request&, httplib::Response& res) {
    const EngineStats stats = ctx.engine.stats();
    // The Responses API's own state: what the stores hold and what runs in the background.
    std::string responses;
    auto gauge = [&](const char* name, const char* help, size_t v) {
      responses += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, v);
    };
    gauge("dpserve_background_responses", "Background /v1/responses running (queued or generating)",
          ctx.background.size());
    gauge("dpserve_stored_responses", "Responses kept for previous_response_id and GET (--max-stored-responses)",
          ctx.responses.size());
    gauge("dpserve_stored_response_bytes", "Bytes of JSON the stored responses take (--max-stored-responses-mb)",
          ctx.responses.bytes());
    res.set_content(ctx.metrics.render(stats, ctx.engine.healthy(), ctx.draining.load(), ctx.admission.sequences(),
                                       ctx.admission.tokens()) +
                        responses +
                        ctx.metrics.render_sglang(stats, ctx.opts.served_model_name,
                                                  ctx.info.value("page_size", int64_t(1))),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
}

}  // namespace dpserve
