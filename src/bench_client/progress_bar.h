// A one-line progress bar on stderr while requests complete; silent unless stderr is a terminal, so
// logs and redirected runs stay clean.
#pragma once

#include <cstddef>
#include <mutex>

namespace dpserve::bench {

class ProgressBar {
 public:
  ProgressBar(size_t total, bool enabled);
  void tick(bool success);  // thread-safe
  void finish();

 private:
  void draw_locked(bool force);

  size_t total_, done_ = 0, failed_ = 0;
  bool enabled_;
  double start_s_, last_draw_s_ = -1;
  std::mutex mu_;
};

// stderr is a terminal (the default for --progress auto).
bool stderr_is_tty();

}  // namespace dpserve::bench
