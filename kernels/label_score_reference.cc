// Each KV head's scores fold ScoreHeads(shape) query vectors of its r label channels, q[ch_j]:
// for max aggregation each query head of the group; for sum one, the group's channels summed
// first (rounded adds from 0, query heads ascending) — Σ_g Σ_j q_g·l_j = Σ_j (Σ_g q_g)·l_j, so a
// GQA group costs one dot per row instead of one per query head. With MHA both are the query
// head's own channels.
// fp16 rows: per score head, dot = Σ_j q[ch_j] · label_j as an FMA chain from 0 (channels
// ascending). 4-bit rows fold scale s and minimum m out of the dot product,
// Σ q·(c·s + m) = s·Σ q·c + m·Σ q, so that a kernel spends one fused multiply-add per channel
// and score head on the codes and touches s and m once per row:
//   qc = Σ_j q[ch_j] · c_j   an FMA chain from 0 (channels ascending),
//   qs = Σ_j q[ch_j]         rounded adds from 0 (channels ascending; a function of the query
//                            alone, computed once per KV head and score head),
//   dot = fma(s, qc, m · qs)  (m · qs rounded).
// A token's score folds its score heads' dots in order from 0 (sum) or -inf (max).
// The CUDA scorers compute exactly this (__fmaf_rn / __fmul_rn / __fadd_rn), so their scores
// equal these bit for bit. Contraction cannot change these expressions: each multiply is
// already fused by std::fma or is an fma operand (m · qs), and the adds are of non-products.
// (The fp16 dot was a rounded product then a rounded add; as an FMA the scorers spend one
// instruction per channel and score head instead of two.)
#include "kernels/label_score_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/dtype.h"
#include "kernels/label_reference.h"

