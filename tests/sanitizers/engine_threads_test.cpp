// The frontend/engine handoff under concurrency, for ThreadSanitizer: a real single-rank engine on
// stories260K with its step loop on the MPI thread, and several client threads enqueueing, reading,
// cancelling and shutting down at the same time, the way HTTP worker threads do in `dpserve serve`.
// Greedy outputs are checked against llama2.c's run.c ids in shared/, so a stream that received
// another request's tokens fails here even without a sanitizer.
#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/shared_dir.h"
#include "engine/runtime.h"

namespace dpserve {
namespace {

std::vector<int32_t> reference_ids() {
  const std::string p = shared_dir() + "/models/stories260K/expected/stories260K_greedy_n200.ids.txt";
  std::ifstream in(p);
  std::vector<int32_t> ids;
  for (int v; in >> v;) ids.push_back(v);
  if (ids.size() != 201) ADD_FAILURE() << "reference ids missing or short: " << p << " (set DPSERVE_SHARED_DIR)";
  return ids;
}

RuntimeOptions stories_options() {
  RuntimeOptions o;
  o.model_path = shared_dir() + "/models/stories260K/stories260K.bin";
  // One OpenMP thread: libgomp is not built with TSan, so its barriers are invisible to it and a
  // parallel region would be reported as racing with itself (docs/sanitizers.md).
  o.threads = 1;
  o.max_total_tokens = 8192;
  o.sched.max_running_requests = 16;
  o.watchdog_timeout = 120;
  return o;
}

Request greedy(std::vector<int32_t> prompt, int64_t max_new) {
  Request r;
  r.input_ids = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_new_tokens = max_new;
  r.params.ignore_eos = true;
  return r;
}

struct Drained {
  std::vector<int32_t> tokens;
  int finished_count = 0;
  std::string finish_reason;
  std::string error;
  bool timed_out = false;
};

// Reads a stream to its end; bounded so a lost delivery fails the test instead of hanging it.
Drained drain(RequestStream& s, int64_t cancel_after = -1, Engine* engine = nullptr) {
  Drained d;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (d.finished_count == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      d.timed_out = true;
      break;
    }
    Response r;
    if (!s.next(r, std::chrono::milliseconds(50))) continue;
    EXPECT_EQ(r.id, s.id());
    for (auto& t : r.tokens) d.tokens.push_back(t.token);
    if (engine && cancel_after >= 0 && int64_t(d.tokens.size()) >= cancel_after) {
      engine->cancel(s.id());
      cancel_after = -1;
    }
    if (r.finished) {
      ++d.finished_count;
      d.finish_reason = r.finish_reason;
      d.error = r.error;
    }
  }
  Response extra;
  if (d.finished_count == 1 && s.next(extra, std::chrono::milliseconds(0))) ++d.finished_count;
  return d;
}

// Runs the engine's step loop on this (the MPI) thread while `clients` runs on another thread.
template <class F>
void with_engine(F clients) {
  auto rt = Runtime::start(stories_options());
  DpEngine* engine = rt->engine();
  ASSERT_NE(engine, nullptr);
  std::thread t([&] { clients(*engine); });
  rt->run();
  t.join();
}

TEST(EngineThreads, ConcurrentClientsGetTheirOwnTokens) {
  const std::vector<int32_t> ref = reference_ids();
  ASSERT_EQ(ref.size(), 201u);
  std::atomic<bool> stats_stop{false};
  with_engine([&](DpEngine& engine) {
    // A metrics reader polling like /metrics and /health do.
    std::thread stats([&] {
      while (!stats_stop) {
        EngineStats st = engine.stats();
        EXPECT_EQ(st.groups.size(), 1u);
        (void)engine.healthy();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
    constexpr int kThreads = 6;
    constexpr int kPerThread = 4;
    constexpr int64_t kCancelledLen = 500;  // + 3 prompt tokens: within stories260K's 512 positions
    std::atomic<int> aborted{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < kThreads; ++c) {
      clients.emplace_back([&, c] {
        for (int i = 0; i < kPerThread; ++i) {
          const int64_t n = 4 + (c * kPerThread + i) % 9;
          switch ((c + i) % 3) {
            case 0: {  // greedy from BOS: must be llama2.c's continuation, token for token
              auto s = engine.enqueue(greedy({1}, n));
              Drained d = drain(*s);
              ASSERT_FALSE(d.timed_out);
              EXPECT_EQ(d.finished_count, 1);
              EXPECT_EQ(d.finish_reason, "length");
              EXPECT_EQ(d.tokens, std::vector<int32_t>(ref.begin() + 1, ref.begin() + 1 + n));
              break;
            }
            case 1: {  // cancelled after its first token by the reading thread
              // As long as stories260K's context allows, so the cancel nearly always lands first;
              // but a reader descheduled for the whole generation (a loaded CI runner) may find it
              // finished, which is a correct outcome too: then it must be whole.
              auto s = engine.enqueue(greedy({1, 403, 407}, kCancelledLen));
              Drained d = drain(*s, 1, &engine);
              ASSERT_FALSE(d.timed_out);
              EXPECT_EQ(d.finished_count, 1);
              if (d.finish_reason == "abort") {
                ++aborted;
                EXPECT_LT(d.tokens.size(), size_t(kCancelledLen));
              } else {
                EXPECT_EQ(d.finish_reason, "length");
                EXPECT_EQ(d.tokens.size(), size_t(kCancelledLen));
              }
              break;
            }
            case 2: {  // rejected before reaching the step loop
              auto s = engine.enqueue(greedy({1, 100000}, n));
              Drained d = drain(*s);
              ASSERT_FALSE(d.timed_out);
              EXPECT_EQ(d.finish_reason, "error");
              EXPECT_NE(d.error.find("100000"), std::string::npos) << d.error;
              EXPECT_TRUE(d.tokens.empty());
              break;
            }
          }
          engine.cancel(uint64_t(1) << 60);  // unknown ids are ignored
        }
      });
    }
    for (auto& t : clients) t.join();
    stats_stop = true;
    stats.join();
    EXPECT_GT(aborted, 0) << "no cancellation took effect";
    EngineStats st = engine.stats();
    EXPECT_GT(st.steps_total, 0);
    EXPECT_GE(st.requests_finished_total, kThreads * kPerThread * 2 / 3);
    engine.shutdown(std::chrono::milliseconds(1000));
    EXPECT_FALSE(engine.healthy());
  });
}

// SIGTERM's path in `dpserve serve`: shutdown from another thread while clients are mid-stream
// and still enqueueing. Every stream must end exactly once; nothing hangs.
TEST(EngineThreads, ShutdownWhileClientsStreamEndsEveryStream) {
  with_engine([&](DpEngine& engine) {
    std::atomic<int> started{0};
    std::vector<std::thread> clients;
    std::vector<Drained> results(4 * 6);
    for (int c = 0; c < 4; ++c) {
      clients.emplace_back([&, c] {
        for (int i = 0; i < 6; ++i) {
          auto s = engine.enqueue(greedy({1, int32_t(300 + c), int32_t(310 + i)}, 400));
          ++started;
          results[size_t(c * 6 + i)] = drain(*s);
        }
      });
    }
    while (started < 4) std::this_thread::yield();
    // A short drain: the 400-token requests cannot finish in time, so they are aborted.
    std::thread stopper([&] { engine.shutdown(std::chrono::milliseconds(100)); });
    stopper.join();
    for (auto& t : clients) t.join();
    for (size_t k = 0; k < results.size(); ++k) {
      const Drained& d = results[k];
      ASSERT_FALSE(d.timed_out) << "stream " << k;
      EXPECT_EQ(d.finished_count, 1) << "stream " << k;
      EXPECT_TRUE(d.finish_reason == "abort" || d.finish_reason == "error" || d.finish_reason == "length")
          << "stream " << k << ": " << d.finish_reason;
      if (d.finish_reason == "error") {
        EXPECT_NE(d.error.find("shutting down"), std::string::npos) << d.error;
      }
    }
    // Nothing is taken after shutdown, and the refusal says the engine, not the request, is why:
    // the server answers it 503 (retry later), not 400.
    auto late = engine.enqueue(greedy({1}, 4));
    Response r;
    ASSERT_TRUE(late->next(r, std::chrono::milliseconds(5000)));
    EXPECT_TRUE(r.finished);
    EXPECT_EQ(r.finish_reason, "error");
    EXPECT_TRUE(r.engine_unavailable) << r.error;
    EXPECT_FALSE(r.engine_fault) << "a drained engine is not a fault";
  });
}

// What rank 0's watchdog does before the job ends (WorkerOptions::on_fatal): open streams end at
// once with "error", the reason, and engine_fault set, so the server can tell a fault from a bad
// request; requests that end normally or are cancelled never carry the flag.
TEST(EngineThreads, EngineFaultEndsOpenStreamsDistinctly) {
  with_engine([&](DpEngine& engine) {
    Drained ok = drain(*engine.enqueue(greedy({1}, 3)));
    EXPECT_EQ(ok.finish_reason, "length");
    auto bad = engine.enqueue(greedy({1, 100000}, 3));
    Response r;
    ASSERT_TRUE(bad->next(r, std::chrono::milliseconds(5000)));
    EXPECT_EQ(r.finish_reason, "error");
    EXPECT_FALSE(r.engine_fault) << "a bad request is not an engine fault";

    auto s = engine.enqueue(greedy({1, 403, 407}, 400));
    ASSERT_TRUE(s->next(r, std::chrono::milliseconds(5000)));  // running
    ASSERT_FALSE(r.finished);
    engine.mark_stopped("rank 0: watchdog: step 9 has not finished after 3 s");
    bool ended = false;
    for (int i = 0; i < 500 && !ended; ++i) {
      if (!s->next(r, std::chrono::milliseconds(10))) continue;
      ended = r.finished;
    }
    ASSERT_TRUE(ended);
    EXPECT_EQ(r.finish_reason, "error");
    EXPECT_TRUE(r.engine_fault);
    EXPECT_NE(r.error.find("watchdog"), std::string::npos) << r.error;
    EXPECT_FALSE(engine.healthy());
    // A request that comes after the fault is refused with the fault (a 500), not as a bad request.
    auto late = engine.enqueue(greedy({1}, 3));
    ASSERT_TRUE(late->next(r, std::chrono::milliseconds(5000)));
    EXPECT_EQ(r.finish_reason, "error");
    EXPECT_TRUE(r.engine_fault) << r.error;
    EXPECT_NE(r.error.find("watchdog"), std::string::npos) << r.error;
    engine.shutdown(std::chrono::milliseconds(0));  // the loop still ends (it was told to at the fault)
  });
}

}  // namespace
}  // namespace dpserve

// MPI is initialised once for the process (it cannot be re-initialised after MPI_Finalize), so each
// test's Runtime reuses it; the step loop runs on this main thread, as in `dpserve serve`.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();  // CTest's discovery: no MPI needed
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rc = RUN_ALL_TESTS();
  MPI_Finalize();
  return rc;
}
