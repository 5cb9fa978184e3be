// The GPU label cache's row layout (kernels/label_layout.h), which the CUDA kernels, the engine's
// device labels and memory plan share: pages of kLabelPageTokens tokens, head-major inside a
// page. Host arithmetic only, so it runs everywhere.
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/label_layout.h"

namespace dsinfer {
namespace {

TEST(LabelLayout, RowsAreABijectionOntoWholePages) {
  for (int heads : {1, 3, 8, 32}) {
    for (int64_t tokens : {int64_t{1}, int64_t{127}, int64_t{128}, int64_t{129}, int64_t{1000}}) {
      const int64_t cap = LabelCapacity(tokens);
      EXPECT_EQ(cap % kLabelPageTokens, 0);
      EXPECT_GE(cap, tokens);
      EXPECT_LT(cap - tokens, kLabelPageTokens);
      std::vector<int> hits(static_cast<size_t>(cap * heads), 0);
      for (int64_t t = 0; t < cap; ++t) {
        for (int h = 0; h < heads; ++h) {
          const int64_t row = LabelRow(t, h, heads);
          ASSERT_GE(row, 0);
          ASSERT_LT(row, cap * heads);
          ++hits[static_cast<size_t>(row)];
        }
      }
      for (int n : hits) EXPECT_EQ(n, 1) << "heads " << heads << " tokens " << tokens;
    }
  }
}

TEST(LabelLayout, OneHeadsRowsOfAPageAreContiguousAndPrefixesArePages) {
  constexpr int kHeads = 5;
  for (int64_t t = 0; t < 4 * kLabelPageTokens; ++t) {
    for (int h = 0; h < kHeads; ++h) {
      if (t % kLabelPageTokens != 0) {
        EXPECT_EQ(LabelRow(t, h, kHeads), LabelRow(t - 1, h, kHeads) + 1);
      }
      // Tokens [0, w) live in the first LabelCapacity(w) × heads rows (growth copies those).
      EXPECT_LT(LabelRow(t, h, kHeads), LabelCapacity(t + 1) * kHeads);
    }
  }
}

TEST(LabelLayout, TokenMajorCopyInvertsTheLayout) {
  constexpr int kHeads = 3;
  constexpr size_t kRowBytes = 6;
  const int64_t tokens = 300;
  std::mt19937 rng(7);
  std::vector<uint8_t> want(static_cast<size_t>(tokens) * kHeads * kRowBytes);
  for (uint8_t& b : want) b = static_cast<uint8_t>(1 + rng() % 255);
  std::vector<uint8_t> stored(static_cast<size_t>(LabelCapacity(tokens)) * kHeads * kRowBytes, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < kHeads; ++h) {
      for (size_t b = 0; b < kRowBytes; ++b) {
        stored[static_cast<size_t>(LabelRow(t, h, kHeads)) * kRowBytes + b] =
            want[(static_cast<size_t>(t) * kHeads + h) * kRowBytes + b];
      }
    }
  }
  std::vector<uint8_t> got(want.size(), 0);
  LabelRowsToTokenMajor(stored.data(), tokens, kHeads, kRowBytes, got.data());
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace dsinfer