namespace dsinfer {
namespace {

constexpr int kHeadChunk = 16;  // score heads staged at a time (their channels in a fixed buffer)

// The label channels of score heads [g0, g0 + n) of KV head h (ScoreHeads; ch: its channel
// indices) to qv ([n][r]): for max aggregation query head h × group + g's channels; for sum
// (one score head) the group's channels summed, rounded adds from 0 in head order.
void StageScoreQuery(const float* q, const int32_t* ch, const LabelScoreShape& s, int h, int g0,
                     int n, float* qv) {
  const int group = s.heads_q / s.heads_kv;
  const float* q0 = q + static_cast<int64_t>(h) * group * s.head_dim;
  if (s.aggregation == ScoreAggregation::kMax) {
    for (int g = 0; g < n; ++g) {
      const float* qh = q0 + static_cast<int64_t>(g0 + g) * s.head_dim;
      for (int j = 0; j < s.r; ++j) qv[g * s.r + j] = qh[ch[j]];
    }
    return;
  }
  for (int j = 0; j < s.r; ++j) {
    float sum = 0.0f;
    for (int g = 0; g < group; ++g) sum += q0[static_cast<int64_t>(g) * s.head_dim + ch[j]];
    qv[j] = sum;
  }
}

// Folds score head g's dot into a token's aggregate (the twins' order: score heads ascending,
// starting from AggregateStart).
inline float AggregateStart(const LabelScoreShape& s) {
  return s.aggregation == ScoreAggregation::kMax ? -std::numeric_limits<float>::infinity()
                                                 : 0.0f;
}
inline float AggregateStep(const LabelScoreShape& s, float agg, float dot) {
  return s.aggregation == ScoreAggregation::kMax ? std::max(agg, dot) : agg + dot;
}

// The twins' loop: per KV head, its score heads in chunks of kHeadChunk (one chunk but for
// max aggregation over larger groups), each chunk's query channels staged once
// (StageScoreQuery) with their sums; then per token load_row(t, h) makes the row's values once
// for the chunk and dot(qg, qs_g) is score head g's dot, folded into the token's score in
// score-head order; then each score is rounded to fp16's nearest value. Inlined into each
// target clone of its caller.
template <typename LoadRow, typename Dot>
__attribute__((always_inline)) inline void FoldScoreHeads(const float* q,
                                                          const int32_t* channels, int64_t tokens,
                                                          const LabelScoreShape& shape,
                                                          float* scores, int64_t score_stride,
                                                          LoadRow load_row, Dot dot) {
  const int heads = ScoreHeads(shape);
  float qv[kHeadChunk * 256];
  float qs[kHeadChunk];
  for (int h = 0; h < shape.heads_kv; ++h) {
    const int32_t* ch = channels + static_cast<int64_t>(h) * shape.r;
    float* out = scores + h * score_stride;
    for (int64_t t = 0; t < tokens; ++t) out[t] = AggregateStart(shape);
    for (int g0 = 0; g0 < heads; g0 += kHeadChunk) {
      const int n = std::min(kHeadChunk, heads - g0);
      StageScoreQuery(q, ch, shape, h, g0, n, qv);
      for (int g = 0; g < n; ++g) {
        qs[g] = 0.0f;
        for (int j = 0; j < shape.r; ++j) qs[g] += qv[g * shape.r + j];
      }
      for (int64_t t = 0; t < tokens; ++t) {
        load_row(t, h);
        for (int g = 0; g < n; ++g) {
          out[t] = AggregateStep(shape, out[t], dot(qv + g * shape.r, qs[g]));
        }
      }
    }
    // Stored as fp16 (the CUDA scorers' score rows): the aggregate rounded once.
    for (int64_t t = 0; t < tokens; ++t) out[t] = RoundF32ToF16Value(out[t]);
  }
}

}  // namespace

// Cloned for x86-64 CPUs with FMA, as LabelScores4BitReference below.
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("fma", "default")))
#endif
void LabelScoresF16Reference(const float* q, const int32_t* channels, const uint16_t* labels,
                             int64_t label_stride, int64_t tokens, const LabelScoreShape& shape,
                             float* scores, int64_t score_stride) {
  float row[256];
  FoldScoreHeads(
      q, channels, tokens, shape, scores, score_stride,
      [&](int64_t t, int h) __attribute__((always_inline)) {
        const uint16_t* bits = labels + t * label_stride + static_cast<int64_t>(h) * shape.r;
        for (int j = 0; j < shape.r; ++j) row[j] = F16ToF32(bits[j]);
      },
      [&](const float* qg, float) __attribute__((always_inline)) {
        float dot = 0.0f;
        for (int j = 0; j < shape.r; ++j) dot = std::fma(qg[j], row[j], dot);
        return dot;
      });
}

// Cloned for x86-64 CPUs with FMA (picked at load time), where std::fma is one instruction
// instead of a libm call (about 3x faster on the build machine); both round identically.
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("fma", "default")))
#endif
void LabelScores4BitReference(const float* q, const int32_t* channels, const uint8_t* codes,
                              int64_t code_stride, const uint16_t* scales,
                              const uint16_t* minimums, int64_t tokens,
                              const LabelScoreShape& shape, float* scores, int64_t score_stride) {
  const int64_t row_bytes = Label4BitRowBytes(shape.r);
  float code[256];
  float scale = 0.0f, minimum = 0.0f;
  FoldScoreHeads(
      q, channels, tokens, shape, scores, score_stride,
      [&](int64_t t, int h) __attribute__((always_inline)) {
        const int64_t slot = t * shape.heads_kv + h;
        const uint8_t* row = codes + t * code_stride + h * row_bytes;
        for (int j = 0; j < shape.r; ++j) {
          code[j] = static_cast<float>((row[j / 2] >> ((j % 2) * 4)) & 0xf);
        }
        scale = F16ToF32(scales[slot]);
        minimum = F16ToF32(minimums[slot]);
      },
      [&](const float* qg, float qs) __attribute__((always_inline)) {
        float qc = 0.0f;
        for (int j = 0; j < shape.r; ++j) qc = std::fma(qg[j], code[j], qc);
        return std::fma(scale, qc, minimum * qs);
      });
}

}  // namespace dsinfer
