#include "model/weight_prep.h"

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/isa.h"
#include "kernels/quantize.h"

namespace dpserve {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
}  // namespace

WeightPrep::FloatLayout WeightPrep::float_layout() {
  const char* e = std::getenv("DPSERVE_WEIGHTS");
  if (!e || !*e || std::string(e) == "repacked") return FloatLayout::kRepacked;
  if (std::string(e) == "copied") return FloatLayout::kCopied;
  if (std::string(e) == "mapped") return FloatLayout::kMapped;
  fail("DPSERVE_WEIGHTS={}: expected 'repacked' (the default), 'copied' or 'mapped'", e);
}

WeightPrep::WeightPrep(Quantization q, int64_t n_layers, std::function<void(const void*, size_t)> release,
                       bool verbose)
    : q_(q),
      n_layers_(n_layers),
      release_(std::move(release)),
      verbose_(verbose),
      progress_(verbose && ::isatty(2)),
      floats_(float_layout()),
      x16_kernel_(isa_reads_float_x16(best_kernel_isa())) {}

void WeightPrep::add(WeightView* slot, WeightRole role, int64_t layer, int64_t full_cols, const std::string& name,
                     bool groups) {
  const WeightView& w = *slot;
  if (!w.data || w.rows == 0 || dtype_row_group(w.dtype) > 1) return;
  // No kernel reads fp8: its matrices run as the bf16 values their scales give (and quantize from them).
  const bool fp8 = w.dtype == DType::F8_E4M3;
  const DType stored = fp8 ? DType::BF16 : w.dtype;
  const DType target = dtype_is_quantized(w.dtype) ? w.dtype : quantized_type(q_, role, layer, n_layers_, full_cols, stored);
  if (!dtype_is_quantized(target)) {
    if (floats_ == FloatLayout::kMapped && !fp8) return;
    // bf16 and f16 rows of whole 32-element chunks go into 16-row groups where a kernel reads them
    // in that form; anything else (f32) is copied as it is.
    const bool repack = groups && floats_ == FloatLayout::kRepacked && x16_kernel_ &&
                        (target == DType::BF16 || target == DType::F16) && dtype_row_splits(dtype_interleaved(target), w.cols);
    items_.push_back(Item{slot, role, layer, full_cols, name, target, repack});
    return;
  }
  // The recipe fits the whole matrix; this rank's slice of its columns must fit too.
  if (!dtype_row_splits(target, w.cols))
    fail("--tp-size: {} ({} input columns) would be split into slices of {}, not whole {}-element {} blocks; "
         "each rank's slice must be a multiple of {}",
         name, full_cols, w.cols, dtype_block_elems(target), dtype_name(target), dtype_block_elems(target));
  items_.push_back(Item{slot, role, layer, full_cols, name, target, true});
  converted_[name] = target;
}

namespace {

// Where each matrix's bytes start inside the region: cache-line aligned, as the kernels' loads like.
constexpr size_t kMatrixAlign = 64;

}  // namespace

size_t WeightPrep::out_bytes(const Item& it) {
  const WeightView& w = *it.slot;
  if (!it.repack) return size_t(dtype_row_bytes(it.target, w.cols) * w.rows);
  return size_t(interleaved_rows(it.target, w.rows) * dtype_row_bytes(it.target, w.cols));
}

uint8_t* WeightPrep::take(size_t n) {
  uint8_t* p = region_.data() + region_used_;
  region_used_ += (n + kMatrixAlign - 1) / kMatrixAlign * kMatrixAlign;
  DP_CHECK(region_used_ <= region_.size(), "WeightPrep: the weight region is smaller than its matrices");
  return p;
}

namespace {

// Row r of w as `cols` elements of t (BF16 or a block type), through fp32.
void encode_row(const WeightView& w, int64_t r, DType t, float* f, uint8_t* dst) {
  weight_row_to_f32(w, r, f);
  if (t == DType::BF16) {
    bf16_t* d = reinterpret_cast<bf16_t*>(dst);
    for (int64_t c = 0; c < w.cols; ++c) d[c] = f32_to_bf16(f[c]);
  } else {
    quantize_row(t, f, dst, w.cols);
  }
}

}  // namespace

WeightView WeightPrep::copy(const Item& it) {
  const WeightView& w = *it.slot;
  const int64_t rb = dtype_row_bytes(it.target, w.cols), ldb = dtype_row_bytes(w.dtype, w.ld);
  const size_t n = size_t(rb * w.rows);
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  uint8_t* dst = take(n);
  if (w.dtype == it.target) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < w.rows; ++r) std::memcpy(dst + r * rb, src + r * ldb, size_t(rb));
    copied_bytes_ += int64_t(n);
  } else {  // an fp8 checkpoint's rows, as bf16
#pragma omp parallel
    {
      std::vector<float> f(static_cast<size_t>(w.cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < w.rows; ++r) encode_row(w, r, it.target, f.data(), dst + r * rb);
    }
  }
  release_(src, size_t(ldb * (w.rows - 1) + dtype_row_bytes(w.dtype, w.cols)));
  return WeightView{dst, it.target, w.rows, w.cols, w.cols};
}

