// Multimodal RoPE positions (Qwen2-VL / Qwen2.5-VL, their get_rope_index for still images): each
// token gets a (temporal, height, width) position. Text tokens carry one running position in all
// three; an image's tokens, laid out row-major over its merged grid, take the running position p
// as temporal and p + row / p + col as height / width, and the text after it continues at
// p + max(rows, cols). Tokens past the prompt (decode) sit at their index + delta in all three.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace dpserve {

struct MropePositions {
  std::vector<int32_t> pos;  // 3 per prompt token: temporal, height, width
  int64_t delta = 0;         // position - index of every token after the prompt (<= 0)
};

// `tokens`: the prompt with each image's <|image_pad|> already expanded to rows x cols copies;
// `grids`: each image's merged grid (rows, cols), in prompt order. Runs of image_pad are taken by
// the images in order; a count that does not match is a dpserve::Error.
MropePositions mrope_positions(const int32_t* tokens, int64_t n, int32_t image_pad,
                               const std::vector<std::array<int64_t, 2>>& grids);

}  // namespace dpserve
