#include "engine/rank_worker.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>

#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include "core/check.h"
#include "kernels/vec_math.h"
#include "engine/verify_cost.h"
#include "kv/prefix_store.h"
#include "model/mrope.h"

namespace dpserve {

namespace {

// Items [0, n) of per-step host work (prompt logprob rows, grammar masks) on the model's thread
// team, in chunks. Not OpenMP: an OpenMP region's workers spin on after it ends, while the team
// runs the next forward pass on the same cores. Little work runs on the step thread alone.
template <class F>
void on_team(ThreadTeam& team, int64_t n, int64_t chunk, F&& fn) {
  if (n <= 0) return;
  if (n <= chunk || team.size() == 1) return fn(int64_t(0), n);
  team.run([&](Team& t) { t.dynamic(n, chunk, fn); });
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Stand-in id for a prompt position given as an embedding: negative (never a real token) and a
// hash of the row, so the prefix cache shares KV only between identical embeddings.
int32_t embed_placeholder(const float* row, int64_t hidden) {
  uint64_t h = 1469598103934665603ull;
  const auto* b = reinterpret_cast<const uint8_t*>(row);
  for (int64_t i = 0; i < hidden * int64_t(sizeof(float)); ++i) h = (h ^ b[i]) * 1099511628211ull;
  return -1 - int32_t(h & 0x3fffffff);
}

// Stand-in id for token k of an image: negative (never a real token, never looked up in the
// embedding table) and derived from the image's content hash, so the prefix cache shares KV only
// between prompts holding the same image at the same place.
int32_t image_placeholder(uint64_t hash, int64_t k) {
  uint64_t h = hash ^ (uint64_t(k) + 1) * 0x9E3779B97F4A7C15ull;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  return -1 - int32_t(h & 0x3fffffff);
}

void log_softmax_top(const float* logits, int64_t V, int32_t chosen, int32_t top_n, const std::vector<int32_t>& ids,
                     TokenOut& out) {
  float mx = *std::max_element(logits, logits + V);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[i] - mx));
  const double lse = double(mx) + std::log(sum);
  out.logprob = float(double(logits[chosen]) - lse);
  // token_ids_logprob (ids checked against the vocabulary on rank 0; one past this model's rows has
  // probability 0 here, as a masked token has).
  out.id_logprobs.reserve(ids.size());
  for (int32_t id : ids)
    out.id_logprobs.push_back(id >= 0 && id < V ? float(double(logits[id]) - lse)
                                                : -std::numeric_limits<float>::infinity());
  if (top_n > 0) {
    std::vector<int32_t> idx(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) idx[size_t(i)] = int32_t(i);
    const int64_t k = std::min<int64_t>(top_n, V);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    // Masked tokens (-inf) are not alternatives: a constrained request may allow fewer than k.
    for (int64_t i = 0; i < k && std::isfinite(logits[idx[size_t(i)]]); ++i)
      out.top.push_back({idx[size_t(i)], float(double(logits[idx[size_t(i)]]) - lse)});
  }
}

// One prompt row's entry: log-softmax of `chosen`, of each of `ids`, and the top_n best alternatives
// (ties to the lower id, as log_softmax_top). A prompt can have thousands of rows over a vocabulary
// of 150k, so this is the vectorised exp (kernels/vec_math.h, into `scratch`: the row itself stays
// as it was) and one pass keeping the best top_n, instead of a double exp and a partial sort per row.
void prompt_row_logprob(const float* logits, int64_t V, int32_t chosen, int32_t top_n, const std::vector<int32_t>& ids,
                        std::vector<float>& scratch, TokenOut& out) {
  const float mx = *std::max_element(logits, logits + V);
  scratch.assign(logits, logits + V);
  const double lse = double(mx) + std::log(double(vec_exp_sub_sum(scratch.data(), V, mx)));
  out.token = chosen;
  out.logprob = float(double(logits[chosen]) - lse);
  const float own = logits[chosen];
  out.rank = int32_t(std::count_if(logits, logits + V, [own](float x) { return x >= own; }));
  // token_ids_logprob over the prompt (SGLang's input_token_ids_logprobs), as log_softmax_top does.
  out.id_logprobs.clear();
  for (int32_t id : ids)
    out.id_logprobs.push_back(id >= 0 && id < V ? float(double(logits[id]) - lse)
                                                : -std::numeric_limits<float>::infinity());
  out.top.clear();
  if (top_n <= 0) return;
  std::vector<std::pair<float, int32_t>> best;  // sorted, best first
  best.reserve(size_t(top_n) + 1);
  for (int64_t i = 0; i < V; ++i) {
    const float v = logits[i];
    if (int32_t(best.size()) == top_n && !(v > best.back().first)) continue;
    if (!std::isfinite(v)) continue;
    auto at = std::find_if(best.begin(), best.end(), [&](const auto& b) { return v > b.first; });
    best.insert(at, {v, int32_t(i)});
    if (int32_t(best.size()) > top_n) best.pop_back();
  }
  for (const auto& [v, id] : best) out.top.push_back({id, float(double(v) - lse)});
}

// The logits buffer a step may fill for prompt logprobs (rows x vocab floats): the scheduler's
// per-step row budget is derived from it.
constexpr int64_t kPromptLogprobBytes = int64_t(64) << 20;

}  // namespace

RankWorker::RankWorker(Model& model, const Topology& topo, const Comms& comms, DistModelComm& mcomm,
                       WorkerOptions opts)
    : model_(model),
      topo_(topo),
      comms_(comms),
      mcomm_(mcomm),
      opts_(std::move(opts)),
      control_(comms.world),
      group_control_(comms.attn_tp),
      images_(topo, comms.world, opts_.image_transfer, opts_.image_bytes_per_step) {
  DP_CHECK(opts_.kv_pages > 0);
  if (opts_.sched.max_prompt_logprob_rows <= 0)
    opts_.sched.max_prompt_logprob_rows =
        std::max<int64_t>(1, kPromptLogprobBytes / (int64_t(sizeof(float)) * model_.config().vocab));
  // --dump-logits taps every row run: rows of rejected drafts would be positions that never happened.
  if (opts_.logits_tap) opts_.all_logits = true;
  if (opts_.all_logits) {
    opts_.sched.spec.algorithm = SpecAlgorithm::kNone;
    opts_.sched.spec.prediction_drafts = false;
  }
  kv_ = std::make_unique<KVPool>(model_.kv_config(opts_.kv_pages, opts_.page_size));
  if (opts_.sched.spec.row_cost.empty() && (opts_.sched.spec.enabled() || opts_.sched.spec.prediction_drafts)) {
    // From the target's config alone (identical on every rank), so the drafts stay the group's.
    // Without an algorithm, for the drafts of predicted outputs (OpenAI's 'prediction').
    const bool chain = opts_.sched.spec.algorithm == SpecAlgorithm::kNextn;
    opts_.sched.spec.row_cost = verify_cost_permille(model_.config(), opts_.sched.spec.draft_cap() + 1, chain ? 1 : 0);
    if (topo_.rank == 0 && opts_.sched.spec.enabled()) {
      std::string costs;
      for (int32_t c : opts_.sched.spec.row_cost) costs += fmt::format(" {:.2f}", c / 1000.0);
      spdlog::info("speculative: a verify pass of 1..{} rows costs{} decode steps (estimated from the shape)",
                   opts_.sched.spec.row_cost.size(), costs);
    }
  }
  if (opts_.sched.spec.algorithm == SpecAlgorithm::kStandalone) {
    DP_CHECK(opts_.draft_model != nullptr, "STANDALONE speculative decoding without a draft model");
    const int64_t limit = opts_.token_limit > 0 ? std::min(opts_.token_limit, model_.config().vocab)
                                                : model_.config().vocab;
    drafter_ = std::make_unique<DraftRunner>(*opts_.draft_model, opts_.kv_pages, opts_.page_size, limit);
  }
  if (opts_.sched.spec.algorithm == SpecAlgorithm::kNextn) {
    DP_CHECK(opts_.draft_model != nullptr, "NEXTN speculative decoding without the MTP layer");
    const int64_t limit = opts_.token_limit > 0 ? std::min(opts_.token_limit, model_.config().vocab)
                                                : model_.config().vocab;
    nextn_ = std::make_unique<NextnRunner>(*opts_.draft_model, opts_.kv_pages, opts_.page_size, limit);
  }
  sched_ = std::make_unique<Scheduler>(opts_.sched, *kv_, FinishRules{opts_.eos_ids});
  if (opts_.vocab) matchers_ = std::make_unique<constrain::MatcherRegistry>(opts_.vocab);
}

