// dpserve_nextn_probe: runs a DeepSeek-V3 or GLM checkpoint's multi-token-prediction (NEXTN) layer over a
// token sequence as the NEXTN drafter feeds it, and dumps its logits, so tests can compare them with
// the NumPy reference (tests/model/reference/ref_nextn.py).
//
//   dpserve_nextn_probe --model-path DIR --tokens 3,1,4,... --out LOGITS.bin [--chunk C] [--draft K]
//
// The target runs once over the tokens t[0..T) and hands over its hidden states after the final
// norm, h[0..T). The NEXTN layer then reads the pairs (h[i], t[i+1]) for i < T-1, at KV position i of
// its own paged cache, in passes of at most C rows (the cache carries the earlier ones); row i's
// logits predict t[i+2]. With --draft K it then drafts K tokens greedily as a chain: the last pair's
// argmax d1, then (its own hidden state after shared_head.norm, d1) at the next position, and so on.
// LOGITS.bin: float32 rows of vocab logits: the T-1 pairs, then the K-1 further chain rows.
// stdout: {"vocab_size": V, "pairs": T-1, "drafts": [d1..dK]}
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/model.h"

using namespace dpserve;

int main(int argc, char** argv) {
  CLI::App app{"Run a checkpoint's NEXTN layer over a token sequence and dump its logits"};
  std::string model_path, tokens_arg, out;
  int64_t chunk = 1 << 30, draft = 0, page_size = 4, num_pages = 256;
  int threads = 0;
  app.add_option("--model-path", model_path,
                 "DeepSeek-V3, GLM-4.5 or GLM-4.7-Flash folder (or GLM GGUF file) with num_nextn_predict_layers >= 1")
      ->required();
  app.add_option("--tokens", tokens_arg, "comma-separated token ids (at least 2)")->required();
  app.add_option("--out", out, "logits output file")->required();
  app.add_option("--chunk", chunk, "most NEXTN rows per forward pass");
  app.add_option("--draft", draft, "chain drafts after the sequence");
  app.add_option("--page-size", page_size)->capture_default_str();
  app.add_option("--num-pages", num_pages)->capture_default_str();
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  try {
    std::vector<int32_t> toks;
    std::stringstream ss(tokens_arg);
    for (std::string s; std::getline(ss, s, ',');) toks.push_back(int32_t(std::stoi(s)));
    const int64_t T = int64_t(toks.size());
    if (T < 2 || chunk < 1 || draft < 0) fail("need at least 2 tokens, --chunk >= 1, --draft >= 0");
    LoadOptions lo;
    lo.threads = threads;
    auto target = Model::load(model_path, lo);
    lo.team = &target->team();
    lo.nextn = true;
    auto mtp = Model::load(model_path, lo);
    const int64_t V = target->config().vocab, H = target->config().hidden;

    // The target: every row's hidden state after the final norm.
    KVPool kv(target->kv_config(num_pages, page_size));
    PageTable pt;
    if (!pt.reserve(kv, T)) fail("target KV pool out of pages (raise --num-pages)");
    ForwardBatch tb;
    tb.add(toks.data(), T, 0, pt.pages.data(), false);
    tb.logit_rows.clear();
    for (int64_t i = 0; i < T; ++i) tb.last_hidden_rows.push_back(i);
    std::vector<float> h(size_t(T * H));
    tb.last_hidden = h.data();
    target->forward(tb, kv, nullptr);

    KVPool mkv(mtp->kv_config(num_pages, page_size));
    PageTable mpt;
    if (!mpt.reserve(mkv, T - 1 + draft)) fail("NEXTN KV pool out of pages (raise --num-pages)");
    std::FILE* f = std::fopen(out.c_str(), "wb");
    if (!f) fail("cannot write {}", out);
    std::vector<float> logits, last_h(static_cast<size_t>(H));
    for (int64_t p0 = 0; p0 < T - 1; p0 += chunk) {
      const int64_t n = std::min(chunk, T - 1 - p0);
      ForwardBatch b;
      b.add(toks.data() + p0 + 1, n, p0, mpt.pages.data(), true);
      b.prev_hidden = h.data() + p0 * H;
      b.last_hidden_rows = {n - 1};
      b.last_hidden = last_h.data();
      logits.resize(size_t(n * V));
      mtp->forward(b, mkv, logits.data());
      std::fwrite(logits.data(), sizeof(float), logits.size(), f);
    }
    // The chain: each draft is the argmax of the row before, paired with that row's own hidden state.
    std::vector<int32_t> drafts;
    if (draft > 0) drafts.push_back(int32_t(std::max_element(logits.end() - V, logits.end()) - (logits.end() - V)));
    for (int64_t j = 1; j < draft; ++j) {
      ForwardBatch b;
      const std::vector<float> prev = last_h;
      b.add(&drafts.back(), 1, T - 2 + j, mpt.pages.data(), true);
      b.prev_hidden = prev.data();
      b.last_hidden_rows = {0};
      b.last_hidden = last_h.data();
      logits.resize(size_t(V));
      mtp->forward(b, mkv, logits.data());
      std::fwrite(logits.data(), sizeof(float), logits.size(), f);
      drafts.push_back(int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    }
    std::fclose(f);
    std::cout << nlohmann::json{{"vocab_size", V}, {"pairs", T - 1}, {"drafts", drafts}}.dump() << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpserve_nextn_probe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
