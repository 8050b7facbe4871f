// LoRA adapters (Hugging Face PEFT folders: adapter_config.json + adapter_model.safetensors),
// read into this rank's shard of them: each targeted projection W gets y += scale * B (A x).
// A [r, in] and B [out, r] are kept in f32 (they are small), B multiplied by the scale, and sliced
// like the base weight: column-parallel projections (q, k, v, gate, up) keep B's rows of this
// rank's output slice and all of A; row-parallel ones (o, down) keep A's columns of this rank's
// input slice and all of B, whose partial output sums over the ranks with the base weight's.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/matmul.h"

namespace dpserve {

enum LoraModule : int { kLoraQ, kLoraK, kLoraV, kLoraO, kLoraGate, kLoraUp, kLoraDown, kLoraModules };
// PEFT's module name ("q_proj", ...).
const char* lora_module_name(int m);

// Where this rank's share of one projection sits in the full [out_full, in_full] weight.
struct LoraSlice {
  int64_t out_full = 0, in_full = 0;
  int64_t out0 = 0, out_n = 0;  // rows of the output kept
  int64_t in0 = 0, in_n = 0;    // columns of the input kept
};

// What of the base model an adapter may target.
struct LoraModelShape {
  int64_t n_layers = 0;
  std::vector<bool> layer_moe;  // per layer: the MLP is a mixture of experts
  bool mla = false;             // attention is DeepSeek's multi-head latent attention
  bool vision = false;          // has a vision tower (PEFT's "all-linear" would target it too)
  std::array<LoraSlice, kLoraModules> slice;
};

// One projection's low-rank update on this rank (r == 0: not targeted in this layer).
struct LoraProj {
  int64_t r = 0;
  std::vector<float> a;  // [r, in_n]
  std::vector<float> b;  // [out_n, r], times the adapter's scale
  WeightView A() const { return WeightView{a.data(), DType::F32, r, int64_t(a.size()) / r, int64_t(a.size()) / r}; }
  WeightView B() const { return WeightView{b.data(), DType::F32, int64_t(b.size()) / r, r, r}; }
};

struct LoraAdapter {
  std::string dir;
  int64_t rank = 0;
  double scale = 0;  // lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora
  std::array<bool, kLoraModules> targets{};
  std::vector<std::array<LoraProj, kLoraModules>> layers;
  int64_t bytes = 0;  // of A and B as held on this rank
  bool targets_mlp() const { return targets[kLoraGate] || targets[kLoraUp] || targets[kLoraDown]; }
};

// Reads and checks the adapter folder `dir` against the model; throws dpserve::Error naming the
// config field, target module or tensor it cannot run.
LoraAdapter load_lora_adapter(const std::string& dir, const LoraModelShape& shape);

}  // namespace dpserve
