// Repacked quantized weights (*_X16) taken to bf16 in the BF16_X16 layout (kernels/repack.h): the
// operand that bf16 tiles or vdpbf16ps multiply, made from a range of one group's blocks when it
// is needed instead of kept. Each weight is the bf16 (round to nearest even) of the reference
// decoder's fp32 value (kernels/dequant.h), so the conversion loses only that one rounding.
//
// Why: on AMX the int8 tiles of the K types pay an fp32 step per 256-element superblock and
// unpack every code, and those add up with the tile products (docs/kernels.md, "The folded K
// types"); bf16 tiles over converted weights have neither. This is the conversion and its cost
// (quant_kernels_bench BM_QuantToBf16; BM_QGemmViaBf16 multiplies converted panels with the bf16
// kernels, an estimate of that path); no matmul path uses it yet.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace dpserve {

// Elements [k0, k1) of the 16 rows of one group of a repacked quantized matrix (`t` one of the
// *_X16 block types; `group`: the group's first byte, its blocks in order) as BF16_X16 pairs:
// pair p (elements k0 + 2p, k0 + 2p + 1) at dst + 32 p, row r's two at dst[32 p + 2 r] and
// [32 p + 2 r + 1]. k0 and k1 are multiples of the type's block elements.
void quant_group_to_bf16(DType t, const uint8_t* group, int64_t k0, int64_t k1, uint16_t* dst);

}  // namespace dpserve
