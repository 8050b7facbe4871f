#include "model/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/check.h"
#include "model/gguf_types.h"

namespace dpserve {

namespace {

// Caps far above any real model (vocabularies and merge lists stay below ~1M entries, files hold
// a few thousand tensors and under a hundred keys) but low enough that a file lying about a
// count cannot make us allocate more than a few hundred MB for its index.
constexpr uint64_t kMaxKeys = 1u << 20;
constexpr uint64_t kMaxTensors = 1u << 20;
constexpr uint64_t kMaxStringArray = 1u << 22;
constexpr uint64_t kMaxKeyBytes = 1u << 16;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr int64_t kMaxDim = int64_t(1) << 40;
constexpr uint64_t kMaxNumel = uint64_t(1) << 48;
constexpr uint64_t kMaxAlignment = uint64_t(1) << 30;

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool: return 1;
    case GgufType::U16:
    case GgufType::I16: return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32: return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64: return 8;
    case GgufType::String:
    case GgufType::Array: return 0;
  }
  return 0;
}

bool valid_type(uint32_t t) { return t <= uint32_t(GgufType::F64); }

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64: return true;
    default: return false;
  }
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF), as Python's decoder and
// gguf-py's writer use.
bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    i += len;
  }
  return true;
}

// Printable form of a name that may be hostile (for error messages only).
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  if (s.size() > 80) out += "...";
  return out;
}

class Cursor {
 public:
  Cursor(const uint8_t* begin, size_t size, const std::string& path)
      : begin_(begin), p_(begin), end_(begin + size), path_(path) {}

  uint64_t offset() const { return uint64_t(p_ - begin_); }
  uint64_t left() const { return uint64_t(end_ - p_); }

  const uint8_t* take(uint64_t n, const char* what) {
    if (n > left())
      fail("GGUF {}: truncated while reading {} at byte {} (needs {} bytes, {} left)", path_, what, offset(), n,
           left());
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  template <typename T>
  T read(const char* what) {
    return load<T>(take(sizeof(T), what));
  }
  std::string_view string(const char* what, uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
    const uint64_t n = read<uint64_t>(what);
    if (n > max_len) fail("GGUF {}: {} at byte {} is {} bytes long (at most {} allowed)", path_, what, offset(), n, max_len);
    const uint8_t* s = take(n, what);
    std::string_view v(reinterpret_cast<const char*>(s), size_t(n));
    if (!valid_utf8(v))
      fail("GGUF {}: {} at byte {} is not valid UTF-8 (\"{}\")", path_, what, offset() - n, printable(v));
    return v;
  }

 private:
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& path_;
};

GgufValue read_value(Cursor& c, GgufType type, const std::string& path, const std::string& key) {
  GgufValue v;
  v.type = type;
  if (type == GgufType::String) {
    v.str = c.string("a string value");
    return v;
  }
  if (type != GgufType::Array) {
    v.raw = c.take(scalar_size(type), "a metadata value");
    if (type == GgufType::Bool && *v.raw > 1)
      fail("GGUF {}: metadata key \"{}\" is a bool with the value {} (must be 0 or 1)", path, key, int(*v.raw));
    return v;
  }
  const uint32_t et = c.read<uint32_t>("an array type");
  if (!valid_type(et)) fail("GGUF {}: metadata key \"{}\" is an array of unknown value type {}", path, key, et);
  v.elem = GgufType(et);
  if (v.elem == GgufType::Array)
    fail("GGUF {}: metadata key \"{}\" is an array of arrays, which GGUF readers do not support", path, key);
  v.count = c.read<uint64_t>("an array length");
  if (v.elem == GgufType::String) {
    // Each string needs at least its 8-byte length: a count the file cannot hold is a lie.
    if (v.count > c.left() / 8 || v.count > kMaxStringArray)
      fail("GGUF {}: metadata key \"{}\" claims {} strings, more than the file can hold{}", path, key, v.count,
           v.count > kMaxStringArray ? fmt::format(" or dpserve accepts ({})", kMaxStringArray) : "");
    v.strings.reserve(size_t(v.count));
    for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(c.string("an array string"));
    return v;
  }
  const uint64_t es = scalar_size(v.elem);
  if (v.count > c.left() / es)
    fail("GGUF {}: metadata key \"{}\" claims {} elements of {} ({} bytes), more than the {} bytes left in the file",
         path, key, v.count, gguf_type_name(v.elem), v.count * es, c.left());
  v.raw = c.take(v.count * es, "an array");
  if (v.elem == GgufType::Bool)
    for (uint64_t i = 0; i < v.count; ++i)
      if (v.raw[i] > 1) fail("GGUF {}: metadata key \"{}\" holds a bool that is neither 0 nor 1", path, key);
  return v;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "uint8";
    case GgufType::I8: return "int8";
    case GgufType::U16: return "uint16";
    case GgufType::I16: return "int16";
    case GgufType::U32: return "uint32";
    case GgufType::I32: return "int32";
    case GgufType::F32: return "float32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "uint64";
    case GgufType::I64: return "int64";
    case GgufType::F64: return "float64";
  }
  return "?";
}

