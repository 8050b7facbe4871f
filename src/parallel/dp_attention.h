// DP attention data movement: the per-step token-count sync, the padding-mode choice, the layout of
// the global MLP buffer, and dp_gather / dp_scatter between attention groups and the MLP ranks.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "parallel/comm.h"
#include "parallel/topology.h"

namespace dpserve {

// How the groups' rows are laid out in the global buffer for one step.
//  MAX_LEN: every group gets the same number of rows P (the largest group's count rounded up to a
//           multiple of attn_tp_size); rows past a group's count are padding (zeros).
//  SUM_LEN: groups end to end, no padding.
enum class DpPaddingMode { kMaxLen, kSumLen };
// --dp-padding-mode: auto applies dpserve's measured rule per step, sglang SGLang's rule (see
// choose_padding_mode).
enum class DpPaddingRequest { kAuto, kSglang, kMaxLen, kSumLen };
// Which collectives move the rows.
//  kGatherScatter: all-gather (MAX_LEN) / all-gather-v (SUM_LEN) there, reduce-scatter of equal
//                  blocks / per-group counts back, plus an all-gather-v inside the attention group.
//  kAllReduce:     SGLang's zero-filled variant: each rank writes its rows into a zeroed global
//                  buffer and all-reduces it; the way back all-reduces the partial sums. Moves
//                  ~2x the bytes; kept to compare.
enum class DpTransport { kGatherScatter, kAllReduce };

const char* to_string(DpPaddingMode m);
const char* to_string(DpPaddingRequest m);  // "auto" | "sglang" | "max_len" | "sum_len" (--dp-padding-mode)
const char* to_string(DpTransport t);

// sglang: SUM_LEN if any group is in prefill (extend); else MAX_LEN when
// sum_len * 2 > max_len * num_groups (groups nearly balanced, padding is cheap), else SUM_LEN.
// auto: SUM_LEN, except MAX_LEN when every group has the same count and it is a multiple of
// attn_tp_size (then both layouts are identical and MAX_LEN's plain all-gather is used). Tuned on
// bench/dp_gather_bench (docs/distributed.md): over MPI, all-gather-v and reduce-scatter with counts
// cost the same as their equal-block forms, so padding only adds bytes; SGLang's rule, made for
// NCCL's equal-size all-gather, picked MAX_LEN 30-200% slower on skewed decode batches.
DpPaddingMode choose_padding_mode(DpPaddingRequest req, std::span<const int64_t> group_tokens, bool any_prefill,
                                  int attn_tp_size = 1);

// Result of the once-per-step MLP sync (an all-gather over the MLP group).
struct StepSync {
  std::vector<int64_t> group_tokens;  // tokens of each attention group of this MLP group, group order
  bool any_work = false;              // some group has tokens; if false the step can be skipped everywhere
  bool any_prefill = false;
};

// Every rank of the MLP group calls this once per step with its group's token count (the same on all
// ranks of an attention group; a group with nothing to do passes 0 and then runs an idle batch:
// zero rows through the same dp_gather / dp_scatter calls). Throws if ranks of one group disagree.
StepSync mlp_sync(const Comm& mlp, const Topology& topo, int64_t local_tokens, bool is_prefill);

// Rows of the global buffer and who owns them. Pure arithmetic, no MPI.
//
// Contribution rule: the rows of attention group g (identical on its attn_tp_size ranks after the
// attention all-reduce) are split into attn_tp_size consecutive slices; slot j of the group
// contributes only slice j in dp_gather and receives the reduced slice j in the reduce-scatter of
// dp_scatter; an all-gather inside the group then gives every slot all the group's rows. So every
// row crosses the network once each way, and MLP rank r = g * attn_tp_size + j owns slice j of g.
class DpLayout {
 public:
  // One slice of a group: rows [local_begin, local_begin + rows) of the group's local rows, of which
  // the first real_rows are tokens; the rest (MAX_LEN only) are padding.
  struct Slice {
    int64_t local_begin = 0;
    int64_t rows = 0;
    int64_t real_rows = 0;
  };

  DpLayout(std::span<const int64_t> group_tokens, int attn_tp_size, DpPaddingMode mode);

  DpPaddingMode mode() const { return mode_; }
  int num_groups() const { return int(tokens_.size()); }
  int attn_tp_size() const { return attn_tp_size_; }
  int64_t max_len() const { return max_len_; }
  int64_t sum_len() const { return sum_len_; }
  int64_t global_rows() const { return global_rows_; }

  int64_t group_tokens(int g) const { return tokens_[g]; }
  int64_t group_offset(int g) const { return offsets_[g]; }  // first global row of group g
  int64_t group_rows(int g) const;                           // rows reserved for g (with padding)
  Slice slice(int g, int slot) const;
  int64_t slice_global_begin(int g, int slot) const { return offsets_[g] + slice(g, slot).local_begin; }

  int group_of_row(int64_t row) const;  // group owning global row `row` (padding rows included)
  bool is_padding(int64_t row) const;   // padding rows must not be routed to experts
  int64_t local_row(int64_t row) const; // row index inside its group

 private:
  DpPaddingMode mode_;
  int attn_tp_size_;
  std::vector<int64_t> tokens_;
  std::vector<int64_t> offsets_;
  int64_t max_len_ = 0;
  int64_t sum_len_ = 0;
  int64_t block_ = 0;  // MAX_LEN: rows per slot; P = block_ * attn_tp_size
  int64_t global_rows_ = 0;
};

// dp_gather / dp_scatter for one rank. Holds references to its communicators (which must outlive
// it) and reusable scratch memory. Every rank of the MLP group must make the same calls in the same
// order with layouts built from the same StepSync.
class DpGatherScatter {
 public:
  DpGatherScatter(const Comm& mlp, const Comm& attn_tp, DpTransport transport = DpTransport::kGatherScatter);

  DpTransport transport() const { return transport_; }
  int group() const { return group_; }
  int slot() const { return slot_; }

  // group_rows: this rank's group rows [group_tokens(group()) x hidden] (all slots pass the same rows;
  // each sends only its slice). global: [global_rows x hidden] on every rank afterwards, padding rows 0.
  void gather(const DpLayout& layout, std::span<const float> group_rows, std::span<float> global, int64_t hidden);

  // partial: [global_rows x hidden] partial sums computed by this rank (e.g. its shard of the MLP);
  // values in padding rows are ignored. May be overwritten (kAllReduce reduces in place).
  // out: [group_tokens(group()) x hidden] = sum over all MLP ranks of partial, rows of this group.
  void scatter(const DpLayout& layout, std::span<float> partial, std::span<float> out, int64_t hidden);

 private:
  const Comm& mlp_;
  const Comm& attn_tp_;
  DpTransport transport_;
  int group_ = 0;
  int slot_ = 0;
  std::vector<float> scratch_;
  std::vector<int64_t> counts_, displs_;
};

}  // namespace dpserve
