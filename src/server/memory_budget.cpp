#include "server/memory_budget.h"

#include "core/check.h"

namespace dpserve {

int64_t MemoryBudget::in_use() const {
  std::lock_guard lk(mu_);
  return used_;
}

std::shared_ptr<void> MemoryBudget::acquire(int64_t bytes, std::chrono::milliseconds wait) {
  DP_CHECK(bytes >= 0 && bytes <= capacity_, "a share of {} bytes in a budget of {}", bytes, capacity_);
  std::unique_lock lk(mu_);
  // First come is not first served: a small share may pass a large one that waits. The wait is
  // bounded, so a large share is refused (429) rather than starved forever.
  if (!cv_.wait_for(lk, wait, [&] { return used_ + bytes <= capacity_; })) return nullptr;
  used_ += bytes;
  // Non-null (it points at the budget, which it does not own), so a taken share tests true.
  return std::shared_ptr<void>(static_cast<void*>(this), [this, bytes](void*) {
    {
      std::lock_guard g(mu_);
      used_ -= bytes;
    }
    cv_.notify_all();
  });
}

}  // namespace dpserve