int64_t GgufValue::int_at(uint64_t i) const {
  const GgufType t = type == GgufType::Array ? elem : type;
  DP_CHECK(is_integer(t) || t == GgufType::Bool, "int_at on a {}", gguf_type_name(t));
  DP_CHECK(type == GgufType::Array ? i < count : i == 0);
  const uint8_t* p = raw + i * scalar_size(t);
  switch (t) {
    case GgufType::Bool:
    case GgufType::U8: return *p;
    case GgufType::I8: return load<int8_t>(p);
    case GgufType::U16: return load<uint16_t>(p);
    case GgufType::I16: return load<int16_t>(p);
    case GgufType::U32: return load<uint32_t>(p);
    case GgufType::I32: return load<int32_t>(p);
    case GgufType::I64: return load<int64_t>(p);
    case GgufType::U64: {
      const uint64_t u = load<uint64_t>(p);
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) fail("GGUF: uint64 value {} is out of range", u);
      return int64_t(u);
    }
    default: return 0;
  }
}

double GgufValue::float_at(uint64_t i) const {
  const GgufType t = type == GgufType::Array ? elem : type;
  DP_CHECK(type == GgufType::Array ? i < count : i == 0);
  if (t == GgufType::F32) return load<float>(raw + i * 4);
  if (t == GgufType::F64) return load<double>(raw + i * 8);
  return double(int_at(i));
}

const GgufValue* GgufMetadata::find(std::string_view key) const {
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufMetadata::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!is_integer(v->type))
    fail("GGUF {}: metadata key \"{}\" is a {}, expected an integer", where_, key, gguf_type_name(v->type));
  return v->int_at(0);
}

std::optional<double> GgufMetadata::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::F32 && v->type != GgufType::F64 && !is_integer(v->type))
    fail("GGUF {}: metadata key \"{}\" is a {}, expected a number", where_, key, gguf_type_name(v->type));
  return v->float_at(0);
}

std::optional<bool> GgufMetadata::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::Bool)
    fail("GGUF {}: metadata key \"{}\" is a {}, expected a bool", where_, key, gguf_type_name(v->type));
  return *v->raw != 0;
}

std::optional<std::string> GgufMetadata::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::String)
    fail("GGUF {}: metadata key \"{}\" is a {}, expected a string", where_, key, gguf_type_name(v->type));
  return std::string(v->str);
}

