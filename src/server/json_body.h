// Request bodies (JSON) -> a JSON object, in time and memory linear in the body's size, with the
// limits enforced while parsing rather than after: nesting depth, the memory the parsed value may
// take, the top-level fields a route knows, a deadline, and stopping when the client has gone.
// (nlohmann's callback parser spends O(n) per element of an array of objects: 80k `{}` took 1.6 s,
// 320k took 22 s.)
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace dpserve {

struct JsonLimits {
  int max_depth = 64;  // arrays / objects inside one another
  // The parsed value may take about this much memory: a floor plus a multiple of the body's size.
  // Each value counts 16 bytes, each array, object or string 64 bytes more, plus its text.
  size_t memory_floor = 16 << 20;
  size_t memory_per_body_byte = 4;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::function<bool()> cancelled;                          // the client left or the server stops
  std::function<bool(std::string_view)> known_field;        // top-level keys; null: any
  // Top-level keys whose values may be token ids: an array of integers there (the value itself, or
  // an array inside it: a batch) is kept as packed int32 ids (4 bytes an id, where the DOM took
  // 16 per value plus its array's growth: ~10x the body at its peak). null: none.
  std::function<bool(std::string_view)> id_field;
};

// The parsed object. Every refusal is an ApiError naming the problem: malformed JSON or invalid
// UTF-8 (400), too deep (400), an unknown top-level field (400 naming it), too much memory (413),
// past the deadline (408), cancelled (499).
nlohmann::json parse_json_body(const std::string& body, const JsonLimits& limits = {});

// A non-empty array of integers that all fit int32, under a JsonLimits::id_field, is parsed into a
// JSON binary value of its own subtype holding the ids (JSON text never yields a binary value, so no
// client can forge one). Any other array there (empty, or holding anything else, such as 1.5 or
// 2^40) stays a DOM array, so its readers' checks and messages are those of any array.
bool is_packed_ids(const nlohmann::json& v);
// The ids of a packed value (is_packed_ids).
std::vector<int32_t> packed_ids(const nlohmann::json& v);
// A packed id array or a DOM array: what a field of token ids may hold.
inline bool is_id_array(const nlohmann::json& v) { return v.is_array() || is_packed_ids(v); }

}  // namespace dpserve
