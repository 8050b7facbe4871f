// Internal: the ISA-free parts of the packed-key attention primitives (the AVX-512 and AVX2 Ops):
// head groups and counts sized at compile time, and the job's cache of packed keys. Included inside each
// attention_*.cpp's anonymous namespace (after <algorithm>, <cstdint>, <limits>, <utility> and
// <vector>), so every ISA's file has its own thread-local cache.
#pragma once

// f(std::integral_constant<int, K>{}) for k in [1, Max]: a count known at run time sizes the callee's
// register arrays at compile time.
template <int Max, class F>
void with_count(int64_t k, F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    ((k == I + 1 ? (f(std::integral_constant<int, I + 1>{}), 0) : 0), ...);
  }(std::make_integer_sequence<int, Max>{});
}

// Calls f(std::integral_constant<int, NH>{}, g) for the heads [0, G) in groups of Max from g = 0,
// then once for the rest.
template <int Max, class F>
void head_groups(int64_t G, F&& f) {
  int64_t g = 0;
  for (; g + Max <= G; g += Max) f(std::integral_constant<int, Max>{}, g);
  if constexpr (Max > 1) with_count<Max - 1>(G - g, [&](auto NH) { f(NH, g); });
}

// A job's packed keys: the rows of a prefill job take turns step by step (attention_impl.h,
// kRows), each scoring the same few pages of the step, so the packings of the pages last asked
// for are kept until the job ends (a page's address, key count, stride and width say whether a
// slot holds it; begin_job forgets them all, as the next call's cache holds other values at the
// same addresses). E: the packed element (4 bytes).
template <class E>
struct PackedKeyCache {
  struct Slot {
    const void* k = nullptr;
    int64_t n = 0, ld = 0, d = 0;
    uint64_t call = 0;  // the last call that asked for it
    std::vector<E> buf;
  };
  std::vector<Slot> slots = std::vector<Slot>(8);  // two steps of 16-key pages
  size_t next = 0;
  uint64_t call = 0;
  void forget() {
    for (Slot& s : slots) s.k = nullptr;
  }
  // Starts a call that will ask for up to n packings at once: none of them is reused for another
  // until the next call (a step over small pages spans many).
  void begin_call(int64_t n) {
    ++call;
    if (int64_t(slots.size()) < 2 * n) slots.resize(size_t(2 * n));
  }
  // The packing of those keys in `elems` 64-byte aligned elements; `have`: already packed there.
  E* find(const void* k, int64_t n, int64_t ld, int64_t d, int64_t elems, bool& have) {
    static_assert(sizeof(E) == 4);
    for (Slot& s : slots)
      if (s.k == k && s.n == n && s.ld == ld && s.d == d) {
        s.call = call;
        have = true;
        return aligned(s.buf);
      }
    while (slots[next].call == call && slots[next].k) next = (next + 1) % slots.size();
    Slot& s = slots[next];
    next = (next + 1) % slots.size();
    if (int64_t(s.buf.size()) < elems + 16) s.buf.resize(size_t(elems + 16));
    s.k = k, s.n = n, s.ld = ld, s.d = d, s.call = call;
    have = false;
    return aligned(s.buf);
  }
  static E* aligned(std::vector<E>& b) { return b.data() + (16 - (reinterpret_cast<uintptr_t>(b.data()) / 4) % 16) % 16; }
};
inline thread_local PackedKeyCache<float> packed_keys;

// The frame of a packed-key scores_heads: G heads' scores of n keys, 16 keys at a time. Each block
// of keys is packed by pack(k, nb, kt) into the job's cache (once per job: a later row finds it
// there), then score(NG, g, kt, nb, j0) scores heads [g, g + NG) of it, in groups of at most
// Max. mx, if given, is reset first for score to raise.
template <int Max, class T, class Pack, class Score>
void scores_packed_blocks(const T* k, int64_t ldk, int64_t n, int64_t d, int64_t G, float* mx, Pack&& pack,
                          Score&& score) {
  if (mx) std::fill(mx, mx + G, -std::numeric_limits<float>::infinity());
  bool have;
  packed_keys.begin_call(1);
  float* kt = packed_keys.find(k, n, ldk, d, (n + 15) / 16 * d * 16, have);
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t nb = std::min<int64_t>(16, n - j0);
    float* kb = kt + j0 * d;
    if (!have) pack(k + j0 * ldk, nb, kb);
    head_groups<Max>(G, [&](auto NG, int64_t g) { score(NG, g, kb, nb, j0); });
  }
}

// The blocks of 16 keys of a whole step's page runs (scores_runs), in order: each packed by
// pack(k, ldk, nb, kt) into the job's cache unless a row before packed it (the step's packings all kept
// for this call), its page's next step fetched as Ops fetches it (page_ahead: as it is packed where
// Ops drips, PageDrip), then block(r, j0, nb, kt) for run r's keys [j0, j0 + nb) packed at kt.
template <class Ops, class T, class Pack, class Block>
void step_key_blocks(const PageRun<T>* runs, int64_t n_runs, int64_t d, Pack&& pack, Block&& block) {
  packed_keys.begin_call(n_runs);
  for (int64_t r = 0; r < n_runs; ++r) {
    const PageRun<T>& u = runs[r];
    page_ahead<Ops>(u);
    bool have;
    float* kt = packed_keys.find(u.rows, u.n, u.ld, d, (u.n + 15) / 16 * d * 16, have);
    for (int64_t j0 = 0; j0 < u.n; j0 += 16) {
      const int64_t nb = std::min<int64_t>(16, u.n - j0);
      if (!have) pack(u.rows + j0 * u.ld, u.ld, nb, kt + j0 * d);
      block(r, j0, nb, kt + j0 * d);
    }
  }
  pages_ahead_done<Ops, T>();
}
