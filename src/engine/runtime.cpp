#include "engine/runtime.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "constrain/vocab_index.h"
#include "core/check.h"
#include "core/version.h"
#include "parallel/comm.h"
#include "parallel/model_comm.h"
#include "parallel/node_join.h"
#include "parallel/numa_plan.h"
#include "parallel/placement.h"
#include "parallel/topology.h"
#include "engine/rank_worker.h"
#include "kernels/isa.h"
#include "kernels/team_pinning.h"
#include "kv/kv_dtype.h"
#include "kv/prefix_dir.h"
#include "model/mla_attention.h"
#include "model/model.h"
#include "model/model_identity.h"
#include "model/weight_digest.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

namespace {

int64_t meminfo_bytes(const char* field) {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == field) return kb * 1024;
  return int64_t(4) << 30;
}

// DPSERVE_TEST_MEM_AVAILABLE (bytes) stands in for the reading, so a test can give the ranks of one
// job different readings, as other processes' memory use does on a shared host.
int64_t mem_available_bytes() {
  if (const char* e = std::getenv("DPSERVE_TEST_MEM_AVAILABLE")) return std::atoll(e);
  return meminfo_bytes("MemAvailable:");
}

// What a prefix cache file must have been made under to be loaded: the same dpserve version (KV
// numerics may change between versions), the same model (the digests --nnodes compares, and a digest
// of every weight byte: --nnodes's samples miss small tensors), the same KV layout and dtype on this
// rank, and the same place in the same layout (a rank's file holds its heads, its group's requests).
std::vector<std::pair<std::string, std::string>> prefix_identity(const RuntimeOptions& o, const Topology& t,
                                                                 const Model& m, int threads) {
  std::vector<std::pair<std::string, std::string>> id;
  id.emplace_back("dpserve version", dpserve_version());
  // The version changes only on a release; a rebuilt binary may compute KV differently (a kernel
  // fix, other compile flags), so the build itself is part of the identity too.
  std::error_code ec;
  const auto exe = std::filesystem::canonical("/proc/self/exe", ec);
  if (!ec) id.emplace_back("dpserve build (digest of the executable)", std::to_string(int64_t(weight_files_digest(exe, 1))));
  for (const auto& [what, v] : model_identity(o.model_path, m.config())) id.emplace_back(what, std::to_string(v));
  const auto t0 = std::chrono::steady_clock::now();
  int64_t bytes = 0;
  const uint64_t every_byte = weight_files_digest(o.model_path, threads, &bytes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (t.rank == 0)
    spdlog::info("--kv-cache-dir: digest of every weight byte ({:.2f} GB) in {:.2f} s on {} threads",
                 double(bytes) / 1e9, seconds, threads);
  id.emplace_back("model weights digest of every byte", std::to_string(int64_t(every_byte)));
  // An image's tokens are keyed by the image's bytes, but their KV depends on how it was resized and
  // normalized: another preprocessor_config.json must not reuse it.
  if (m.config().vision.enabled())
    id.emplace_back("image preprocessing (preprocessor_config.json, as resolved)", m.image_config().describe());
  const KVPoolConfig kv = m.kv_config(1, o.page_size);
  id.emplace_back("--kv-cache-dtype (as resolved)", kv_elem_name(kv.elem));
  id.emplace_back("KV layout of this rank", kv.describe());
  id.emplace_back("--page-size", std::to_string(o.page_size));
  if (m.config().mla.enabled()) id.emplace_back("--mla-attention", o.mla_absorbed_only ? "absorbed" : "auto");
  id.emplace_back("--quantization (0 none, 1 q8_0, 2 q4_0, ...)", std::to_string(int(o.quantization)));
  id.emplace_back("--tp-size", std::to_string(o.tp_size));
  id.emplace_back("--dp-size", std::to_string(o.dp_size));
  id.emplace_back("--ep-size", std::to_string(o.ep_size));
  id.emplace_back("--enable-dp-attention", o.enable_dp_attention ? "1" : "0");
  id.emplace_back("world size", std::to_string(t.world_size));
  id.emplace_back("rank (DP group, slot)", fmt::format("{} ({}, {})", t.rank, t.attn_dp_rank, t.attn_tp_rank));
  return id;
}

}  // namespace