RankWorker::~RankWorker() = default;

const char* to_string(Dispatch d) { return d == Dispatch::kGlobal ? "global" : "group-leader"; }

namespace {

// Rank 0 must broadcast every step, whatever one request holds: if the message cannot be built,
// the new requests fail alone and the step goes out with cancels and shutdown only.
std::vector<std::byte> encode_or_reject(StepControl& c, StepDriver* driver, ImageTransfer& images) {
  try {
    return encode(c);
  } catch (const std::exception& e) {
    spdlog::error("step {}: the control message could not be built ({}); failing its {} new requests", c.step,
                  e.what(), c.new_requests.size());
    driver->reject(c.new_requests, fmt::format("the request could not be sent to the ranks: {}", e.what()));
    images.forget(c.new_requests, c);
    c.new_requests.clear();
    return encode(c);
  }
}

}  // namespace

StepControl RankWorker::receive_control(StepDriver* driver, bool idle) {
  // Rank 0 heart-beats while idle so the other ranks' watchdog can tell a stopped rank 0 from an idle one.
  const auto heartbeat = std::chrono::milliseconds(int64_t(opts_.watchdog_seconds * 1000 / 4));
  std::vector<std::byte> msg;
  if (opts_.dispatch == Dispatch::kGlobal) {
    // One message for the whole world, serialized once; every rank keeps its group's share.
    if (driver) {
      StepControl c = driver->next_step(idle, heartbeat);
      step_t0_ = now_seconds();  // the idle wait above is not step time
      arm_control_send();
      images_.plan(c);
      msg = encode_or_reject(c, driver, images_);
    }
    counters_.control_bytes += control_.broadcast(msg);
    counters_.control_broadcasts = control_.broadcasts();
    return decode_control(msg.data(), msg.size(), model_.lora_loaded_slots());
  }
  // group-leader: rank 0 splits the step by group and sends each leader its share.
  if (driver) {
    StepControl all = driver->next_step(idle, heartbeat);
    step_t0_ = now_seconds();
    arm_control_send();
    images_.plan(all);
    const std::vector<int> leaders = topo_.group_leaders();
    for (size_t g = 0; g < leaders.size(); ++g) {
      StepControl part;
      part.step = all.step;
      part.cancels = all.cancels;
      part.shutdown = all.shutdown;
      part.flush_cache = all.flush_cache;
      // Every rank holds the same adapters: the change goes to every group.
      part.lora_load_slot = all.lora_load_slot;
      part.lora_load_path = all.lora_load_path;
      part.lora_unload_slot = all.lora_unload_slot;
      for (const auto& nr : all.new_requests)
        if (nr.group == int32_t(g)) part.new_requests.push_back(nr);
      for (const auto& ch : all.image_chunks)
        if (ch.group == int32_t(g)) part.image_chunks.push_back(ch);
      std::vector<std::byte> bytes = encode_or_reject(part, driver, images_);
      if (leaders[g] == 0) {
        msg = std::move(bytes);
      } else {
        counters_.control_bytes += int64_t(bytes.size());
        send_bytes(comms_.world, leaders[g], bytes);
      }
    }
  } else if (topo_.is_group_leader) {
    msg = recv_bytes(comms_.world, 0);
  }
  counters_.control_bytes += group_control_.broadcast(msg);
  counters_.control_broadcasts = group_control_.broadcasts();
  return decode_control(msg.data(), msg.size(), model_.lora_loaded_slots());
}

void RankWorker::end(uint64_t id, Finish f, GroupReport& rep, const std::string& error) {
  OutToken o;
  o.id = id;
  o.finish = f;
  o.error = error;
  if (const RequestState* st = sched_->find(id)) o.prompt_tokens = st->prompt_len;
  if (auto it = std::find(embed_fifo_.begin(), embed_fifo_.end(), id); it != embed_fifo_.end()) embed_fifo_.erase(it);
  sched_->abort(id);
  rep.outs.push_back(std::move(o));
}

