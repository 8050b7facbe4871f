// Global-buffer arithmetic of DP attention (offsets, padding, slices, row ownership), no MPI.
// Expected values are worked out by hand in the comments.
#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"
#include "parallel/dp_attention.h"

namespace dpserve {
namespace {

struct S {
  int64_t begin, rows, real;
};

void expect_slices(const DpLayout& L, const std::vector<std::vector<S>>& want) {
  ASSERT_EQ(int(want.size()), L.num_groups());
  for (int g = 0; g < L.num_groups(); ++g)
    for (int j = 0; j < L.attn_tp_size(); ++j) {
      SCOPED_TRACE(testing::Message() << "group " << g << " slot " << j);
      const DpLayout::Slice s = L.slice(g, j);
      EXPECT_EQ(s.local_begin, want[g][j].begin);
      EXPECT_EQ(s.rows, want[g][j].rows);
      EXPECT_EQ(s.real_rows, want[g][j].real);
    }
}

void expect_rows(const DpLayout& L, const std::vector<int>& group, const std::vector<int>& pad) {
  ASSERT_EQ(int64_t(group.size()), L.global_rows());
  for (int64_t r = 0; r < L.global_rows(); ++r) {
    EXPECT_EQ(L.group_of_row(r), group[r]) << "row " << r;
    EXPECT_EQ(L.is_padding(r), pad[r] != 0) << "row " << r;
  }
}

// Groups of 5, 0 and 3 tokens, 2 ranks per group. MAX_LEN: max 5 -> 3 rows per slot -> 6 per group.
TEST(DpLayout, MaxLenThreeGroupsOneIdle) {
  const std::vector<int64_t> n = {5, 0, 3};
  DpLayout L(n, 2, DpPaddingMode::kMaxLen);
  EXPECT_EQ(L.max_len(), 5);
  EXPECT_EQ(L.sum_len(), 8);
  EXPECT_EQ(L.global_rows(), 18);
  EXPECT_EQ(L.group_offset(0), 0);
  EXPECT_EQ(L.group_offset(1), 6);
  EXPECT_EQ(L.group_offset(2), 12);
  for (int g = 0; g < 3; ++g) EXPECT_EQ(L.group_rows(g), 6);
  expect_slices(L, {{{0, 3, 3}, {3, 3, 2}}, {{0, 3, 0}, {3, 3, 0}}, {{0, 3, 3}, {3, 3, 0}}});
  expect_rows(L, {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2},
              {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1});
  EXPECT_EQ(L.local_row(14), 2);
  EXPECT_EQ(L.slice_global_begin(2, 1), 15);
}

// Same counts end to end: 0-4 group 0, group 1 empty, 5-7 group 2; 5 rows split 3+2, 3 rows 2+1.
TEST(DpLayout, SumLenThreeGroupsOneIdle) {
  const std::vector<int64_t> n = {5, 0, 3};
  DpLayout L(n, 2, DpPaddingMode::kSumLen);
  EXPECT_EQ(L.global_rows(), 8);
  EXPECT_EQ(L.group_offset(0), 0);
  EXPECT_EQ(L.group_offset(1), 5);
  EXPECT_EQ(L.group_offset(2), 5);
  EXPECT_EQ(L.group_rows(1), 0);
  expect_slices(L, {{{0, 3, 3}, {3, 2, 2}}, {{0, 0, 0}, {0, 0, 0}}, {{0, 2, 2}, {2, 1, 1}}});
  expect_rows(L, {0, 0, 0, 0, 0, 2, 2, 2}, {0, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(L.local_row(6), 1);
  EXPECT_EQ(L.slice_global_begin(2, 1), 7);
}

// 7 and 2 tokens over 3 ranks per group (neither a multiple of 3).
// MAX_LEN: ceil(7/3) = 3 rows per slot, 9 per group; SUM_LEN: 7 -> 3+2+2, 2 -> 1+1+0.
TEST(DpLayout, CountsNotMultipleOfGroupSize) {
  const std::vector<int64_t> n = {7, 2};
  DpLayout M(n, 3, DpPaddingMode::kMaxLen);
  EXPECT_EQ(M.global_rows(), 18);
  EXPECT_EQ(M.group_offset(1), 9);
  expect_slices(M, {{{0, 3, 3}, {3, 3, 3}, {6, 3, 1}}, {{0, 3, 2}, {3, 3, 0}, {6, 3, 0}}});
  expect_rows(M, {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1},
              {0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1});

  DpLayout S(n, 3, DpPaddingMode::kSumLen);
  EXPECT_EQ(S.global_rows(), 9);
  EXPECT_EQ(S.group_offset(1), 7);
  expect_slices(S, {{{0, 3, 3}, {3, 2, 2}, {5, 2, 2}}, {{0, 1, 1}, {1, 1, 1}, {2, 0, 0}}});
  expect_rows(S, {0, 0, 0, 0, 0, 0, 0, 1, 1}, {0, 0, 0, 0, 0, 0, 0, 0, 0});
}

// One rank per group (tp == dp): MAX_LEN pads every group to the largest count exactly.
TEST(DpLayout, OneRankPerGroup) {
  const std::vector<int64_t> n = {1, 4, 0, 2};
  DpLayout M(n, 1, DpPaddingMode::kMaxLen);
  EXPECT_EQ(M.global_rows(), 16);
  EXPECT_EQ(M.group_offset(3), 12);
  EXPECT_EQ(M.slice(3, 0).real_rows, 2);
  EXPECT_TRUE(M.is_padding(1));
  EXPECT_FALSE(M.is_padding(4));
  EXPECT_TRUE(M.is_padding(8));
  DpLayout S(n, 1, DpPaddingMode::kSumLen);
  EXPECT_EQ(S.global_rows(), 7);
  EXPECT_EQ(S.group_offset(3), 5);
  EXPECT_EQ(S.group_of_row(4), 1);
  EXPECT_EQ(S.group_of_row(5), 3);
}

TEST(DpLayout, NoTokensAnywhere) {
  const std::vector<int64_t> n = {0, 0};
  EXPECT_EQ(DpLayout(n, 2, DpPaddingMode::kMaxLen).global_rows(), 0);
  EXPECT_EQ(DpLayout(n, 2, DpPaddingMode::kSumLen).global_rows(), 0);
}

// SGLang's rule: MAX_LEN iff sum * 2 > max * groups; SUM_LEN for prefill.
TEST(DpPadding, SglangRule) {
  using V = std::vector<int64_t>;
  const auto pick = [](V v, bool prefill = false) {
    return choose_padding_mode(DpPaddingRequest::kSglang, v, prefill);
  };
  EXPECT_EQ(pick(V{4, 4}), DpPaddingMode::kMaxLen);           // 16 > 8
  EXPECT_EQ(pick(V{5, 1}), DpPaddingMode::kMaxLen);           // 12 > 10
  EXPECT_EQ(pick(V{5, 0}), DpPaddingMode::kSumLen);           // 10 > 10 is false
  EXPECT_EQ(pick(V{10, 0, 0, 0}), DpPaddingMode::kSumLen);    // 20 > 40 is false
  EXPECT_EQ(pick(V{3, 3, 3, 0}), DpPaddingMode::kMaxLen);     // 18 > 12
  EXPECT_EQ(pick(V{8, 1, 1, 1}), DpPaddingMode::kSumLen);     // 22 > 32 is false
  EXPECT_EQ(pick(V{4, 4}, true), DpPaddingMode::kSumLen);     // prefill
  EXPECT_EQ(choose_padding_mode(DpPaddingRequest::kMaxLen, V{10, 0}, true), DpPaddingMode::kMaxLen);
  EXPECT_EQ(choose_padding_mode(DpPaddingRequest::kSumLen, V{4, 4}, false), DpPaddingMode::kSumLen);
}

// dpserve's measured rule: MAX_LEN only when it adds no padding (equal counts, multiple of the
// ranks per group), SUM_LEN otherwise, prefill or not.
TEST(DpPadding, AutoRule) {
  using V = std::vector<int64_t>;
  const auto pick = [](V v, int a, bool prefill = false) {
    return choose_padding_mode(DpPaddingRequest::kAuto, v, prefill, a);
  };
  EXPECT_EQ(pick(V{4, 4}, 1), DpPaddingMode::kMaxLen);
  EXPECT_EQ(pick(V{4, 4}, 2), DpPaddingMode::kMaxLen);
  EXPECT_EQ(pick(V{4, 4}, 1, true), DpPaddingMode::kMaxLen);  // identical layouts either way
  EXPECT_EQ(pick(V{5, 5}, 2), DpPaddingMode::kSumLen);        // MAX_LEN would pad 5 -> 6
  EXPECT_EQ(pick(V{5, 1}, 1), DpPaddingMode::kSumLen);        // SGLang would pick MAX_LEN here
  // {3, 3, 3, 0} as a vector literal: GCC 12.2 -O2 -mavx512f miscompiles it to {3, 3, 3, 3} (SLP
  // vectorizer); src/parallel and these tests are built with -fno-tree-slp-vectorize for that reason.
  EXPECT_EQ(pick(V{3, 3, 3, 0}, 1), DpPaddingMode::kSumLen);
  EXPECT_EQ(pick(V{0, 0}, 1), DpPaddingMode::kMaxLen);        // empty either way
}

}  // namespace
}  // namespace dpserve
