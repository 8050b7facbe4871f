#include "engine/offline_runner.h"

#include <algorithm>
#include <chrono>

#include "core/check.h"
#include "engine/sampler.h"

namespace dpserve {

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

OfflineRunner::OfflineRunner(Model& model, std::vector<int32_t> eos_ids, RunnerOptions opts)
    : model_(model), eos_(std::move(eos_ids)), opts_(opts) {}

std::vector<GenResult> OfflineRunner::run(const std::vector<GenRequest>& reqs, const TokenFn& on_token,
                                          const LogitsFn& on_logits) {
  const auto& cfg = model_.config();
  const int64_t V = cfg.vocab;
  const size_t n = reqs.size();
  stats_ = GenStats{};

  // Size the KV pool for every sequence's whole length.
  int64_t pages = 0;
  for (const auto& r : reqs) {
    if (r.prompt.empty()) fail("request has an empty prompt");
    const int64_t len = int64_t(r.prompt.size()) + r.params.max_new_tokens;
    if (len > cfg.max_pos)
      fail("prompt ({} tokens) + max new tokens ({}) exceeds the model's context of {} positions", r.prompt.size(),
           r.params.max_new_tokens, cfg.max_pos);
    pages += (len + opts_.page_size - 1) / opts_.page_size;
  }
  KVPool kv(model_.kv_config(std::max<int64_t>(pages, 1), opts_.page_size));

  std::vector<PageTable> tables(n);
  std::vector<Sampler> samplers;
  std::vector<GenResult> results(n);
  std::vector<int32_t> last(n);
  std::vector<bool> done(n, false);
  for (size_t i = 0; i < n; ++i) {
    samplers.emplace_back(reqs[i].params, uint64_t(i));
    samplers.back().add_prompt(reqs[i].prompt.data(), int64_t(reqs[i].prompt.size()));
    DP_CHECK(tables[i].reserve(kv, int64_t(reqs[i].prompt.size()) + reqs[i].params.max_new_tokens));
    stats_.prompt_tokens += int64_t(reqs[i].prompt.size());
  }
  std::vector<float> logits;

  auto finish_token = [&](size_t i, int32_t tok) {
    results[i].output.push_back(tok);
    ++stats_.output_tokens;
    if (on_token) on_token(i, tok);
    const auto& p = reqs[i].params;
    bool is_eos = !p.ignore_eos && std::find(eos_.begin(), eos_.end(), tok) != eos_.end();
    bool is_stop = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), tok) != p.stop_token_ids.end();
    if (is_eos || is_stop) {
      done[i] = true;
      results[i].finish_reason = "stop";
    } else if (int64_t(results[i].output.size()) >= p.max_new_tokens) {
      done[i] = true;
      results[i].finish_reason = "length";
    }
    last[i] = tok;
  };

  // Prefill: chunks of whole or partial prompts, up to prefill_chunk tokens per pass.
  double t0 = now();
  std::vector<int64_t> done_prefill(n, 0);
  size_t cur = 0;
  while (cur < n) {
    ForwardBatch b;
    std::vector<std::pair<size_t, int64_t>> owners;  // (request, first pos) per sequence in b
    int64_t budget = opts_.prefill_chunk;
    while (cur < n && budget > 0) {
      const auto& pr = reqs[cur].prompt;
      int64_t take = std::min<int64_t>(budget, int64_t(pr.size()) - done_prefill[cur]);
      bool last_chunk = done_prefill[cur] + take == int64_t(pr.size());
      b.add(pr.data() + done_prefill[cur], take, done_prefill[cur], tables[cur].pages.data(),
            opts_.keep_logits);
      if (!opts_.keep_logits && !last_chunk) b.logit_rows.pop_back();
      owners.push_back({cur, done_prefill[cur]});
      done_prefill[cur] += take;
      budget -= take;
      if (last_chunk) ++cur;
    }
    logits.resize(size_t(b.logit_rows.size() * V));
    model_.forward(b, kv, logits.data());
    ++stats_.steps;
    // Walk the logit rows back to their sequences.
    size_t row = 0;
    for (size_t s = 0; s < b.seqs.size(); ++s) {
      auto [i, pos0] = owners[s];
      const int64_t nq = b.seqs[s].n_q;
      const bool last_chunk = pos0 + nq == int64_t(reqs[i].prompt.size());
      if (opts_.keep_logits) {
        for (int64_t q = 0; q < nq; ++q, ++row) {
          if (on_logits) on_logits(i, pos0 + q, &logits[row * V]);
          if (q == nq - 1 && last_chunk) {
            if (reqs[i].params.max_new_tokens > 0) finish_token(i, samplers[i].sample(&logits[row * V], V));
            else done[i] = true, results[i].finish_reason = "length";
          }
        }
      } else if (last_chunk) {
        if (reqs[i].params.max_new_tokens > 0) finish_token(i, samplers[i].sample(&logits[row * V], V));
        else done[i] = true, results[i].finish_reason = "length";
        ++row;
      }
    }
  }
  for (size_t i = 0; i < n; ++i) tables[i].len = int64_t(reqs[i].prompt.size());
  double t1 = now();
  stats_.prefill_seconds = t1 - t0;

  // Decode: every unfinished sequence advances one token per pass.
  while (true) {
    ForwardBatch b;
    std::vector<size_t> owners;
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      b.add(&last[i], 1, tables[i].len, tables[i].pages.data(), true);
      owners.push_back(i);
    }
    if (owners.empty()) break;
    logits.resize(size_t(b.logit_rows.size() * V));
    model_.forward(b, kv, logits.data());
    ++stats_.steps;
    for (size_t s = 0; s < owners.size(); ++s) {
      size_t i = owners[s];
      float* l = &logits[s * V];
      if (on_logits) on_logits(i, tables[i].len, l);
      ++tables[i].len;
      finish_token(i, samplers[i].sample(l, V));
    }
  }
  stats_.decode_seconds = now() - t1;
  for (auto& t : tables) t.release(kv);
  return results;
}

}  // namespace dpserve
