// What a verify pass of n rows costs against a one-row decode step, estimated from the model's shape
// alone so that every rank of a DP group computes the same table (the draft policy that reads it must
// decide the same drafts everywhere without a message).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dpserve {

// Expected number of distinct experts that n rows choose together when each row picks `per_row` of
// `experts` uniformly at random: experts * (1 - (1 - per_row / experts)^n). Real routers correlate
// consecutive tokens, so this is an upper bound on the experts a verify pass reads.
double expected_distinct_experts(int64_t experts, int64_t per_row, int64_t rows);

// Per-mille costs of a pass of 1..max_rows rows of one sequence, [n - 1] for n rows ([0] == 1000).
// A decode step is bound by its weight reads: rows share every weight but a MoE layer's routed
// experts, which each row adds as it routes to new ones; each row also adds its own products
// (kRowComputePermille, measured on the dense TinyLlama shape: a 9-row pass is ~1.2-1.3x a 1-row step
// on two cores). `chain_layers` > 0 adds, per draft beyond the first, a one-row pass of that many
// of the target's layers (NEXTN's MTP layer drafts its chain a row at a time).
inline constexpr int64_t kRowComputePermille = 40;
std::vector<int32_t> verify_cost_permille(const ModelConfig& c, int64_t max_rows, int64_t chain_layers = 0);

}  // namespace dpserve
