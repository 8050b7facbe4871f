// ThreadTeam: job hand-off, barrier and join on atomics, each wait spinning for a bounded time
// and then parking on a futex (Linux), so the wait policy is ours and not the OpenMP runtime's.
#include "kernels/team.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/futex.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <ctime>
#include <mutex>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "kernels/team_pinning.h"

namespace dpserve {

namespace {

// Thrown in members waiting at a barrier when another member has failed; never leaves run().
struct TeamAborted {};

// A fixed spin from the environment, or -1 for the adaptive default.
int64_t spin_us_from_env() {
  if (const char* s = std::getenv("DPSERVE_SPIN_US"); s && *s) {
    char* end = nullptr;
    const long long v = std::strtoll(s, &end, 10);
    if (*end != '\0' || v < 0) fail("DPSERVE_SPIN_US={}: expected a number of microseconds >= 0", s);
    return v;
  }
  if (const char* p = std::getenv("OMP_WAIT_POLICY")) {
    if (strcasecmp(p, "passive") == 0) return 0;
    if (strcasecmp(p, "active") == 0) return ThreadTeam::kDefaultSpinUs;
  }
  return -1;
}

// The 1-minute load average, or -1 if it cannot be read.
double load_average() {
  const int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[64] = {};
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return n > 0 ? std::strtod(buf, nullptr) : -1;
}

// Sleeps while word == seen, until woken or (when given) the relative timeout passes.
void futex_wait(std::atomic<uint32_t>& word, uint32_t seen, const timespec* timeout = nullptr) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen, timeout, nullptr, 0);
}

// How long an abortable wait sleeps before it looks at abort_ again. An abort changes abort_, not the
// word the waiter sleeps on, so the futex cannot tell that the aborter's wake came between the
// waiter's last look and its sleep; without a bound that waiter slept for ever (a member at a barrier
// when another failed: run() then never returned, seen once under ASan on a loaded 2-core machine).
constexpr timespec kAbortLook{0, 20'000'000};

void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct SoloScratch {
  void* p[Team::kScratchSlots] = {};
  size_t bytes[Team::kScratchSlots] = {};
  ~SoloScratch() {
    for (void* q : p) std::free(q);
  }
};

void* grow_buffer(void*& p, size_t& have, size_t bytes) {
  std::free(p);
  // A quarter more than asked, so a slowly growing batch does not reallocate every step.
  have = (bytes + bytes / 4 + 63) / 64 * 64;
  p = std::aligned_alloc(64, have);
  if (!p) fail("out of memory: {} bytes of scratch", have);
  return p;
}

std::mutex g_cpus_mu;
std::vector<int> g_worker_cpus;

}  // namespace

void set_team_worker_cpus(std::vector<int> cpus) {
  std::lock_guard<std::mutex> lock(g_cpus_mu);
  g_worker_cpus = std::move(cpus);
}

bool pin_this_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// --- Team ------------------------------------------------------------------------------------

Team& Team::solo() {
  thread_local Team t(nullptr, 0, 1);
  return t;
}

void Team::barrier() {
  if (team_) team_->barrier_wait(true);
}

Range Team::share(int64_t n, int64_t grain) const {
  if (n <= 0) return {0, 0};
  const int64_t units = (n + grain - 1) / grain;
  const int64_t u0 = units * id_ / size_, u1 = units * (id_ + 1) / size_;
  return {std::min(n, u0 * grain), std::min(n, u1 * grain)};
}

void Team::dynamic(int64_t n, int64_t chunk, FnRef<void(int64_t, int64_t)> fn) {
  if (chunk < 1) chunk = 1;
  if (!team_ || size_ == 1) {
    for (int64_t b = 0; b < n; b += chunk) fn(b, std::min(n, b + chunk));
    return;
  }
  std::atomic<uint32_t>& counter = team_->work_.v;
  for (;;) {
    const int64_t b = int64_t(counter.fetch_add(1, std::memory_order_relaxed)) * chunk;
    if (b >= n) break;
    fn(b, std::min(n, b + chunk));
  }
  barrier();
}

