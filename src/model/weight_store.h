// Named weight tensors backed by memory-mapped files (safetensors, GGUF or llama2.c).
// Tensors are views into the mappings: nothing is copied at load time, except the few a loader
// rearranges (add_owned).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "kernels/matmul.h"

namespace dpserve {

struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::string file;  // for error messages
  // F8_E4M3 (an fp8 checkpoint): the block scales (owned by the store) and the tensor's first row in
  // them (a part split_rows cut from a fused tensor).
  const Fp8BlockScales* fp8 = nullptr;
  int64_t fp8_row0 = 0;

  int64_t numel() const;
};

class WeightStore {
 public:
  void add_file(std::shared_ptr<MappedFile> f) { files_.push_back(std::move(f)); }
  void add(const std::string& name, TensorInfo t);
  // A tensor the loader built in memory (e.g. a GGUF tensor rearranged into the layout the layers
  // load); the store keeps `bytes` alive and points t.data at them.
  void add_owned(const std::string& name, TensorInfo t, std::vector<uint8_t> bytes);
  // A tensor of raw bytes (safetensors U8: packed codes such as gpt-oss's MXFP4 blocks and scales),
  // which no layer runs as it is: a loader decodes it into tensors (take_bytes) or the load fails
  // (bytes_left names what is left). Its dtype field is meaningless.
  void add_bytes(const std::string& name, TensorInfo t);
  bool has_bytes(const std::string& name) const { return bytes_.count(name) != 0; }
  // The byte tensor `name` (shape checked against `shape`), removed from the store's byte tensors.
  TensorInfo take_bytes(const std::string& name, const std::vector<int64_t>& shape);
  // The name of a byte tensor nothing took, or "".
  std::string bytes_left() const { return bytes_.empty() ? std::string() : bytes_.begin()->first; }
  // Keeps `bytes` alive as long as the store, for tensors (or views) a loader points into them.
  const uint8_t* keep(std::vector<uint8_t> bytes);
  // Keeps `s` (and the scales it points to) alive as long as the store.
  const Fp8BlockScales* keep(Fp8BlockScales s, std::vector<float> scales);
  // Forgets the tensor `name` (a loader consumed it, e.g. an fp8 weight's scales).
  void remove(const std::string& name) { tensors_.erase(name); }

  // Every tensor named `from`... is renamed `to`... (checkpoints that nest the same modules under
  // another prefix, e.g. Qwen2.5-VL's model.language_model. for model.).
  void rename_prefix(const std::string& from, const std::string& to);
  // One tensor under another name (nothing when `from` is absent; an error when `to` is taken).
  void rename(const std::string& from, const std::string& to);
  // Forgets every tensor named `prefix`... (parts of a checkpoint the model does not run, such as
  // the vision tower of a multimodal checkpoint served for text).
  void drop_prefix(const std::string& prefix);
  // Replaces the 2-D tensor `name` by views of consecutive row ranges, parts[i].second rows named
  // parts[i].first each (fused projections, e.g. Phi-3's qkv_proj into q_proj, k_proj and v_proj). No
  // copy: the parts point into the fused tensor. The rows must add up to the tensor's. A stacked
  // tensor [E, R, C] is its E * R rows (Granite-MoE's experts).
  void split_rows(const std::string& name, const std::vector<std::pair<std::string, int64_t>>& parts);

  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& get(const std::string& name) const;
  const std::map<std::string, TensorInfo>& all() const { return tensors_; }

  // The named 2-D tensor as a matmul weight; checks its shape is [rows, cols].
  WeightView matrix(const std::string& name, int64_t rows, int64_t cols) const;
  // The named 1-D tensor of length n, converted to fp32.
  std::vector<float> vector_f32(const std::string& name, int64_t n) const;
  // The bytes at [p, p + n) are no longer needed (a matrix converted at load into memory of its
  // own, model/weight_prep.h): their whole pages are dropped, from a mapped file (MappedFile::release:
  // read again, they come back from the file) or from a buffer the store owns (keep, add_owned: a
  // GGUF tensor the loader converted; read again, they are zeros), except pages of a still_read range.
  // Without it a Q4_K_M DeepSeek-V2-Lite kept its experts' Q5_0 blocks twice (as converted to Q8_0
  // and as repacked): 5 GB over the file's size.
  void release(const void* p, size_t n) const;
  // [p, p + n) is read as it is after the load (the embedding table, whose rows the steps look up,
  // and whose conversion as a tied LM head releases the same bytes): release() leaves it alone.
  void still_read(const void* p, size_t n);

 private:
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_;
  std::vector<std::pair<uintptr_t, uintptr_t>> still_read_;  // [begin, end) byte ranges
  struct OwnedFp8Scales {
    std::vector<float> values;
    Fp8BlockScales scales;  // points into values
  };
  std::vector<std::unique_ptr<OwnedFp8Scales>> fp8_scales_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, TensorInfo> bytes_;
};

// Columns [c0, c0 + n) of `w`, one rank's share of a sharded matrix. A quantized row splits only
// between its blocks: a share that starts or ends inside a block is a start-up error naming
// `flag`, the option that chose the split, and `name`, the tensor.
WeightView shard_cols(const WeightView& w, int64_t c0, int64_t n, const std::string& name, const char* flag);

// A tensor shape as error messages print it: "[4096, 11008]".
std::string shape_text(const std::vector<int64_t>& shape);

// Loads every *.safetensors file of a Hugging Face model folder (single file or
// sharded with model.safetensors.index.json).
void load_safetensors_folder(const std::string& dir, WeightStore& store);

// Parses one safetensors file into the store (validates header, dtypes, offsets).
void load_safetensors_file(const std::string& path, WeightStore& store);

}  // namespace dpserve
