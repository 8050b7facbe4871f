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
// stdout: {"vocab_size": V, "weight_bytes": W, "attention_weight_bytes": B, "rows": [{"step", "seq",
// "pos"}...]}; W: the bytes of this rank's weights as run (Model::weight_bytes), B: those of its
// attention weights a decode step reads (Model::phase_weight_bytes; -1: not known).
//
// Under mpirun with --tp-size N (N = the world size), [--dp-size D --enable-dp-attention]: the
// model sharded as dpserve shards it. Without DP attention rank 0 writes LOGITS.bin and stdout as
// above. With it, attention group g runs the run entries whose seq % D == g (a group may run an
// empty batch), and each group's leader writes LOGITS.bin.g<g> and LOGITS.bin.g<g>.json (its rows).
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/model.h"
#include "model/quant_recipe.h"
#include "model/step_phases.h"
#include "parallel/comm.h"
#include "parallel/dp_attention.h"
#include "parallel/model_comm.h"
#include "parallel/topology.h"

using namespace dpserve;

int main(int argc, char** argv) {
  CLI::App app{"Run a schedule of ragged batches and dump logits"};
  std::string model_path, schedule, out;
  int64_t page_size = 4, num_pages = 256;
  int threads = 0;
  std::string mla_path = "auto";
  std::vector<std::string> loras;
  int tp_size = 1, dp_size = 1;
  bool dp_attention = false;
  app.add_option("--model-path", model_path, "model folder or llama2.c checkpoint")->required();
  app.add_option("--schedule", schedule, "schedule JSON")->required();
  app.add_option("--out", out, "logits output file")->required();
  app.add_option("--page-size", page_size)->capture_default_str();
  app.add_option("--num-pages", num_pages)->capture_default_str();
  app.add_option("--threads", threads);
  app.add_option("--mla-path", mla_path, "MLA models: attention form for every sequence (auto: by cost)")
      ->check(CLI::IsMember({"auto", "absorbed", "decompressed"}));
  app.add_option("--lora", loras, "PEFT LoRA adapter folder (repeatable; slots 0, 1, ... in order)");
  app.add_option("--tp-size", tp_size, "ranks (under mpirun; the world size)");
  app.add_option("--dp-size", dp_size, "attention groups (with --enable-dp-attention)");
  app.add_flag("--enable-dp-attention", dp_attention);
  int64_t context_length = 0;
  app.add_option("--context-length", context_length,
                 "the context the model is loaded for (0: its own); picks LongRoPE's factor set");
  std::string quantization = "none";
  app.add_option("--quantization", quantization, "float matrices to this block type on load (as dpserve's flag)");
  CLI11_PARSE(app, argc, argv);
  std::unique_ptr<MpiRuntime> mpi;
  Topology topo;
  Comms comms;
  std::unique_ptr<DistModelComm> mcomm;
  try {
    LoadOptions lo;
    lo.threads = threads;
    lo.context_length = context_length;
    const auto q = quantization_from_name(quantization);
    if (!q) fail("--quantization {}: not a dpserve quantization", quantization);
    lo.quantization = *q;
    if (tp_size > 1) {
      mpi = std::make_unique<MpiRuntime>(&argc, &argv);
      TopologyConfig tc;
      tc.tp_size = tp_size;
      tc.dp_size = dp_size;
      tc.enable_dp_attention = dp_attention;
      tc.world_size = mpi->world_size();
      tc.rank = mpi->world_rank();
      topo = make_topology(tc);
      comms = Comms::create(topo);
      mcomm = std::make_unique<DistModelComm>(comms, topo, DpPaddingRequest::kAuto);
      lo.parallel = model_parallel_for(topo);
      lo.comm = mcomm.get();
      lo.verbose = topo.rank == 0;
    }
    const bool dp = topo.dp_attention;
    const bool writer = dp ? topo.is_group_leader : topo.rank == 0;
    if (dp) out += ".g" + std::to_string(topo.attn_dp_rank);
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
    std::FILE* f = writer ? std::fopen(out.c_str(), "wb") : nullptr;
    if (writer && !f) fail("cannot write {}", out);
    std::map<int64_t, PageTable> seqs;
    nlohmann::json rows = nlohmann::json::array();
    std::vector<float> logits;
    int64_t step = 0;
    for (const auto& st : sched.at("steps")) {
      if (st.contains("free"))
        for (const auto& s : st["free"]) {
          if (dp && s.get<int64_t>() % topo.dp_size != topo.attn_dp_rank) continue;  // another group's
          auto it = seqs.find(s.get<int64_t>());
          if (it == seqs.end()) fail("step {}: free of unknown seq {}", step, s.get<int64_t>());
          it->second.release(kv);
          seqs.erase(it);
        }
      ForwardBatch b;
      std::vector<std::vector<int32_t>> toks;
      toks.reserve(st.at("run").size());
      bool prefill = false;
      for (const auto& r : st.at("run")) {
        int64_t id = r.at("seq").get<int64_t>();
        if (dp && id % topo.dp_size != topo.attn_dp_rank) continue;
        toks.push_back(r.at("tokens").get<std::vector<int32_t>>());
        PageTable& pt = seqs[id];
        const int64_t n = int64_t(toks.back().size());
        if (!pt.reserve(kv, pt.len + n)) fail("step {}: KV pool out of pages (raise --num-pages)", step);
        b.add(toks.back().data(), n, pt.len, pt.pages.data(), true);
        b.seq_lora.push_back(r.value("lora", -1));
        prefill = prefill || n > 1;
        for (int64_t i = 0; i < n; ++i) rows.push_back({{"step", step}, {"seq", id}, {"pos", pt.len + i}});
        pt.len += n;
      }
      logits.resize(b.logit_rows.size() * size_t(V));
      if (dp) mcomm->begin_step(mlp_sync(comms.mlp, topo, b.n_tokens(), prefill));
      model->forward(b, kv, logits.data());
      if (f) std::fwrite(logits.data(), sizeof(float), logits.size(), f);
      ++step;
    }
    if (f) std::fclose(f);
    if (dp && writer) {
      std::ofstream(out + ".json") << nlohmann::json{{"vocab_size", V}, {"rows", rows}}.dump() << "\n";
    } else if (writer) {
      std::cout << nlohmann::json{{"vocab_size", V},
                                  {"weight_bytes", model->weight_bytes()},
                                  {"attention_weight_bytes", model->phase_weight_bytes(StepPhase::kAttention)},
                                  {"rows", rows}}
                       .dump()
                << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpserve_forward_probe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
