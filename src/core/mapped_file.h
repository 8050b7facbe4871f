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
  // Drops this process's pages of [p, p + n) (whole pages inside the range; a range outside the
  // mapping is ignored). They are read from the file again if touched later.
  void release(const void* p, size_t n) const;
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dpserve
