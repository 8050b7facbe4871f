// The per-step messages between ranks (engine/control_message.h) from arbitrary bytes.
// Input: byte 0 even -> the rest is a control message (rank 0 -> ranks); odd -> a group report
// (group leader -> rank 0).
// Only dpserve::Error may escape. A message that decodes is canonical after one round trip:
// encode(decode(encode(m))) == encode(m) for m = decode(input), so nothing a rank accepted is
// lost or changed on the way through the encoder.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/check.h"
#include "engine/control_message.h"
#include "fuzz_util.h"

namespace {

template <typename Decode>
void round_trip(const std::byte* p, size_t n, Decode decode) {
  auto m = decode(p, n);  // may throw dpserve::Error: the input is malformed
  const std::vector<std::byte> once = dpserve::encode(m);
  try {
    const std::vector<std::byte> twice = dpserve::encode(decode(once.data(), once.size()));
    FUZZ_EXPECT(once == twice);
  } catch (const dpserve::Error&) {
    FUZZ_EXPECT(!"our own encoding of an accepted message was refused");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto* p = reinterpret_cast<const std::byte*>(data + 1);
  try {
    if (data[0] % 2 == 0)
      round_trip(p, size - 1, [](const std::byte* b, size_t n) { return dpserve::decode_control(b, n); });
    else
      round_trip(p, size - 1, [](const std::byte* b, size_t n) { return dpserve::decode_report(b, n); });
  } catch (const dpserve::Error&) {
  }
  return 0;
}
