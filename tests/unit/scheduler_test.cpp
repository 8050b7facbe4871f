// Scheduler simulations against the real KV pool and radix cache, with no model: a fake "model" writes
// each scheduled token into a simulated KV store through the page table and derives the next token
// from the history it reads back through the same table. A page shared or reused wrongly therefore
// changes the outputs, which are checked against an independent sequential reference.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "core/check.h"

namespace dpserve {
namespace {

constexpr int64_t kPage = 4;
constexpr int32_t kEos = 0;

KVPoolConfig pool_cfg(int64_t n_pages) {
  KVPoolConfig c;
  c.n_layers = 1;
  c.n_kv_heads = 1;
  c.head_dim = 1;
  c.page_size = kPage;
  c.n_pages = n_pages;
  return c;
}

// The fake model: FNV-1a of the whole history, mod 50.
int32_t next_token(const std::vector<int32_t>& history) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t t : history) {
    h ^= uint64_t(uint32_t(t));
    h *= 1099511628211ull;
  }
  return int32_t(h % 50);
}

// A fake model whose output falls into cycles (the next token depends on the last two only, from
// 11 values), so n-gram drafts of its own output are often right, and not always.
int32_t next_token_cyclic(const std::vector<int32_t>& history) {
  const size_t n = history.size();
  const int32_t a = history[n - 1], b = n > 1 ? history[n - 2] : 5;
  return int32_t((uint32_t(a) * 7u + uint32_t(b) * 3u + 1u) % 11u);
}

using FakeModel = int32_t (*)(const std::vector<int32_t>&);

// What a request must produce, computed without any scheduler.
std::vector<int32_t> reference(std::vector<int32_t> prompt, int64_t max_new, bool stop_at_eos,
                               FakeModel model = next_token) {
  std::vector<int32_t> out;
  while (int64_t(out.size()) < max_new) {
    int32_t t = model(prompt);
    out.push_back(t);
    prompt.push_back(t);
    if (stop_at_eos && t == kEos) break;
  }
  return out;
}

std::vector<int32_t> prompt_of(uint32_t seed, int n) {
  std::vector<int32_t> p;
  uint32_t x = seed * 2654435761u + 12345u;
  for (int i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    p.push_back(int32_t(1 + (x >> 16) % 97));
  }
  return p;
}

// (id, pos0, n_tokens, sample) of one scheduled sequence.
using Chunk = std::tuple<uint64_t, int64_t, int64_t, bool>;

// A request as the step loop builds it: the prompt, greedy, EOS honoured unless told otherwise.
RequestState request(uint64_t id, std::vector<int32_t> prompt, int64_t max_new, bool stop_at_eos = true) {
  Request r;
  r.input_ids = prompt;
  r.params.temperature = 0;
  r.params.max_new_tokens = max_new;
  r.params.ignore_eos = !stop_at_eos;
  return RequestState(id, std::move(r), std::move(prompt), max_new);
}

// Drives one Scheduler step by step like the step loop does; the scheduler's finish rules know kEos.
struct Sim {
  KVPool pool;
  Scheduler sched;
  std::vector<int32_t> kv;  // simulated KV: the token stored at each (page, slot)
  std::map<uint64_t, std::vector<int32_t>> out;
  std::map<uint64_t, int64_t> max_new;
  std::map<uint64_t, bool> done;
  bool stop_at_eos = true;
  bool prompt_logprobs = false;  // requests added from now on report prompt logprobs
  int32_t priority = 0;          // and have this priority (SchedulerConfig::priority_scheduling)
  std::vector<int32_t> prediction;  // and this predicted output (Request::prediction)
  int64_t steps = 0;
  FakeModel model = next_token;
  int64_t drafted = 0, accepted = 0, dropped = 0;  // speculative decoding, over all steps

  Sim(int64_t n_pages, SchedulerConfig cfg)
      : pool(pool_cfg(n_pages)), sched(cfg, pool, FinishRules{{kEos}}), kv(size_t(n_pages * kPage), -1) {}

  bool add(uint64_t id, std::vector<int32_t> prompt, int64_t mx) {
    max_new[id] = mx;
    out[id];
    RequestState st = request(id, std::move(prompt), mx, stop_at_eos);
    st.req.prompt_logprobs = prompt_logprobs;
    st.req.priority = priority;
    st.req.prediction = prediction;
    return sched.add(std::move(st));
  }

  // One step; returns what ran.
  std::vector<Chunk> step(ScheduledBatch* batch_out = nullptr) {
    ScheduledBatch b = sched.schedule();
    std::vector<Chunk> runs;
    std::vector<StepResult> results;
    int64_t n_tokens = 0;
    for (const auto& s : b.seqs) {
      runs.emplace_back(s.id, s.pos0, int64_t(s.tokens.size()), s.sample);
      n_tokens += int64_t(s.tokens.size());
      for (size_t i = 0; i < s.tokens.size(); ++i) {
        int64_t p = s.pos0 + int64_t(i);
        int32_t page = s.pages[p / kPage];
        EXPECT_GE(page, 0);
        EXPECT_LT(page, pool.n_pages());
        EXPECT_GE(pool.refcount(page), 1);
        kv[size_t(page * kPage + p % kPage)] = s.tokens[i];
      }
    }
    EXPECT_EQ(n_tokens, b.n_tokens);
    // Sampling reads the history back through the page table, after every write of the step.
    // With drafts (tokens[1..] drafted), row r reads the history up to its own input and counts
    // while the token before it matched its draft, as the step loop samples them; rows after the
    // request's finish still come back from the "model" and must be dropped by commit().
    std::vector<Finish> expected;
    std::vector<bool> expect_dropped;
    for (const auto& s : b.seqs) {
      if (!s.sample) continue;
      EXPECT_EQ(s.state, sched.find(s.id));
      EXPECT_LE(s.n_draft, int64_t(s.tokens.size()) - 1);
      const int64_t first_row = int64_t(s.tokens.size()) - 1 - s.n_draft;
      bool ended = false;
      if (s.n_draft > 0) drafted += s.n_draft;
      for (int64_t r = first_row; r < int64_t(s.tokens.size()); ++r) {
        std::vector<int32_t> hist;
        const int64_t end = s.pos0 + r + 1;
        for (int64_t p = 0; p < end; ++p) hist.push_back(kv[size_t(s.pages[p / kPage] * kPage + p % kPage)]);
        const int32_t t = model(hist);
        auto& o = out[s.id];
        if (!ended) o.push_back(t);
        // What the finish rules must decide, worked out here independently.
        expected.push_back(ended                                 ? Finish::kNone
                           : stop_at_eos && t == kEos             ? Finish::kStopToken
                           : int64_t(o.size()) >= max_new[s.id] ? Finish::kLength
                                                                : Finish::kNone);
        expect_dropped.push_back(ended);
        if (expected.back() != Finish::kNone) done[s.id] = true, ended = true;
        results.push_back({s.id, t});
        if (r + 1 == int64_t(s.tokens.size()) || t != s.tokens[size_t(r + 1)]) break;
        if (!ended) ++accepted;
      }
    }
    results = sched.commit(std::move(results));
    for (size_t i = 0; i < results.size(); ++i) {
      EXPECT_EQ(results[i].dropped, expect_dropped[i]) << "request " << results[i].id << " result " << i;
      if (results[i].dropped) {
        ++dropped;
        continue;
      }
      if (!sched.contains(results[i].id) && results[i].finish == Finish::kNone) continue;  // aborted meanwhile
      EXPECT_EQ(results[i].finish, expected[i]) << "request " << results[i].id;
      EXPECT_EQ(sched.contains(results[i].id), results[i].finish == Finish::kNone);
    }
    ++steps;
    if (batch_out) *batch_out = std::move(b);
    return runs;
  }

  void run_to_end(int64_t max_steps = 10000) {
    while (sched.has_work() && steps < max_steps) step();
    ASSERT_FALSE(sched.has_work()) << "did not finish within " << max_steps << " steps";
  }
};

