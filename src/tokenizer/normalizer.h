// Hugging Face `normalizer` pipelines: NFC / NFD / NFKC / NFKD (ICU), Prepend, Replace, Strip, Lowercase, Sequence.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dpserve {

class Normalizer {
 public:
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kPrepend, kReplace, kStrip, kLowercase };
  struct Step {
    Kind kind;
    std::string a, b;  // Prepend: a; Replace: a -> b
    bool left = false, right = false;
  };

  static Normalizer from_json(const nlohmann::json& j);  // null: identity
  bool empty() const { return steps_.empty(); }
  std::string apply(std::string text) const;

 private:
  std::vector<Step> steps_;
};

}  // namespace dpserve
