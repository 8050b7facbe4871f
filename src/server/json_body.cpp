#include "server/json_body.h"

#include <cstring>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "server/openai_error.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

constexpr size_t kValueCost = sizeof(json);  // a slot in an array or object
constexpr size_t kBoxCost = 64;              // the heap object behind an array, object or string
constexpr size_t kCheckEvery = 4096;         // events between deadline / cancel checks
constexpr uint8_t kIdsSubtype = 0x1d;         // the binary subtype of packed token ids

[[noreturn]] void refuse(int status, std::string message, std::string code) {
  throw ApiError(status, std::move(message), "", "", std::move(code));
}

// Builds the DOM itself, appending to the open container: each event costs O(1), where nlohmann's
// callback parser searched the parent for discarded values at every object's end.
class Builder : public json::json_sax_t {
 public:
  Builder(const JsonLimits& limits, size_t budget) : limits_(limits), budget_(budget) {}

  json take() { return std::move(root_); }

  bool null() override { return put(json(nullptr), 0); }
  bool boolean(bool v) override { return put(json(v), 0); }
  bool number_integer(number_integer_t v) override { return pack(v) || put(json(v), 0); }
  bool number_unsigned(number_unsigned_t v) override {
    return (v <= uint64_t(std::numeric_limits<int32_t>::max()) && pack(int64_t(v))) || put(json(v), 0);
  }
  bool number_float(number_float_t v, const string_t&) override { return put(json(v), 0); }
  bool string(string_t& v) override {
    const size_t n = v.size();
    return put(json(std::move(v)), kBoxCost + n);
  }
  bool binary(binary_t&) override { refuse(400, "The request body is not valid JSON", "invalid_json"); }

