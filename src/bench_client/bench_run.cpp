#include "bench_client/bench_run.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <system_error>
#include <thread>

#include "bench_client/arrivals.h"
#include "bench_client/progress_bar.h"
#include "core/check.h"

namespace dpserve::bench {

RunOutcome run_benchmark(const StreamClient& client, const std::vector<BenchRequest>& requests,
                         const RunConfig& cfg) {
  if (requests.empty()) fail("no requests to send (the dataset produced none)");
  for (size_t w = 0; w < cfg.warmup_requests; ++w) {
    const RequestResult r = client.send(requests[w % requests.size()], steady_seconds(),
                                        std::min(cfg.warmup_max_tokens, requests[w % requests.size()].output_len));
    if (!r.success) fail("warm-up request to {} failed: {}", client.config().base_url, r.error);
  }

  const std::vector<double> arrivals = arrival_times(requests.size(), cfg.request_rate, cfg.seed);
  RunOutcome out;
  out.results.resize(requests.size());
  size_t workers = cfg.max_concurrency ? cfg.max_concurrency : kMaxWorkers;
  workers = std::min({workers, requests.size(), kMaxWorkers});
  out.workers = workers;

  ProgressBar bar(requests.size(), cfg.progress);
  std::atomic<size_t> next{0};
  const double origin = steady_seconds();
  // Requests are taken in arrival order, so a request that arrives while every slot is busy waits
  // for the first free slot, as bench_serving's semaphore makes it wait.
  auto work = [&] {
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= requests.size()) return;
      const double wait = origin + arrivals[i] - steady_seconds();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      out.results[i] = client.send(requests[i], origin);
      bar.tick(out.results[i].success);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (size_t w = 0; w < workers; ++w) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // the OS refused more threads: run with the ones we have
    }
  }
  if (pool.empty()) fail("could not start any benchmark worker thread");
  out.workers = pool.size();
  for (auto& t : pool) t.join();
  out.duration_s = steady_seconds() - origin;
  bar.finish();
  return out;
}

}  // namespace dpserve::bench
