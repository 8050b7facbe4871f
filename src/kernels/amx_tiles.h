// Internal: the AMX tile configuration shared by the tile kernels (matmul_amx_bf16.cpp,
// qmatmul_amx.cpp). Included inside a file's `#pragma GCC target("amx-tile,...")` region.
//
// A configuration is per thread and stays loaded until another ldtilecfg; the kernels read it
// back (sttilecfg) and reload only when it differs, so two kernels (or a benchmark's peak loop)
// on the same thread never run on each other's shapes.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace dpserve::kernels::amx {

// The 64-byte operand of ldtilecfg (palette 1): bytes per row and rows of each of the 8 tiles.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  void set(int tile, int n_rows, int bytes_per_row) {
    rows[tile] = uint8_t(n_rows);
    colsb[tile] = uint16_t(n_rows ? bytes_per_row : 0);
  }
};

inline void ensure_config(const TileConfig& c) {
  TileConfig now;
  _tile_storeconfig(&now);
  if (std::memcmp(&now, &c, sizeof c) != 0) _tile_loadconfig(&c);
}

// The shape both tile kernels use for two row tiles against two B tiles of 16 rows of 64 bytes:
// tiles 0-3 are C (0, 1 for row tile 0's r0 rows, 2, 3 for row tile 1's r1), 4 and 5 the A tiles
// of the two row tiles (64 bytes a row), 6 and 7 the B tiles. r1 = 0 leaves row tile 1 unconfigured.
inline void configure_two_row_tiles(int r0, int r1) {
  TileConfig c;
  c.set(0, r0, 64);
  c.set(1, r0, 64);
  c.set(2, r1, 64);
  c.set(3, r1, 64);
  c.set(4, r0, 64);
  c.set(5, r1, 64);
  c.set(6, 16, 64);
  c.set(7, 16, 64);
  ensure_config(c);
}

// configure_two_row_tiles for one kernel call: nothing else configures the thread's tiles inside
// a call, so the shape set last is still loaded and only a change goes back to ensure_config.
// Its read-back (sttilecfg) waits for the tile unit to drain; done for every 32 x 32 tile pair
// it was 8 % of a bf16 product on a Xeon.
class TwoRowTileShape {
 public:
  void set(int r0, int r1) {
    if (r0 == r0_ && r1 == r1_) return;
    configure_two_row_tiles(r0, r1);
    r0_ = r0;
    r1_ = r1;
  }

 private:
  int r0_ = -1, r1_ = -1;
};

}  // namespace dpserve::kernels::amx