  bool start_object(std::size_t) override { return open(json::object()); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override {
    if (packing_) {
      packing_ = false;
      if (!packed_.empty()) {
        packed_.shrink_to_fit();
        *stack_.back() = json::binary(std::move(packed_), kIdsSubtype);
        packed_ = {};
      }
      return close();
    }
    // Doubling leaves up to half of a big array's slots unused; give them back now.
    if (stack_.back()->size() >= 1024) stack_.back()->get_ref<json::array_t&>().shrink_to_fit();
    return close();
  }

  bool key(string_t& k) override {
    if (stack_.size() == 1 && limits_.known_field && !limits_.known_field(k))
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", k), k, "", "unknown_parameter");
    charge(kBoxCost + k.size());
    key_ = std::move(k);
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    const std::string what = ex.what();
    const bool utf8 = what.find("UTF-8") != std::string::npos || what.find("surrogate") != std::string::npos;
    refuse(400,
           utf8 ? fmt::format("The request body is not valid UTF-8: {}", what)
                : fmt::format("The request body is not valid JSON: {}", what),
           utf8 ? "invalid_utf8" : "invalid_json");
  }

 private:
  void charge(size_t bytes) {
    used_ += bytes;
    if (used_ > budget_)
      refuse(413,
             fmt::format("The request body's JSON would take more than {} MiB once parsed (16 MiB plus 4 bytes per "
                         "byte of body); send fewer, larger values",
                         budget_ >> 20),
             "body_too_complex");
    if (++events_ % kCheckEvery == 0) {
      if (std::chrono::steady_clock::now() > limits_.deadline)
        refuse(408, "The request body could not be parsed within --http-request-timeout", "request_timeout");
      if (limits_.cancelled && limits_.cancelled())
        refuse(499, "The client closed the connection", "client_closed");
    }
  }

  // Appends an id to the open packed array; false when none is open or `v` does not fit int32.
  bool pack(int64_t v) {
    if (!packing_ || v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
      return false;
    charge(sizeof(int32_t));
    const int32_t id = int32_t(v);
    const size_t at = packed_.size();
    packed_.resize(at + sizeof id);
    std::memcpy(packed_.data() + at, &id, sizeof id);
    return true;
  }

  // The open array holds something other than int32 ids: it becomes a DOM array of what it held.
  void unpack() {
    packing_ = false;
    auto& arr = stack_.back()->get_ref<json::array_t&>();
    const size_t n = packed_.size() / sizeof(int32_t);
    charge(n * kValueCost);
    arr.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      int32_t id;
      std::memcpy(&id, packed_.data() + i * sizeof id, sizeof id);
      arr.emplace_back(int64_t(id));
    }
    packed_ = {};
  }

  // An array opened now may be packed: the value of an id field, or an array directly inside it.
  bool id_position() const {
    if (!limits_.id_field) return false;
    if (stack_.size() == 1) return limits_.id_field(key_);
    return stack_.size() == 2 && stack_.back()->is_array() && limits_.id_field(path_[1]);
  }

  bool put(json v, size_t extra) {
    if (packing_) unpack();
    charge(kValueCost + extra);
    if (stack_.empty()) {
      root_ = std::move(v);
    } else if (stack_.back()->is_array()) {
      stack_.back()->get_ref<json::array_t&>().push_back(std::move(v));
    } else {
      object_slot() = std::move(v);
    }
    return true;
  }

  // The open object's slot for key_, refusing a key it already has: RFC 8259 leaves the meaning of
  // duplicate names open (nlohmann kept the last one), so {"logit_bias": {"5": 100, "5": -100}}
  // would silently lose a value. The error names the object that holds the duplicate.
  json& object_slot() {
    auto& obj = stack_.back()->get_ref<json::object_t&>();
    if (obj.find(key_) != obj.end()) {
      std::string where;
      for (size_t i = 1; i < path_.size(); ++i)
        where += (i > 1 && path_[i][0] != '[' ? "." : "") + path_[i];
      const std::string param = where.empty() ? key_ : where;
      throw ApiError(400,
                     fmt::format("The request body has the key '{}' twice in {} (duplicate keys are ambiguous)",
                                 key_.substr(0, 64), where.empty() ? "the top-level object" : "'" + where + "'"),
                     param, "", "duplicate_key");
    }
    return obj[std::move(key_)];
  }

  bool open(json v) {
    if (packing_) unpack();
    const bool ids = v.is_array() && id_position();
    if (int(stack_.size()) >= limits_.max_depth)
      refuse(400, fmt::format("The request body nests deeper than {} levels", limits_.max_depth), "invalid_json");
    charge(kValueCost + kBoxCost);
    json* slot;
    if (stack_.empty()) {
      root_ = std::move(v);
      slot = &root_;
      path_.emplace_back();
    } else if (stack_.back()->is_array()) {
      auto& arr = stack_.back()->get_ref<json::array_t&>();
      arr.push_back(std::move(v));
      slot = &arr.back();
      path_.push_back(fmt::format("[{}]", arr.size() - 1));
    } else {
      std::string k = key_;
      slot = &(object_slot() = std::move(v));
      path_.push_back(std::move(k));
    }
    stack_.push_back(slot);
    if (ids) packing_ = true;
    return true;
  }

  bool close() {
    stack_.pop_back();
    path_.pop_back();
    return true;
  }

  const JsonLimits& limits_;
  size_t budget_;
  size_t used_ = 0;
  size_t events_ = 0;
  json root_;
  // Open containers, innermost last. A pointer into an array stays valid while that array is open:
  // only the innermost container grows, and it is always the last element of its parent.
  std::vector<json*> stack_;
  std::vector<std::string> path_;  // each open container's key (or "[index]"), for error messages
  std::string key_;
  bool packing_ = false;         // the innermost open array is an id array, packed so far
  std::vector<uint8_t> packed_;  // its ids, int32 in host order
};

}  // namespace

bool is_packed_ids(const json& v) {
  return v.is_binary() && v.get_binary().has_subtype() && v.get_binary().subtype() == kIdsSubtype;
}

std::vector<int32_t> packed_ids(const json& v) {
  const auto& bytes = v.get_binary();
  std::vector<int32_t> ids(bytes.size() / sizeof(int32_t));
  if (!ids.empty()) std::memcpy(ids.data(), bytes.data(), ids.size() * sizeof(int32_t));
  return ids;
}

json parse_json_body(const std::string& body, const JsonLimits& limits) {
  if (body.empty()) refuse(400, "The request body is empty; expected a JSON object", "invalid_json");
  Builder b(limits, limits.memory_floor + limits.memory_per_body_byte * body.size());
  json::sax_parse(body, &b);
  json j = b.take();
  if (!j.is_object()) refuse(400, "The request body must be a JSON object", "invalid_json");
  return j;
}

}  // namespace dpserve