SchedulerConfig cfg_of(int64_t max_running, int64_t chunk, int64_t max_tokens, bool cache) {
  SchedulerConfig c;
  c.max_running_requests = max_running;
  c.chunked_prefill_size = chunk;
  c.max_prefill_tokens = max_tokens;
  c.enable_prefix_cache = cache;
  return c;
}

TEST(Scheduler, ContinuousBatchingStepByStep) {
  // Chunk 8, no prefix cache, ample pool. Expected batches worked out by hand from the policy:
  // decodes first (arrival order), then mid-prefill chunks, then admissions while the chunk budget lasts.
  Sim sim(64, cfg_of(8, 8, 100, false));
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 10), 3));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 5), 2));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 8, false}}));                 // budget 8 spent on 1
  EXPECT_EQ(sim.sched.running(), 1);
  EXPECT_EQ(sim.sched.waiting(), 1);
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 8, 2, true}, {2, 0, 5, true}}));  // 1 ends, 2 fits in 6
  ASSERT_TRUE(sim.add(3, prompt_of(3, 3), 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 10, 1, true}, {2, 5, 1, true}, {3, 0, 3, true}}));  // 2 and 3 finish
  EXPECT_EQ(sim.sched.running(), 1);
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 11, 1, true}}));  // 1's third token: done
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_EQ(sim.out[1], reference(prompt_of(1, 10), 3, false));
  EXPECT_EQ(sim.out[2], reference(prompt_of(2, 5), 2, false));
  EXPECT_EQ(sim.out[3], reference(prompt_of(3, 3), 1, false));
  EXPECT_EQ(sim.pool.free_pages(), 64);
}

TEST(Scheduler, LongPromptIsChunkedAndKeepsItsPlace) {
  Sim sim(64, cfg_of(8, 8, 100, false));
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 21), 2));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 4), 2));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 8, false}}));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 8, 8, false}}));  // 1 continues before 2 is admitted
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 16, 5, true}, {2, 0, 3, false}}));  // 2 gets the 3 left
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 21, 1, true}, {2, 3, 1, true}}));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{2, 4, 1, true}}));
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_EQ(sim.out[1], reference(prompt_of(1, 21), 2, false));
}

TEST(Scheduler, PartialAdmissionChunkFillsTheBudget) {
  // 2's prompt does not fit the rest of the budget whole: it starts with what is left.
  Sim sim(64, cfg_of(8, 8, 100, false));
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 5), 1));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 9), 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 5, true}, {2, 0, 3, false}}));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{2, 3, 6, true}}));
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_EQ(sim.out[2], reference(prompt_of(2, 9), 1, false));
}

TEST(Scheduler, MaxRunningRequestsLimitsAdmission) {
  Sim sim(64, cfg_of(2, 0, 100, false));  // chunk <= 0: unlimited
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 3), 2));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 3), 3));
  ASSERT_TRUE(sim.add(3, prompt_of(3, 3), 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 3, true}, {2, 0, 3, true}}));
  EXPECT_EQ(sim.sched.waiting(), 1);
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 3, 1, true}, {2, 3, 1, true}}));  // 1 finishes
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{2, 4, 1, true}, {3, 0, 3, true}}));
  EXPECT_FALSE(sim.sched.has_work());
}

TEST(Scheduler, TokenCapReservesDecodesBeforePrefill) {
  // Cap 6 tokens per step, chunk 8: two decodes leave 4 tokens for the new prompt.
  Sim sim(64, cfg_of(8, 8, 6, false));
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 2), 5));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 2), 5));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 2, true}, {2, 0, 2, true}}));
  ASSERT_TRUE(sim.add(3, prompt_of(3, 10), 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 2, 1, true}, {2, 2, 1, true}, {3, 0, 4, false}}));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 3, 1, true}, {2, 3, 1, true}, {3, 4, 4, false}}));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 4, 1, true}, {2, 4, 1, true}, {3, 8, 2, true}}));
  sim.run_to_end();
  EXPECT_EQ(sim.out[3], reference(prompt_of(3, 10), 1, false));
}

TEST(Scheduler, PreemptsTheNewestAndResumesWithIdenticalOutputs) {
  // 6 pages of 4 positions: three requests of 5-token prompts growing to 13 positions cannot all stay.
  for (bool cache : {false, true}) {
    SCOPED_TRACE(cache ? "prefix cache on" : "prefix cache off");
    Sim sim(6, cfg_of(8, 64, 100, cache));
    sim.stop_at_eos = false;
    for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(sim.add(id, prompt_of(uint32_t(id) + 10, 5), 9));
    std::vector<uint64_t> preempted;
    std::vector<int64_t> preempted_at;
    while (sim.sched.has_work() && sim.steps < 200) {
      ScheduledBatch b;
      auto runs = sim.step(&b);
      for (auto id : b.preempted) {
        preempted.push_back(id);
        // The preempted request is not in the batch of the step that pushed it out.
        for (auto& r : runs) EXPECT_NE(std::get<0>(r), id);
      }
      // Never a step with nothing to do while work remains.
      if (sim.sched.has_work()) {
        EXPECT_FALSE(runs.empty() && b.preempted.empty()) << "step " << sim.steps;
      }
    }
    ASSERT_FALSE(sim.sched.has_work());
    ASSERT_FALSE(preempted.empty());
    EXPECT_EQ(preempted.front(), 3u);  // the newest goes first
    EXPECT_EQ(sim.sched.stats().preemptions, int64_t(preempted.size()));
    for (uint64_t id = 1; id <= 3; ++id)
      EXPECT_EQ(sim.out[id], reference(prompt_of(uint32_t(id) + 10, 5), 9, false)) << "request " << id;
  }
}

// Priority scheduling: one request runs at a time, so the order requests first run in is the
// admission order. Larger values first by default, smaller first with low_priority_values_first,
// arrival order within a priority; without priority scheduling, arrival order (priorities ignored).
TEST(Scheduler, PriorityOrdersAdmission) {
  const std::vector<int32_t> prio = {0, 0, 5, 5, -1};  // requests 1..5, added in this order
  struct Case {
    bool on, low_first;
    std::vector<uint64_t> order;
  };
  for (const Case& c : {Case{true, false, {3, 4, 1, 2, 5}}, Case{true, true, {5, 1, 2, 3, 4}},
                        Case{false, false, {1, 2, 3, 4, 5}}}) {
    SCOPED_TRACE(::testing::Message() << "priority " << c.on << " low first " << c.low_first);
    for (bool lpm : {false, true}) {
      SchedulerConfig cfg = cfg_of(1, 64, 100, true);
      cfg.priority_scheduling = c.on;
      cfg.low_priority_values_first = c.low_first;
      if (lpm) cfg.policy = SchedulePolicy::kLpm;
      Sim sim(64, cfg);
      sim.stop_at_eos = false;
      for (uint64_t id = 1; id <= 5; ++id) {
        sim.priority = prio[id - 1];
        ASSERT_TRUE(sim.add(id, prompt_of(uint32_t(id), 6), 3));
      }
      std::vector<uint64_t> order;
      while (sim.sched.has_work() && sim.steps < 200)
        for (auto& r : sim.step())
          if (std::get<1>(r) == 0) order.push_back(std::get<0>(r));
      EXPECT_EQ(order, c.order) << (lpm ? "lpm" : "fcfs");
      for (uint64_t id = 1; id <= 5; ++id) EXPECT_EQ(sim.out[id], reference(prompt_of(uint32_t(id), 6), 3, false));
    }
  }
}

