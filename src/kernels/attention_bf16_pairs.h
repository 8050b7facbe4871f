// Internal: bf16 pairs for the AVX-512 BF16 and AMX attention (attention_avx512bf16.cpp,
// attention_amx.cpp): cached keys and values widened to bf16 and laid out as vdpbf16ps and
// tdpbf16ps take them (keys pairs-by-keys, values two rows interleaved), and fp32 rows rounded
// to bf16 pairs. Included inside each file's target region and anonymous namespace, after
// attention_avx512_ops.h (head_mask, transpose16).
#pragma once

// Up to 32 cached elements as bf16: those under mask m (nothing is read elsewhere), zero
// elsewhere. bf16 as stored; int8 codes converted exactly (every integer of 8 bits is a bf16).
__m512i load32_bf16_masked(const bf16_t* p, __mmask32 m) { return _mm512_maskz_loadu_epi16(m, p); }
// Each half widened straight to 32 bits from its own masked load: two shuffles where widening to
// 16 bits first, then splitting and widening again, took five (int8 caches' decode converts every
// key and value it reads).
__m512i load32_bf16_masked(const int8_t* p, __mmask32 m) {
  const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(__mmask16(m), p)));
  const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(__mmask16(m >> 16), p + 16)));
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // elements 0-15 from lo, 16-31 from hi
}
// fp8 codes are bf16 exactly too (at most 4 significant bits, exponents well inside bf16's): the
// bf16 of each of the 128 magnitudes, looked up 32 codes at a time by two 64-entry word permutes
// (code bit 6 picks one), the sign bit moved to bf16's. Subnormal codes come out exact as well.
// Built at compile time (a function-local static would put a guard check in every load, and keep
// the load from being inlined into the loops).
template <class F8>
constexpr std::array<uint16_t, 128> fp8_bf16_bits() {
  std::array<uint16_t, 128> r{};
  for (int c = 0; c < 128; ++c)  // exact in bf16, so truncating the fp32 bits is the conversion
    r[size_t(c)] = uint16_t(std::bit_cast<uint32_t>(fp8_to_f32(F8{uint8_t(c)})) >> 16);
  return r;
}
alignas(64) constexpr std::array<uint16_t, 128> kE4M3Bf16 = fp8_bf16_bits<fp8_e4m3_t>();
alignas(64) constexpr std::array<uint16_t, 128> kE5M2Bf16 = fp8_bf16_bits<fp8_e5m2_t>();
template <class F8>
  requires(std::is_same_v<F8, fp8_e4m3_t> || std::is_same_v<F8, fp8_e5m2_t>)
[[gnu::always_inline]] inline __m512i load32_bf16_masked(const F8* p, __mmask32 m) {
  const __m512i w = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p));
  const uint16_t* t = std::is_same_v<F8, fp8_e4m3_t> ? kE4M3Bf16.data() : kE5M2Bf16.data();
  const __m512i lo = _mm512_permutex2var_epi16(_mm512_load_si512(t), w, _mm512_load_si512(t + 32));
  const __m512i hi = _mm512_permutex2var_epi16(_mm512_load_si512(t + 64), w, _mm512_load_si512(t + 96));
  const __m512i mag = _mm512_mask_mov_epi16(lo, _mm512_test_epi16_mask(w, _mm512_set1_epi16(0x40)), hi);
  // mag | ((code << 8) & 0x8000)
  return _mm512_ternarylogic_epi32(mag, _mm512_slli_epi16(w, 8), _mm512_set1_epi16(int16_t(0x8000)), 0xF8);
}

// The mask of the first e of 32 elements.
inline __mmask32 first32(int64_t e) { return e >= 32 ? ~__mmask32(0) : __mmask32((uint64_t(1) << e) - 1); }

// Up to 32 cached elements, the first e of p, as load32_bf16_masked gives them.
template <class T>
[[gnu::always_inline]] inline __m512i load32_bf16(const T* p, int64_t e) {
  return load32_bf16_masked(p, first32(e));
}

