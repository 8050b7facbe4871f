// Rotary position embedding frequencies, with the llama3, linear, YaRN and LongRoPE scaling rules.
#pragma once

#include <vector>

#include "model/config.h"

namespace dpserve {

class RopeTable {
 public:
  // Rotates the model's rotary dimension (ModelConfig::rope_dim): head_dim, rotary_dim, or qk_rope_head_dim for MLA.
  explicit RopeTable(const ModelConfig& c);
  // cos/sin of every frequency (dim()/2 values each) at position pos; YaRN scales both by its
  // cos/sin magnitude factor.
  void at(int64_t pos, float* cos, float* sin) const;
  int64_t half() const { return int64_t(inv_freq_.size()); }
  int64_t dim() const { return 2 * half(); }

  // The table of at() for positions [0, n): computed once, grown in steps as longer sequences
  // come (not thread-safe: grow on one thread, then read from any).
  void ensure(int64_t n);
  // half() cos values then half() sin values of position pos (< the size ensured).
  const float* row(int64_t pos) const { return &table_[size_t(pos * 2 * half())]; }

 private:
  std::vector<double> inv_freq_;
  std::vector<float> table_;
  int64_t table_pos_ = 0;
  double magnitude_ = 1.0;
};

}  // namespace dpserve