void RankWorker::admit(NewRequest& nr, GroupReport& rep) {
  const auto& cfg = model_.config();
  const uint64_t id = nr.id;
  Request& r = nr.req;
  std::vector<int32_t> prompt = r.input_ids;
  if (r.input_embeds_rows > 0) {
    // Decoded and validated once on rank 0; here only placed.
    prompt.clear();
    for (int64_t i = 0; i < r.input_embeds_rows; ++i)
      prompt.push_back(embed_placeholder(&r.input_embeds[size_t(i * cfg.hidden)], cfg.hidden));
  }
  const int64_t prompt_len = int64_t(prompt.size());
  const int64_t ctx_len = opts_.context_length > 0 ? opts_.context_length : cfg.max_pos;
  const int64_t max_new = std::min<int64_t>(r.params.max_new_tokens, ctx_len - prompt_len);
  // --random-seed: requests without a seed draw from a stream set by the server's seed and their id.
  if (!r.params.seed && opts_.random_seed) r.params.seed = *opts_.random_seed * 0x9E3779B97F4A7C15ull + id;
  if (max_new < 1) {
    OutToken o;
    o.id = id;
    o.finish = Finish::kError;
    o.error = "prompt fills the model's whole context";
    o.prompt_tokens = prompt_len;
    rep.outs.push_back(std::move(o));
    return;
  }
  const bool embeds = r.input_embeds_rows > 0;
  const bool images = !r.images.empty();
  MropePositions mrope;
  std::vector<int32_t> image_row;
  if (images) {
    if (!model_.takes_images()) fail("this model takes no images");
    if (embeds) fail("a request carries either input_embeds or images, not both");
    const ImagePreprocessConfig& pc = model_.image_config();
    const int32_t pad = model_.vision_tokens().image_pad;
    std::vector<std::array<int64_t, 2>> grids;
    for (const ImageInput& img : r.images) {
      if (img.height <= 0 || img.width <= 0 || img.height % pc.factor() != 0 || img.width % pc.factor() != 0 ||
          img.rgb.size() != size_t(img.height) * size_t(img.width) * 3)
        fail("image {}x{} is not an RGB image with edges multiple of {}", img.height, img.width, pc.factor());
      grids.push_back({img.grid_h(pc) / pc.merge_size, img.grid_w(pc) / pc.merge_size});
    }
    // Checks that the image_pad runs match the images' token counts.
    mrope = mrope_positions(prompt.data(), prompt_len, pad, grids);
    image_row.assign(size_t(prompt_len), -1);
    int32_t row = 0;
    size_t img = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < prompt_len; ++i) {
      if (prompt[size_t(i)] != pad) continue;
      image_row[size_t(i)] = row++;
      prompt[size_t(i)] = image_placeholder(r.images[img].hash, k);
      if (++k == grids[img][0] * grids[img][1]) ++img, k = 0;
    }
  }
  RequestState st(id, std::move(r), std::move(prompt), max_new);
  st.mrope_pos = std::move(mrope.pos);
  st.mrope_delta = mrope.delta;
  st.image_row = std::move(image_row);
  if (st.req.constraint) {
    // The same automaton bytes on every rank of the group: the same matcher, the same masks.
    if (!matchers_) fail("structured outputs need the tokenizer on every rank (this engine has none)");
    if (opts_.vocab->mask_size() != cfg.vocab)
      fail("the tokenizer's vocabulary index is {} wide, the model's logits {}", opts_.vocab->mask_size(), cfg.vocab);
    st.matcher = matchers_->make(st.req.constraint);
  }
  if (st.req.prompt_logprobs && embeds) fail("prompt logprobs need token ids, not input_embeds");
  if (st.req.prompt_logprobs && images) fail("prompt logprobs are not supported with images");
  for (const LogitBias& b : st.req.logit_bias)
    if (b.token < 0 || b.token >= cfg.vocab) fail("logit_bias token {} is outside the vocabulary", b.token);
  for (int32_t id : st.req.allowed_token_ids)
    if (id < 0 || id >= cfg.vocab) fail("allowed_token_ids token {} is outside the vocabulary", id);
  for (const auto& q : st.req.bad_words)
    for (int32_t id : q)
      if (id < 0 || id >= cfg.vocab) fail("bad_words token {} is outside the vocabulary", id);
  if (const ThinkBudgetSpec& t = st.req.think_budget; t.active()) {
    if (t.open_id >= cfg.vocab || t.close_id >= cfg.vocab) fail("thinking budget: a tag id is outside the vocabulary");
    for (int32_t id : t.forced)
      if (id >= cfg.vocab) fail("thinking budget: forced token {} is outside the vocabulary", id);
  }
  if (!sched_->add(std::move(st))) {
    OutToken o;
    o.id = id;
    o.finish = Finish::kError;
    o.error = "prompt + max_tokens needs more KV cache than this server has";
    o.prompt_tokens = prompt_len;
    rep.outs.push_back(std::move(o));
    return;
  }
  if (embeds || images) {  // both hold their inputs on every rank of the group until the request ends
    embed_fifo_.push_back(id);
    if (int64_t(embed_fifo_.size()) > opts_.embed_cache_requests) {
      uint64_t victim = embed_fifo_.front();
      ++counters_.embed_evictions;
      spdlog::warn("input_embeds cache full ({} requests): evicting request {}", opts_.embed_cache_requests, victim);
      end(victim, Finish::kError, rep,
          "input_embeds / images evicted from the rank cache (raise --embed-cache-requests)");
    }
  }
}

void RankWorker::admit_or_end(NewRequest& nr, GroupReport& rep) {
  const uint64_t id = nr.id;
  try {
    admit(nr, rep);
  } catch (const std::exception& e) {
    // Every rank of the group admits the same bytes, so a failure here is the same on all of
    // them: failing the one request keeps the group in lockstep and the others running.
    spdlog::error("request {} could not be admitted: {}", id, e.what());
    end(id, Finish::kError, rep, fmt::format("the request could not be admitted: {}", e.what()));
  }
}

void RankWorker::change_lora(const StepControl& c, StepDriver* driver) {
  if (c.lora_unload_slot >= 0) {
    // The slot's prefix subtree goes with it: a later adapter loaded into the same slot must never
    // reuse KV computed under this one. (Adapter pages never reach the --kv-cache-dir file.)
    const int64_t dropped = sched_->drop_lora_prefix(c.lora_unload_slot);
    model_.remove_lora(c.lora_unload_slot);
    spdlog::info("rank {}: LoRA slot {} unloaded ({} cached pages dropped)", topo_.rank, c.lora_unload_slot, dropped);
    if (driver) driver->on_lora_change(true, {});
    return;
  }
  if (c.lora_load_slot < 0) return;
  // Every rank reads the folder itself; a rank may fail where others succeed (a file missing on one
  // node), so the ranks agree on the outcome before anyone serves with it: one failure anywhere and
  // every rank that loaded it removes it again.
  std::string error;
  try {
    model_.load_lora(c.lora_load_slot, c.lora_load_path);
  } catch (const std::exception& e) {
    error = e.what();
  }
  int32_t failed = error.empty() ? 0 : 1;
  comms_.world.allreduce_max(std::span<int32_t>(&failed, 1));
  if (failed && error.empty()) {
    model_.remove_lora(c.lora_load_slot);
    error = "the adapter loaded on this rank but not on every rank (see the other ranks' logs)";
  }
  if (failed)
    spdlog::warn("rank {}: LoRA adapter {} not loaded into slot {}: {}", topo_.rank, c.lora_load_path,
                 c.lora_load_slot, error);
  else
    spdlog::info("rank {}: LoRA adapter {} loaded into slot {}", topo_.rank, c.lora_load_path, c.lora_load_slot);
  if (driver) driver->on_lora_change(!failed, error);
}

