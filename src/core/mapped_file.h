// A read-only memory mapping of a whole file; pages are read on first touch,
// so a rank that uses only a slice of a tensor reads only that slice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dpserve {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dpserve
