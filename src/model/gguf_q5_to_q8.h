// GGUF Q5_0 / Q5_1 tensors as Q8_0 blocks, converted when the file is loaded. llama-quantize writes
// them in Q4_K_M / Q5_K_M files for matrices whose rows are not whole 256-element super-blocks
// (Qwen2.5-0.5B's 896, SmolLM2's 576 / 960, DeepSeek-V2-Lite's 1408-wide experts): Q4_K falls back
// to Q5_0, Q5_K to Q5_1. All three formats are 32-element blocks with an f16 scale, so:
//   Q5_0 (value d * (q - 16), q in 0..31): exact in Q8_0, the same d and codes q - 16;
//   Q5_1 (value d * q + m): requantized as Q8_0 from its decoded values by ggml's reference rule,
//        within half a Q8_0 step (1/254 of the block's largest magnitude) of them.
// The Q8_0 kernels then run them: 34 bytes a block instead of 22 / 24.
#pragma once

#include <cstdint>
#include <vector>

namespace dpserve {

constexpr uint32_t kGgmlQ5_0 = 6, kGgmlQ5_1 = 7, kGgmlQ8_0 = 8;

// `blocks` blocks of GGML type `type` (kGgmlQ5_0 or kGgmlQ5_1) at `src` -> the same number of Q8_0 blocks.
std::vector<uint8_t> q5_to_q8_0(uint32_t type, const uint8_t* src, int64_t blocks);

// The 32 values of one Q5_0 / Q5_1 block (for the conversion and its tests).
void dequantize_q5_block(uint32_t type, const uint8_t* block, float* out);

}  // namespace dpserve
