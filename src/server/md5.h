// MD5 (RFC 1321): the checksum OpenAI's Uploads API takes to verify a file assembled from parts.
// A checksum of transfer integrity, not a security measure.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace dpserve {

class Md5 {
 public:
  Md5();
  void update(std::string_view bytes);
  std::string hex();  // 32 lowercase hex digits; ends the digest (no update after)

 private:
  void block(const unsigned char* p);  // one 64-byte block

  std::array<uint32_t, 4> h_;
  unsigned char buf_[64];
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes seen
};

std::string md5_hex(std::string_view bytes);

}  // namespace dpserve
