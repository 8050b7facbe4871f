#include "model/weight_store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "core/bf16.h"
#include "core/check.h"

namespace fs = std::filesystem;

namespace dpserve {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

void WeightStore::add(const std::string& name, TensorInfo t) { tensors_[name] = std::move(t); }

void WeightStore::add_owned(const std::string& name, TensorInfo t, std::vector<uint8_t> bytes) {
  t.data = keep(std::move(bytes));
  add(name, std::move(t));
}

const uint8_t* WeightStore::keep(std::vector<uint8_t> bytes) {
  owned_.push_back(std::make_unique<std::vector<uint8_t>>(std::move(bytes)));
  return owned_.back()->data();
}

const Fp8BlockScales* WeightStore::keep(Fp8BlockScales s, std::vector<float> scales) {
  auto& o = fp8_scales_.emplace_back(std::make_unique<OwnedFp8Scales>(OwnedFp8Scales{std::move(scales), s}));
  o->scales.s = o->values.data();
  return &o->scales;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void WeightStore::add_bytes(const std::string& name, TensorInfo t) { bytes_[name] = std::move(t); }

TensorInfo WeightStore::take_bytes(const std::string& name, const std::vector<int64_t>& shape) {
  const auto it = bytes_.find(name);
  if (it == bytes_.end()) fail("weights: missing tensor \"{}\" (U8)", name);
  TensorInfo t = it->second;
  if (t.shape != shape)
    fail("weights: tensor \"{}\" in {} has shape {}, expected {}", name, t.file, shape_text(t.shape), shape_text(shape));
  bytes_.erase(it);
  return t;
}

void WeightStore::split_rows(const std::string& name, const std::vector<std::pair<std::string, int64_t>>& parts) {
  const TensorInfo t = get(name);
  int64_t rows = 0;
  for (const auto& p : parts) rows += p.second;
  // A stacked tensor [E, R, C] splits as the E * R rows of C it is in memory.
  int64_t have = t.shape.size() >= 2 ? 1 : 0;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i) have *= t.shape[i];
  const int64_t cols = t.shape.empty() ? 0 : t.shape.back();
  if (t.shape.size() < 2 || have != rows)
    fail("weights: tensor \"{}\" in {} has shape {}, expected {} rows of {} ({} fused row blocks)", name, t.file,
         shape_text(t.shape), rows, cols, parts.size());
  const int64_t row_bytes = dtype_row_bytes(t.dtype, cols);
  int64_t r0 = 0;
  for (const auto& [part, n] : parts) {
    TensorInfo v = t;
    v.shape = {n, cols};
    v.data = static_cast<const uint8_t*>(t.data) + r0 * row_bytes;
    v.fp8_row0 = t.fp8_row0 + r0;
    add(part, std::move(v));
    r0 += n;
  }
  tensors_.erase(name);
}

const TensorInfo& WeightStore::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("weights: tensor \"{}\" not found in the model files", name);
  return it->second;
}

WeightView WeightStore::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const TensorInfo& t = get(name);
  if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols)
    fail("weights: tensor \"{}\" in {} has shape {}, expected [{}, {}]", name, t.file, shape_text(t.shape), rows,
         cols);
  return WeightView{t.data, t.dtype, rows, cols, cols, t.fp8, t.fp8_row0, 0};
}

WeightView shard_cols(const WeightView& w, int64_t c0, int64_t n, const std::string& name, const char* flag) {
  const int64_t b = dtype_block_elems(w.dtype);
  if (c0 % b != 0 || (c0 + n) % b != 0)
    fail("{}: this rank's share of {} is columns [{}, {}) of {}, which do not fall on the {}-element blocks of its "
         "{} weights; choose a split of whole blocks",
         flag, name, c0, c0 + n, w.cols, b, dtype_name(w.dtype));
  return w.col_slice(c0, n);
}