void RankWorker::apply(const StepControl& c, GroupReport& rep) {
  if (c.flush_cache) {
    sched_->flush_prefix_cache();
    // The disk copy too (every rank gets the flush at this step): else a crash before the next write
    // would bring the flushed prefixes back at the restart.
    if (!opts_.prefix_file.empty()) {
      const std::string why = remove_prefix_file(opts_.prefix_file);
      if (!why.empty())
        spdlog::warn("rank {}: flush_cache: prefix cache file {} not removed: {}", topo_.rank, opts_.prefix_file, why);
      saved_at_inserted_ = sched_->prefix_cache() ? sched_->prefix_cache()->inserted_pages() : 0;
    }
  }
  // Requests whose images finished arriving last step go first: they came before this step's.
  for (NewRequest& nr : images_.take_ready()) admit_or_end(nr, rep);
  for (const NewRequest& nr0 : c.new_requests) {
    if (nr0.group != topo_.attn_dp_rank) continue;
    NewRequest nr = nr0;
    if (nr.images_follow)
      images_.hold(std::move(nr));
    else
      admit_or_end(nr, rep);
  }
  for (uint64_t id : c.cancels) {
    int64_t prompt_tokens = 0;
    if (images_.drop(id, &prompt_tokens)) {
      OutToken o;
      o.id = id;
      o.finish = Finish::kAbort;
      o.prompt_tokens = prompt_tokens;
      rep.outs.push_back(std::move(o));
    } else if (sched_->contains(id)) {
      end(id, Finish::kAbort, rep);
    }
  }
}

void RankWorker::encode_images(RequestState& st, int64_t pos0, int64_t n) {
  if (!st.image_embeds.empty()) return;
  const int64_t end = std::min(pos0 + n, st.prompt_len);
  bool reaches = false;
  for (int64_t p = pos0; p < end && !reaches; ++p) reaches = st.image_row[size_t(p)] >= 0;
  if (!reaches) return;
  // Every rank of the request's group gets here for the same request in the same step: the group's
  // schedulers are identical (same requests, same prefix cache, same preemptions), and whether to
  // encode depends only on the scheduled chunk and on st.image_embeds, which is kept until the
  // prompt is prefilled. So a sharded tower's collectives (model/vision_tower.h) line up over the
  // group. Where it runs: docs/models.md.
  const ImagePreprocessConfig& pc = model_.image_config();
  const int64_t H = model_.config().hidden;
  int64_t rows = 0;
  for (const ImageInput& img : st.req.images) rows += img.tokens(pc);
  st.image_embeds.resize(size_t(rows * H));
  const double t0 = now_seconds();
  int64_t at = 0;
  for (const ImageInput& img : st.req.images) {
    const std::vector<float> patches = image_patches(img, pc);
    model_.encode_image(patches.data(), img.grid_h(pc), img.grid_w(pc), &st.image_embeds[size_t(at * H)]);
    at += img.tokens(pc);
    ++counters_.images_encoded;
  }
  const double took = now_seconds() - t0;
  if (!opts_.image_embeds_dump_dir.empty()) {
    const std::string path = opts_.image_embeds_dump_dir + "/rank" + std::to_string(topo_.rank) + "-req" +
                             std::to_string(st.id) + ".f32";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) fail("--dump-image-embeds: cannot write {}", path);
    const size_t n = std::fwrite(st.image_embeds.data(), sizeof(float), st.image_embeds.size(), f);
    std::fclose(f);
    if (n != st.image_embeds.size()) fail("--dump-image-embeds: short write to {}", path);
  }
  counters_.image_seconds += took;
  if (opts_.image_tap) opts_.image_tap(st.id, int64_t(st.req.images.size()), took);
}

