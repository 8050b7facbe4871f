// Rotary position embedding frequencies, with the llama3 and linear scaling rules.
#pragma once

#include <vector>

#include "model/config.h"

namespace dpserve {

class RopeTable {
 public:
  explicit RopeTable(const ModelConfig& c);
  // cos/sin of every frequency (head_dim/2 values each) at position pos.
  void at(int64_t pos, float* cos, float* sin) const;
  int64_t half() const { return int64_t(inv_freq_.size()); }

 private:
  std::vector<double> inv_freq_;
};

}  // namespace dpserve
