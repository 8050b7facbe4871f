// One thread team per rank: a persistent pool that runs a whole forward step.
//
// ThreadTeam::run(fn) runs fn on every member at once (SPMD); the calling thread is member 0, so
// code that must stay on the step thread (MPI under MPI_THREAD_FUNNELED) runs under
// `if (t.leader())` between two barriers. Kernels take a `Team&` (their member) and compute
// their share of the work; a collective kernel is called by every member with the same
// arguments. Members wait for each other at barriers, spinning for a while and then parking in
// the kernel (futex), so an idle rank costs no CPU once the spin budget has run out.
//
// Wait policy (docs/kernels.md has the measurements behind it): a waiting member spins for up to
// kDefaultSpinUs while the machine has a core for every runnable thread, and parks at once when
// other work oversubscribes the cores (the 1-minute load average, read at most once a second,
// above the number of cores + 0.5): spinning then only burns the time slices the other members
// are waiting for. DPSERVE_SPIN_US=N fixes the spin at N microseconds; OMP_WAIT_POLICY=passive
// at 0, OMP_WAIT_POLICY=active at kDefaultSpinUs.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace dpserve {

class ThreadTeam;

// [begin, end) of a split.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool empty() const { return end <= begin; }
};

// A non-owning reference to a callable, valid while the callable lives.
template <class Sig>
class FnRef;
template <class R, class... A>
class FnRef<R(A...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FnRef>>>
  FnRef(F&& f) : obj_(const_cast<void*>(static_cast<const void*>(&f))), call_([](void* o, A... a) -> R {
    return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...);
  }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// One member's handle inside ThreadTeam::run.
class Team {
 public:
  int id() const { return id_; }
  int size() const { return size_; }
  bool leader() const { return id_ == 0; }

  // Every member waits until all have arrived. Throws if another member failed (so no member
  // is left waiting for one that will never come).
  void barrier();

  // This member's contiguous share of n items, in whole multiples of `grain` (the last share
  // takes the remainder). Shares are equal in size and ordered by member id.
  Range share(int64_t n, int64_t grain = 1) const;

  // Hands out items [0, n) to whoever asks first, in chunks of `chunk`, calling fn(begin, end)
  // for each chunk this member takes; ends with a barrier (which also resets the counter).
  void dynamic(int64_t n, int64_t chunk, FnRef<void(int64_t, int64_t)> fn);

  // As dynamic, but each chunk is 1 / (div x team size) of the items not yet handed out (at least
  // min_chunk): long chunks first, short ones at the end, so members finish close together with
  // few chunks in all (OpenMP's schedule(guided)); a team of one takes all n at once. Ends with a
  // barrier.
  void guided(int64_t n, int64_t min_chunk, int64_t div, FnRef<void(int64_t, int64_t)> fn);

  // A buffer of at least `bytes` shared by all members (collective: every member asks for the
  // same size at the same point; growing it costs two barriers). `slot` < kScratchSlots names
  // independent buffers. Contents are undefined after growing.
  static constexpr int kScratchSlots = 4;
  void* shared_scratch(int slot, size_t bytes);

  // A team of one (the calling thread alone), for serial callers of team kernels.
  static Team& solo();

 private:
  friend class ThreadTeam;
  Team(ThreadTeam* team, int id, int size) : team_(team), id_(id), size_(size) {}
  ThreadTeam* team_;
  int id_, size_;
};

class ThreadTeam {
 public:
  // n_threads >= 1 members; n_threads - 1 worker threads are started (and parked when idle).
  explicit ThreadTeam(int n_threads);
  ~ThreadTeam();
  ThreadTeam(const ThreadTeam&) = delete;
  ThreadTeam& operator=(const ThreadTeam&) = delete;

  int size() const { return n_; }

  // Runs fn on every member and returns once all have returned. If any member throws, the
  // others are released from their barriers (which throw too) and the first exception is
  // rethrown here. One caller at a time; not reentrant.
  void run(FnRef<void(Team&)> fn);

  // Microseconds a waiting member spins before parking now; set_spin_us fixes it.
  static constexpr int64_t kDefaultSpinUs = 200;
  int64_t spin_us() const { return spin_us_.load(std::memory_order_relaxed); }
  void set_spin_us(int64_t us) {
    adaptive_ = false;
    spin_us_.store(us, std::memory_order_relaxed);
  }
  bool adaptive_spin() const { return adaptive_; }

  // How many times members parked in the kernel since the team started (tests, benchmarks).
  uint64_t parks() const { return parks_.load(std::memory_order_relaxed); }

 private:
  friend class Team;
  struct alignas(64) Padded {
    std::atomic<uint32_t> v{0};
  };
  void worker(int id);
  // Waits until `word` differs from `seen` (spin, then futex); returns false if aborted while
  // `abortable`.
  bool wait_change(std::atomic<uint32_t>& word, uint32_t seen, bool abortable);
  void wake_all(std::atomic<uint32_t>& word);
  void barrier_wait(bool abortable);
  void adapt_spin();

  int n_;
  std::atomic<int64_t> spin_us_{kDefaultSpinUs};
  bool adaptive_ = true;
  int64_t next_adapt_ns_ = 0;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<Team>> members_;

  // Job hand-off: job_gen_ changes when a new fn is published or the team stops.
  Padded job_gen_;
  FnRef<void(Team&)>* job_ = nullptr;
  bool stop_ = false;
  // Barrier: arrivals and the generation that releases the waiters.
  Padded arrived_;
  Padded bar_gen_;
  Padded work_;      // Team::dynamic's counter, reset by every barrier
  Padded sleepers_;  // members parked (or about to park) on some futex word
  std::atomic<bool> abort_{false};
  std::atomic<uint64_t> parks_{0};
  // Join at the end of run(): how many members are done with the current job.
  Padded done_;
  std::exception_ptr error_;
  std::atomic<bool> has_error_{false};

  struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
  };
  Scratch scratch_[Team::kScratchSlots];
};

}  // namespace dpserve