void RankWorker::step_forward(const ScheduledBatch& b, const StepSync& sync, GroupReport& rep) {
  const auto& cfg = model_.config();
  const int64_t V = cfg.vocab;
  const bool all_logits = opts_.all_logits;
  ForwardBatch fb;
  bool any_embeds = false, any_images = false;
  // Prompt logprobs: the rows of a prefill chunk whose next prompt token is still to be reported
  // (row k, at position pos0 + k, gives the logprob of the token at pos0 + k + 1). Each seq's
  // rows [first, first + count) of the chunk, their logits ahead of its sample row.
  struct PromptRows {
    int64_t first = 0, count = 0;
  };
  std::vector<PromptRows> prompt_rows(b.seqs.size());
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    const ScheduledSeq& s = b.seqs[i];
    const int64_t n = int64_t(s.tokens.size());
    if (s.state->needs_prompt_logprobs()) {
      const RequestState& st = *s.state;
      const int64_t first = std::max<int64_t>(0, st.prompt_lp_next - 1 - s.pos0);
      const int64_t end = std::min<int64_t>(n, st.prompt_len - 1 - s.pos0);
      if (end > first) prompt_rows[i] = PromptRows{first, end - first};
    }
    fb.add(s.tokens.data(), n, s.pos0, s.pages, all_logits);
    if (s.state->req.lora >= 0) {  // seq_lora stays empty while every sequence runs the base model
      fb.seq_lora.resize(fb.seqs.size() - 1, -1);
      fb.seq_lora.push_back(s.state->req.lora);
    } else if (!fb.seq_lora.empty()) {
      fb.seq_lora.push_back(-1);
    }
    if (!all_logits) {  // add() gave the last row; this seq wants its prompt rows and/or its sample row(s)
      fb.logit_rows.pop_back();
      const int64_t q_row = fb.seqs.back().q_row;
      for (int64_t k = 0; k < prompt_rows[i].count; ++k) fb.logit_rows.push_back(q_row + prompt_rows[i].first + k);
      if (s.sample)
        for (int64_t k = n - 1 - s.n_draft; k < n; ++k) fb.logit_rows.push_back(q_row + k);
    }
    // Pooling heads: every prompt row not added yet (mean / CLS), or the last prompt row.
    if (const RequestState& st = *s.state; st.req.pooling != Pooling::kNone) {
      const int64_t q_row = fb.seqs.back().q_row;
      for (int64_t k = 0; k < n; ++k) {
        const int64_t pos = s.pos0 + k;
        const bool want = st.req.pooling == Pooling::kMean  ? pos >= st.pool_next && pos < st.prompt_len
                          : st.req.pooling == Pooling::kCls ? pos == 0
                                                            : pos == st.prompt_len - 1;
        if (want) fb.hidden_rows.push_back(q_row + k);
      }
    }
    any_embeds |= s.state->has_embeds();
    if (s.state->has_images()) {
      any_images = true;
      encode_images(*s.state, s.pos0, n);
    }
  }
  if (any_embeds || any_images) {
    fb.row_embeds.assign(fb.tokens.size(), nullptr);
    for (size_t i = 0; i < b.seqs.size(); ++i) {
      const ScheduledSeq& s = b.seqs[i];
      const RequestState& st = *s.state;
      if (!st.has_embeds() && !st.has_images()) continue;
      for (int64_t k = 0; k < int64_t(s.tokens.size()); ++k) {
        const int64_t pos = s.pos0 + k;
        const float* e = st.has_embeds() ? st.embed_row(pos, cfg.hidden)
                         : pos < st.prompt_len && st.image_row[size_t(pos)] >= 0
                             ? &st.image_embeds[size_t(st.image_row[size_t(pos)]) * size_t(cfg.hidden)]
                             : nullptr;
        fb.row_embeds[size_t(fb.seqs[i].q_row + k)] = e;
      }
    }
  }
  if (any_images) {
    // M-RoPE rows: the image requests' from their table, every other row at its position on all axes.
    fb.mrope_pos.resize(3 * fb.tokens.size());
    for (size_t i = 0; i < b.seqs.size(); ++i) {
      const ScheduledSeq& s = b.seqs[i];
      for (int64_t k = 0; k < int64_t(s.tokens.size()); ++k) {
        const int64_t pos = s.pos0 + k;
        for (int a = 0; a < 3; ++a)
          fb.mrope_pos[size_t(3 * (fb.seqs[i].q_row + k) + a)] =
              s.state->has_images() ? s.state->mrope_at(pos, a) : int32_t(pos);
      }
    }
  }
  if (nextn_) nextn_->want_rows(b, fb);  // NEXTN reads the target's last hidden states
  logits_.resize(size_t(fb.logit_rows.size()) * size_t(V));
  hidden_.resize(fb.hidden_rows.size() * size_t(cfg.hidden));
  mcomm_.begin_step(sync);
  model_.forward(fb, *kv_, logits_.data(), hidden_.data());
  ++counters_.forward_steps;
  if (!fb.hidden_rows.empty()) pool_rows(b, fb);
  for (const ScheduledSeq& s : b.seqs)  // a prefilled prompt needs its images' embeddings no more
    if (s.state->has_images() && s.pos0 + int64_t(s.tokens.size()) >= s.state->prompt_len)
      std::vector<float>().swap(s.state->image_embeds);
  if (b.seqs.empty()) ++counters_.idle_batches;

  // Sample every sequence that reached its last known token; the finish rules run in commit().
  struct Pick {
    const ScheduledSeq* seq;
    float* logits;  // the first of 1 + seq->n_draft rows of V floats
  };
  std::vector<Pick> picks;
  std::vector<OutToken> prompt_outs;  // this step's prompt logprobs, one entry per request
  size_t row = 0;
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    const ScheduledSeq& s = b.seqs[i];
    if (prompt_rows[i].count > 0) {
      // Only the group leader's report reaches rank 0; the others skip the vocabulary passes (the
      // rows themselves are the same on every rank: the forward's collectives need that).
      if (topo_.is_group_leader) {
        const RequestState& st = *s.state;
        OutToken o;
        o.id = s.id;
        o.prompt.resize(size_t(prompt_rows[i].count));
        // As for sampled tokens, ids past the tokenizer's vocabulary are no tokens: the softmax
        // runs over the ids below the limit only.
        const int64_t limit = opts_.token_limit > 0 && opts_.token_limit < V ? opts_.token_limit : V;
        // With every row computed (logits_tap) the chunk's rows are all there, else only these.
        const size_t base = row + size_t(all_logits ? prompt_rows[i].first : 0);
        const int64_t first = prompt_rows[i].first, count = prompt_rows[i].count;
        on_team(model_.team(), count, 4, [&](int64_t k0, int64_t k1) {
          thread_local std::vector<float> scratch;
          for (int64_t k = k0; k < k1; ++k) {
            const float* lg = &logits_[(base + size_t(k)) * size_t(V)];
            const int64_t pos = s.pos0 + first + k + 1;  // the prompt position it scores
            prompt_row_logprob(lg, limit, st.tokens[size_t(pos)], st.req.top_logprobs, st.req.token_ids_logprob, scratch,
                               o.prompt[size_t(k)]);
          }
        });
        o.prompt_tokens = st.prompt_len;
        o.cached_tokens = st.cached;
        prompt_outs.push_back(std::move(o));
      }
      if (!all_logits) row += size_t(prompt_rows[i].count);
    }
    if (all_logits) {
      for (int64_t k = 0; opts_.logits_tap && k < int64_t(s.tokens.size()); ++k)
        opts_.logits_tap(s.id, s.pos0 + k, std::span<const float>(&logits_[(row + size_t(k)) * size_t(V)], size_t(V)));
      row += s.tokens.size();
      if (!s.sample) continue;
    } else if (!s.sample) {
      continue;
    } else {
      row += size_t(1 + s.n_draft);
    }
    picks.push_back(Pick{&s, &logits_[(row - 1 - size_t(s.n_draft)) * size_t(V)]});
  }
  // Structured outputs: each constrained sequence's allowed tokens, over the thread team (a mask
  // depends on its own request only, so the order of the work does not matter).
  const size_t words = size_t((V + 63) / 64);
  std::vector<size_t> constrained;
  for (size_t i = 0; i < picks.size(); ++i)
    if (picks[i].seq->state->matcher) constrained.push_back(i);
  masks_.resize(constrained.size() * words);
  std::vector<std::string> mask_errors(constrained.size());
  on_team(model_.team(), int64_t(constrained.size()), 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      try {
        picks[constrained[size_t(k)]].seq->state->matcher->fill_mask(&masks_[size_t(k) * words]);
      } catch (const std::exception& e) {
        mask_errors[size_t(k)] = e.what();
      }
    }
  });
  // Ahead of the sampled tokens, so a request's prompt entries reach the frontend before its first token.
  for (OutToken& o : prompt_outs) rep.outs.push_back(std::move(o));
  std::vector<StepResult> results;
  std::vector<std::pair<uint64_t, std::string>> failed;
  const size_t first_out = rep.outs.size();
  for (size_t i = 0, k = 0; i < picks.size(); ++i) {
    const ScheduledSeq& s = *picks[i].seq;
    RequestState& st = *s.state;
    float* logits = picks[i].logits;
    // Scoring: the raw logits, before any mask or bias, on the request's first token only.
    std::vector<float> scores;
    if (!st.req.score_ids.empty() && st.generated() == 0) {
      for (int32_t id : st.req.score_ids) scores.push_back(logits[id]);
      // Then the row's log-sum-exp over the ids the server can report, so a logit becomes a logprob
      // over the whole vocabulary (SGLang's /v1/score without apply_softmax).
      const int64_t n = opts_.token_limit > 0 && opts_.token_limit < V ? opts_.token_limit : V;
      const float mx = *std::max_element(logits, logits + n);
      double sum = 0;
      for (int64_t t = 0; t < n; ++t) sum += std::exp(double(logits[t] - mx));
      scores.push_back(float(double(mx) + std::log(sum)));
    }
    if (st.matcher) {
      const uint64_t* mask = &masks_[k * words];
      const std::string& err = mask_errors[k++];
      bool any = false;
      for (size_t w = 0; w < words && !any; ++w) any = mask[w] != 0;
      if (!err.empty() || !any) {
        failed.push_back({s.id, err.empty() ? "the output constraint allows no token here" : err});
        continue;
      }
      constrain::apply_mask(mask, logits, V);
    }
    // Row r gives the token after the input at row r; with drafts, the rows after the first count
    // while the tokens drawn match the drafts fed there (engine/speculative.h: verify_drafts).
    const size_t outs_before = rep.outs.size();
    const int64_t taken = verify_drafts(s.tokens.data() + 1, s.n_draft, [&](int64_t r) -> std::optional<int32_t> {
      float* lg = logits + r * V;
      if (opts_.token_limit > 0 && opts_.token_limit < V)
        std::fill(lg + opts_.token_limit, lg + V, -std::numeric_limits<float>::infinity());
      constexpr float kNone = -std::numeric_limits<float>::infinity();
      // vLLM's order: allowed_token_ids, then bad_words, then min_tokens and logit_bias.
      if (!st.req.allowed_token_ids.empty()) {
        thread_local std::vector<float> keep;
        keep.clear();
        for (int32_t id : st.req.allowed_token_ids) keep.push_back(lg[id]);
        std::fill(lg, lg + V, kNone);
        for (size_t j = 0; j < keep.size(); ++j) lg[st.req.allowed_token_ids[j]] = keep[j];
      }
      // bad_words: the output so far is the request's generated tokens, then the drafts rows 0..r-1
      // matched (this row's history, engine/speculative.h).
      if (!st.req.bad_words.empty()) {
        const int64_t gen = st.generated(), have = gen + r;
        auto out_at = [&](int64_t j) {
          return j < gen ? st.tokens[size_t(st.prompt_len + j)] : s.tokens[size_t(1 + (j - gen))];
        };
        for (const auto& q : st.req.bad_words) {
          const int64_t before = int64_t(q.size()) - 1;
          if (before > have) continue;
          bool match = true;
          for (int64_t i = 0; i < before && match; ++i) match = out_at(have - before + i) == q[size_t(i)];
          if (match) lg[q.back()] = kNone;
        }
      }
      if ((!st.req.allowed_token_ids.empty() || !st.req.bad_words.empty()) &&
          std::none_of(lg, lg + V, [](float x) { return x > kNone; })) {
        failed.push_back({s.id, fmt::format("no token may be sampled after {} output tokens: allowed_token_ids and "
                                            "bad_words (with the output constraint, if any) leave none",
                                            st.generated() + r)});
        return std::nullopt;
      }
      // A thinking budget that ran out closes the block: its token replaces the model's choice, over
      // logit_bias (a preference) but not over the masks above (a request's hard rules).
      if (const int32_t forced = st.think.forced_token(); forced >= 0) {
        if (!(lg[forced] > kNone)) {
          failed.push_back({s.id, fmt::format("the thinking budget ran out after {} tokens, but the output constraint, "
                                              "allowed_token_ids or bad_words forbid the token {} that ends the "
                                              "thinking",
                                              st.think.used(), forced)});
          return std::nullopt;
        }
        std::fill(lg, lg + V, kNone);
        lg[forced] = 0;
      }
      for (const LogitBias& lb : st.req.logit_bias) lg[lb.token] += lb.bias;
      // min_new_tokens: this row's token is output number generated() + r (0-based).
      if (st.generated() + r < st.req.params.min_new_tokens) {
        for (int32_t id : opts_.eos_ids)
          if (id >= 0 && id < V) lg[id] = kNone;
        for (int32_t id : st.req.params.stop_token_ids)
          if (id >= 0 && id < V) lg[id] = kNone;
        if (std::none_of(lg, lg + V, [](float x) { return x > kNone; })) {
          failed.push_back({s.id, fmt::format("min_new_tokens {} cannot be met: after {} tokens only an end of the "
                                              "output is allowed (by the output constraint, allowed_token_ids or "
                                              "bad_words)",
                                              st.req.params.min_new_tokens, st.generated() + r)});
          return std::nullopt;
        }
      }
      OutToken o;
      o.id = s.id;
      o.has_token = true;
      // Logprobs describe the distribution the token was drawn from: after the mask and the bias.
      std::vector<float> raw;
      if (st.wants_logprobs()) raw.assign(lg, lg + V);
      const int32_t tok = st.sampler.sample(lg, V);
      if (st.matcher && !st.matcher->accept(tok)) {
        failed.push_back({s.id, fmt::format("sampled token {} breaks the output constraint", tok)});
        return std::nullopt;
      }
      st.think.advance(tok);
      o.tok.token = tok;
      if (st.wants_logprobs()) log_softmax_top(raw.data(), V, tok, st.req.top_logprobs, st.req.token_ids_logprob, o.tok);
      o.prompt_tokens = st.prompt_len;
      o.cached_tokens = st.cached;
      if (r == 0) {
        o.scores = std::move(scores);
        if (st.req.pooling != Pooling::kNone && st.generated() == 0) o.embedding = pooled(st);
      }
      results.push_back(StepResult{s.id, tok});
      rep.outs.push_back(std::move(o));
      return tok;
    });
    if (s.n_draft > 0 && taken > 0) {
      // The step's verification, on the request's first token of the step: every taken row but the
      // last matched its draft.
      OutToken& first = rep.outs[outs_before];
      first.spec_drafted = s.n_draft;
      first.spec_accepted = taken - 1;
      first.spec_predicted = s.drafts_given;
    }
  }
  // Ended before commit, so commit does not expect their tokens (same on every rank of the group).
  for (const auto& [id, why] : failed) end(id, Finish::kError, rep, why);
  if (nextn_) nextn_->absorb(b, results);  // the pairs whose next token this step made known
  results = sched_->commit(std::move(results));
  std::vector<bool> drop(results.size(), false);
  bool any_dropped = false;
  for (size_t i = 0; i < results.size(); ++i) {
    const StepResult& r = results[i];
    rep.outs[first_out + i].finish = r.finish;
    drop[i] = r.dropped;
    any_dropped |= r.dropped;
    if (r.finish == Finish::kNone) continue;
    if (auto it = std::find(embed_fifo_.begin(), embed_fifo_.end(), r.id); it != embed_fifo_.end()) embed_fifo_.erase(it);
  }
  if (any_dropped) {  // tokens verified past their request's end in this step are no output
    std::unordered_map<uint64_t, int64_t> dropped;  // per request: drafts taken past its end
    size_t w = first_out;
    for (size_t i = 0; i < results.size(); ++i) {
      if (drop[i]) {
        ++dropped[results[i].id];
        continue;
      }
      // Not onto itself: a self-move-assignment empties the vectors (top logprobs, scores).
      if (w != first_out + i) rep.outs[w] = std::move(rep.outs[first_out + i]);
      ++w;
    }
    rep.outs.resize(w);
    // A step's verification counts only the drafts that became output.
    for (size_t i = first_out; i < w; ++i)
      if (rep.outs[i].spec_drafted > 0)
        if (auto it = dropped.find(rep.outs[i].id); it != dropped.end())
          rep.outs[i].spec_accepted = std::max<int64_t>(0, rep.outs[i].spec_accepted - it->second);
  }
}