WeightView WeightPrep::convert(const Item& it) {
  const WeightView& w = *it.slot;
  if (w.dtype == DType::F8_E4M3) {
    ++fp8_matrices_;
    fp8_bytes_ += w.rows * w.cols;
  }
  if (!it.repack) return copy(it);
  const int64_t G = interleave_group_rows(it.target);
  const int64_t rows = interleaved_rows(it.target, w.rows);
  const int64_t row_bytes = dtype_row_bytes(it.target, w.cols);
  uint8_t* dst = take(size_t(rows * row_bytes));
  const int64_t groups = rows / G;
  const DType src_t = w.dtype;
  const int64_t src_ld_bytes = dtype_row_bytes(src_t, w.ld);
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  if (src_t == it.target) {  // same element type: only the rows move
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t g = 0; g < groups; ++g)
      interleave_group(src_t, src + g * G * src_ld_bytes, src_ld_bytes, int(std::min<int64_t>(G, w.rows - G * g)),
                       w.cols, dst + g * G * row_bytes);
  } else {
    // Float rows: to fp32, quantize (or an fp8 checkpoint's to bf16), then repack, a group at a time per thread.
#pragma omp parallel
    {
      std::vector<float> f(static_cast<size_t>(w.cols));
      std::vector<uint8_t> plain(static_cast<size_t>(G * row_bytes));
#pragma omp for schedule(dynamic, 1)
      for (int64_t g = 0; g < groups; ++g) {
        const int n = int(std::min<int64_t>(G, w.rows - G * g));
        for (int r = 0; r < n; ++r) encode_row(w, G * g + r, it.target, f.data(), plain.data() + r * row_bytes);
        interleave_group(it.target, plain.data(), row_bytes, n, w.cols, dst + g * G * row_bytes);
      }
    }
  }
  // The source rows (with any columns of other ranks between them) are no longer needed here.
  release_(src, size_t(src_ld_bytes * (w.rows - 1) + dtype_row_bytes(src_t, w.cols)));
  if (dtype_is_quantized(it.target)) {
    old_bytes_ += dtype_row_bytes(src_t, w.cols) * w.rows;
    new_bytes_ += rows * row_bytes;
  } else {
    repacked_float_bytes_ += rows * row_bytes;
  }
  return WeightView{dst, dtype_interleaved(it.target), w.rows, w.cols, w.cols};
}

void WeightPrep::run() {
  if (items_.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t total = 0, done = 0, quantized = 0, converted = 0;
  for (const Item& it : items_) total += it.slot->rows * it.slot->cols;
  for (const Item& it : items_)
    if (dtype_is_quantized(it.target)) {
      ++converted;
      if (!dtype_is_quantized(it.slot->dtype)) ++quantized;
    }
  int64_t repacked_floats = 0;
  for (const Item& it : items_) repacked_floats += it.repack && !dtype_is_quantized(it.target);
  const char* what = quantized ? "quantizing" : converted || repacked_floats ? "repacking" : "copying";
  // Every matrix goes into one region on 2 MiB pages. Matrices allocated one by one got huge pages
  // only when they were 2 MiB or larger, and a MoE's experts (a few hundred KB to a few MB each)
  // are mostly smaller: their decode then walked 4 KiB pages, and on a virtual machine (two-level
  // page walks) that made a Qwen3-MoE-like decode 2-5x slower (docs/benchmarks.md). The region's
  // pages are touched only as each matrix is written, so the peak RSS still follows the
  // conversion as the source pages are released.
  size_t bytes = 0;
  for (const Item& it : items_) bytes += (out_bytes(it) + kMatrixAlign - 1) / kMatrixAlign * kMatrixAlign;
  region_ = AlignedBytes(bytes, bytes >= kHugePage ? kHugePage : kMatrixAlign);
  if (bytes >= kHugePage) ::madvise(region_.data(), (bytes + kHugePage - 1) / kHugePage * kHugePage, MADV_HUGEPAGE);
  region_used_ = 0;
  int last_pct = -1;
  for (const Item& it : items_) {
    *it.slot = convert(it);
    done += it.slot->rows * it.slot->cols;
    const int pct = int(100 * done / total);
    if (progress_ && pct != last_pct) {
      last_pct = pct;
      const int bar = pct * 30 / 100;
      std::fprintf(stderr, "\r%s weights [%.*s%*s] %3d%%", what, bar, "##############################", 30 - bar, "",
                   pct);
      std::fflush(stderr);
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (progress_) std::fprintf(stderr, "\r%60s\r", "");
  if (verbose_ && converted)
    std::fprintf(stderr, "weights: %lld matrices %s (%.1f MB -> %.1f MB, %s)\n", (long long)converted,
                 quantized ? "quantized and repacked" : "repacked", double(old_bytes_) / 1e6, double(new_bytes_) / 1e6,
                 quantized ? (std::string("--quantization ") + to_string(q_)).c_str() : "16-row interleaved");
  if (verbose_ && repacked_float_bytes_)
    std::fprintf(stderr, "weights: %lld bf16 / f16 matrices repacked into 16-row groups in huge pages (%.1f MB)\n",
                 (long long)repacked_floats, double(repacked_float_bytes_) / 1e6);
  if (verbose_ && copied_bytes_)
    std::fprintf(stderr, "weights: %lld float matrices copied out of the file mapping into huge pages (%.1f MB)\n",
                 (long long)(int64_t(items_.size()) - converted - repacked_floats), double(copied_bytes_) / 1e6);
  if (verbose_ && fp8_matrices_)
    std::fprintf(stderr, "weights: %lld fp8 matrices (%.1f MB) converted with their block scales\n",
                 (long long)fp8_matrices_, double(fp8_bytes_) / 1e6);
  if (verbose_) std::fprintf(stderr, "weights: prepared in %.2f s\n", secs);
  items_.clear();
}

}  // namespace dpserve
