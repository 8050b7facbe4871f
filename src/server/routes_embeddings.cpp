// /v1/embeddings (--is-embedding), /v1/rerank and /v1/score (SGLang's and vLLM's): prefill-only requests
// through the same engine and batches as generation; the engine returns a pooled hidden state or two logits per input.
#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "server/embeddings_request.h"
#include "server/generation.h"
#include "server/openai_error.h"
#include "server/request_id.h"
#include "server/route_helpers.h"
#include "server/routes.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

struct PooledResult {
  std::vector<float> embedding, scores;
  int64_t prompt_tokens = 0;
};

// Enqueues one prefill-only request per prompt (together, so they share steps) and waits for all.
// Empty when the client left (its requests are cancelled).
std::vector<PooledResult> run_pooled(ServerContext& ctx, const httplib::Request& req,
                                     const std::vector<std::vector<int32_t>>& prompts, Pooling pooling,
                                     const std::vector<int32_t>& score_ids) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& p : prompts) {
    Request r;
    r.input_ids = p;
    r.params.max_new_tokens = 1;  // the row that yields the vector also samples one token, dropped here
    r.params.ignore_eos = true;
    r.pooling = pooling;
    r.score_ids = score_ids;
    if (thread_default_priority()) r.priority = *thread_default_priority();  // a batch line's
    streams.push_back(ctx.engine.enqueue(std::move(r)));
  }
  auto cancel_all = [&] {
    for (auto& s : streams) ctx.engine.cancel(s->id());
  };
  auto gone = client_gone_fn(ctx, req);
  // Checked on a clock, not only when a wait times out: while results keep coming (a batch of
  // short inputs delivers every few ms) no wait ever times out, and a client that left would have
  // the whole batch computed for nobody.
  constexpr auto kGoneEvery = std::chrono::milliseconds(50);
  auto last_gone_check = std::chrono::steady_clock::now();
  std::vector<PooledResult> out(prompts.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    Response resp;
    bool finished = false;
    while (!finished) {
      if (streams[i]->next(resp, kGoneEvery)) {
        if (!resp.embedding.empty()) out[i].embedding = std::move(resp.embedding);
        if (!resp.scores.empty()) out[i].scores = std::move(resp.scores);
        if (resp.prompt_tokens > 0) out[i].prompt_tokens = resp.prompt_tokens;
        finished = resp.finished;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now - last_gone_check >= kGoneEvery) {
        last_gone_check = now;
        if (gone()) {
          cancel_all();
          return {};
        }
      }
    }
    if (resp.finish_reason == "error" || resp.finish_reason == "abort") {
      cancel_all();
      // The engine aborts what is left when the shutdown deadline passes (nothing else aborts these:
      // a client that left is handled above): a 503, which clients retry elsewhere, not a 400.
      if (resp.finish_reason == "abort")
        throw_choice_error(resp.error.empty() ? "The server is shutting down: the request was aborted" : resp.error,
                           false, true);
      throw_choice_error(resp.error, resp.engine_fault, resp.engine_unavailable);
    }
    if (pooling != Pooling::kNone && out[i].embedding.empty())
      throw ApiError(500, "the engine returned no embedding", "", "server_error", "internal_error");
    if (!score_ids.empty() && out[i].scores.size() != score_ids.size() + 1)  // the logits, then the log-sum-exp
      throw ApiError(500, "the engine returned no scores", "", "server_error", "internal_error");
  }
  return out;
}

// What an answered request adds to the HTTP metrics: its prompt tokens, and its latency from
// arrival to the reply (no token is generated, so the token histograms stay as they are).
void note_answered(ServerContext& ctx, int64_t prompt_tokens) {
  access_info().prompt_tokens = prompt_tokens;
  access_info().finish = "stop";
  ctx.metrics.prompt_tokens += prompt_tokens;
  ctx.metrics.e2e_latency.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - access_info().start).count());
}

// The embeddings reply, written in pieces as the client reads it: the vectors stay float32 (4 bytes
// a value) until their item is written, instead of a whole JSON text or tree (~10x that) per reply.
struct EmbeddingsReply {
  std::vector<PooledResult> got;
  EmbeddingConfig cfg;
  int64_t dimensions = 0;
  bool base64 = false;
  std::string model;
  int64_t tokens = 0;
  std::shared_ptr<void> inflight;  // the admission slot: held until the last byte is written
  size_t next = 0;                 // the next item to write
  bool tail_written = false;