void RankWorker::pool_rows(const ScheduledBatch& b, const ForwardBatch& fb) {
  const int64_t H = model_.config().hidden;
  size_t row = 0;  // hidden_rows follow the batch's seqs in order
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    RequestState& st = *b.seqs[i].state;
    if (st.req.pooling == Pooling::kNone) continue;
    const int64_t q_row = fb.seqs[i].q_row;
    for (; row < fb.hidden_rows.size() && fb.hidden_rows[row] < q_row + int64_t(b.seqs[i].tokens.size()); ++row) {
      const int64_t pos = b.seqs[i].pos0 + (fb.hidden_rows[row] - q_row);
      const float* h = &hidden_[row * size_t(H)];
      if (st.pool_sum.empty()) st.pool_sum.assign(size_t(H), 0.0);
      if (st.req.pooling == Pooling::kLast || (st.req.pooling == Pooling::kCls && pos == 0)) {
        for (int64_t j = 0; j < H; ++j) st.pool_sum[size_t(j)] = h[j];
      } else if (st.req.pooling == Pooling::kMean) {
        for (int64_t j = 0; j < H; ++j) st.pool_sum[size_t(j)] += h[j];
      }
      st.pool_next = pos + 1;
    }
  }
}

std::vector<float> RankWorker::pooled(const RequestState& st) const {
  // A request whose last prompt row ran this step has every pooled row in pool_sum.
  const double div = st.req.pooling == Pooling::kMean ? double(st.prompt_len) : 1.0;
  std::vector<float> out(st.pool_sum.size());
  for (size_t j = 0; j < out.size(); ++j) out[j] = float(st.pool_sum[j] / div);
  return out;
}