std::vector<float> WeightStore::vector_f32(const std::string& name, int64_t n) const {
  const TensorInfo& t = get(name);
  if (t.shape.size() != 1 || t.shape[0] != n)
    fail("weights: tensor \"{}\" in {} has shape {}, expected [{}]", name, t.file, shape_text(t.shape), n);
  if (t.dtype == DType::F8_E4M3)
    fail("weights: tensor \"{}\" in {} is F8_E4M3; fp8 is read for weight matrices with their scales only", name,
         t.file);
  std::vector<float> out(n);
  WeightView v{t.data, t.dtype, 1, n, n};
  weight_row_to_f32(v, 0, out.data());
  return out;
}

void WeightStore::release(const void* p, size_t n) const {
  for (const auto& f : files_) f->release(p, n);
  const uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  for (const auto& o : owned_) {
    const uintptr_t ob = reinterpret_cast<uintptr_t>(o->data()), oe = ob + o->size();
    if (n == 0 || b < ob || e > oe) continue;
    // Whole pages inside [b, e) (the buffer's allocator keeps its own words outside its bytes),
    // cut around the ranges still read.
    std::vector<std::pair<uintptr_t, uintptr_t>> parts{{(b + page - 1) / page * page, e / page * page}};
    for (const auto& [rb, re] : still_read_) {
      const uintptr_t lo = rb / page * page, hi = (re + page - 1) / page * page;  // the pages it touches
      std::vector<std::pair<uintptr_t, uintptr_t>> left;
      for (const auto& [pb, pe] : parts) {
        if (pb < std::min(pe, lo)) left.emplace_back(pb, std::min(pe, lo));
        if (std::max(pb, hi) < pe) left.emplace_back(std::max(pb, hi), pe);
      }
      parts = std::move(left);
    }
    for (const auto& [pb, pe] : parts)
      if (pe > pb) ::madvise(reinterpret_cast<void*>(pb), pe - pb, MADV_DONTNEED);
  }
}

void WeightStore::still_read(const void* p, size_t n) {
  const uintptr_t b = reinterpret_cast<uintptr_t>(p);
  if (n > 0) still_read_.emplace_back(b, b + n);
}

void load_safetensors_file(const std::string& path, WeightStore& store) {
  auto f = std::make_shared<MappedFile>(path);
  const uint8_t* p = f->data();
  size_t size = f->size();
  if (size < 8) fail("safetensors: {} is truncated ({} bytes)", path, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | p[i];
  if (hlen > size - 8 || hlen > (100u << 20)) fail("safetensors: {} has a header length of {} bytes, larger than the file", path, hlen);
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(p + 8, p + 8 + hlen);
  } catch (const std::exception& e) {
    fail("safetensors: {} has a malformed JSON header: {}", path, e.what());
  }
  if (!h.is_object()) fail("safetensors: {} header is not a JSON object", path);
  const uint8_t* base = p + 8 + hlen;
  uint64_t data_size = size - 8 - hlen;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> ranges;  // for the overlap check
  for (auto& [name, v] : h.items()) {
    if (name == "__metadata__") continue;
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail("safetensors: {}: entry \"{}\" lacks dtype/shape/data_offsets", path, name);
    TensorInfo t;
    t.file = path;
    std::string dt = v["dtype"].is_string() ? v["dtype"].get<std::string>() : "";
    // U8: packed codes of a format the loader decodes (gpt-oss's MXFP4 experts), kept as bytes.
    const bool u8 = dt == "U8";
    if (dt == "BF16") t.dtype = DType::BF16;
    else if (dt == "F16") t.dtype = DType::F16;
    else if (dt == "F32") t.dtype = DType::F32;
    else if (dt == "F8_E4M3") t.dtype = DType::F8_E4M3;  // with block scales (model/fp8_checkpoint.h)
    else if (!u8)
      fail("safetensors: {}: tensor \"{}\" has unsupported dtype \"{}\" (supported: BF16, F16, F32, F8_E4M3 with "
           "block scales, U8)", path, name, dt);
    const uint64_t esize = u8 ? 1 : uint64_t(dtype_size(t.dtype));
    if (!v["shape"].is_array()) fail("safetensors: {}: tensor \"{}\" has a malformed shape", path, name);
    uint64_t numel = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t(1) << 40))
        fail("safetensors: {}: tensor \"{}\" has an invalid dimension", path, name);
      t.shape.push_back(d.get<int64_t>());
      if (t.shape.back() != 0 && numel > (uint64_t(1) << 48) / uint64_t(t.shape.back()))
        fail("safetensors: {}: tensor \"{}\" is impossibly large", path, name);
      numel *= uint64_t(t.shape.back());
    }
    auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail("safetensors: {}: tensor \"{}\" has malformed data_offsets", path, name);
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      fail("safetensors: {}: tensor \"{}\" data [{}, {}) lies outside the file's {} data bytes (truncated file?)",
           path, name, b, e, data_size);
    if (e - b != numel * esize)
      fail("safetensors: {}: tensor \"{}\" has {} bytes but shape {} of {} needs {}", path, name, e - b,
           shape_text(t.shape), dt, numel * esize);
    // The kernels read elements in place; the safetensors writer pads the header so they are aligned.
    if ((8 + hlen + b) % esize != 0)
      fail("safetensors: {}: tensor \"{}\" data at byte {} is not aligned to its {}-byte elements", path, name,
           8 + hlen + b, esize);
    t.data = base + b;
    if (e > b) ranges.push_back({{b, e}, name});
    if (u8) {
      store.add_bytes(name, std::move(t));
    } else {
      store.add(name, std::move(t));
    }
  }
  // Tensors sharing bytes are a crafted (or corrupt) file, as the format's own validation says.
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first.first < ranges[i - 1].first.second)
      fail("safetensors: {}: tensors \"{}\" and \"{}\" overlap (data [{}, {}) and [{}, {}))", path,
           ranges[i - 1].second, ranges[i].second, ranges[i - 1].first.first, ranges[i - 1].first.second,
           ranges[i].first.first, ranges[i].first.second);
  store.add_file(std::move(f));
}