void Team::guided(int64_t n, int64_t min_chunk, int64_t div, FnRef<void(int64_t, int64_t)> fn) {
  if (min_chunk < 1) min_chunk = 1;
  if (!team_ || size_ == 1) {
    if (n > 0) fn(0, n);
    return;
  }
  std::atomic<uint32_t>& counter = team_->work_.v;
  const int64_t parts = std::max<int64_t>(div, 1) * size_;
  uint32_t b = counter.load(std::memory_order_relaxed);
  while (int64_t(b) < n) {
    const int64_t left = n - int64_t(b);
    const int64_t take = std::min(left, std::max(min_chunk, (left + parts - 1) / parts));
    if (counter.compare_exchange_weak(b, uint32_t(int64_t(b) + take), std::memory_order_relaxed)) {
      fn(int64_t(b), int64_t(b) + take);
      b = counter.load(std::memory_order_relaxed);
    }
  }
  barrier();
}

void* Team::shared_scratch(int slot, size_t bytes) {
  DP_CHECK(slot >= 0 && slot < kScratchSlots, "scratch slot {}", slot);
  if (!team_) {
    thread_local SoloScratch s;
    if (s.bytes[slot] < bytes) grow_buffer(s.p[slot], s.bytes[slot], bytes);
    return s.p[slot];
  }
  ThreadTeam::Scratch& s = team_->scratch_[slot];
  // Every member sees the same size here: it only changes between the two barriers below.
  if (s.bytes < bytes) {
    barrier();
    if (leader()) grow_buffer(s.p, s.bytes, bytes);
    barrier();
  }
  return s.p;
}

// --- ThreadTeam ------------------------------------------------------------------------------

ThreadTeam::ThreadTeam(int n_threads) : n_(std::max(1, n_threads)) {
  if (const int64_t fixed = spin_us_from_env(); fixed >= 0) set_spin_us(fixed);
  adapt_spin();
  for (int i = 0; i < n_; ++i) members_.push_back(std::unique_ptr<Team>(new Team(this, i, n_)));
  threads_.reserve(size_t(n_ - 1));
  std::vector<int> cpus;
  {
    std::lock_guard<std::mutex> lock(g_cpus_mu);
    cpus = g_worker_cpus;
  }
  for (int i = 1; i < n_; ++i) {
    const int cpu = cpus.empty() ? -1 : cpus[size_t(i) % cpus.size()];
    threads_.emplace_back([this, i, cpu] {
      if (cpu >= 0) pin_this_thread(cpu);  // before its first touch of any memory
      worker(i);
    });
  }
}

ThreadTeam::~ThreadTeam() {
  stop_ = true;
  job_gen_.v.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(job_gen_.v);
  for (auto& t : threads_) t.join();
  for (auto& s : scratch_) std::free(s.p);
}

void ThreadTeam::adapt_spin() {
  if (!adaptive_) return;
  const int64_t now = now_ns();
  if (now < next_adapt_ns_) return;
  next_adapt_ns_ = now + 1'000'000'000;
  const double load = load_average();
  const double cores = double(std::max(1u, std::thread::hardware_concurrency()));
  spin_us_.store(load >= 0 && load > cores + 0.5 ? 0 : kDefaultSpinUs, std::memory_order_relaxed);
}