GroupReport RankWorker::make_report() {
  GroupReport rep;
  rep.group = topo_.attn_dp_rank;
  return rep;
}

void RankWorker::exchange_reports(GroupReport& rep, StepDriver* driver, bool& any_work) {
  SchedulerStats st = sched_->stats();
  rep.running = sched_->running();
  rep.waiting = sched_->waiting() + images_.held();  // requests waiting for their images count too
  rep.pages_used = st.pages_used;
  rep.pages_total = st.pages_total;
  rep.prefix_hit_tokens = st.prefix_hit_tokens;
  rep.prefix_query_tokens = st.prefix_query_tokens;
  rep.preemptions = st.preemptions;
  rep.cached_pages = st.cached_pages;
  rep.waiting_tokens = st.waiting_tokens;
  if (!topo_.is_group_leader) return;
  std::vector<std::byte> bytes = encode(rep);
  if (comms_.leaders.size() > 1) {
    auto all = comms_.leaders.gatherv(bytes, 0);
    if (driver) {
      std::vector<GroupReport> reps;
      for (auto& b : all) reps.push_back(decode_report(b.data(), b.size()));
      for (auto& r : reps) any_work |= r.running + r.waiting > 0;
      driver->on_reports(reps);
    }
  } else if (driver) {
    std::vector<GroupReport> reps{rep};
    any_work = rep.running + rep.waiting > 0;
    driver->on_reports(reps);
  }
}

void RankWorker::arm_control_send() {
  // Rank 0's send of the control message is watched like a step: a stopped rank stops draining its
  // messages, and once the transport's buffers are full (heartbeats pile up) or the message takes the
  // rendezvous path, the send blocks. Unwatched, rank 0 would wait there forever, healthy on /health.
  watched_step_ = counters_.steps + 1;
  step_began_ = step_t0_;
}

std::string RankWorker::control_source() const {
  const int leader = topo_.world_rank_of(topo_.attn_dp_rank, 0);
  if (opts_.dispatch == Dispatch::kGroupLeader && !topo_.is_group_leader && leader != 0)
    return fmt::format("rank 0 (via group leader rank {})", leader);
  return "rank 0";
}

