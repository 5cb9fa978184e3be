// The Double Sparsity reference twins against brute force: label writing and 4-bit
// quantization bounds, label scores with GQA aggregation, and top-k selection with the kept
// tokens. Random inputs from fixed seeds; no zeros.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/label_reference.h"
#include "kernels/label_score_reference.h"
#include "kernels/topk_select_reference.h"

namespace dsinfer {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(LabelReference, F16LabelsGatherTheChannels) {
  const int n = 7, heads = 3, d = 32, r = 5;
  const int64_t stride = heads * d + 11;  // keys embedded in wider rows, as in packed qkv
  std::vector<float> k = Random(n * stride, 1);
  std::vector<int32_t> ch = {3, 31, 0, 17, 8, 1, 2, 30, 29, 4, 16, 15, 14, 13, 12};
  std::vector<uint16_t> labels(n * heads * r, 0xffff);
  WriteLabelsF16Reference(k.data(), stride, n, heads, d, ch.data(), r, labels.data(), heads * r);
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int j = 0; j < r; ++j) {
        const float want = k[t * stride + h * d + ch[h * r + j]];
        EXPECT_EQ(labels[(t * heads + h) * r + j], F32ToF16(want));
      }
    }
  }
}

TEST(LabelReference, FourBitErrorIsWithinHalfAStep) {
  for (int r : {1, 2, 7, 16, 32}) {
    std::vector<float> row = Random(r, 100 + r, 2.0f);
    uint8_t codes[16];
    uint16_t scale, minimum;
    QuantizeLabelRow4Reference(row.data(), r, codes, &scale, &minimum);
    std::vector<float> back(r);
    DequantizeLabelRow4Reference(codes, scale, minimum, r, back.data());
    const float lo = *std::min_element(row.begin(), row.end());
    const float hi = *std::max_element(row.begin(), row.end());
    // Half a step, plus fp16 rounding of the stored minimum and of the scale times 15.
    const float bound = F16ToF32(scale) / 2 + std::abs(lo) * 1e-3f + (hi - lo) * 1e-3f + 1e-6f;
    for (int j = 0; j < r; ++j) {
      EXPECT_LE(std::abs(back[j] - row[j]), bound) << "r=" << r << " j=" << j;
    }
  }
}

// Random keys of `tokens` tokens ([tokens, hkv, d]), KV head h's r channels (5j + 3h + 1) mod d,
// and the keys' fp16 labels ([tokens, hkv, r]).
struct LabelInputs {
  std::vector<float> k;
  std::vector<int32_t> ch;
  std::vector<uint16_t> f16;
};
LabelInputs MakeLabelInputs(int hkv, int d, int r, int tokens, uint32_t seed) {
  LabelInputs in;
  in.k = Random(tokens * hkv * d, seed);
  in.ch.resize(hkv * r);
  for (int h = 0; h < hkv; ++h) {
    for (int j = 0; j < r; ++j) in.ch[h * r + j] = (5 * j + 3 * h + 1) % d;
  }
  in.f16.resize(tokens * hkv * r);
  WriteLabelsF16Reference(in.k.data(), hkv * d, tokens, hkv, d, in.ch.data(), r, in.f16.data(),
                          hkv * r);
  return in;
}

TEST(LabelScoreReference, MatchesBruteForceForSumAndMax) {
  const int hq = 8, hkv = 2, d = 16, r = 6, tokens = 23;
  std::vector<float> q = Random(hq * d, 7);
  const LabelInputs in = MakeLabelInputs(hkv, d, r, tokens, 8);
  const std::vector<float>& k = in.k;
  const std::vector<int32_t>& ch = in.ch;
  const std::vector<uint16_t>& labels = in.f16;
  for (ScoreAggregation agg : {ScoreAggregation::kSum, ScoreAggregation::kMax}) {
    std::vector<float> scores(hkv * tokens);
    LabelScoresF16Reference(q.data(), ch.data(), labels.data(), hkv * r, tokens,
                            LabelScoreShape{hq, hkv, d, r, agg}, scores.data(), tokens);
    for (int h = 0; h < hkv; ++h) {
      for (int t = 0; t < tokens; ++t) {
        double want = agg == ScoreAggregation::kMax ? -1e30 : 0.0;
        for (int g = 0; g < hq / hkv; ++g) {
          double dot = 0.0;
          for (int j = 0; j < r; ++j) {
            const int c = ch[h * r + j];
            dot += q[(h * 4 + g) * d + c] * static_cast<double>(F16ToF32(F32ToF16(k[(t * hkv + h) * d + c])));
          }
          want = agg == ScoreAggregation::kMax ? std::max(want, dot) : want + dot;
        }
        // fp32 sums stored as fp16: within half an fp16 step (2^-11 relative) and the sums'.
        EXPECT_NEAR(scores[h * tokens + t], want, 1e-3 * (1 + std::abs(want)));
        EXPECT_EQ(scores[h * tokens + t], RoundF32ToF16Value(scores[h * tokens + t]));
      }
    }
  }
}

