// /v1/embeddings (--is-embedding) and /v1/rerank: prefill-only requests through the same engine and
// batches as generation; the engine returns a pooled hidden state or two logits per input.
#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "server/embeddings_request.h"
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
    streams.push_back(ctx.engine.enqueue(std::move(r)));
  }
  auto gone = client_gone_fn(ctx, req);
  std::vector<PooledResult> out(prompts.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    Response resp;
    bool finished = false;
    while (!finished) {
      if (!streams[i]->next(resp, std::chrono::milliseconds(100))) {
        if (gone()) {
          for (auto& s : streams) ctx.engine.cancel(s->id());
          return {};
        }
        continue;
      }
      if (!resp.embedding.empty()) out[i].embedding = std::move(resp.embedding);
      if (!resp.scores.empty()) out[i].scores = std::move(resp.scores);
      if (resp.prompt_tokens > 0) out[i].prompt_tokens = resp.prompt_tokens;
      finished = resp.finished;
    }
    if (resp.finish_reason == "error" || resp.finish_reason == "abort") {
      for (auto& s : streams) ctx.engine.cancel(s->id());
      throw_choice_error(resp.error.empty() ? "the request was aborted" : resp.error, resp.engine_fault,
                         resp.engine_unavailable);
    }
    if (pooling != Pooling::kNone && out[i].embedding.empty())
      throw ApiError(500, "the engine returned no embedding", "", "server_error", "internal_error");
    if (!score_ids.empty() && out[i].scores.size() != score_ids.size())
      throw ApiError(500, "the engine returned no scores", "", "server_error", "internal_error");
  }
  return out;
}

int64_t admitted_tokens(const std::vector<std::vector<int32_t>>& prompts) {
  int64_t t = 0;
  for (const auto& p : prompts) t += int64_t(p.size()) + 1;
  return t;
}

void handle_embeddings(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  const EmbeddingConfig& cfg = ctx.opts.embedding;
  if (!cfg.enabled)
    throw ApiError(400,
                   "This server serves generation; start it with --is-embedding to serve /v1/embeddings (the model's "
                   "pooled hidden states)",
                   "", "invalid_request_error", "not_embedding_server");
  const int64_t hidden = ctx.engine.limits().hidden;
  json body = read_json_body(ctx, req, is_embeddings_field);
  EmbeddingsSpec spec = parse_embeddings_request(body, ctx.parse, cfg, hidden);
  release_body(req);
  std::shared_ptr<void> inflight =
      admit_work(ctx, {int64_t(spec.inputs.size()), admitted_tokens(spec.inputs), 0}, "input");
  std::vector<PooledResult> got = run_pooled(ctx, req, spec.inputs, cfg.pooling, {});
  if (got.empty()) {
    res.status = 499;  // the client is gone; nobody reads this
    access_info().finish = "client_gone";
    return;
  }
  json data = json::array();
  int64_t tokens = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    data.push_back({{"object", "embedding"},
                    {"index", i},
                    {"embedding", embedding_value(std::move(got[i].embedding), cfg, spec.dimensions, spec.base64)}});
    tokens += got[i].prompt_tokens;
  }
  access_info().prompt_tokens = tokens;
  access_info().finish = "stop";
  send_json(res, 200,
            {{"object", "list"},
             {"data", std::move(data)},
             {"model", ctx.opts.served_model_name},
             {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

void handle_rerank(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  check_serving(ctx);
  json body = read_json_body(ctx, req, is_rerank_field);
  RerankSpec spec = parse_rerank_request(body, ctx.parse);
  release_body(req);
  std::shared_ptr<void> inflight =
      admit_work(ctx, {int64_t(spec.prompts.size()), admitted_tokens(spec.prompts), 0}, "documents");
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
  access_info().prompt_tokens = tokens;
  access_info().finish = "stop";
  send_json(res, 200,
            {{"id", new_request_id("rerank")},
             {"object", "list"},
             {"model", ctx.opts.served_model_name},
             {"results", std::move(results)},
             {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

}  // namespace

void register_embeddings_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/embeddings", [&ctx](const httplib::Request& req, httplib::Response& res) {
    handle_embeddings(ctx, req, res);
  });
  svr.Post("/v1/rerank", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_rerank(ctx, req, res); });
}

}  // namespace dpserve
