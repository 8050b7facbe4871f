#include "model/mrope.h"

#include <algorithm>

#include "core/check.h"

namespace dpserve {

MropePositions mrope_positions(const int32_t* tokens, int64_t n, int32_t image_pad,
                               const std::vector<std::array<int64_t, 2>>& grids) {
  MropePositions out;
  out.pos.resize(size_t(3 * n));
  int64_t p = 0;        // the running position
  size_t img = 0;       // the image whose tokens come next
  int64_t in_img = 0;   // tokens of it already placed
  int64_t hi = -1;
  for (int64_t i = 0; i < n; ++i) {
    int64_t t = p, h = p, w = p;
    if (tokens[i] == image_pad) {
      if (img >= grids.size()) fail("prompt has more <|image_pad|> tokens than its {} image(s) fill", grids.size());
      const int64_t rows = grids[img][0], cols = grids[img][1];
      h = p + in_img / cols;
      w = p + in_img % cols;
      if (++in_img == rows * cols) {
        p += std::max(rows, cols);
        ++img;
        in_img = 0;
      }
    } else {
      if (in_img != 0) fail("image {} has {} <|image_pad|> tokens in the prompt, not {}", img, in_img,
                            grids[img][0] * grids[img][1]);
      ++p;
    }
    out.pos[size_t(3 * i)] = int32_t(t);
    out.pos[size_t(3 * i + 1)] = int32_t(h);
    out.pos[size_t(3 * i + 2)] = int32_t(w);
    hi = std::max({hi, t, h, w});
  }
  if (in_img != 0 || img != grids.size())
    fail("prompt's <|image_pad|> tokens fill {} of {} image(s)", img, grids.size());
  out.delta = hi + 1 - n;
  return out;
}

}  // namespace dpserve