// Priority scheduling under KV pressure: the least important request is preempted, not the newest,
// and the most important one, although it arrived last, is never pushed out.
TEST(Scheduler, PriorityPreemptsTheLeastImportant) {
  for (bool cache : {false, true}) {
    SCOPED_TRACE(cache ? "prefix cache on" : "prefix cache off");
    SchedulerConfig cfg = cfg_of(8, 64, 100, cache);
    cfg.priority_scheduling = true;
    Sim sim(6, cfg);
    sim.stop_at_eos = false;
    const std::vector<int32_t> prio = {1, 0, 9};
    for (uint64_t id = 1; id <= 3; ++id) {
      sim.priority = prio[id - 1];
      ASSERT_TRUE(sim.add(id, prompt_of(uint32_t(id) + 10, 5), 9));
    }
    std::vector<uint64_t> preempted;
    while (sim.sched.has_work() && sim.steps < 200) {
      ScheduledBatch b;
      sim.step(&b);
      preempted.insert(preempted.end(), b.preempted.begin(), b.preempted.end());
    }
    ASSERT_FALSE(sim.sched.has_work());
    ASSERT_FALSE(preempted.empty());
    EXPECT_EQ(preempted.front(), 2u);  // priority 0: the least important
    EXPECT_EQ(std::count(preempted.begin(), preempted.end(), 3u), 0);
    for (uint64_t id = 1; id <= 3; ++id)
      EXPECT_EQ(sim.out[id], reference(prompt_of(uint32_t(id) + 10, 5), 9, false)) << "request " << id;
  }
}

// Priority preemption (SGLang's rule): with the one running slot taken, a request that arrives more
// important by more than the threshold pushes the running one out and runs at once; by exactly the
// threshold, or with preemption off, it waits for the slot. Outputs stay the reference's either way
// (the preempted request is recomputed).
TEST(Scheduler, PriorityPreemptionForAMoreImportantArrival) {
  struct Case {
    bool preemption, low_first;
    int32_t first_prio, second_prio;
    int64_t threshold;
    bool preempts;
  };
  for (const Case& c : {Case{true, false, 0, 11, 10, true}, Case{true, false, 0, 10, 10, false},
                        Case{true, false, 0, 100, 10, true}, Case{true, false, 0, 100, 100, false},
                        Case{false, false, 0, 100, 10, false}, Case{true, true, 0, -11, 10, true},
                        Case{true, true, 0, 11, 10, false}, Case{true, false, 5, 0, 0, false}}) {
    SCOPED_TRACE(::testing::Message() << "preemption " << c.preemption << " low first " << c.low_first << " priorities "
                                      << c.first_prio << " then " << c.second_prio << " threshold " << c.threshold);
    for (bool cache : {false, true}) {
      SchedulerConfig cfg = cfg_of(1, 64, 100, cache);
      cfg.priority_scheduling = true;
      cfg.low_priority_values_first = c.low_first;
      cfg.priority_preemption = c.preemption;
      cfg.priority_preemption_threshold = c.threshold;
      Sim sim(64, cfg);
      sim.stop_at_eos = false;
      sim.priority = c.first_prio;
      ASSERT_TRUE(sim.add(1, prompt_of(31, 6), 12));
      for (int i = 0; i < 3; ++i) sim.step();
      ASSERT_EQ(sim.out[1].size(), 3u);
      sim.priority = c.second_prio;
      ASSERT_TRUE(sim.add(2, prompt_of(32, 6), 4));
      ScheduledBatch b;
      const auto runs = sim.step(&b);
      const bool second_ran = std::any_of(runs.begin(), runs.end(), [](const Chunk& x) { return std::get<0>(x) == 2; });
      EXPECT_EQ(second_ran, c.preempts);
      EXPECT_EQ(b.preempted, c.preempts ? std::vector<uint64_t>{1} : std::vector<uint64_t>{});
      EXPECT_EQ(sim.sched.stats().preemptions, c.preempts ? 1 : 0);
      sim.run_to_end();
      EXPECT_EQ(sim.out[1], reference(prompt_of(31, 6), 12, false));
      EXPECT_EQ(sim.out[2], reference(prompt_of(32, 6), 4, false));
    }
  }
}

// Priority preemption under KV pressure (slots to spare): the arrival's first chunk does not fit beside
// the running requests, so the least important of them that are far enough below it go, and only
// as many as make room; one not far enough below stays.
TEST(Scheduler, PriorityPreemptionMakesKvRoom) {
  // 8 pages of 4 positions. Requests 1..3 (priorities 0, 50, 3) hold 2 pages each and grow; the
  // arrival (priority 20) needs 4 pages for its 16-token prompt.
  SchedulerConfig cfg = cfg_of(8, 64, 100, false);
  cfg.priority_scheduling = true;
  Sim sim(8, cfg);
  sim.stop_at_eos = false;
  const std::vector<int32_t> prio = {0, 50, 3};
  for (uint64_t id = 1; id <= 3; ++id) {
    sim.priority = prio[id - 1];
    ASSERT_TRUE(sim.add(id, prompt_of(uint32_t(id) + 40, 7), 6));
  }
  sim.step();
  sim.step();  // every request at 8 positions: 6 pages held, 2 free
  sim.priority = 20;
  ASSERT_TRUE(sim.add(4, prompt_of(44, 16), 3));
  ScheduledBatch b;
  const auto runs = sim.step(&b);
  // Priority 0 goes first (least important); 2 free + its 2 pages hold the arrival's 4: priority 3 stays.
  EXPECT_EQ(b.preempted, std::vector<uint64_t>{1});
  EXPECT_TRUE(std::any_of(runs.begin(), runs.end(), [](const Chunk& x) { return std::get<0>(x) == 4; }));
  sim.run_to_end();
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_EQ(sim.out[id], reference(prompt_of(uint32_t(id) + 40, 7), 6, false));
  EXPECT_EQ(sim.out[4], reference(prompt_of(44, 16), 3, false));
}

// The stats' waiting tokens (SGLang's pending tokens, /get_load) are the tokens of the requests in
// the queue: the prompts of those never admitted, and prompt + output so far of a preempted one.
TEST(Scheduler, WaitingTokensCountTheQueue) {
  Sim sim(64, cfg_of(1, 64, 100, false));
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(51, 6), 5));
  ASSERT_TRUE(sim.add(2, prompt_of(52, 7), 5));
  ASSERT_TRUE(sim.add(3, prompt_of(53, 9), 5));
  EXPECT_EQ(sim.sched.stats().waiting_tokens, 6 + 7 + 9);
  sim.step();  // request 1 runs alone
  EXPECT_EQ(sim.sched.stats().waiting_tokens, 7 + 9);
  while (sim.sched.find(1) != nullptr) sim.step();
  sim.step();  // request 2 admitted
  EXPECT_EQ(sim.sched.stats().waiting_tokens, 9);
  sim.run_to_end();
  EXPECT_EQ(sim.sched.stats().waiting_tokens, 0);
}

TEST(Scheduler, RecomputeSamplesOnlyAtTheEndAndContinues) {
  // Watch one preempted request: after readmission its tokens are prompt + generated, run as prefill
  // chunks (sample only on the last) from position 0, and decoding resumes where it stopped.
  Sim sim(5, cfg_of(8, 4, 100, false));
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 4), 12));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 4), 6));
  int64_t generated_when_preempted = -1;
  bool saw_recompute = false;
  while (sim.sched.has_work() && sim.steps < 200) {
    ScheduledBatch b;
    sim.step(&b);
    for (auto id : b.preempted) {
      ASSERT_EQ(id, 2u);
      generated_when_preempted = int64_t(sim.out[2].size());
    }
    for (auto& s : b.seqs) {
      if (s.id != 2 || generated_when_preempted < 0 || s.pos0 >= 4 + generated_when_preempted) continue;
      saw_recompute = true;
      // Chunks of the recompute: sample only when the chunk reaches the last known token.
      EXPECT_EQ(s.sample, s.pos0 + int64_t(s.tokens.size()) == 4 + generated_when_preempted);
    }
  }
  ASSERT_GE(generated_when_preempted, 1);
  EXPECT_TRUE(saw_recompute);
  EXPECT_EQ(sim.out[1], reference(prompt_of(1, 4), 12, false));
  EXPECT_EQ(sim.out[2], reference(prompt_of(2, 4), 6, false));
  EXPECT_EQ(sim.pool.free_pages(), 5);
}