  // The next piece of the body: the opening and some items, ~64 KB at a time; empty at the end.
  std::string piece() {
    std::string out;
    if (next == 0 && !tail_written) out = R"({"object":"list","data":[)";
    while (next < got.size() && out.size() < (64 << 10)) {
      if (next > 0) out += ',';
      out += fmt::format(R"({{"object":"embedding","index":{},"embedding":)", next);
      out += embedding_value(std::move(got[next].embedding), cfg, dimensions, base64);
      out += '}';
      ++next;
    }
    if (next == got.size() && !tail_written && out.size() < (64 << 10)) {
      out += fmt::format(R"(],"model":{},"usage":{{"prompt_tokens":{},"total_tokens":{}}}}})",
                         json(model).dump(-1, ' ', false, json::error_handler_t::replace),
                         tokens, tokens);
      tail_written = true;
    }
    return out;
  }
};

void handle_embeddings(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  const EmbeddingConfig& cfg = ctx.opts.embedding;
  if (!cfg.enabled)
    throw ApiError(400,
                   "This server serves generation; start it with --is-embedding to serve /v1/embeddings (the model's "
                   "pooled hidden states)",
                   "", "invalid_request_error", "not_embedding_server");
  const int64_t hidden = ctx.engine.limits().hidden;
  json body = read_json_body(ctx, req, is_embeddings_field, is_embeddings_id_field);
  EmbeddingsSpec spec = parse_embeddings_request(body, ctx.parse, cfg, hidden);
  release_body(req);
  // The reply holds each input's vector until it is written: its floats count against the bound.
  const int64_t dims = spec.dimensions > 0 ? spec.dimensions : hidden;
  auto reply = std::make_shared<EmbeddingsReply>();
  reply->inflight = admit_inputs(ctx, spec.inputs, int64_t(spec.inputs.size()) * dims, "input");
  reply->got = run_pooled(ctx, req, spec.inputs, cfg.pooling, {});
  if (reply->got.empty()) {
    res.status = 499;  // the client is gone; nobody reads this
    access_info().finish = "client_gone";
    return;
  }
  for (const PooledResult& r : reply->got) reply->tokens += r.prompt_tokens;
  reply->cfg = cfg;
  reply->dimensions = spec.dimensions;
  reply->base64 = spec.base64;
  reply->model = ctx.opts.served_model_name;
  note_answered(ctx, reply->tokens);
  res.status = 200;
  set_stream_provider(req, res, "application/json", [reply](size_t, httplib::DataSink& sink) {
    std::string p = reply->piece();
    if (p.empty()) {
      reply->got = {};
      reply->inflight.reset();
      sink.done();
      return true;
    }
    return sink.write(p.data(), p.size());
  });
}

