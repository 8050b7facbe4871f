#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace dpserve {

namespace {

// YaRN (DeepSeek-V2/V3, and transformers' "yarn" rope_type for Llama / Qwen): frequencies whose
// wavelength fits the original context many times (more than beta_fast rotations) are kept, those
// rotating fewer than beta_slow times are divided by `factor`, and a linear ramp over the dimension
// indices blends the two in between. The ramp's ends are whole dimensions unless `truncate` is off.
void yarn(const RopeScaling& s, double theta, int64_t dim, std::vector<double>& inv_freq) {
  const int64_t half = dim / 2;
  auto correction_dim = [&](double rotations) {
    return double(dim) * std::log(s.original_max_position_embeddings / (rotations * 2.0 * M_PI)) /
           (2.0 * std::log(theta));
  };
  const double lo = correction_dim(s.beta_fast), hi = correction_dim(s.beta_slow);
  const double low = std::max(s.truncate ? std::floor(lo) : lo, 0.0);
  double high = std::min(s.truncate ? std::ceil(hi) : hi, double(dim - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double extra = inv_freq[size_t(i)];  // unscaled
    const double inter = extra / s.factor;
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    inv_freq[size_t(i)] = inter * ramp + extra * (1.0 - ramp);
  }
}

}  // namespace

RopeTable::RopeTable(const ModelConfig& c) {
  const int64_t dim = c.rope_dim();
  const int64_t half = dim / 2;
  inv_freq_.resize(half);
  const auto& s = c.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(dim));
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
  if (s.type == RopeScaling::Type::Yarn) {
    yarn(s, c.rope_theta, dim, inv_freq_);
    magnitude_ = s.attention_factor > 0 ? s.attention_factor
                                        : yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim);
  } else if (s.type == RopeScaling::Type::LongRope) {
    magnitude_ = s.attention_factor;  // the divisors are freq_factors, applied above
  }
}

void RopeTable::at(int64_t pos, float* cos, float* sin) const {
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    double a = double(pos) * inv_freq_[i];
    cos[i] = float(magnitude_ * std::cos(a));
    sin[i] = float(magnitude_ * std::sin(a));
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
