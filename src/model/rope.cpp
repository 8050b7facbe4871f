#include "model/rope.h"

#include <cmath>

namespace dpserve {

RopeTable::RopeTable(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  inv_freq_.resize(half);
  const auto& s = c.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
    if (s.type == RopeScaling::Type::Linear) {
      f /= s.factor;
    } else if (s.type == RopeScaling::Type::Llama3) {
      // Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
      const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
      const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
    if (!s.freq_factors.empty()) f /= double(s.freq_factors[size_t(i)]);
    inv_freq_[i] = f;
  }
}

void RopeTable::at(int64_t pos, float* cos, float* sin) const {
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    double a = double(pos) * inv_freq_[i];
    cos[i] = float(std::cos(a));
    sin[i] = float(std::sin(a));
  }
}

void RopeTable::ensure(int64_t n) {
  if (n <= table_pos_) return;
  const int64_t h = half();
  const int64_t grown = (n + 1023) / 1024 * 1024;
  table_.resize(size_t(grown * 2 * h));
  for (int64_t p = table_pos_; p < grown; ++p) at(p, &table_[size_t(p * 2 * h)], &table_[size_t(p * 2 * h + h)]);
  table_pos_ = grown;
}

}  // namespace dpserve
