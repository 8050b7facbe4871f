// Encoding a text holds many times its size at its peak: the text repaired and normalized, the
// pre-tokenizer's words and match offsets, the ids (a 30 MB prompt took a server from 0.11 to
// 0.98 GB, about 29x, before it was refused for the context). A request body may carry 32 MiB of text
// (--max-body-bytes) and the server runs hundreds of requests at once, so three such prompts at once
// took 2.65 GB, and a dozen would exhaust the machine, for requests that are all 400s in the end.
// Texts of kEncodeAloneBytes or more therefore take a share of one process-wide budget of text being
// encoded (kEncodeBudgetBytes; a larger text takes all of it) and wait their turn, first come first
// served: concurrent large texts cost about one budget's (or one text's) worth, not one each. Smaller
// texts never wait. Each encode is work linear in its text, so every wait ends.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpserve {

inline constexpr size_t kEncodeAloneBytes = size_t(64) << 10;
inline constexpr size_t kEncodeBudgetBytes = size_t(4) << 20;

// This thread's turn to encode `bytes` of text, held until the object goes.
class EncodeTurn {
 public:
  explicit EncodeTurn(size_t bytes);
  ~EncodeTurn();
  EncodeTurn(const EncodeTurn&) = delete;
  EncodeTurn& operator=(const EncodeTurn&) = delete;

  // Bytes of the budget held by every turn now (for tests).
  static size_t in_use();

 private:
  size_t cost_ = 0;  // 0: a small text, nothing taken
};

}  // namespace dpserve