TEST(Scheduler, OutputsUnderPressureEqualOutputsWithRoom) {
  // Many requests with eos stops through a tiny pool vs. a huge one; same outputs, both finish.
  for (bool cache : {false, true}) {
    SCOPED_TRACE(cache ? "prefix cache on" : "prefix cache off");
    Sim tight(12, cfg_of(16, 16, 32, cache));
    Sim roomy(400, cfg_of(64, 0, 100000, cache));
    for (uint64_t id = 1; id <= 20; ++id) {
      // Half the prompts share a 9-token prefix so the cache has something to share.
      auto p = prompt_of(uint32_t(id % 2 ? 7 : id), 9);
      auto tail = prompt_of(uint32_t(id) + 100, int(id % 5) + 1);
      p.insert(p.end(), tail.begin(), tail.end());
      int64_t mx = int64_t(id % 7) + 3;
      ASSERT_TRUE(tight.add(id, p, mx));
      ASSERT_TRUE(roomy.add(id, p, mx));
    }
    tight.run_to_end();
    roomy.run_to_end();
    EXPECT_GT(tight.sched.stats().preemptions, 0);
    EXPECT_EQ(roomy.sched.stats().preemptions, 0);
    EXPECT_EQ(tight.out, roomy.out);
    for (uint64_t id = 1; id <= 20; ++id) {
      EXPECT_FALSE(roomy.out[id].empty());
      EXPECT_TRUE(roomy.done[id]);
    }
  }
}

TEST(Scheduler, PrefixHitAfterIdenticalPromptAndSharedPrefix) {
  Sim sim(64, cfg_of(8, 64, 100, true));
  sim.stop_at_eos = false;
  auto p = prompt_of(5, 10);  // 2 full pages + 2
  ASSERT_TRUE(sim.add(1, p, 3));
  sim.run_to_end();
  // Request 1 computed 12 positions: 3 full pages went into the tree.
  EXPECT_EQ(sim.sched.stats().cached_pages, 3);

  // Identical prompt: the two full prompt pages are reused, prefill starts at position 8.
  ASSERT_TRUE(sim.add(2, p, 3));
  auto runs = sim.step();
  EXPECT_EQ(runs, (std::vector<Chunk>{{2, 8, 2, true}}));
  EXPECT_EQ(sim.sched.find(2)->cached, 8);
  sim.run_to_end();
  EXPECT_EQ(sim.out[2], reference(p, 3, false));

  // A prompt that is exactly 2 pages long still runs its last token (logits to sample from).
  auto p8 = std::vector<int32_t>(p.begin(), p.begin() + 8);
  ASSERT_TRUE(sim.add(3, p8, 2));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{3, 4, 4, true}}));
  EXPECT_EQ(sim.sched.find(3)->cached, 4);
  sim.run_to_end();
  EXPECT_EQ(sim.out[3], reference(p8, 2, false));

  // Shares 6 tokens with p: one page.
  auto q = std::vector<int32_t>(p.begin(), p.begin() + 6);
  q.push_back(90);
  q.push_back(91);
  q.push_back(92);
  ASSERT_TRUE(sim.add(4, q, 2));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{4, 4, 5, true}}));
  EXPECT_EQ(sim.sched.find(4)->cached, 4);
  sim.run_to_end();
  EXPECT_EQ(sim.out[4], reference(q, 2, false));

  // Request 1's prompt + its outputs as a new prompt hits all three pages request 1 left behind.
  auto cont = p;
  cont.insert(cont.end(), sim.out[1].begin(), sim.out[1].end());
  cont.push_back(44);  // 14 tokens
  ASSERT_TRUE(sim.add(5, cont, 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{5, 12, 2, true}}));
  EXPECT_EQ(sim.out[5], reference(cont, 1, false));

  auto st = sim.sched.stats();
  EXPECT_EQ(st.prefix_query_tokens, 10 + 10 + 8 + 9 + 14);
  EXPECT_EQ(st.prefix_hit_tokens, 0 + 8 + 4 + 4 + 12);
}

TEST(Scheduler, PromptLogprobRequestsComputeEveryPromptPosition) {
  // A request reporting prompt logprobs needs the logits of every prompt position, so it takes
  // nothing from the prefix cache; it still leaves its pages there, and once its prompt logprobs are
  // done (a later recompute) nothing stops it from using the cache.
  Sim sim(64, cfg_of(8, 64, 100, true));
  sim.stop_at_eos = false;
  auto p = prompt_of(5, 10);
  ASSERT_TRUE(sim.add(1, p, 3));
  sim.run_to_end();
  EXPECT_EQ(sim.sched.stats().cached_pages, 3);
  const auto before = sim.sched.stats();

  sim.prompt_logprobs = true;
  ASSERT_TRUE(sim.add(2, p, 2));
  EXPECT_TRUE(sim.sched.find(2)->needs_prompt_logprobs());
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{2, 0, 10, true}}));  // the whole prompt, from position 0
  EXPECT_EQ(sim.sched.find(2)->cached, 0);
  EXPECT_EQ(sim.sched.find(2)->prompt_lp_next, 10);  // positions 1..9 reported
  EXPECT_FALSE(sim.sched.find(2)->needs_prompt_logprobs());
  EXPECT_EQ(sim.sched.stats().prefix_hit_tokens, before.prefix_hit_tokens);
  sim.run_to_end();
  EXPECT_EQ(sim.out[2], reference(p, 2, false));

  // Without prompt logprobs the same prompt hits the cache again.
  sim.prompt_logprobs = false;
  ASSERT_TRUE(sim.add(3, p, 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{3, 8, 2, true}}));
}

TEST(Scheduler, PromptLogprobRowsPerStepAreBounded) {
  // Row budget 5 per step (the logits buffer), chunk budget 8: the prompt-logprob request runs 5
  // tokens a step; a plain request admitted behind it takes the rest of the chunk budget.
  SchedulerConfig cfg = cfg_of(8, 8, 100, false);
  cfg.max_prompt_logprob_rows = 5;
  Sim sim(64, cfg);
  sim.stop_at_eos = false;
  sim.prompt_logprobs = true;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 12), 1));
  sim.prompt_logprobs = false;
  ASSERT_TRUE(sim.add(2, prompt_of(2, 3), 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 5, false}, {2, 0, 3, true}}));
  EXPECT_EQ(sim.sched.find(1)->prompt_lp_next, 6);
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 5, 5, false}}));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 10, 2, true}}));
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_EQ(sim.out[1], reference(prompt_of(1, 12), 1, false));
}

TEST(Scheduler, UnwrittenLastPositionIsNeverShared) {
  // Prompt 5 + 3 outputs = 8 tokens, but only 7 positions were computed (the last output is never fed
  // back): only the first full page may enter the tree, not the second whose slot 7 was never written.
  Sim sim(64, cfg_of(8, 64, 100, true));
  sim.stop_at_eos = false;
  auto p = prompt_of(4, 5);
  ASSERT_TRUE(sim.add(1, p, 3));
  sim.run_to_end();
  EXPECT_EQ(sim.sched.stats().cached_pages, 1);
  auto cont = p;
  cont.insert(cont.end(), sim.out[1].begin(), sim.out[1].end());
  cont.push_back(17);  // 9 tokens: up to 2 pages could match
  ASSERT_TRUE(sim.add(2, cont, 2));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{2, 4, 5, true}}));
  sim.run_to_end();
  EXPECT_EQ(sim.out[2], reference(cont, 2, false));
}

TEST(Scheduler, PreemptedRequestGoesBackToTheFrontOfTheQueue) {
  // max_running 2: 3 waits behind 1 and 2. When 2 is preempted it must be readmitted before 3.
  Sim sim(5, cfg_of(2, 4, 100, false));
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, prompt_of(1, 4), 12));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 4), 6));
  ASSERT_TRUE(sim.add(3, prompt_of(3, 4), 2));
  bool preempted = false;
  std::vector<uint64_t> admitted_after;  // requests starting at position 0 after the preemption
  while (sim.sched.has_work() && sim.steps < 200) {
    ScheduledBatch b;
    auto runs = sim.step(&b);
    if (preempted)
      for (auto& r : runs)
        if (std::get<1>(r) == 0 &&
            std::find(admitted_after.begin(), admitted_after.end(), std::get<0>(r)) == admitted_after.end())
          admitted_after.push_back(std::get<0>(r));
    if (!b.preempted.empty()) {
      EXPECT_EQ(b.preempted, std::vector<uint64_t>{2});
      if (!preempted) {
        EXPECT_EQ(sim.sched.waiting(), 2);
      }
      preempted = true;
    }
  }
  ASSERT_TRUE(preempted);
  ASSERT_GE(admitted_after.size(), 2u);
  EXPECT_EQ(admitted_after[0], 2u);
  EXPECT_EQ(admitted_after[1], 3u);
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_EQ(sim.out[id], reference(prompt_of(uint32_t(id), 4), sim.max_new[id], false));
}