void RankWorker::die(const std::string& why, const char* what) {
  std::fprintf(stderr, "rank %d: %s: %s. Stopping the job.\n", topo_.rank, what, why.c_str());
  std::fflush(stderr);
  if (opts_.on_fatal) {
    // Let rank 0's open streams end with the reason (the server writes a final error event), but
    // never wait long: whatever hangs the step may hang this too.
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread([f = opts_.on_fatal, why, done] {
      f(why);
      *done = true;
    }).detach();
    for (int i = 0; i < 100 && !*done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (*done) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the HTTP threads write
  }
  // Nothing this rank can do will finish the step; the launcher stops every other rank when one exits.
  std::_Exit(3);
}

void RankWorker::watchdog_loop() {
  const double limit = opts_.watchdog_seconds;
  const auto tick = std::chrono::milliseconds(std::clamp<int64_t>(int64_t(limit * 1000 / 20), 10, 200));
  double last = now_seconds(), resumed = 0;
  while (true) {
    {
      std::unique_lock lock(watchdog_mu_);
      if (watchdog_cv_.wait_for(lock, tick, [this] { return stop_watchdog_; })) return;
    }
    const double now = now_seconds();
    // A tick far longer than asked means this process itself was stopped (SIGSTOP, then SIGCONT):
    // the time it lost is not the others' fault, so waits count again from now.
    if (now - last > std::chrono::duration<double>(tick).count() + 1.0) resumed = now;
    last = now;
    if (const double began = step_began_; began > 0 && now - std::max(began, resumed) > limit)
      die(fmt::format("step {} has not finished after {:.0f} s (--watchdog-timeout); another rank has stopped or a "
                      "collective is stuck",
                      watched_step_.load(), limit));
    // A silent rank 0 (stopped, or its step thread stuck outside a collective) leaves the other ranks
    // waiting here, outside any step; rank 0 sends at least a heartbeat every limit / 4.
    if (const double waited = control_wait_began_; waited > 0 && now - std::max(waited, resumed) > limit)
      die(fmt::format("no control message from {} for {:.0f} s (--watchdog-timeout; rank 0 sends one at least "
                      "every {:.1f} s, a heartbeat when idle): {} has stopped or hangs",
                      control_source(), limit, limit / 4, control_source()));
  }
}

void RankWorker::run(StepDriver* driver) {
  DP_CHECK((topo_.rank == 0) == (driver != nullptr), "the step driver lives on world rank 0");
  std::thread watchdog;
  if (opts_.watchdog_seconds > 0) watchdog = std::thread([this] { watchdog_loop(); });
  struct Stop {
    RankWorker* w;
    std::thread& t;
    ~Stop() {
      {
        std::lock_guard lock(w->watchdog_mu_);
        w->stop_watchdog_ = true;
      }
      w->watchdog_cv_.notify_all();
      if (t.joinable()) t.join();
    }
  } stop{this, watchdog};
  // The first step goes out at once, idle or not: it tells the other ranks that rank 0's loop runs,
  // which arms their wait for rank 0 (below).
  bool any_work = true;
  while (true) {
    // 1. Control message: one per step, whatever the number of new requests.
    step_t0_ = now_seconds();
    // Armed once rank 0 has sent its first message (its start-up may take a while).
    if (!driver && counters_.steps > 0) control_wait_began_ = step_t0_;
    // Rank 0 does not sleep while image bytes wait to be sent.
    StepControl ctrl = receive_control(driver, !any_work && !images_.sending());
    control_wait_began_ = 0;
    counters_.max_new_requests = std::max<int64_t>(counters_.max_new_requests, int64_t(ctrl.new_requests.size()));
    ++counters_.steps;

    GroupReport rep = make_report();
    change_lora(ctrl, driver);  // before the step's requests (which may name the adapter)
    apply(ctrl, rep);
    const double t_control = now_seconds();
    counters_.control_seconds += t_control - step_t0_;
    watched_step_ = counters_.steps;
    step_began_ = t_control;
    if (ctrl.shutdown) {
      sched_->abort_all();  // their computed pages join the tree first
      step_began_ = 0;      // writing the file is not a step: the watchdog leaves it alone
      if (!opts_.prefix_file.empty()) save_prefix_cache("shutdown");
      break;
    }
    // The step's image chunks move while the forward pass runs; they land before the report.
    images_.start(ctrl.image_chunks);
    // 2. Schedule this group's batch (identical on every rank of the group).
    ScheduledBatch batch = sched_->schedule();
    if (drafter_) {  // STANDALONE: the draft model fills the rows the scheduler reserved for drafts
      drafter_->sweep(batch, [&](uint64_t id) { return sched_->contains(id); });
      drafter_->fill(batch);
    }
    if (nextn_) {  // NEXTN: the MTP layer's chains fill the reserved rows
      nextn_->sweep(batch, [&](uint64_t id) { return sched_->contains(id); });
      nextn_->fill(batch);
    }
    rep.step_tokens = batch.n_tokens;
    // 3. MLP sync: every group's token count; a group with none runs an idle batch.
    StepSync sync = mlp_sync(comms_.mlp, topo_, batch.n_tokens, batch.has_prefill);
    // 4-5. Forward and sample.
    if (sync.any_work) step_forward(batch, sync, rep);
    images_.finish();
    // 6. Output gather to rank 0.
    any_work = false;
    exchange_reports(rep, driver, any_work);
    counters_.busy_seconds += now_seconds() - step_t0_;
    step_began_ = 0;
    // Write-behind: the tree's count of adopted pages is the same on every rank of the group, so
    // the group's ranks write at the same step, and a crash loses only what came after. Each write
    // rewrites the whole tree, so it also waits for a quarter of the tree to be new: the bytes
    // written stay within a few times the bytes adopted, however large the tree.
    if (!opts_.prefix_file.empty() && opts_.prefix_write_pages > 0 && sched_->prefix_cache()) {
      const RadixCache& c = *sched_->prefix_cache();
      if (c.inserted_pages() - saved_at_inserted_ >= std::max(opts_.prefix_write_pages, c.cached_pages() / 4))
        save_prefix_cache("write-behind");
    }
  }
}

void RankWorker::save_prefix_cache(const char* why) {
  RadixCache* cache = sched_->prefix_cache();
  if (!cache) return;
  saved_at_inserted_ = cache->inserted_pages();
  const double t0 = now_seconds();
  try {
    const int64_t max_nodes = opts_.prefix_max_bytes > 0
                                  ? prefix_file_max_entries(opts_.prefix_identity, *kv_, opts_.prefix_max_bytes)
                                  : cache->cached_pages();
    const std::vector<RadixCache::Entry> entries = cache->export_nodes(max_nodes);
    const int64_t bytes = write_prefix_file(opts_.prefix_file, opts_.prefix_identity, entries, *kv_);
    spdlog::info("rank {}: prefix cache ({}) written to {}: {} pages ({} tokens{}), {:.1f} MB in {:.2f} s", topo_.rank,
                 why, opts_.prefix_file, entries.size(), int64_t(entries.size()) * kv_->page_size(),
                 int64_t(entries.size()) == max_nodes && max_nodes < cache->cached_pages()
                     ? fmt::format(" of {}: --kv-cache-dir-max-gb", cache->cached_pages() * kv_->page_size())
                 : int64_t(entries.size()) < cache->cached_pages()
                     // export_nodes keeps the base model's pages only (kv/radix_cache.h)
                     ? fmt::format("; {} LoRA adapter pages stay in memory only", cache->cached_pages() - int64_t(entries.size()))
                     : std::string(),
                 double(bytes) / 1e6, now_seconds() - t0);
  } catch (const std::exception& e) {
    spdlog::warn("rank {}: prefix cache not written: {}", topo_.rank, e.what());
  }
}

int64_t RankWorker::load_prefix_cache() {
  RadixCache* cache = sched_->prefix_cache();
  if (opts_.prefix_file.empty() || !cache) return 0;
  const double t0 = now_seconds();
  std::vector<RadixCache::Entry> entries;
  std::string why;
  struct stat st {};
  const bool exists = ::stat(opts_.prefix_file.c_str(), &st) == 0;
  if (exists) {
    try {
      why = read_prefix_file(opts_.prefix_file, opts_.prefix_identity, *kv_, entries);
    } catch (const std::exception& e) {
      why = e.what();
      entries.clear();
    }
  }
  const bool ok = exists && why.empty();
  // The group adopts the tree only if each of its ranks read the same one: their schedulers must
  // keep making the same decisions. Every rank takes part, whatever it read.
  const int n = comms_.attn_tp.size();
  std::vector<int64_t> mine{ok ? 1 : 0, ok ? int64_t(prefix_tree_digest(entries)) : 0,
                            ok ? int64_t(entries.size()) : 0};
  std::vector<int64_t> all(size_t(3 * n));
  if (n > 1)
    comms_.attn_tp.allgather(std::span<const int64_t>(mine), std::span<int64_t>(all));
  else
    all = mine;
  bool agree = true;
  int64_t any_ok = 0;
  for (int r = 0; r < n; ++r) {
    any_ok += all[size_t(3 * r)];
    agree = agree && all[size_t(3 * r)] == 1 && all[size_t(3 * r + 1)] == mine[1] && all[size_t(3 * r + 2)] == mine[2];
  }
  if (ok && agree && cache->import_nodes(entries)) {
    spdlog::info("rank {}: prefix cache loaded from {}: {} pages ({} tokens) in {:.2f} s", topo_.rank,
                 opts_.prefix_file, entries.size(), int64_t(entries.size()) * kv_->page_size(), now_seconds() - t0);
    saved_at_inserted_ = cache->inserted_pages();
    return int64_t(entries.size());
  }
  for (const auto& e : entries) kv_->release(e.page);
  if (!exists && any_ok == 0) {
    spdlog::info("rank {}: no prefix cache file {} yet: starting empty", topo_.rank, opts_.prefix_file);
  } else if (!why.empty()) {
    spdlog::warn("rank {}: prefix cache file {} not loaded: {}", topo_.rank, opts_.prefix_file, why);
  } else {
    spdlog::warn("rank {}: prefix cache file {} not loaded: the other ranks of DP group {} did not read the same tree "
                 "(a file missing, refused or from another moment)",
                 topo_.rank, opts_.prefix_file, topo_.attn_dp_rank);
  }
  return 0;
}

}  // namespace dpserve
