#include "server/metrics.h"

#include <fmt/format.h>

namespace dpserve {

namespace {

std::string fmt_double(double v) { return fmt::format("{}", v); }

// Label values escape backslash, quote and newline per the exposition format.
std::string escape_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void header(std::string& out, const std::string& name, const char* type, const std::string& help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lk(mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help,
                       const std::string& labels) const {
  std::lock_guard<std::mutex> lk(mu_);
  header(out, name, "histogram", help);
  const std::string pre = labels.empty() ? "" : labels + ",";
  const std::string only = labels.empty() ? "" : "{" + labels + "}";
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, pre, fmt_double(bounds_[i]), cum);
  }
  cum += counts_.back();
  out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, pre, cum);
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, only, fmt_double(sum_), name, only, count_);
}

Metrics::Metrics()
    : time_to_first_token({0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      inter_token_latency({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      e2e_latency({0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++requests_[{route, status}];
}

void Metrics::count_images(int64_t n, const MaterializeTimes& t) {
  if (n <= 0) return;
  images_materialized += n;
  image_decode_seconds.fetch_add(t.decode_s);
  image_preprocess_seconds.fetch_add(t.preprocess_s);
}

void Metrics::count_finish(const std::string& reason) {
  std::lock_guard<std::mutex> lk(mu_);
  ++finishes_[reason];
}

std::string Metrics::render(const EngineStats& es, bool healthy, bool draining, int64_t sequences,
                            int64_t tokens) const {
  std::string out;
  header(out, "dpserve_healthy", "gauge", "1 when every rank is alive and the model is loaded");
  out += fmt::format("dpserve_healthy {}\n", healthy ? 1 : 0);
  header(out, "dpserve_draining", "gauge", "1 while shutting down (new requests get 503)");
  out += fmt::format("dpserve_draining {}\n", draining ? 1 : 0);

  // One series per DP group, labelled with its dp_rank.
  auto per_group = [&](const char* name, const char* type, const char* help, auto value) {
    header(out, name, type, help);
    for (const auto& g : es.groups) out += fmt::format("{}{{dp_rank=\"{}\"}} {}\n", name, g.dp_rank, value(g));
  };
  auto ratio = [](int64_t num, int64_t den) { return fmt_double(den > 0 ? double(num) / double(den) : 0.0); };
  per_group("dpserve_num_running_reqs", "gauge", "Requests in the running batch of each DP group",
            [](const GroupStats& g) { return g.running; });
  per_group("dpserve_num_queue_reqs", "gauge", "Requests waiting in each DP group's queue",
            [](const GroupStats& g) { return g.waiting; });
  per_group("dpserve_kv_pages_used", "gauge", "KV cache pages in use per DP group",
            [](const GroupStats& g) { return g.kv_pages_used; });
  per_group("dpserve_kv_pages_total", "gauge", "KV cache pages per DP group",
            [](const GroupStats& g) { return g.kv_pages_total; });
  per_group("dpserve_kv_pages_cached", "gauge",
            "KV cache pages held by the prefix cache per DP group (reclaimable once no request uses them)",
            [](const GroupStats& g) { return g.kv_pages_cached; });
  per_group("dpserve_preemptions_total", "counter",
            "Requests pushed back to the queue because the KV cache ran out (recomputed when readmitted), per DP group",
            [](const GroupStats& g) { return g.preemptions; });
  per_group("dpserve_kv_bytes_used", "gauge",
            "KV cache bytes in use on each rank of a DP group (pages in use x the bytes the attention kind stores per "
            "page: per-head K/V, or MLA's latent row, which every attention rank of the group holds whole)",
            [](const GroupStats& g) { return g.kv_pages_used * g.kv_bytes_per_page; });
  per_group("dpserve_kv_bytes_total", "gauge", "KV cache bytes of each rank of a DP group",
            [](const GroupStats& g) { return g.kv_pages_total * g.kv_bytes_per_page; });
  per_group("dpserve_kv_usage", "gauge", "Fraction of KV cache pages in use per DP group",
            [&](const GroupStats& g) { return ratio(g.kv_pages_used, g.kv_pages_total); });
  per_group("dpserve_prefix_cache_hit_rate", "gauge",
            "Prompt tokens served from the prefix cache / prompt tokens looked up, per DP group",
            [&](const GroupStats& g) { return ratio(g.prefix_hit_tokens, g.prefix_query_tokens); });
  per_group("dpserve_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache, per DP group",
            [](const GroupStats& g) { return g.prefix_hit_tokens; });
  per_group("dpserve_prefix_cache_query_tokens_total", "counter", "Prompt tokens looked up in the prefix cache, per DP group",
            [](const GroupStats& g) { return g.prefix_query_tokens; });

  header(out, "dpserve_prompt_tokens_total", "counter", "Prompt tokens processed by the engine");
  out += fmt::format("dpserve_prompt_tokens_total {}\n", es.prompt_tokens_total);
  header(out, "dpserve_generation_tokens_total", "counter",
         "Tokens generated by the engine (not the token a max_tokens 0 request samples and drops)");
  out += fmt::format("dpserve_generation_tokens_total {}\n", es.generation_tokens_total);
  header(out, "dpserve_spec_draft_tokens_total", "counter",
         "Speculative decoding: drafted tokens verified by the target model");
  out += fmt::format("dpserve_spec_draft_tokens_total {}\n", es.spec_draft_tokens_total);
  header(out, "dpserve_spec_accepted_tokens_total", "counter",
         "Speculative decoding: drafted tokens that matched the target's token");
  out += fmt::format("dpserve_spec_accepted_tokens_total {}\n", es.spec_accepted_tokens_total);
  header(out, "dpserve_spec_verify_steps_total", "counter",
         "Speculative decoding: request-steps that verified drafted tokens");
  out += fmt::format("dpserve_spec_verify_steps_total {}\n", es.spec_verify_steps_total);
  header(out, "dpserve_spec_accept_length", "gauge",
         "Speculative decoding: mean tokens per verifying request-step (accepted drafts + 1; 0 before any)");
  out += fmt::format("dpserve_spec_accept_length {}\n",
                     fmt_double(es.spec_verify_steps_total > 0
                                    ? 1.0 + double(es.spec_accepted_tokens_total) / double(es.spec_verify_steps_total)
                                    : 0.0));
  header(out, "dpserve_engine_steps_total", "counter", "Engine steps run");
  out += fmt::format("dpserve_engine_steps_total {}\n", es.steps_total);
  header(out, "dpserve_engine_requests_finished_total", "counter", "Requests the engine finished");
  out += fmt::format("dpserve_engine_requests_finished_total {}\n", es.requests_finished_total);
  header(out, "dpserve_pooled_outputs_total", "counter",
         "Embedding vectors and rerank scores the engine computed (prefill-only inputs; no token generated)");
  out += fmt::format("dpserve_pooled_outputs_total {}\n", es.pooled_outputs_total);
  header(out, "dpserve_http_prompt_tokens_total", "counter",
         "Prompt tokens of requests answered over HTTP, as their usage counts them (once per prompt, whatever n)");
  out += fmt::format("dpserve_http_prompt_tokens_total {}\n", prompt_tokens.load());
  header(out, "dpserve_http_completion_tokens_total", "counter", "Completion tokens returned over HTTP");
  out += fmt::format("dpserve_http_completion_tokens_total {}\n", completion_tokens.load());
  header(out, "dpserve_http_requests_inflight", "gauge", "HTTP requests being served");
  out += fmt::format("dpserve_http_requests_inflight {}\n", http_inflight.load());
  header(out, "dpserve_http_connections", "gauge",
         "Client connections accepted and not yet closed");
  out += fmt::format("dpserve_http_connections {}\n", http_connections.load());
  header(out, "dpserve_http_sequences_inflight", "gauge",
         "Sequences (prompts x n) of the generation requests being served (--max-queued-requests bounds it)");
  out += fmt::format("dpserve_http_sequences_inflight {}\n", sequences);
  header(out, "dpserve_http_tokens_inflight", "gauge",
         "Prompt + max_tokens of those sequences (--max-queued-tokens bounds it)");
  out += fmt::format("dpserve_http_tokens_inflight {}\n", tokens);
  header(out, "dpserve_http_rejected_overload_total", "counter",
         "Generation requests answered 429 because --max-queued-requests or --max-queued-tokens left no room");
  out += fmt::format("dpserve_http_rejected_overload_total {}\n", rejected_overload.load());
  header(out, "dpserve_http_slow_requests_closed_total", "counter",
         "Connections closed because a request body took longer than --http-request-timeout to arrive after its headers");
  out += fmt::format("dpserve_http_slow_requests_closed_total {}\n", read_deadline_closed.load());

  header(out, "dpserve_images_total", "counter",
         "Images decoded and resized on rank 0 for requests it queued (a bad image's 400 is not counted)");
  out += fmt::format("dpserve_images_total {}\n", images_materialized.load());
  header(out, "dpserve_images_encoded_total", "counter",
         "Images the vision tower ran for the requests of rank 0's DP group (all requests at --dp-size 1; "
         "again after a preemption)");
  out += fmt::format("dpserve_images_encoded_total {}\n", encoder ? encoder->images() : 0);
  header(out, "dpserve_image_seconds_total", "counter",
         "Seconds spent on images: decode (file to RGB) and preprocess (smart_resize + bicubic) on rank 0 for "
         "dpserve_images_total, encoder (patches + vision tower) for dpserve_images_encoded_total");
  out += fmt::format("dpserve_image_seconds_total{{stage=\"decode\"}} {}\n", fmt_double(image_decode_seconds.load()));
  out += fmt::format("dpserve_image_seconds_total{{stage=\"preprocess\"}} {}\n",
                     fmt_double(image_preprocess_seconds.load()));
  out += fmt::format("dpserve_image_seconds_total{{stage=\"encoder\"}} {}\n",
                     fmt_double(encoder ? encoder->seconds() : 0.0));

  {
    std::lock_guard<std::mutex> lk(mu_);
    header(out, "dpserve_http_requests_total", "counter", "HTTP requests by route and status");
    for (const auto& [k, v] : requests_)
      out += fmt::format("dpserve_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", escape_label(k.first),
                         k.second, v);
    header(out, "dpserve_finished_choices_total", "counter", "Generated choices by finish reason");
    for (const auto& [k, v] : finishes_)
      out += fmt::format("dpserve_finished_choices_total{{reason=\"{}\"}} {}\n", escape_label(k), v);
  }
  time_to_first_token.render(out, "dpserve_time_to_first_token_seconds", "Time from arrival to the first token");
  inter_token_latency.render(out, "dpserve_inter_token_latency_seconds", "Time between tokens of a request");
  e2e_latency.render(out, "dpserve_e2e_request_latency_seconds", "Time from arrival to the last token");
  return out;
}

std::string Metrics::render_sglang(const EngineStats& es, const std::string& model_name, int64_t page_size) const {
  std::string out;
  const std::string m = fmt::format("model_name=\"{}\"", escape_label(model_name));
  auto per_group = [&](const char* name, const char* type, const char* help, auto value) {
    header(out, name, type, help);
    for (const auto& g : es.groups) out += fmt::format("{}{{{},dp_rank=\"{}\"}} {}\n", name, m, g.dp_rank, value(g));
  };
  per_group("sglang:num_running_reqs", "gauge", "The number of running requests.", [](const GroupStats& g) { return g.running; });
  per_group("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.",
            [](const GroupStats& g) { return g.waiting; });
  // SGLang counts the prefix cache as free (used = total - available - evictable), so an idle server
  // reads 0 however full its cache. Here every page in the prefix tree counts as cache, including
  // the shared prefix pages of running requests, which SGLang counts as used: slightly lower under
  // load, never a full cache reported by an idle server.
  per_group("sglang:num_used_tokens", "gauge",
            "The number of used tokens (KV positions requests hold, page granular; the prefix cache is free).",
            [&](const GroupStats& g) { return held_kv_tokens(g, page_size); });
  per_group("sglang:token_usage", "gauge", "The token usage (fraction of the KV cache requests hold).",
            [&](const GroupStats& g) {
              return fmt_double(g.kv_pages_total > 0 ? double(held_kv_tokens(g, 1)) / double(g.kv_pages_total) : 0.0);
            });
  per_group("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate.", [](const GroupStats& g) {
    return fmt_double(g.prefix_query_tokens > 0 ? double(g.prefix_hit_tokens) / double(g.prefix_query_tokens) : 0.0);
  });
  per_group("sglang:gen_throughput", "gauge",
            "The generation throughput (token/s): tokens generated over the last 5 s / 5 s, per DP group.",
            [](const GroupStats& g) { return fmt_double(g.gen_throughput); });
  header(out, "sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.");
  out += fmt::format("sglang:prompt_tokens_total{{{}}} {}\n", m, es.prompt_tokens_total);
  header(out, "sglang:generation_tokens_total", "counter", "Number of generation tokens processed.");
  out += fmt::format("sglang:generation_tokens_total{{{}}} {}\n", m, es.generation_tokens_total);
  header(out, "sglang:num_requests_total", "counter", "Number of requests processed.");
  out += fmt::format("sglang:num_requests_total{{{}}} {}\n", m, es.requests_finished_total);
  time_to_first_token.render(out, "sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", m);
  inter_token_latency.render(out, "sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", m);
  e2e_latency.render(out, "sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", m);
  return out;
}

int64_t held_kv_tokens(const GroupStats& g, int64_t page_size) {
  return std::max<int64_t>(0, g.kv_pages_used - g.kv_pages_cached) * page_size;
}

}  // namespace dpserve