TEST(Scheduler, ConcurrentIdenticalPromptsShareOnlyWhatIsCached) {
  // Two identical prompts at once: nothing is cached yet, both compute; the second insert keeps
  // the tree's pages and frees its own duplicates.
  Sim sim(64, cfg_of(8, 64, 100, true));
  sim.stop_at_eos = false;
  auto p = prompt_of(9, 12);
  ASSERT_TRUE(sim.add(1, p, 2));
  ASSERT_TRUE(sim.add(2, p, 2));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 12, true}, {2, 0, 12, true}}));
  sim.run_to_end();
  EXPECT_EQ(sim.out[1], sim.out[2]);
  EXPECT_EQ(sim.sched.stats().cached_pages, 3);  // 13 positions computed: 3 full pages, once
  EXPECT_EQ(sim.pool.free_pages(), 64 - 3);
}

TEST(Scheduler, EvictsLeastRecentlyUsedPrefixesUnderPressure) {
  // 10 pages. Requests A and B leave 2 full pages each in the tree; A is used again (so B is older);
  // then a big request needs 8 pages: B's pages are evicted, A's pages survive as long as possible.
  Sim sim(10, cfg_of(8, 64, 100, true));
  sim.stop_at_eos = false;
  auto a = prompt_of(1, 9);
  auto b = prompt_of(2, 9);
  ASSERT_TRUE(sim.add(1, a, 1));
  sim.run_to_end();
  ASSERT_TRUE(sim.add(2, b, 1));
  sim.run_to_end();
  ASSERT_TRUE(sim.add(3, a, 1));  // touches A's pages
  sim.run_to_end();
  EXPECT_EQ(sim.sched.stats().cached_pages, 4);
  EXPECT_EQ(sim.pool.free_pages(), 6);
  ASSERT_TRUE(sim.add(4, prompt_of(3, 29), 1));  // 29 positions: 8 pages, 2 must be evicted
  sim.run_to_end();
  EXPECT_EQ(sim.sched.stats().evicted_pages, 2);
  EXPECT_EQ(sim.out[4], reference(prompt_of(3, 29), 1, false));
  // A still hits, B does not.
  ASSERT_TRUE(sim.add(5, a, 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{5, 8, 1, true}}));
  ASSERT_TRUE(sim.add(6, b, 1));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{6, 0, 9, true}}));
  EXPECT_EQ(sim.out[6], reference(b, 1, false));
}

TEST(Scheduler, AbortFreesPages) {
  for (bool cache : {false, true}) {
    SCOPED_TRACE(cache ? "prefix cache on" : "prefix cache off");
    Sim sim(32, cfg_of(2, 8, 100, cache));
    sim.stop_at_eos = false;
    ASSERT_TRUE(sim.add(1, prompt_of(1, 6), 20));
    ASSERT_TRUE(sim.add(2, prompt_of(2, 20), 20));  // mid-prefill after the first step
    ASSERT_TRUE(sim.add(3, prompt_of(3, 6), 20));   // waiting (max_running 2)
    sim.step();
    sim.step();
    EXPECT_EQ(sim.sched.running(), 2);
    EXPECT_EQ(sim.sched.waiting(), 1);
    EXPECT_LT(sim.pool.free_pages(), 32);
    sim.sched.abort(3);
    sim.sched.abort(2);
    sim.sched.abort(1);
    sim.sched.abort(99);  // unknown: ignored
    EXPECT_EQ(sim.sched.running(), 0);
    EXPECT_EQ(sim.sched.waiting(), 0);
    EXPECT_EQ(sim.sched.tokens_in_flight(), 0);
    auto st = sim.sched.stats();
    // Whatever is not free is held by the prefix tree alone, and only with the cache on.
    EXPECT_EQ(st.pages_used, st.cached_pages);
    if (cache) {
      EXPECT_GT(st.cached_pages, 0);
    } else {
      EXPECT_EQ(sim.pool.free_pages(), 32);
    }
    // The next schedule has nothing to do.
    EXPECT_TRUE(sim.sched.schedule().seqs.empty());
    sim.sched.commit({});
  }
}

TEST(Scheduler, AbortBetweenScheduleAndCommit) {
  Sim sim(32, cfg_of(4, 64, 100, false));
  ASSERT_TRUE(sim.add(1, prompt_of(1, 6), 5));
  ASSERT_TRUE(sim.add(2, prompt_of(2, 6), 5));
  ScheduledBatch b = sim.sched.schedule();
  ASSERT_EQ(b.seqs.size(), 2u);
  sim.sched.abort(1);
  // The step loop reports both; the aborted one is ignored.
  sim.sched.commit({{1, 7}, {2, 8}});
  EXPECT_EQ(sim.sched.running(), 1);
  b = sim.sched.schedule();
  ASSERT_EQ(b.seqs.size(), 1u);
  EXPECT_EQ(b.seqs[0].id, 2u);
  EXPECT_EQ(b.seqs[0].tokens, std::vector<int32_t>{8});
  EXPECT_EQ(b.seqs[0].pos0, 6);
  sim.sched.abort(2);
  EXPECT_EQ(sim.pool.free_pages(), 32);
}

TEST(Scheduler, TwoInstancesFormIdenticalBatches) {
  // Same inputs (arrivals and aborts at the same steps) into two schedulers over two pools.
  auto cfg = cfg_of(6, 12, 20, true);
  Sim s1(14, cfg), s2(14, cfg);
  uint32_t x = 7;
  auto rnd = [&x](uint32_t n) {
    x = x * 1664525u + 1013904223u;
    return (x >> 8) % n;
  };
  uint64_t next_id = 1;
  int64_t preemptions = 0;
  for (int step = 0; step < 400; ++step) {
    if (step < 250 && rnd(3) == 0) {
      int n = int(rnd(3));
      for (int k = 0; k < n; ++k) {
        auto p = prompt_of(rnd(6), 5);  // shared prefixes
        auto tail = prompt_of(uint32_t(next_id), int(rnd(14)) + 1);
        p.insert(p.end(), tail.begin(), tail.end());
        int64_t mx = int64_t(rnd(12)) + 1;
        bool ok1 = s1.add(next_id, p, mx), ok2 = s2.add(next_id, p, mx);
        ASSERT_EQ(ok1, ok2);
        ++next_id;
      }
    }
    if (rnd(17) == 0 && next_id > 1) {
      uint64_t victim = 1 + rnd(uint32_t(next_id - 1));
      s1.sched.abort(victim);
      s2.sched.abort(victim);
    }
    ScheduledBatch b1, b2;
    s1.step(&b1);
    s2.step(&b2);
    ASSERT_EQ(b1.seqs.size(), b2.seqs.size()) << "step " << step;
    for (size_t i = 0; i < b1.seqs.size(); ++i) {
      const auto &a = b1.seqs[i], &b = b2.seqs[i];
      ASSERT_EQ(a.id, b.id);
      ASSERT_EQ(a.tokens, b.tokens);
      ASSERT_EQ(a.pos0, b.pos0);
      ASSERT_EQ(a.sample, b.sample);
      int64_t n_pages = (a.pos0 + int64_t(a.tokens.size()) + kPage - 1) / kPage;
      ASSERT_EQ(std::vector<int32_t>(a.pages, a.pages + n_pages), std::vector<int32_t>(b.pages, b.pages + n_pages));
    }
    ASSERT_EQ(b1.preempted, b2.preempted);
    preemptions += int64_t(b1.preempted.size());
  }
  EXPECT_FALSE(s1.sched.has_work());
  EXPECT_GT(preemptions, 0);  // the workload did exercise preemption
  EXPECT_GT(s1.sched.stats().prefix_hit_tokens, 0);
  EXPECT_EQ(s1.out, s2.out);
}

