#include "tokenizer/encode_turn.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>

namespace dpserve {

namespace {

struct Budget {
  std::mutex mu;
  std::condition_variable cv;
  size_t used = 0;
  // Tickets in arrival order: a turn starts only when every earlier one has started, so a text
  // that needs the whole budget is not overtaken forever by a stream of smaller ones.
  uint64_t next_ticket = 0, head = 0;
};

Budget& budget() {
  static Budget b;
  return b;
}

}  // namespace

EncodeTurn::EncodeTurn(size_t bytes) {
  if (bytes < kEncodeAloneBytes) return;
  cost_ = std::min(bytes, kEncodeBudgetBytes);
  Budget& b = budget();
  std::unique_lock lk(b.mu);
  const uint64_t ticket = b.next_ticket++;
  b.cv.wait(lk, [&] { return b.head == ticket && b.used + cost_ <= kEncodeBudgetBytes; });
  b.used += cost_;
  ++b.head;
  b.cv.notify_all();  // the next ticket may fit beside this one
}

EncodeTurn::~EncodeTurn() {
  if (cost_ == 0) return;
  Budget& b = budget();
  {
    std::lock_guard lk(b.mu);
    b.used -= cost_;
  }
  b.cv.notify_all();
}

size_t EncodeTurn::in_use() {
  Budget& b = budget();
  std::lock_guard lk(b.mu);
  return b.used;
}

}  // namespace dpserve
