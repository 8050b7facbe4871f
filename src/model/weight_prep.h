// Brings a rank's weight matrices into the form the kernels run fastest: block-quantized
// matrices (GGUF) are repacked to their 16-row interleaved *_X16 form, and float matrices are
// quantized first when --quantization asks (model/quant_recipe.h); an fp8 checkpoint's matrices
// become bf16 (or --quantization's type). Float matrices without a
// recipe are copied out of the file mapping; every converted matrix goes into one region of
// anonymous memory on 2 MiB pages (a decode step streams every matrix once: from 4 KiB file pages
// that ran ~12 % slower, and a MoE's small experts on 4 KiB pages 2-5x slower on a virtual
// machine, docs/benchmarks.md); bf16 and f16 ones go into 16-row groups (BF16_X16, F16_X16) on the way where a kernel that
// reads them runs (every SIMD level: kernels/isa.h). DPSERVE_WEIGHTS=copied copies float matrices as they are, =mapped keeps them in
// the mapping (shared by the ranks of one host through the page cache, where copies are one per
// rank). The new bytes are owned here
// and replace the mapping: the source pages are dropped from this process as each matrix is done,
// so peak RSS stays near the converted size. Prints the time taken, with a progress bar on a
// terminal.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "model/quant_recipe.h"

namespace dpserve {

class WeightPrep {
 public:
  // `release(p, n)`: the n source bytes at p are no longer needed by this matrix (drop the pages
  // of a mapping; a no-op elsewhere). `verbose`: print the summary line, and a progress bar if
  // stderr is a terminal (one rank of many says it).
  WeightPrep(Quantization q, int64_t n_layers, std::function<void(const void*, size_t)> release, bool verbose);

  // Registers a matrix (this rank's slice of the tensor `name`, which has `full_cols` input
  // features) for conversion; `slot` is overwritten by run(). An fp8 checkpoint's matrix (F8_E4M3)
  // is always converted: to bf16 (the values its block scales give), or to --quantization's type.
  // `groups` false keeps float rows plain (a caller that slices rows off group boundaries).
  void add(WeightView* slot, WeightRole role, int64_t layer, int64_t full_cols, const std::string& name,
           bool groups = true);

  // Converts every registered matrix (in parallel over each one's rows), then reports.
  void run();

  // Bytes of the converted matrices, and of what they replaced.
  int64_t new_bytes() const { return new_bytes_; }
  int64_t old_bytes() const { return old_bytes_; }
  // The block type each converted tensor now has (by name).
  const std::map<std::string, DType>& converted() const { return converted_; }
  // The converted matrices' memory (kept alive by the model).
  AlignedBytes take_region() { return std::move(region_); }

 private:
  struct Item {
    WeightView* slot;
    WeightRole role;
    int64_t layer, full_cols;
    std::string name;
    DType target;  // the element type as run (a block type is then repacked)
    bool repack;   // into dtype_interleaved(target)'s groups; else a plain copy
  };
  enum class FloatLayout { kRepacked, kCopied, kMapped };
  WeightView convert(const Item& it);
  WeightView copy(const Item& it);  // a float matrix as it is, rows packed
  static size_t out_bytes(const Item& it);  // what convert() writes for it
  uint8_t* take(size_t n);                  // the next n bytes of region_
  // DPSERVE_WEIGHTS: "repacked" (default), "copied" or "mapped"; anything else is a start-up error.
  static FloatLayout float_layout();

  Quantization q_;
  int64_t n_layers_;
  std::function<void(const void*, size_t)> release_;
  bool verbose_, progress_;
  std::vector<Item> items_;
  std::map<std::string, DType> converted_;
  AlignedBytes region_;  // every converted matrix, one after another
  size_t region_used_ = 0;
  FloatLayout floats_;
  bool x16_kernel_;  // a kernel that reads BF16_X16 / F16_X16 runs here
  int64_t new_bytes_ = 0, old_bytes_ = 0, copied_bytes_ = 0, repacked_float_bytes_ = 0;
  int64_t fp8_matrices_ = 0, fp8_bytes_ = 0;  // fp8 checkpoint matrices converted, and their bytes
};

}  // namespace dpserve