TEST(Scheduler, RandomWorkloadsMatchTheReferenceAndReturnEveryPage) {
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    uint32_t x = seed;
    auto rnd = [&x](uint32_t n) {
      x = x * 1664525u + 1013904223u;
      return (x >> 8) % n;
    };
    bool cache = seed % 2 == 0;
    int64_t n_pages = 6 + rnd(20);
    Sim sim(n_pages, cfg_of(1 + rnd(8), int64_t(rnd(20)) - 2, 1 + rnd(24), cache));
    std::map<uint64_t, std::vector<int32_t>> prompts;
    std::map<uint64_t, bool> aborted;
    uint64_t next_id = 1;
    for (int step = 0; step < 3000 && (step < 100 || sim.sched.has_work()); ++step) {
      if (step < 100 && rnd(4) == 0) {
        auto p = prompt_of(rnd(4), 1 + int(rnd(6)));
        auto tail = prompt_of(uint32_t(next_id * 31 + seed), int(rnd(10)));
        p.insert(p.end(), tail.begin(), tail.end());
        int64_t mx = 1 + rnd(15);
        bool fits = (int64_t(p.size()) + mx - 1 + kPage - 1) / kPage <= n_pages;
        ASSERT_EQ(sim.add(next_id, p, mx), fits);
        if (fits) prompts[next_id] = p;
        ++next_id;
      }
      if (rnd(40) == 0 && next_id > 1) {
        uint64_t v = 1 + rnd(uint32_t(next_id - 1));
        if (sim.sched.contains(v)) aborted[v] = true;
        sim.sched.abort(v);
      }
      sim.step();
    }
    ASSERT_FALSE(sim.sched.has_work());
    for (auto& [id, p] : prompts) {
      auto ref = reference(p, sim.max_new[id], true);
      if (aborted[id]) {
        // An aborted request's partial output is a prefix of what it would have produced.
        ASSERT_LE(sim.out[id].size(), ref.size());
        EXPECT_EQ(sim.out[id], std::vector<int32_t>(ref.begin(), ref.begin() + sim.out[id].size())) << id;
      } else {
        EXPECT_EQ(sim.out[id], ref) << "request " << id;
      }
    }
    auto st = sim.sched.stats();
    EXPECT_EQ(st.pages_used, st.cached_pages);
    if (!cache) {
      EXPECT_EQ(sim.pool.free_pages(), n_pages);
    }
  }
}

SchedulerConfig spec_cfg(int64_t max_running, int64_t chunk, int64_t max_tokens, bool cache, int64_t max_draft,
                         int64_t per_step) {
  SchedulerConfig c = cfg_of(max_running, chunk, max_tokens, cache);
  c.spec.algorithm = SpecAlgorithm::kNgram;
  c.spec.max_draft = max_draft;
  c.spec.max_step_rows = per_step;
  return c;
}

TEST(SchedulerSpeculative, DraftsAreVerifiedAndOutputsMatchTheReference) {
  // Random workloads (as above) with n-gram drafts on a model whose output cycles: every output must
  // be the sequential reference's, though drafts were accepted, rejected, and cut by EOS and
  // max_new; rejected drafts' KV (written, then left behind) must never be read as a token's or
  // shared through the prefix cache.
  int64_t drafted = 0, accepted = 0, dropped = 0;
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    uint32_t x = seed;
    auto rnd = [&x](uint32_t n) {
      x = x * 1664525u + 1013904223u;
      return (x >> 8) % n;
    };
    const bool cache = seed % 2 == 0;
    const int64_t n_pages = 8 + rnd(24);
    Sim sim(n_pages, spec_cfg(1 + rnd(6), int64_t(rnd(20)) - 2, 4 + rnd(24), cache, 1 + rnd(6), rnd(3) == 0 ? 0 : 1 + rnd(8)));
    sim.model = next_token_cyclic;
    std::map<uint64_t, std::vector<int32_t>> prompts;
    uint64_t next_id = 1;
    for (int step = 0; step < 3000 && (step < 80 || sim.sched.has_work()); ++step) {
      if (step < 80 && rnd(4) == 0) {
        auto p = prompt_of(rnd(4), 1 + int(rnd(6)));
        auto tail = prompt_of(uint32_t(next_id * 31 + seed), int(rnd(10)));
        p.insert(p.end(), tail.begin(), tail.end());
        for (auto& t : p) t %= 11;  // the cyclic model's alphabet, so prompts and outputs share n-grams
        const int64_t mx = 1 + rnd(24);
        const bool fits = (int64_t(p.size()) + mx - 1 + kPage - 1) / kPage <= n_pages;
        ASSERT_EQ(sim.add(next_id, p, mx), fits);
        if (fits) prompts[next_id] = p;
        ++next_id;
      }
      ScheduledBatch b;
      sim.step(&b);
      // Drafts fill the step's decode rows up to max_step_rows and no further.
      int64_t step_drafts = 0, decodes = 0;
      for (const auto& q : b.seqs) {
        step_drafts += q.n_draft;
        decodes += q.decode ? 1 : 0;
        if (q.n_draft > 0) {
          EXPECT_TRUE(q.decode);  // only decodes draft
        }
      }
      const int64_t rows = sim.sched.config().spec.max_step_rows;
      if (rows > 0) {
        EXPECT_LE(step_drafts, std::max<int64_t>(0, rows - decodes));
      }
      EXPECT_LE(b.n_tokens, sim.sched.config().max_prefill_tokens);
    }
    ASSERT_FALSE(sim.sched.has_work());
    for (auto& [id, p] : prompts) EXPECT_EQ(sim.out[id], reference(p, sim.max_new[id], true, next_token_cyclic)) << id;
    auto st = sim.sched.stats();
    EXPECT_EQ(st.pages_used, st.cached_pages);
    if (!cache) {
      EXPECT_EQ(sim.pool.free_pages(), n_pages);
    }
    drafted += sim.drafted, accepted += sim.accepted, dropped += sim.dropped;
  }
  // The workloads did exercise every path: drafts taken, drafts refused, rows past a finish dropped.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, drafted);
  EXPECT_GT(dropped, 0);
}

// Predicted outputs draft without any --speculative-algorithm: a right prediction is verified in
// chains (fewer steps, every draft accepted), an edited one is picked up again after the edit, a
// wrong one costs nothing but rejected rows; the outputs are the reference's every time.
TEST(SchedulerSpeculative, PredictedOutputsDraftWithoutAnAlgorithm) {
  const auto prompt = prompt_of(3, 9);
  const int64_t mx = 24;
  const auto want = reference(prompt, mx, false, next_token_cyclic);
  struct Run {
    int64_t steps, drafted, accepted;
  };
  auto run = [&](const std::vector<int32_t>& prediction) {
    Sim sim(32, cfg_of(4, 64, 100, false));
    sim.model = next_token_cyclic;
    sim.stop_at_eos = false;
    sim.prediction = prediction;
    EXPECT_TRUE(sim.add(1, prompt, mx));
    sim.run_to_end();
    EXPECT_EQ(sim.out[1], want);
    return Run{sim.steps, sim.drafted, sim.accepted};
  };
  const Run plain = run({});
  EXPECT_EQ(plain.drafted, 0);
  const Run right = run(want);
  EXPECT_GT(right.accepted, 0);
  EXPECT_EQ(right.accepted, right.drafted);
  // Four drafts a step: the first step prefills and samples one token, then 23 in chains of up to 5.
  EXPECT_EQ(right.steps, 1 + (mx - 1 + 4) / 5);
  EXPECT_LT(right.steps, plain.steps);
  auto edited = want;
  edited[8] = 97;  // outside the cyclic model's 0..10: never right
  const Run after_edit = run(edited);
  EXPECT_LT(after_edit.accepted, after_edit.drafted);
  EXPECT_GT(after_edit.accepted, 8);  // the drafts before the edit and some after it
  const Run wrong = run(std::vector<int32_t>(30, 50));
  EXPECT_EQ(wrong.accepted, 0);
}