// The twins' exact order (what the CUDA scorers reproduce bit for bit): sum aggregation sums
// the group's label channels first (rounded adds from 0, query heads ascending) and takes one
// dot; max takes a dot per query head. fp16 labels and 4-bit labels (scale and minimum folded
// out of the summed query's dot), GQA 4 and MHA.
TEST(LabelScoreReference, SumAggregationDotsTheGroupsSummedQuery) {
  const int d = 16, r = 6, tokens = 19;
  for (int hq : {8, 2}) {
    const int hkv = 2, group = hq / hkv;
    std::vector<float> q = Random(hq * d, 11 + hq);
    const LabelInputs in = MakeLabelInputs(hkv, d, r, tokens, 12);
    const std::vector<float>& k = in.k;
    const std::vector<int32_t>& ch = in.ch;
    const std::vector<uint16_t>& f16 = in.f16;
    const int64_t row_bytes = Label4BitRowBytes(r);
    std::vector<uint8_t> codes(tokens * hkv * row_bytes);
    std::vector<uint16_t> scales(tokens * hkv), mins(tokens * hkv);
    WriteLabels4BitReference(k.data(), hkv * d, tokens, hkv, d, ch.data(), r, codes.data(),
                             hkv * row_bytes, scales.data(), mins.data());
    for (ScoreAggregation agg : {ScoreAggregation::kSum, ScoreAggregation::kMax}) {
      const LabelScoreShape shape{hq, hkv, d, r, agg};
      ASSERT_EQ(ScoreHeads(shape), agg == ScoreAggregation::kMax ? group : 1);
      std::vector<float> s16(hkv * tokens), s4(hkv * tokens);
      LabelScoresF16Reference(q.data(), ch.data(), f16.data(), hkv * r, tokens, shape,
                              s16.data(), tokens);
      LabelScores4BitReference(q.data(), ch.data(), codes.data(), hkv * row_bytes,
                               scales.data(), mins.data(), tokens, shape, s4.data(), tokens);
      for (int h = 0; h < hkv; ++h) {
        // The score heads' channels: the group's summed (sum) or each query head's (max).
        std::vector<std::vector<float>> qv;
        for (int g = 0; g < ScoreHeads(shape); ++g) {
          std::vector<float> v(r);
          for (int j = 0; j < r; ++j) {
            const int c = ch[h * r + j];
            if (agg == ScoreAggregation::kMax) {
              v[j] = q[(h * group + g) * d + c];
            } else {
              float sum = 0.0f;
              for (int i = 0; i < group; ++i) sum += q[(h * group + i) * d + c];
              v[j] = sum;
            }
          }
          qv.push_back(v);
        }
        for (int t = 0; t < tokens; ++t) {
          const int64_t slot = t * hkv + h;
          float want16 = agg == ScoreAggregation::kMax ? -INFINITY : 0.0f, want4 = want16;
          for (const std::vector<float>& v : qv) {
            float dot = 0.0f, qc = 0.0f, qs = 0.0f;
            for (int j = 0; j < r; ++j) {
              dot = std::fma(v[j], F16ToF32(f16[slot * r + j]), dot);
              const float code = (codes[slot * row_bytes + j / 2] >> ((j % 2) * 4)) & 0xf;
              qc = std::fma(v[j], code, qc);
              qs += v[j];
            }
            const float dot4 =
                std::fma(F16ToF32(scales[slot]), qc, F16ToF32(mins[slot]) * qs);
            want16 = agg == ScoreAggregation::kMax ? std::max(want16, dot) : want16 + dot;
            want4 = agg == ScoreAggregation::kMax ? std::max(want4, dot4) : want4 + dot4;
          }
          // Aggregated in fp32, stored rounded to fp16 once.
          EXPECT_EQ(s16[h * tokens + t], RoundF32ToF16Value(want16))
              << "hq " << hq << " h " << h << " t " << t;
          EXPECT_EQ(s4[h * tokens + t], RoundF32ToF16Value(want4))
              << "hq " << hq << " h " << h << " t " << t;
        }
      }
    }
  }
}