struct Runtime::Impl {
  RuntimeOptions opts;
  MpiRuntime mpi;
  std::unique_ptr<PrefixDir> prefix_dir;  // --kv-cache-dir (null: off); outlives the worker, which writes the file
  Topology topo;
  Comms comms;
  std::unique_ptr<DistModelComm> mcomm;
  std::unique_ptr<Model> model;
  std::unique_ptr<Model> draft;  // STANDALONE: the draft model; NEXTN: the MTP layer (null otherwise)
  std::unique_ptr<RankWorker> worker;
  std::unique_ptr<DpEngine> engine;
  int64_t kv_tokens = 0;
  std::string placement;  // "host-a: ranks 0-1; host-b: ranks 2-3" (world > 1)
};

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

void Runtime::stop_job(const std::string& why, const char* what) { impl_->worker->stop_job(why, what); }

std::unique_ptr<Runtime> Runtime::start(const RuntimeOptions& o) {
  auto im = std::make_unique<Impl>();
  Impl& I = *im;
  I.opts = o;
  try {
    if (o.nodes.nnodes > 1)
      join_nodes(o.nodes, {{"--tp-size", o.tp_size},
                           {"--dp-size", o.dp_size},
                           {"--ep-size", o.ep_size},
                           {"--enable-dp-attention", o.enable_dp_attention ? 1 : 0}});
    TopologyConfig tc;
    tc.tp_size = o.tp_size;
    tc.dp_size = o.dp_size;
    tc.enable_dp_attention = o.enable_dp_attention;
    tc.ep_size = o.ep_size;
    tc.world_size = I.mpi.world_size();
    tc.rank = I.mpi.world_rank();
    I.topo = make_topology(tc);

    // --numa: a rank bound by mpirun (or taskset) runs as many threads as it has CPUs, its workers
    // pinned one per CPU before the weights are read, so the pages they first touch (weight
    // preparation and repacking run on these threads) are on the rank's NUMA node.
    bind_self_from_env();
    const ProcessBinding binding = current_binding();
    const int local = std::max(1, local_world_size());
    const int threads = o.threads > 0    ? o.threads
                        : binding.bound ? std::max(1, int(binding.cpus.size()))
                                        : std::max(1, int(std::thread::hardware_concurrency()) / local);
    omp_set_num_threads(threads);
    if (binding.bound) {
      set_team_worker_cpus(binding.cpus);
      const std::vector<int>& cpus = binding.cpus;
#pragma omp parallel num_threads(threads)
      {
        // OpenMP keeps these threads for the later regions of the same size; thread 0 is this one,
        // which keeps the rank's whole CPU set (threads it starts later, e.g. HTTP, inherit it).
        const int id = omp_get_thread_num();
        if (id > 0) pin_this_thread(cpus[size_t(id) % cpus.size()]);
      }
    }
    spdlog::info("{}", binding.describe(I.mpi.world_rank(), threads));
    // Before any product: a bad DPSERVE_KERNELS / DPSERVE_BF16_PRODUCTS is an error here, once.
    spdlog::info("rank {}: kernels {}", I.mpi.world_rank(), kernels::kernels_description());

    I.comms = Comms::create(I.topo);
    if (I.topo.world_size > 1) I.placement = format_placement(gather_host_names(I.comms.world));
    I.mcomm = std::make_unique<DistModelComm>(I.comms, I.topo, o.dp_padding_mode, DpTransport::kGatherScatter,
                                              o.split_collective_waits);
    LoadOptions lo;
    lo.parallel = model_parallel_for(I.topo);
    lo.comm = I.mcomm.get();
    lo.threads = threads;
    lo.quantization = o.quantization;
    lo.vision = o.vision_tower;
    lo.verbose = I.mpi.world_rank() == 0;
    lo.context_length = o.context_length;
    I.model = Model::load(o.model_path, lo);
    const ModelConfig& cfg = I.model->config();
    I.model->set_kv_elem(resolve_kv_elem(o.kv_cache_dtype, cfg.dtype, cfg.mla.enabled()));
    I.model->set_mla_expanded_elem(resolve_mla_expanded_elem(o.kv_cache_dtype, cfg.dtype));
    if (o.mla_absorbed_only) {
      if (!cfg.mla.enabled())
        fail("--mla-attention absorbed: {} has no multi-head latent attention (only DeepSeek-V2/V3 models do)",
             o.model_path);
      I.model->set_mla_path(MlaPath::kAbsorbed);
    }
    // LoRA adapters: every rank loads its shard of each, in the same order, so a slot names the same
    // adapter on all of them.
    for (size_t i = 0; i < o.lora_dirs.size(); ++i) {
      int32_t slot = -1;
      try {
        slot = I.model->add_lora(o.lora_dirs[i]);
      } catch (const std::exception& e) {
        fail("--lora-paths {}: {}", o.lora_dirs[i], e.what());
      }
      DP_CHECK(slot == int32_t(i), "add_lora returned slot {} for the adapter loaded {}th", slot, i);
    }
    // Nodes started separately must run the same model the same way before the first step.
    if (o.nodes.nnodes > 1) {
      NodeFlagValues same = model_identity(o.model_path, cfg);
      same.emplace_back("--lora-paths (adapters)", int64_t(o.lora_dirs.size()));
      same.emplace_back("--kv-cache-dtype (as resolved: 0 fp32, 1 bf16, 2 int8, 3 fp8_e4m3, 4 fp8_e5m2)", int64_t(I.model->kv_elem()));
      // auto and fp32 resolve MLA's latent alike but not its decompressed keys and values.
      if (cfg.mla.enabled())
        same.emplace_back("--kv-cache-dtype (MLA's decompressed keys and values: 0 fp32, 1 bf16)",
                          int64_t(I.model->mla_expanded_elem()));
      same.emplace_back("--quantization (0 none, 1 q8_0, 2 q4_0, ...)", int64_t(o.quantization));
      same.emplace_back("--page-size", o.page_size);
      same.emplace_back("--mla-attention absorbed", int64_t(o.mla_absorbed_only));
      // Every rank of a DP group runs its own scheduler on the same inputs: they form the same batches
      // only under the same scheduling flags.
      const SchedulerConfig& sc = o.sched;
      same.emplace_back("--max-running-requests", sc.max_running_requests);
      same.emplace_back("--chunked-prefill-size", sc.chunked_prefill_size);
      same.emplace_back("--max-prefill-tokens", sc.max_prefill_tokens);
      same.emplace_back("--disable-radix-cache", int64_t(!sc.enable_prefix_cache));
      same.emplace_back("--schedule-policy (0 fcfs, 1 lpm)", int64_t(sc.policy));
      same.emplace_back("--enable-priority-scheduling", int64_t(sc.priority_scheduling));
      same.emplace_back("--schedule-low-priority-values-first", int64_t(sc.low_priority_values_first));
      same.emplace_back("--disable-priority-preemption", int64_t(!sc.priority_preemption));
      same.emplace_back("--priority-scheduling-preemption-threshold", sc.priority_preemption_threshold);
      check_nodes_agree(o.nodes, same);
    }
    // Harmless (the layout is still valid), so a warning: a launch line shared across models keeps working.
    if (o.ep_size > 1 && cfg.n_experts == 0 && I.mpi.world_rank() == 0)
      spdlog::warn("--ep-size {} has no effect: {} has no experts (expert parallelism splits a MoE model's experts)",
                   o.ep_size, o.model_path);
    if (o.context_length > cfg.max_pos)
      fail("--context-length {} is longer than the model's context ({} positions)", o.context_length, cfg.max_pos);
    const int64_t ctx_len = o.context_length > 0 ? o.context_length : cfg.max_pos;

    // STANDALONE speculative decoding: the draft model, whole on every rank, on the target's team.
    if (o.sched.spec.algorithm == SpecAlgorithm::kStandalone) {
      LoadOptions dlo;
      dlo.threads = threads;
      dlo.team = &I.model->team();
      dlo.quantization = o.draft_quantization;
      dlo.context_length = o.context_length;  // a LongRoPE draft rotates as its target
      dlo.verbose = lo.verbose;
      try {
        I.draft = Model::load(o.sched.spec.draft_model_path, dlo);
      } catch (const std::exception& e) {
        fail("--speculative-draft-model-path {}: {}", o.sched.spec.draft_model_path, e.what());
      }
      const ModelConfig& dc = I.draft->config();
      // Drafts are ids of the target's tokenizer: the draft must have a row for each of them.
      const int64_t need = o.tokenizer ? o.tokenizer->vocab_size() : cfg.vocab;
      if (dc.vocab < need)
        fail("--speculative-draft-model-path {}: the draft model's vocabulary ({} ids) does not cover the target's "
             "({} ids): a draft model must share the target's tokenizer",
             o.sched.spec.draft_model_path, dc.vocab, need);
      I.draft->set_kv_elem(resolve_kv_elem(o.kv_cache_dtype, dc.dtype, dc.mla.enabled()));
      I.draft->set_mla_expanded_elem(resolve_mla_expanded_elem(o.kv_cache_dtype, dc.dtype));
      if (o.mla_absorbed_only && dc.mla.enabled()) I.draft->set_mla_path(MlaPath::kAbsorbed);
    }
    // NEXTN: the checkpoint's multi-token-prediction layer as a model of its own, whole on every rank.
    if (o.sched.spec.algorithm == SpecAlgorithm::kNextn) {
      LoadOptions dlo;
      dlo.threads = threads;
      dlo.team = &I.model->team();
      dlo.verbose = lo.verbose;
      dlo.nextn = true;
      I.draft = Model::load(o.model_path, dlo);
      I.draft->set_kv_elem(I.model->kv_elem());
      I.draft->set_mla_expanded_elem(I.model->mla_expanded_elem());
      if (o.mla_absorbed_only) I.draft->set_mla_path(MlaPath::kAbsorbed);
    }

    // KV pool: what the flags ask for, else a share of available memory, never more than can be used.
    // A draft model's cache has a page for every page of the target's, so a token costs both.
    const int64_t bytes_per_token = I.model->kv_config(1, o.page_size).bytes_per_token() +
                                    (I.draft ? I.draft->kv_config(1, o.page_size).bytes_per_token() : 0);
    const int64_t weight_bytes = I.model->weight_bytes() + (I.draft ? I.draft->weight_bytes() : 0);
    int64_t tokens = o.max_total_tokens;
    // Sized from memory, the pool holds at most what its running requests can fill, with room for
    // the prefix cache as if at least the default number ran: a --max-running-requests 1 server
    // (one user) would otherwise keep one context of cached prefixes and recompute every earlier
    // conversation.
    const int64_t usable =
        std::max(o.sched.max_running_requests, SchedulerConfig{}.max_running_requests) * ctx_len;
    if (tokens <= 0 && o.mem_fraction_static > 0) {
      // SGLang's meaning: weights and KV together take this share of the machine's memory.
      const int64_t budget = int64_t(o.mem_fraction_static * double(meminfo_bytes("MemTotal:")) / local);
      if (budget <= weight_bytes)
        fail("--mem-fraction-static {}: {:.2f} GB per rank does not hold this rank's {:.2f} GB of weights",
             o.mem_fraction_static, double(budget) / 1e9, double(weight_bytes) / 1e9);
      tokens = (budget - weight_bytes) / bytes_per_token;
      tokens = std::min<int64_t>(tokens, usable);
    } else if (tokens <= 0) {
      tokens = int64_t(o.mem_fraction * double(mem_available_bytes()) / local) / bytes_per_token;
      tokens = std::min<int64_t>(tokens, usable);
      tokens = std::max<int64_t>(tokens, std::min<int64_t>(ctx_len, 4096));
    }
    // The pool's pages are only backed by memory when first written, so a --max-total-tokens beyond what the
    // machine has starts fine and is killed by the kernel hours later, when the cache fills: say so now.
    if (o.max_total_tokens > 0) {
      const double need = double(tokens) * double(bytes_per_token) * local, avail = double(mem_available_bytes());
      if (need > avail)
        spdlog::warn("rank {}: --max-total-tokens {} takes {:.2f} GB of KV cache on this machine ({} local rank(s)) "
                     "but only {:.2f} GB is available: the server may be killed for lack of memory when the cache "
                     "fills; lower --max-total-tokens, or leave it 0 to size the cache from --mem-fraction",
                     I.topo.rank, o.max_total_tokens, need / 1e9, local, avail / 1e9);
    }
    // Every rank of a group must hold the same pages: its ranks schedule in lockstep, and a pool
    // that runs out on one rank first splits their batches (the job then stops). Sized from memory,
    // each rank reads MemAvailable at its own moment after its own load, so the sizes can differ
    // (seen: 113,201,152 vs 113,041,408 bytes at tp 2): all ranks take the smallest.
    if (I.topo.world_size > 1) {
      int64_t neg = -tokens;
      I.comms.world.allreduce_max(std::span<int64_t>(&neg, 1));
      tokens = -neg;
    }
    WorkerOptions wo;
    wo.sched = o.sched;
    wo.dispatch = o.dispatch;
    wo.watchdog_seconds = o.watchdog_timeout;
    wo.page_size = o.page_size;
    wo.kv_pages = (tokens + o.page_size - 1) / o.page_size;
    wo.embed_cache_requests = o.embed_cache_requests;
    wo.image_transfer = o.image_transfer;
    wo.image_bytes_per_step = o.image_bytes_per_step;
    wo.image_embeds_dump_dir = o.image_embeds_dump_dir;
    wo.eos_ids = o.eos_ids;
    wo.context_length = ctx_len;
    // Without --random-seed, requests without a seed must still differ from one run to the next (as
    // SGLang picks a random seed at start): otherwise the k-th such request of every run would draw
    // exactly what a request with seed k draws. Rank 0 picks it; every rank samples with it.
    uint64_t start_seed = o.random_seed;
    if (!o.has_random_seed) {
      start_seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
      int64_t shared = int64_t(start_seed);
      if (I.topo.world_size > 1) I.comms.world.broadcast(std::span<int64_t>(&shared, 1), 0);
      start_seed = uint64_t(shared);
    }
    wo.random_seed = start_seed;
    if (I.topo.rank == 0) wo.logits_tap = o.logits_tap;
    wo.all_logits = o.all_logits || bool(o.logits_tap);
    if (I.topo.rank == 0) wo.image_tap = o.image_tap;
    for (int32_t e : cfg.eos_ids)
      if (std::find(wo.eos_ids.begin(), wo.eos_ids.end(), e) == wo.eos_ids.end()) wo.eos_ids.push_back(e);
    if (o.tokenizer) {
      // Every rank builds the same index from the same files; grammar masks use the model's width.
      if (o.tokenizer->vocab_size() > cfg.vocab)
        fail("the tokenizer has {} tokens but the model's vocabulary is {}", o.tokenizer->vocab_size(), cfg.vocab);
      wo.vocab = constrain::VocabIndex::from_tokenizer(*o.tokenizer, cfg.vocab, wo.eos_ids);
      wo.token_limit = o.tokenizer->vocab_size();
    }
    I.kv_tokens = wo.kv_pages * o.page_size;
    if (I.topo.rank == 0) {
      EngineLimits lim;
      lim.vocab = cfg.vocab;
      lim.hidden = cfg.hidden;
      lim.context_length = ctx_len;
      lim.kv_positions = I.kv_tokens;
      if (I.kv_tokens < ctx_len)
        spdlog::warn("the KV cache holds {} positions per rank, fewer than the context length {}: a request's prompt "
                     "and max_tokens must fit {} (chat requests without max_tokens get what fits); raise "
                     "--max-total-tokens or --mem-fraction, or lower --context-length",
                     I.kv_tokens, ctx_len, I.kv_tokens);
      lim.kv_bytes_per_page = I.model->kv_config(1, o.page_size).bytes_per_page();
      std::vector<std::pair<std::string, std::string>> loras;
      for (size_t i = 0; i < o.lora_dirs.size(); ++i)
        loras.emplace_back(i < o.lora_names.size() ? o.lora_names[i] : o.lora_dirs[i], o.lora_dirs[i]);
      lim.lora = std::make_shared<LoraRegistry>(loras);
      lim.dp_size = I.topo.world_size / I.topo.attn_tp_size;
      lim.method = o.load_balance_method;
      lim.stall_seconds = o.stall_timeout;
      I.engine = std::make_unique<DpEngine>(lim);
      wo.on_fatal = [engine = I.engine.get()](const std::string& why) { engine->mark_stopped(why); };
    }
    wo.draft_model = I.draft.get();
    if (!o.kv_cache_dir.empty()) {
      if (!o.sched.enable_prefix_cache)
        fail("--kv-cache-dir keeps the prefix cache on disk: it cannot be used with --disable-radix-cache");
      I.prefix_dir = std::make_unique<PrefixDir>(o.kv_cache_dir, I.topo.rank);
      if (!I.prefix_dir->warning().empty()) spdlog::warn("rank {}: {}", I.topo.rank, I.prefix_dir->warning());
      if (I.prefix_dir->removed_temps() > 0)
        spdlog::info("rank {}: --kv-cache-dir: removed {} temp file(s) of writers that are no longer running",
                     I.topo.rank, I.prefix_dir->removed_temps());
      wo.prefix_file = I.prefix_dir->file();
      wo.prefix_identity = prefix_identity(o, I.topo, *I.model, threads);
      wo.prefix_max_bytes = int64_t(o.kv_cache_dir_max_gb * 1e9);
      wo.prefix_write_pages = (o.kv_cache_write_behind_tokens + o.page_size - 1) / o.page_size;
    }
    I.worker = std::make_unique<RankWorker>(*I.model, I.topo, I.comms, *I.mcomm, wo);
    // Collective over each DP group; never throws for a bad file (a warning, then an empty cache).
    I.worker->load_prefix_cache();
    // Every rank is ready before rank 0 starts taking requests.
    I.comms.world.barrier();
  } catch (const std::exception& e) {
    if (I.mpi.world_size() > 1) abort_job(e.what());
    throw;
  }
  return std::unique_ptr<Runtime>(new Runtime(std::move(im)));
}

