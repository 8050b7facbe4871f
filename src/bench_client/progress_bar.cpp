#include "bench_client/progress_bar.h"

#include <unistd.h>

#include <cstdio>

#include "bench_client/stream_request.h"

namespace dpserve::bench {

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(size_t total, bool enabled) : total_(total), enabled_(enabled), start_s_(steady_seconds()) {
  if (enabled_) draw_locked(true);
}

void ProgressBar::tick(bool success) {
  std::lock_guard<std::mutex> lock(mu_);
  ++done_;
  if (!success) ++failed_;
  draw_locked(done_ == total_);
}

void ProgressBar::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!enabled_) return;
  draw_locked(true);
  std::fputc('\n', stderr);
  enabled_ = false;
}

void ProgressBar::draw_locked(bool force) {
  if (!enabled_) return;
  const double now = steady_seconds();
  if (!force && now - last_draw_s_ < 0.1) return;  // a redraw per completion would flood slow terminals
  last_draw_s_ = now;
  constexpr int kWidth = 40;
  const int filled = total_ ? int(double(done_) / double(total_) * kWidth) : kWidth;
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = 0;
  const double el = now - start_s_;
  std::fprintf(stderr, "\r[%s] %zu/%zu  %zu failed  %.1f s  %.2f req/s ", bar, done_, total_, failed_, el,
               el > 0 ? double(done_) / el : 0.0);
  std::fflush(stderr);
}

}  // namespace dpserve::bench