// 4-bit labels must rank tokens much like fp16 labels do: the top-k by 4-bit scores should
// hold most of the top-k by fp16 scores. Threshold: mean overlap >= 0.8 at r=16, k=L/8.
TEST(LabelScoreReference, FourBitRankingAgreesWithF16) {
  const int hq = 4, hkv = 1, d = 64, r = 16, tokens = 512, k = 64;
  double overlap_sum = 0.0;
  const int trials = 20;
  for (int trial = 0; trial < trials; ++trial) {
    std::vector<float> q = Random(hq * d, 1000 + trial);
    std::vector<float> keys = Random(tokens * hkv * d, 2000 + trial);
    std::vector<int32_t> ch(r);
    std::iota(ch.begin(), ch.end(), 0);
    std::vector<uint16_t> f16(tokens * r);
    WriteLabelsF16Reference(keys.data(), d, tokens, hkv, d, ch.data(), r, f16.data(), r);
    std::vector<uint8_t> codes(tokens * Label4BitRowBytes(r));
    std::vector<uint16_t> scales(tokens), mins(tokens);
    WriteLabels4BitReference(keys.data(), d, tokens, hkv, d, ch.data(), r, codes.data(),
                             Label4BitRowBytes(r), scales.data(), mins.data());
    const LabelScoreShape shape{hq, hkv, d, r, ScoreAggregation::kSum};
    std::vector<float> s16(tokens), s4(tokens);
    LabelScoresF16Reference(q.data(), ch.data(), f16.data(), r, tokens, shape, s16.data(), tokens);
    LabelScores4BitReference(q.data(), ch.data(), codes.data(), Label4BitRowBytes(r),
                             scales.data(), mins.data(), tokens, shape, s4.data(), tokens);
    std::vector<int32_t> scratch(tokens), a(k), b(k);
    TopKSelectReference(s16.data(), tokens, k, 0, 0, scratch.data(), a.data());
    TopKSelectReference(s4.data(), tokens, k, 0, 0, scratch.data(), b.data());
    std::vector<int32_t> common;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
    overlap_sum += static_cast<double>(common.size()) / k;
  }
  EXPECT_GE(overlap_sum / trials, 0.8);
}

// Brute force: kept tokens, then the best scores (ties to the lower index) up to k.
std::vector<int32_t> BruteForceSelect(const std::vector<float>& scores, int64_t k, int sink,
                                      int recent) {
  const int64_t n = static_cast<int64_t>(scores.size());
  std::set<int32_t> kept;
  for (int64_t t = 0; t < std::min<int64_t>(sink, n); ++t) kept.insert(t);
  for (int64_t t = std::max<int64_t>(0, n - std::max(recent, 1)); t < n; ++t) kept.insert(t);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return scores[a] > scores[b]; });
  std::set<int32_t> chosen = kept;
  for (int32_t t : order) {
    if (static_cast<int64_t>(chosen.size()) >= k) break;
    chosen.insert(t);
  }
  return std::vector<int32_t>(chosen.begin(), chosen.end());
}

TEST(TopKSelectReference, KeepsSinkRecentCurrentAndTheBestScores) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t n = 1 + rng() % 300;
    const int64_t k = 1 + rng() % n;
    const int sink = rng() % 6, recent = rng() % 20;
    std::vector<float> scores = Random(n, 300 + trial);
    // Ties on purpose: quantize some scores so equal values occur.
    for (size_t i = 0; i < scores.size(); i += 3) scores[i] = std::round(scores[i]);
    std::vector<int32_t> scratch(n), sel(n);
    const int64_t got = TopKSelectReference(scores.data(), n, k, sink, recent, scratch.data(),
                                            sel.data());
    ASSERT_EQ(got, k);
    sel.resize(got);
    ASSERT_TRUE(std::is_sorted(sel.begin(), sel.end()));
    EXPECT_EQ(sel.back(), n - 1) << "the current token is always kept";
    const int64_t kept = std::min<int64_t>(sink, n) + std::max(recent, 1);
    if (kept < k) {
      EXPECT_EQ(sel, BruteForceSelect(scores, k, sink, recent)) << "trial " << trial;
    } else {
      // Over-full kept set: current first, then sink, then newest recent tokens.
      std::set<int32_t> s(sel.begin(), sel.end());
      const int64_t sinks = std::min<int64_t>({sink, n, k - 1});
      for (int64_t t = 0; t < sinks; ++t) EXPECT_TRUE(s.count(t)) << t;
      for (int64_t t = n - (k - sinks); t < n; ++t) EXPECT_TRUE(s.count(t)) << t;
    }
  }
}

}  // namespace
}  // namespace dsinfer