bool ThreadTeam::wait_change(std::atomic<uint32_t>& word, uint32_t seen, bool abortable) {
  const int64_t spin_ns = spin_us_.load(std::memory_order_relaxed) * 1000;
  if (spin_ns > 0) {
    int64_t t0 = 0;
    for (uint32_t i = 1;; ++i) {
      if (word.load(std::memory_order_acquire) != seen) return true;
      if (abortable && abort_.load(std::memory_order_relaxed)) return false;
      _mm_pause();
      if ((i & 127) == 0) {
        const int64_t t = now_ns();
        if (t0 == 0) {
          t0 = t;
        } else if (t - t0 > spin_ns) {
          break;
        }
      }
    }
  }
  for (;;) {
    // Announce the sleep before the last look at the word: whoever changes it looks at
    // sleepers_ after its change (both seq_cst), so one of the two sees the other.
    sleepers_.v.fetch_add(1, std::memory_order_seq_cst);
    if (word.load(std::memory_order_seq_cst) == seen && !(abortable && abort_.load(std::memory_order_seq_cst))) {
      parks_.fetch_add(1, std::memory_order_relaxed);
      futex_wait(word, seen, abortable ? &kAbortLook : nullptr);
    }
    sleepers_.v.fetch_sub(1, std::memory_order_seq_cst);
    if (word.load(std::memory_order_acquire) != seen) return true;
    if (abortable && abort_.load(std::memory_order_acquire)) return false;
  }
}

void ThreadTeam::wake_all(std::atomic<uint32_t>& word) {
  if (sleepers_.v.load(std::memory_order_seq_cst) > 0) futex_wake_all(word);
}

void ThreadTeam::barrier_wait(bool abortable) {
  if (abortable && abort_.load(std::memory_order_acquire)) throw TeamAborted{};
  const uint32_t gen = bar_gen_.v.load(std::memory_order_acquire);
  if (arrived_.v.fetch_add(1, std::memory_order_acq_rel) + 1 == uint32_t(n_)) {
    arrived_.v.store(0, std::memory_order_relaxed);
    work_.v.store(0, std::memory_order_relaxed);
    bar_gen_.v.fetch_add(1, std::memory_order_seq_cst);
    wake_all(bar_gen_.v);
    return;
  }
  if (!wait_change(bar_gen_.v, gen, abortable)) throw TeamAborted{};
}

void ThreadTeam::worker(int id) {
  uint32_t seen = 0;  // the constructor's value: a job published before this thread runs is not missed
  for (;;) {
    wait_change(job_gen_.v, seen, false);
    seen = job_gen_.v.load(std::memory_order_acquire);
    if (stop_) return;
    try {
      (*job_)(*members_[size_t(id)]);
    } catch (const TeamAborted&) {
    } catch (...) {
      bool expected = false;
      if (has_error_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
      abort_.store(true, std::memory_order_seq_cst);
      futex_wake_all(bar_gen_.v);
    }
    done_.v.fetch_add(1, std::memory_order_seq_cst);
    wake_all(done_.v);
  }
}

void ThreadTeam::run(FnRef<void(Team&)> fn) {
  if (n_ == 1) {
    fn(*members_[0]);
    return;
  }
  adapt_spin();
  job_ = &fn;
  done_.v.store(0, std::memory_order_relaxed);
  has_error_.store(false, std::memory_order_relaxed);
  error_ = nullptr;
  abort_.store(false, std::memory_order_relaxed);
  job_gen_.v.fetch_add(1, std::memory_order_seq_cst);  // publishes job_ (release)
  wake_all(job_gen_.v);
  try {
    fn(*members_[0]);
  } catch (const TeamAborted&) {
  } catch (...) {
    bool expected = false;
    if (has_error_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
    abort_.store(true, std::memory_order_seq_cst);
    futex_wake_all(bar_gen_.v);
  }
  for (uint32_t d; (d = done_.v.load(std::memory_order_acquire)) != uint32_t(n_ - 1);) wait_change(done_.v, d, false);
  job_ = nullptr;
  if (has_error_.load(std::memory_order_acquire)) {
    // Members that were waiting at a barrier when the failure happened left it half counted.
    arrived_.v.store(0, std::memory_order_relaxed);
    work_.v.store(0, std::memory_order_relaxed);
    std::rethrow_exception(error_);
  }
}

}  // namespace dpserve