// An answer in which "1 2 3 4 5 6 7" recurs, each time between other tokens (as boilerplate recurs in
// code and text): once the answer has departed from the prediction, every window of the last 4
// tokens inside the recurring run occurs once per block, and only the occurrence where the answer is
// continues with the right token after the run.
int32_t next_token_recurring(const std::vector<int32_t>& history) {
  const int64_t i = int64_t(history.size()) - 3;  // the prompt is 3 tokens
  const int64_t j = i / 10, k = i % 10;
  if (k == 0) return int32_t(20 + 2 * j);
  if (k == 1) return int32_t(21 + 2 * j);
  if (k == 9) return int32_t(8 + j);
  return int32_t(k - 1);  // 1 .. 7
}

TEST(SchedulerSpeculative, PredictedOutputsResumeWhereTheAnswerIsAmongRecurringText) {
  const std::vector<int32_t> prompt{60, 61, 62};
  const int64_t mx = 50;
  const auto want = reference(prompt, mx, false, next_token_recurring);
  auto edited = want;
  edited[1] = 97;  // the first block's 21: never written
  Sim sim(32, cfg_of(4, 64, 100, false));
  sim.model = next_token_recurring;
  sim.stop_at_eos = false;
  sim.prediction = edited;
  ASSERT_TRUE(sim.add(1, prompt, mx));
  sim.run_to_end();
  EXPECT_EQ(sim.out[1], want);
  // Worked through: the first draft "97 1 2 3" loses all four rows at the edit; nothing matches a
  // window ending in 21; from then on the drafts are taken where the answer is, and all are right.
  // The first occurrence instead continues each later block's "4 5 6 7" with the first block's 8
  // (a rejected row at every block).
  EXPECT_EQ(sim.drafted - sim.accepted, 4) << "drafted " << sim.drafted << " accepted " << sim.accepted;
}

// Under a draft model (STANDALONE; NEXTN alike), a request with a predicted output drafts from the
// prediction while it has tokens to offer (drafts_given: the draft model leaves those rows), and the
// rows are the draft model's placeholders once it has none (the answer left it, nothing matches).
TEST(SchedulerSpeculative, PredictedOutputsDraftBeforeTheDraftModel) {
  const auto prompt = prompt_of(3, 9);
  const int64_t mx = 16;
  const auto want = reference(prompt, mx, false, next_token_cyclic);
  auto cfg = cfg_of(4, 64, 100, false);
  cfg.spec.algorithm = SpecAlgorithm::kStandalone;
  cfg.spec.draft_model_path = "draft";  // never loaded: the scheduler only reserves its rows
  cfg.spec.max_draft = 4;
  cfg.spec.max_step_rows = 0;
  for (const bool right : {true, false}) {
    SCOPED_TRACE(right ? "right prediction" : "wrong prediction");
    Sim sim(32, cfg);
    sim.model = next_token_cyclic;
    sim.stop_at_eos = false;
    sim.prediction = right ? want : std::vector<int32_t>(30, 50);
    ASSERT_TRUE(sim.add(1, prompt, mx));
    sim.step();  // the prefill samples the first token
    ScheduledBatch b;
    sim.step(&b);
    ASSERT_EQ(b.seqs.size(), 1u);
    const ScheduledSeq& s = b.seqs[0];
    ASSERT_EQ(s.n_draft, 4);
    EXPECT_EQ(s.drafts_given, right);
    const std::vector<int32_t> drafts(s.tokens.begin() + 1, s.tokens.end());
    if (right) {
      EXPECT_EQ(drafts, std::vector<int32_t>(want.begin() + 1, want.begin() + 5));
    } else {
      EXPECT_EQ(drafts, std::vector<int32_t>(4, 0));  // rows the draft model fills before the pass
    }
    sim.run_to_end();
    EXPECT_EQ(sim.out[1], want);
  }
}

TEST(SchedulerSpeculative, ChainStepByStep) {
  // One request, prompt 1 2 3 1 2 over a model that continues 3 1 2 3 ...: after the first token
  // the suffix "1 2 3" recurs, so it drafts "1 2 3" (the tokens after its earlier occurrence, up to
  // max_draft 3) and all of them are right: 4 tokens in the step.
  static auto counting = [](const std::vector<int32_t>& h) -> int32_t { return h.back() % 3 + 1; };
  Sim sim(16, spec_cfg(4, 0, 64, false, 3, 0));
  sim.model = +counting;
  sim.stop_at_eos = false;
  ASSERT_TRUE(sim.add(1, {1, 2, 3, 1, 2}, 9));
  EXPECT_EQ(sim.step(), (std::vector<Chunk>{{1, 0, 5, true}}));  // prefill: token 3
  ScheduledBatch b;
  EXPECT_EQ(sim.step(&b), (std::vector<Chunk>{{1, 5, 4, true}}));  // 3 + drafts 1 2 3
  EXPECT_EQ(b.seqs[0].tokens, (std::vector<int32_t>{3, 1, 2, 3}));
  EXPECT_EQ(b.seqs[0].n_draft, 3);
  EXPECT_EQ(sim.out[1], (std::vector<int32_t>{3, 1, 2, 3, 1}));
  EXPECT_EQ(sim.sched.find(1)->tokens.size(), 10u);
  // 4 left of 9: the drafts stop one short of max_new (the verified row makes the last token).
  sim.step(&b);
  EXPECT_EQ(b.seqs[0].n_draft, 3);
  EXPECT_EQ(sim.out[1].size(), 9u);
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_EQ(sim.out[1], reference({1, 2, 3, 1, 2}, 9, false, +counting));
  EXPECT_EQ(sim.pool.free_pages(), 16);
}

TEST(SchedulerSpeculative, WrongDraftsCostOnlyTheirRows) {
  // The model follows no n-gram (a hash of the whole history), and the prompt holds every token it
  // can make, so every step drafts and nearly every draft is refused; the output is still the
  // sequential one and every page comes back.
  Sim sim(32, spec_cfg(4, 0, 64, false, 4, 0));
  sim.stop_at_eos = false;
  std::vector<int32_t> p;
  for (int32_t t = 0; t < 50; ++t) p.push_back(t);
  ASSERT_TRUE(sim.add(1, p, 12));
  sim.run_to_end(100);
  EXPECT_EQ(sim.out[1], reference(p, 12, false));
  EXPECT_GT(sim.drafted, sim.accepted);
  EXPECT_EQ(sim.pool.free_pages(), 32);
}

TEST(Scheduler, RequestFillingThePoolAloneCompletes) {
  // prompt 10 + 7 new = 16 positions written = exactly 4 pages.
  Sim sim(4, cfg_of(4, 3, 100, true));
  sim.stop_at_eos = false;
  EXPECT_FALSE(sim.sched.add(request(1, prompt_of(1, 10), 8)));  // 17 positions: never fits
  ASSERT_TRUE(sim.add(2, prompt_of(2, 10), 7));
  ASSERT_TRUE(sim.add(3, prompt_of(3, 10), 7));  // competes for the same pool
  sim.run_to_end(500);
  EXPECT_EQ(sim.out[2], reference(prompt_of(2, 10), 7, false));
  EXPECT_EQ(sim.out[3], reference(prompt_of(3, 10), 7, false));
}