const GgufValue* GgufMetadata::get_array(std::string_view key, GgufType elem) const {
  const GgufValue* v = find(key);
  if (!v) return nullptr;
  if (!v->is_array_of(elem)) {
    const std::string got = v->type == GgufType::Array ? fmt::format("an array of {}", gguf_type_name(v->elem))
                                                       : fmt::format("a {}", gguf_type_name(v->type));
    fail("GGUF {}: metadata key \"{}\" is {}, expected an array of {}", where_, key, got, gguf_type_name(elem));
  }
  return v;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

bool has_gguf_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[4] = {};
  return f && f.read(m, 4) && std::memcmp(m, "GGUF", 4) == 0;
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_shared<MappedFile>(path)), meta_(path) {
  Cursor c(file_->data(), file_->size(), path);
  if (file_->size() < 4 || std::memcmp(file_->data(), "GGUF", 4) != 0)
    fail("GGUF {}: not a GGUF file (the first bytes are not the magic \"GGUF\")", path);
  c.take(4, "the magic");
  version_ = c.read<uint32_t>("the version");
  if (version_ == 0x02000000u || version_ == 0x03000000u)
    fail("GGUF {}: a big-endian GGUF file; dpserve reads little-endian GGUF only", path);
  if (version_ == 1) fail("GGUF {}: GGUF version 1 is not supported (versions 2 and 3 are); re-convert the model", path);
  if (version_ != 2 && version_ != 3)
    fail("GGUF {}: unknown GGUF version {} (dpserve reads versions 2 and 3)", path, version_);
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // Smallest possible entries: a key of 0 bytes + type + 1-byte value; a tensor info of an empty
  // name, 1 dim, type and offset.
  if (n_kv > kMaxKeys || n_kv > c.left() / 13)
    fail("GGUF {}: header claims {} metadata keys, more than the file can hold", path, n_kv);
  if (n_tensors > kMaxTensors || n_tensors > c.left() / 32)
    fail("GGUF {}: header claims {} tensors, more than the file can hold", path, n_tensors);

  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key(c.string("a metadata key", kMaxKeyBytes));
    const uint32_t t = c.read<uint32_t>("a value type");
    if (!valid_type(t)) fail("GGUF {}: metadata key \"{}\" has unknown value type {}", path, key, t);
    GgufValue v = read_value(c, GgufType(t), path, key);
    if (meta_.has(key)) fail("GGUF {}: metadata key \"{}\" appears twice", path, key);
    meta_.add(key, std::move(v));
  }
  if (const GgufValue* a = meta_.find("general.alignment")) {
    // llama.cpp requires a uint32 power of two; anything else is a corrupt or crafted file.
    if (a->type != GgufType::U32)
      fail("GGUF {}: general.alignment is a {}, expected uint32", path, gguf_type_name(a->type));
    alignment_ = uint64_t(a->int_at(0));
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 || alignment_ > kMaxAlignment)
      fail("GGUF {}: general.alignment {} is not a power of two (up to 2^30)", path, alignment_);
  }

  tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.file = path;
    t.name = std::string(c.string("a tensor name", kMaxKeyBytes));
    const uint32_t nd = c.read<uint32_t>("a tensor's dimension count");
    if (nd == 0 || nd > kMaxDims)
      fail("GGUF {}: tensor \"{}\" has {} dimensions (1 to {} allowed)", path, t.name, nd, kMaxDims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const int64_t n = c.read<int64_t>("a tensor dimension");
      if (n < 1 || n > kMaxDim) fail("GGUF {}: tensor \"{}\" has dimension {} of size {}", path, t.name, d, n);
      if (numel > kMaxNumel / uint64_t(n))
        fail("GGUF {}: tensor \"{}\" is impossibly large (more than 2^48 elements)", path, t.name);
      numel *= uint64_t(n);
      t.ne.push_back(n);
    }
    t.type = c.read<uint32_t>("a tensor type");
    t.offset = c.read<uint64_t>("a tensor offset");
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (!ti) fail("GGUF {}: tensor \"{}\" has unknown GGML type id {}", path, t.name, t.type);
    if (t.ne[0] % ti->block_elems != 0)
      fail("GGUF {}: tensor \"{}\" has rows of {} elements, not a whole number of {}-element {} blocks", path,
           t.name, t.ne[0], ti->block_elems, ti->name);
    t.bytes = numel / uint64_t(ti->block_elems) * uint64_t(ti->block_bytes);
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t info_end = c.offset();
  const uint64_t data_start = (info_end + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > file_->size() && n_tensors > 0)
    fail("GGUF {}: truncated: the tensor data would start at byte {} of a {}-byte file", path, data_start,
         file_->size());
  const uint64_t data_size = data_start <= file_->size() ? file_->size() - data_start : 0;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, size_t>> ranges;
  ranges.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensorInfo& t = tensors_[i];
    if (t.offset % alignment_ != 0)
      fail("GGUF {}: tensor \"{}\" data offset {} is not a multiple of the alignment {}", path, t.name, t.offset,
           alignment_);
    if (t.offset > data_size || t.bytes > data_size - t.offset)
      fail("GGUF {}: tensor \"{}\" data [{}, {}) lies outside the file's {} data bytes (truncated file?)", path,
           t.name, t.offset, t.offset + t.bytes, data_size);
    t.data = file_->data() + data_start + t.offset;
    // Float tensors are read in place element by element: they must sit on their element size.
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (ti->block_elems == 1 && (data_start + t.offset) % uint64_t(ti->block_bytes) != 0)
      fail("GGUF {}: tensor \"{}\" data at byte {} is not aligned to its {}-byte elements", path, t.name,
           data_start + t.offset, ti->block_bytes);
    ranges.push_back({{t.offset, t.offset + t.bytes}, i});
  }
  // Tensors sharing bytes are a crafted (or corrupt) file; llama.cpp's writer never produces them.
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first.first < ranges[i - 1].first.second)
      fail("GGUF {}: tensors \"{}\" and \"{}\" overlap (data [{}, {}) and [{}, {}))", path,
           tensors_[ranges[i - 1].second].name, tensors_[ranges[i].second].name, ranges[i - 1].first.first,
           ranges[i - 1].first.second, ranges[i].first.first, ranges[i].first.second);
  std::vector<std::string_view> names;
  names.reserve(tensors_.size());
  for (const auto& t : tensors_) names.push_back(t.name);
  std::sort(names.begin(), names.end());
  for (size_t i = 1; i < names.size(); ++i)
    if (names[i] == names[i - 1]) fail("GGUF {}: tensor \"{}\" appears twice", path, names[i]);
}

}  // namespace dpserve
