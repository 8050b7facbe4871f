#include "server/md5.h"

#include <cmath>
#include <cstring>

namespace dpserve {

namespace {

// RFC 1321's T[i] = floor(2^32 * |sin(i + 1)|), computed (a double holds it exactly enough: the
// known-answer tests check the result).
std::array<uint32_t, 64> sine_table() {
  std::array<uint32_t, 64> t{};
  for (int i = 0; i < 64; ++i) t[i] = uint32_t(std::floor(std::fabs(std::sin(double(i + 1))) * 4294967296.0));
  return t;
}

constexpr int kShift[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};

uint32_t rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

}  // namespace

Md5::Md5() : h_{0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u} {}

void Md5::block(const unsigned char* p) {
  static const std::array<uint32_t, 64> T = sine_table();
  uint32_t x[16];
  for (int i = 0; i < 16; ++i)
    x[i] =
        uint32_t(p[4 * i]) | uint32_t(p[4 * i + 1]) << 8 | uint32_t(p[4 * i + 2]) << 16 | uint32_t(p[4 * i + 3]) << 24;
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
  for (int i = 0; i < 64; ++i) {
    const int round = i / 16;
    uint32_t f;
    int k;
    switch (round) {
      case 0:
        f = (b & c) | (~b & d);
        k = i;
        break;
      case 1:
        f = (b & d) | (c & ~d);
        k = (5 * i + 1) % 16;
        break;
      case 2:
        f = b ^ c ^ d;
        k = (3 * i + 5) % 16;
        break;
      default:
        f = c ^ (b | ~d);
        k = (7 * i) % 16;
        break;
    }
    const uint32_t next = b + rotl(a + f + T[i] + x[k], kShift[round][i % 4]);
    a = d;
    d = c;
    c = b;
    b = next;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
}

void Md5::update(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size();
  length_ += n;
  if (buffered_ > 0) {
    const size_t take = std::min(n, 64 - buffered_);
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    n -= take;
    if (buffered_ < 64) return;
    block(buf_);
    buffered_ = 0;
  }
  for (; n >= 64; p += 64, n -= 64) block(p);
  std::memcpy(buf_, p, n);
  buffered_ = n;
}

std::string Md5::hex() {
  // Padding: a 1 bit, zeros to 56 bytes mod 64, then the length in bits, little-endian.
  const uint64_t bits = length_ * 8;
  unsigned char pad[72] = {0x80};
  const size_t pad_len = buffered_ < 56 ? 56 - buffered_ : 120 - buffered_;
  for (int i = 0; i < 8; ++i) pad[pad_len + i] = static_cast<unsigned char>(bits >> (8 * i));
  update(std::string_view(reinterpret_cast<const char*>(pad), pad_len + 8));
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint32_t w : h_)
    for (int i = 0; i < 4; ++i) {
      const unsigned byte = (w >> (8 * i)) & 0xff;
      out += digits[byte >> 4];
      out += digits[byte & 15];
    }
  return out;
}

std::string md5_hex(std::string_view bytes) {
  Md5 m;
  m.update(bytes);
  return m.hex();
}

}  // namespace dpserve
