// One GGUF file (llama.cpp's model format, versions 2 and 3), memory-mapped and validated: the
// metadata key/value pairs of every GGUF value type, and the tensor infos with their data in the
// mapping. Nothing is copied; a bad or hostile file is a dpserve::Error naming the file and what
// is wrong, and every size the file claims is checked against the file before anything is sized
// by it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"

namespace dpserve {

enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

const char* gguf_type_name(GgufType t);

// One metadata value. Strings and arrays point into the mapping (valid while the file is open).
struct GgufValue {
  GgufType type = GgufType::U8;
  const uint8_t* raw = nullptr;  // scalar: its little-endian bytes; numeric array: the first element
  std::string_view str;          // String
  // Array
  GgufType elem = GgufType::U8;
  uint64_t count = 0;
  std::vector<std::string_view> strings;  // array of String

  bool is_array_of(GgufType t) const { return type == GgufType::Array && elem == t; }
  // Element i of a numeric array (or the scalar itself when i == 0 and this is a scalar).
  // Integers convert exactly; a u64 above INT64_MAX throws.
  int64_t int_at(uint64_t i) const;
  double float_at(uint64_t i) const;
};

// The metadata of a file, with typed getters whose errors name the key and the file.
class GgufMetadata {
 public:
  explicit GgufMetadata(std::string where = "") : where_(std::move(where)) {}

  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // nullopt when absent; an error when present with another type.
  std::optional<int64_t> get_int(std::string_view key) const;  // any integer type
  std::optional<double> get_float(std::string_view key) const;  // F32 / F64 (or an integer)
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  // The array at `key` with elements of type `elem`; null when absent; an error for another type.
  const GgufValue* get_array(std::string_view key, GgufType elem) const;

  const std::map<std::string, GgufValue, std::less<>>& all() const { return values_; }
  const std::string& where() const { return where_; }
  void add(std::string key, GgufValue v) { values_.emplace(std::move(key), std::move(v)); }

 private:
  std::string where_;
  std::map<std::string, GgufValue, std::less<>> values_;
};

struct GgufTensorInfo {
  std::string name;
  uint32_t type = 0;        // GGML type id (model/gguf_types.h)
  std::vector<int64_t> ne;  // dimensions, fastest first: ne[0] is the row length
  uint64_t offset = 0;      // from the start of the data section
  uint64_t bytes = 0;
  const uint8_t* data = nullptr;  // in the mapping
  std::string file;

  int64_t numel() const;
};

class GgufFile {
 public:
  // Maps and parses `path`; throws dpserve::Error on anything malformed.
  explicit GgufFile(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const GgufMetadata& metadata() const { return meta_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }
  const std::string& path() const { return file_->path(); }

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  GgufMetadata meta_;
  std::vector<GgufTensorInfo> tensors_;
};

// Whether the file starts with the GGUF magic (false for a folder or an unreadable path).
bool has_gguf_magic(const std::string& path);

}  // namespace dpserve