// Sixteen keys as vdpbf16ps and tdpbf16ps take them: row p holds elements 2p and 2p + 1 of key j
// (row(j), or zeros where row(j) is null) in 32-bit lane j, which is also a B tile of 16 rows for
// 32 elements; the element past an odd width is zero. Rows past (d + 1) / 2 are not written.
template <class T, class Row>
void pack_key_pairs_rows(Row row, int64_t d, uint32_t* kp) {
  const int64_t pairs = (d + 1) / 2;
  for (int64_t c = 0; c < pairs; c += 16) {
    const int64_t elems = std::min<int64_t>(32, d - 2 * c);
    __m512i r[16];
    for (int j = 0; j < 16; ++j) {
      const T* k = row(j);
      r[j] = k ? load32_bf16(k + 2 * c, elems) : _mm512_setzero_si512();
    }
    transpose16(r);
    const int64_t np = std::min<int64_t>(16, pairs - c);
    // A constant trip count keeps r in registers: with np alone GCC stored r to the stack and
    // copied it with rep movsq (decode attention packs every step's keys: 13 % of its scoring).
    if (np == 16)
      for (int p = 0; p < 16; ++p) _mm512_store_si512(kp + (c + p) * 16, r[p]);
    else
      for (int64_t p = 0; p < np; ++p) _mm512_store_si512(kp + (c + p) * 16, r[p]);
  }
}

// G rows of n floats (row g at x + g * ldx), each times s[i] if kScaled (a page's softmax weights
// times the value rows' int8 / fp8 scales), rounded to bf16 (round to nearest even), as 32-bit
// pairs: out[g * ldo + p] holds elements 2p and 2p + 1 of row g for p < (n + 1) / 2 (the element
// past an odd n is zero). A row's query heads (pairs of elements) and a page's softmax weights
// (pairs of keys) both take this form.
template <bool kScaled = false>
void pack_bf16_pairs(const float* x, int64_t ldx, int64_t G, int64_t n, uint32_t* out, int64_t ldo,
                     const float* s = nullptr) {
  const int64_t np = (n + 1) / 2;
  for (int64_t g = 0; g < G; ++g) {
    uint16_t* row = reinterpret_cast<uint16_t*>(out + g * ldo);
    row[2 * np - 1] = 0;
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      __m512 v = _mm512_maskz_loadu_ps(m, x + g * ldx + i);
      if constexpr (kScaled) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, s + i));
      const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
      if (m == __mmask16(0xffff)) _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + i), h);  // store16's reason
      else _mm256_mask_storeu_epi16(row + i, m, h);
    }
  }
}

// The interleave that lets vdpbf16ps weigh two value rows at once: 32-bit lane i of `lo` holds
// element i of rows a and b (a's in the low half), of `hi` element 16 + i.
alignas(64) constexpr uint16_t kPairLo[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                              8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
alignas(64) constexpr uint16_t kPairHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                              24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};

// Columns of a packed value pair row: the value width rounded up to whole 32-element blocks.
constexpr int64_t value_pair_cols(int64_t d) { return (d + 31) / 32 * 32; }

// Two value rows a and b (b null: zeros), elements [i, i + e), as vdpbf16ps weighs two keys at
// once: lane l of x0 holds element i + l of both rows (a's in the low half), lane l of x1 element
// i + 16 + l. lo, hi: kPairLo, kPairHi (loaded once by the caller, outside its loops).
template <class T>
[[gnu::always_inline]] inline void value_pair_rows(const T* a, const T* b, int64_t i, int64_t e, __m512i lo,
                                                   __m512i hi, __m512i& x0, __m512i& x1) {
  const __m512i r0 = load32_bf16(a + i, e);
  const __m512i r1 = b ? load32_bf16(b + i, e) : _mm512_setzero_si512();
  x0 = _mm512_permutex2var_epi16(r0, lo, r1);
  x1 = _mm512_permutex2var_epi16(r0, hi, r1);
}