TEST(Scheduler, RejectsBadInput) {
  KVPool pool(pool_cfg(8));
  EXPECT_THROW(Scheduler(cfg_of(0, 8, 8, true), pool), Error);
  EXPECT_THROW(Scheduler(cfg_of(1, 8, 0, true), pool), Error);
  Scheduler s(cfg_of(4, 8, 8, true), pool);
  EXPECT_THROW(s.add(request(1, {}, 4)), Error);
  EXPECT_THROW(s.add(request(1, {1, 2}, 0)), Error);
  ASSERT_TRUE(s.add(request(1, {1, 2}, 2)));
  EXPECT_THROW(s.add(request(1, {3}, 2)), Error);
  RequestState two = request(2, {1, 2, 3}, 2);
  two.req.params.stop_token_ids = {6};
  ASSERT_TRUE(s.add(std::move(two)));
  auto b = s.schedule();
  ASSERT_EQ(b.seqs.size(), 2u);
  // A result for a request that was not sampled, results out of order, or a missing result are
  // step-loop bugs; they leave the state as it was, so a correct commit still works.
  EXPECT_THROW(s.commit({{1, 5}, {3, 5}}), Error);
  EXPECT_THROW(s.commit({{2, 5}, {1, 5}}), Error);
  EXPECT_THROW(s.commit({{1, 5}}), Error);
  const auto ok = s.commit({{1, 5}, {2, 6}});
  EXPECT_EQ(ok[0].finish, Finish::kNone);
  EXPECT_EQ(ok[1].finish, Finish::kStopToken);  // 6 is one of request 2's stop ids
  EXPECT_EQ(s.find(2), nullptr);
  ASSERT_NE(s.find(1), nullptr);
  EXPECT_EQ(s.find(1)->tokens, (std::vector<int32_t>{1, 2, 5}));
  b = s.schedule();
  ASSERT_EQ(b.seqs.size(), 1u);
  EXPECT_EQ(b.seqs[0].tokens, std::vector<int32_t>{5});
  EXPECT_EQ(b.seqs[0].pos0, 2);
  EXPECT_THROW(s.commit({}), Error);
  const auto last = s.commit({{1, 9}});
  EXPECT_EQ(last[0].finish, Finish::kLength);  // its second token of 2
  EXPECT_FALSE(s.has_work());
}

// The finish rules on their own (engine/finish_rules.h), each rule and their order.
TEST(FinishRules, EosStopIdsAndLength) {
  const FinishRules rules{{2, 7}};
  auto after = [&](std::vector<int32_t> generated, int64_t max_new, bool ignore_eos, std::vector<int32_t> stop_ids) {
    RequestState st = request(1, {100, 101}, max_new, !ignore_eos);
    st.req.params.stop_token_ids = std::move(stop_ids);
    st.tokens.insert(st.tokens.end(), generated.begin(), generated.end());
    return rules.after_token(st);
  };
  EXPECT_EQ(after({5}, 4, false, {}), Finish::kNone);
  EXPECT_EQ(after({7}, 4, false, {}), Finish::kStopToken);             // any of the EOS ids
  EXPECT_EQ(after({2}, 4, true, {}), Finish::kNone);                   // ignore_eos
  EXPECT_EQ(after({5, 9}, 4, true, {9}), Finish::kStopToken);          // stop ids hold even with ignore_eos
  EXPECT_EQ(after({5, 6, 8, 3}, 4, false, {}), Finish::kLength);       // the 4th of 4
  EXPECT_EQ(after({5, 6, 8, 2}, 4, false, {}), Finish::kStopToken);    // EOS as the last allowed token is a stop
  EXPECT_EQ(after({5, 6, 8}, 4, false, {8}), Finish::kStopToken);
  EXPECT_EQ(after({100}, 4, false, {}), Finish::kNone);                // prompt ids are not stop ids
}

// --schedule-policy lpm: with one admission slot, the waiting request whose prompt the prefix cache
// holds goes before one that arrived earlier with nothing cached (fcfs keeps arrival order).
std::vector<uint64_t> admission_order(SchedulePolicy policy) {
  SchedulerConfig cfg = cfg_of(1, 64, 100, true);
  cfg.policy = policy;
  Sim sim(64, cfg);
  sim.stop_at_eos = false;
  auto shared = prompt_of(5, 12);  // 3 full pages
  EXPECT_TRUE(sim.add(1, shared, 1));
  sim.run_to_end();
  EXPECT_GE(sim.sched.stats().cached_pages, 2);
  auto cold = prompt_of(7, 12);
  auto warm = shared;
  warm.push_back(99);
  EXPECT_TRUE(sim.add(2, cold, 2));  // arrives first, shares nothing
  EXPECT_TRUE(sim.add(3, warm, 2));  // shares 3 pages with request 1
  EXPECT_TRUE(sim.add(4, prompt_of(8, 5), 2));
  std::vector<uint64_t> order;
  while (sim.sched.has_work()) {
    for (const auto& [id, pos0, n, sample] : sim.step())
      if (std::find(order.begin(), order.end(), id) == order.end()) order.push_back(id);
  }
  EXPECT_EQ(sim.out[3], reference(warm, 2, false));  // the cached pages gave the same output
  return order;
}

TEST(Scheduler, LongestPrefixMatchAdmitsCachedPromptsFirst) {
  EXPECT_EQ(admission_order(SchedulePolicy::kLpm), (std::vector<uint64_t>{3, 2, 4}));
  EXPECT_EQ(admission_order(SchedulePolicy::kFcfs), (std::vector<uint64_t>{2, 3, 4}));
}

// One admission slot, requests (id, max_new_tokens) all waiting before the first step: the order
// they are first scheduled in, each output checked against the reference run of its prompt alone.
std::vector<uint64_t> admission_order(SchedulePolicy policy, const std::vector<std::pair<uint64_t, int64_t>>& reqs) {
  SchedulerConfig cfg = cfg_of(1, 64, 100, false);
  cfg.policy = policy;
  Sim sim(64, cfg);
  sim.stop_at_eos = false;
  for (const auto& [id, mx] : reqs) EXPECT_TRUE(sim.add(id, prompt_of(uint32_t(id), 6), mx));
  std::vector<uint64_t> order;
  while (sim.sched.has_work()) {
    for (const auto& [id, pos0, n, sample] : sim.step())
      if (std::find(order.begin(), order.end(), id) == order.end()) order.push_back(id);
  }
  for (const auto& r : reqs) EXPECT_EQ(sim.out[r.first], reference(prompt_of(uint32_t(r.first), 6), r.second, false));
  return order;
}

// lof (SGLang's "longest output first"): by max_new_tokens, largest first, ties in arrival order.
TEST(Scheduler, LongestOutputFirst) {
  const std::vector<std::pair<uint64_t, int64_t>> reqs = {{1, 3}, {2, 2}, {3, 5}, {4, 3}};
  EXPECT_EQ(admission_order(SchedulePolicy::kLof, reqs), (std::vector<uint64_t>{3, 1, 4, 2}));
  EXPECT_EQ(admission_order(SchedulePolicy::kFcfs, reqs), (std::vector<uint64_t>{1, 2, 3, 4}));
}

// random: every request still runs once to its own output; the order is a permutation that two
// schedulers given the same requests agree on (the ranks of a group each run one), and not simply
// arrival order (a shuffle of 8 keeps it with probability 1/40320 per step).
TEST(Scheduler, RandomOrderIsSharedByEveryRank) {
  std::vector<std::pair<uint64_t, int64_t>> reqs;
  for (uint64_t id = 1; id <= 8; ++id) reqs.emplace_back(id, 2);
  const auto a = admission_order(SchedulePolicy::kRandom, reqs);
  const auto b = admission_order(SchedulePolicy::kRandom, reqs);
  EXPECT_EQ(a, b);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_NE(a, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(Scheduler, SchedulePolicyNames) {
  EXPECT_EQ(parse_schedule_policy("fcfs"), SchedulePolicy::kFcfs);
  EXPECT_EQ(parse_schedule_policy("lpm"), SchedulePolicy::kLpm);
  EXPECT_EQ(parse_schedule_policy("lof"), SchedulePolicy::kLof);
  EXPECT_EQ(parse_schedule_policy("random"), SchedulePolicy::kRandom);
  for (SchedulePolicy p : {SchedulePolicy::kFcfs, SchedulePolicy::kLpm, SchedulePolicy::kLof, SchedulePolicy::kRandom})
    EXPECT_EQ(parse_schedule_policy(schedule_policy_name(p)), p);
  for (const char* bad : {"dfs-weight", "priority", "LPM", ""}) {
    try {
      parse_schedule_policy(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--schedule-policy"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace dpserve