void handle_rerank(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  json body = read_json_body(ctx, req, is_rerank_field);
  RerankSpec spec = parse_rerank_request(body, ctx.parse);
  release_body(req);
  std::shared_ptr<void> inflight = admit_inputs(ctx, spec.prompts, 0, "documents");
  std::vector<PooledResult> got = run_pooled(ctx, req, spec.prompts, Pooling::kNone, {spec.yes_id, spec.no_id});
  if (got.empty()) {
    res.status = 499;
    access_info().finish = "client_gone";
    return;
  }
  std::vector<double> score(got.size());
  int64_t tokens = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    score[i] = rerank_score(got[i].scores[0], got[i].scores[1]);
    tokens += got[i].prompt_tokens;
  }
  std::vector<size_t> order(got.size());
  std::iota(order.begin(), order.end(), size_t(0));
  // Best first; equal scores keep the documents' order.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
  json results = json::array();
  for (int64_t k = 0; k < spec.top_n; ++k) {
    const size_t i = order[size_t(k)];
    json r = {{"index", i}, {"relevance_score", score[i]}};
    if (spec.return_documents) r["document"] = {{"text", spec.documents[i]}};
    results.push_back(std::move(r));
  }
  note_answered(ctx, tokens);
  send_json(res, 200,
            {{"id", new_request_id("rerank")},
             {"object", "list"},
             {"model", ctx.opts.served_model_name},
             {"results", std::move(results)},
             {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

// vLLM's /v1/score (text_1, text_2): one score per pair, the cosine of two embeddings or a reranker's.
void handle_pair_score(ServerContext& ctx, const httplib::Request& req, httplib::Response& res, const json& body) {
  const EmbeddingConfig& cfg = ctx.opts.embedding;
  PairScoreSpec spec = parse_pair_score_request(body, ctx.parse, cfg.enabled);
  release_body(req);
  // Under the bounds as embeddings (the vectors are held until the pairs are scored) or rerank documents.
  std::shared_ptr<void> inflight =
      admit_inputs(ctx, spec.prompts, spec.cosine ? int64_t(spec.prompts.size()) * ctx.engine.limits().hidden : 0,
                   spec.cosine ? "text_1" : "text_2");
  std::vector<PooledResult> got =
      spec.cosine ? run_pooled(ctx, req, spec.prompts, cfg.pooling, {})
                  : run_pooled(ctx, req, spec.prompts, Pooling::kNone, {spec.yes_id, spec.no_id});
  if (got.empty()) {
    res.status = 499;
    access_info().finish = "client_gone";
    return;
  }
  int64_t tokens = 0;
  for (const PooledResult& r : got) tokens += r.prompt_tokens;
  json data = json::array();
  for (size_t j = 0; j < spec.n2; ++j) {
    const double score = spec.cosine ? cosine_similarity(got[spec.first_of(j)].embedding, got[spec.n1 + j].embedding)
                                     : rerank_score(got[j].scores[0], got[j].scores[1]);
    data.push_back({{"index", j}, {"object", "score"}, {"score", score}});
  }
  note_answered(ctx, tokens);
  send_json(res, 200,
            {{"id", new_request_id("score")},
             {"object", "list"},
             {"created", unix_seconds()},
             {"model", ctx.opts.served_model_name},
             {"data", std::move(data)},
             {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}, {"completion_tokens", 0}}}});
}

// /v1/score: SGLang's (each item's next-token probabilities of the labels) or vLLM's (text_1, text_2)
// request, prefill only.
void handle_score(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  json body = read_json_body(ctx, req, is_score_field);
  if (is_pair_score_request(body)) return handle_pair_score(ctx, req, res, body);
  ScoreSpec spec = parse_score_request(body, ctx.parse);
  release_body(req);
  std::shared_ptr<void> inflight = admit_inputs(ctx, spec.prompts, 0, "items");
  std::vector<PooledResult> got = run_pooled(ctx, req, spec.prompts, Pooling::kNone, spec.label_ids);
  if (got.empty()) {
    res.status = 499;
    access_info().finish = "client_gone";
    return;
  }
  json scores = json::array();
  int64_t tokens = 0;
  for (const PooledResult& r : got) {
    scores.push_back(label_scores(r.scores, spec.apply_softmax));
    tokens += r.prompt_tokens;
  }
  note_answered(ctx, tokens);
  send_json(res, 200,
            {{"scores", std::move(scores)},
             {"model", ctx.opts.served_model_name},
             {"object", "scoring"},
             {"usage", {{"prompt_tokens", tokens}, {"completion_tokens", 0}, {"total_tokens", tokens}}}});
}

}  // namespace

void register_embeddings_routes(httplib::Server& svr, ServerContext& ctx) {
  ctx.batch_routes["/v1/embeddings"] = [&ctx](const httplib::Request& req, httplib::Response& res) {
    handle_embeddings(ctx, req, res);
  };
  svr.Post("/v1/embeddings", ctx.batch_routes["/v1/embeddings"]);
  // vLLM serves the same rerank at /rerank and (Cohere's v2 path) /v2/rerank.
  for (const char* path : {"/v1/rerank", "/rerank", "/v2/rerank"})
    svr.Post(path, [&ctx](const httplib::Request& req, httplib::Response& res) { handle_rerank(ctx, req, res); });
  // vLLM serves its scoring at /score too.
  for (const char* path : {"/v1/score", "/score"})
    svr.Post(path, [&ctx](const httplib::Request& req, httplib::Response& res) { handle_score(ctx, req, res); });
}

}  // namespace dpserve
