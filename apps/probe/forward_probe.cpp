// dpserve_forward_probe: runs a scripted schedule of ragged batches through the
// model and dumps every token's logits, so tests can compare them with an
// independent reference implementation.
//
//   dpserve_forward_probe --model-path DIR --schedule SCHED.json --out LOGITS.bin
//       [--page-size N] [--num-pages N] [--threads N] [--mla-path auto|absorbed|decompressed]
//       [--lora ADAPTER_DIR]...
//
// SCHED.json: {"steps": [{"free": [seq...], "run": [{"seq": 0, "tokens": [...]}, ...]}, ...]}
// A run entry may add "lora": SLOT, the --lora adapter (0, 1, ... in the order given) it runs with.
// Each step frees the listed sequences (pages back to the pool; the id may be
// reused as a new sequence), then runs one forward pass over all "run" entries.
// LOGITS.bin: float32 rows of vocab logits, in (step, entry, token) order.
// stdout: {"vocab_size": V, "rows": [{"step", "seq", "pos"}...]}
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/model.h"

using namespace dpserve;

int main(int argc, char** argv) {
  CLI::App app{"Run a schedule of ragged batches and dump logits"};
  std::string model_path, schedule, out;
  int64_t page_size = 4, num_pages = 256;
  int threads = 0;
  std::string mla_path = "auto";
  std::vector<std::string> loras;
  app.add_option("--model-path", model_path, "model folder or llama2.c checkpoint")->required();
  app.add_option("--schedule", schedule, "schedule JSON")->required();
  app.add_option("--out", out, "logits output file")->required();
  app.add_option("--page-size", page_size)->capture_default_str();
  app.add_option("--num-pages", num_pages)->capture_default_str();
  app.add_option("--threads", threads);
  app.add_option("--mla-path", mla_path, "MLA models: attention form for every sequence (auto: by cost)")
      ->check(CLI::IsMember({"auto", "absorbed", "decompressed"}));
  app.add_option("--lora", loras, "PEFT LoRA adapter folder (repeatable; slots 0, 1, ... in order)");
  CLI11_PARSE(app, argc, argv);
  try {
    LoadOptions lo;
    lo.threads = threads;
    auto model = Model::load(model_path, lo);
    model->set_mla_path(mla_path == "absorbed"       ? MlaPath::kAbsorbed
                        : mla_path == "decompressed" ? MlaPath::kDecompressed
                                                     : MlaPath::kAuto);
    for (const auto& dir : loras) model->add_lora(dir);
    const int64_t V = model->config().vocab;
    KVPool kv(model->kv_config(num_pages, page_size));
    std::ifstream in(schedule);
    if (!in) fail("cannot open {}", schedule);
    nlohmann::json sched = nlohmann::json::parse(in);
    std::FILE* f = std::fopen(out.c_str(), "wb");
    if (!f) fail("cannot write {}", out);
    std::map<int64_t, PageTable> seqs;
    nlohmann::json rows = nlohmann::json::array();
    std::vector<float> logits;
    int64_t step = 0;
    for (const auto& st : sched.at("steps")) {
      if (st.contains("free"))
        for (const auto& s : st["free"]) {
          auto it = seqs.find(s.get<int64_t>());
          if (it == seqs.end()) fail("step {}: free of unknown seq {}", step, s.get<int64_t>());
          it->second.release(kv);
          seqs.erase(it);
        }
      ForwardBatch b;
      std::vector<std::vector<int32_t>> toks;
      toks.reserve(st.at("run").size());
      for (const auto& r : st.at("run")) {
        int64_t id = r.at("seq").get<int64_t>();
        toks.push_back(r.at("tokens").get<std::vector<int32_t>>());
        PageTable& pt = seqs[id];
        const int64_t n = int64_t(toks.back().size());
        if (!pt.reserve(kv, pt.len + n)) fail("step {}: KV pool out of pages (raise --num-pages)", step);
        b.add(toks.back().data(), n, pt.len, pt.pages.data(), true);
        b.seq_lora.push_back(r.value("lora", -1));
        for (int64_t i = 0; i < n; ++i) rows.push_back({{"step", step}, {"seq", id}, {"pos", pt.len + i}});
        pt.len += n;
      }
      logits.resize(b.logit_rows.size() * size_t(V));
      model->forward(b, kv, logits.data());
      std::fwrite(logits.data(), sizeof(float), logits.size(), f);
      ++step;
    }
    std::fclose(f);
    std::cout << nlohmann::json{{"vocab_size", V}, {"rows", rows}}.dump() << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpserve_forward_probe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