int Runtime::rank() const { return impl_->topo.rank; }
int Runtime::world_size() const { return impl_->topo.world_size; }
const ModelConfig& Runtime::model_config() const { return impl_->model->config(); }
const Model& Runtime::model() const { return *impl_->model; }
Model& Runtime::model() { return *impl_->model; }
int64_t Runtime::kv_tokens_per_rank() const { return impl_->kv_tokens; }
DpEngine* Runtime::engine() { return impl_->engine.get(); }
const WorkerCounters& Runtime::counters() const { return impl_->worker->counters(); }
const ImageTransferCounters& Runtime::image_counters() const { return impl_->worker->image_counters(); }
CollectiveTimes Runtime::collective_times() const { return impl_->mcomm->times(); }

std::string Runtime::describe() const {
  const auto& t = impl_->topo;
  const KVPoolConfig kv = impl_->model->kv_config(1, 1);
  // MLA's latent is one row per token for all heads: tensor parallelism cannot split it, so every
  // attention rank of a group holds the group's whole cache; DP attention holds it once per group.
  std::string where;
  if (kv.kind == KVKind::kLatent)
    where = t.attn_tp_size > 1 ? fmt::format(", replicated on all {} attention ranks of the group", t.attn_tp_size)
                               : std::string(", held once, by this rank's group");
  std::string draft;
  if (impl_->draft) {
    const KVPoolConfig dkv = impl_->draft->kv_config(1, 1);
    draft = fmt::format("; draft model {:.1f} MB, its KV {} KiB/token ({})", double(impl_->draft->weight_bytes()) / 1e6,
                        double(dkv.bytes_per_token()) / 1024.0, dkv.describe());
  }
  return fmt::format("rank {}/{}: DP group {} (slot {} of {}), {} KV positions x {} KiB/token per rank ({}{}), {} threads{}{}",
                     t.rank, t.world_size, t.attn_dp_rank, t.attn_tp_rank, t.attn_tp_size, impl_->kv_tokens,
                     double(kv.bytes_per_token()) / 1024.0, kv.describe(), where, impl_->model->threads(), draft,
                     impl_->placement.empty() ? "" : "; hosts: " + impl_->placement);
}

void Runtime::run() {
  try {
    impl_->worker->run(impl_->engine.get());
  } catch (const std::exception& e) {
    std::string msg = fmt::format("step loop failed: {}", e.what());
    if (impl_->engine) impl_->engine->mark_stopped(msg);
    if (impl_->topo.world_size > 1) abort_job(msg);
    throw;
  }
  if (impl_->engine) impl_->engine->mark_stopped();
}

void Runtime::run_with_client(const std::function<void(DpEngine&)>& client) {
  DpEngine* engine = impl_->engine.get();
  if (!engine) {
    run();
    return;
  }
  std::exception_ptr failure;
  std::thread t([&] {
    try {
      client(*engine);
    } catch (...) {
      failure = std::current_exception();
    }
    engine->shutdown(std::chrono::milliseconds(0));
  });
  try {
    run();
  } catch (...) {
    t.join();  // run() has ended every stream, so the client returns
    throw;
  }
  t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace dpserve