void load_safetensors_folder(const std::string& dir, WeightStore& store) {
  fs::path d(dir);
  std::vector<std::string> files;
  if (fs::exists(d / "model.safetensors.index.json")) {
    std::ifstream in(d / "model.safetensors.index.json");
    nlohmann::json idx;
    try {
      in >> idx;
    } catch (const std::exception& e) {
      fail("{}: malformed model.safetensors.index.json: {}", dir, e.what());
    }
    std::set<std::string> names;
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail("{}: model.safetensors.index.json has no weight_map", dir);
    for (auto& [k, v] : idx["weight_map"].items())
      if (v.is_string()) names.insert(v.get<std::string>());
    for (auto& n : names) {
      if (!fs::exists(d / n)) fail("{}: shard {} named in model.safetensors.index.json is missing", dir, n);
      files.push_back((d / n).string());
    }
  } else if (fs::exists(d / "model.safetensors")) {
    files.push_back((d / "model.safetensors").string());
  } else {
    for (auto& e : fs::directory_iterator(d))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) fail("{}: no model.safetensors (or sharded *.safetensors) found", dir);
  for (auto& f : files) load_safetensors_file(f, store);
}

void WeightStore::rename_prefix(const std::string& from, const std::string& to) {
  std::map<std::string, TensorInfo> out;
  for (auto& [n, t] : tensors_) {
    std::string name = n.rfind(from, 0) == 0 ? to + n.substr(from.size()) : n;
    if (out.count(name)) fail("weights: {} appears under two prefixes", name);
    out.emplace(std::move(name), t);
  }
  tensors_ = std::move(out);
}

void WeightStore::rename(const std::string& from, const std::string& to) {
  auto node = tensors_.extract(from);
  if (node.empty()) return;
  if (tensors_.count(to)) fail("weights: {} appears under two names", to);
  node.key() = to;
  tensors_.insert(std::move(node));
}

void WeightStore::drop_prefix(const std::string& prefix) {
  for (auto it = tensors_.begin(); it != tensors_.end();) it = it->first.rfind(prefix, 0) == 0 ? tensors_.erase(it) : ++it;
}

}  // namespace dpserve
