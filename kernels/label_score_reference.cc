// fp16 rows: per query head, dot = Σ_j q[ch_j] · label_j as an FMA chain from 0 (channels
// ascending). 4-bit rows fold scale s and minimum m out of the dot product,
// Σ q·(c·s + m) = s·Σ q·c + m·Σ q, so that a kernel spends one fused multiply-add per channel
// and query head on the codes and touches s and m once per row:
//   qc = Σ_j q[ch_j] · c_j   an FMA chain from 0 (channels ascending),
//   qs = Σ_j q[ch_j]         rounded adds from 0 (channels ascending; a function of the query
//                            alone, computed once per KV head and query head),
//   dot = fma(s, qc, m · qs)  (m · qs rounded).
// The CUDA scorers compute exactly this (__fmaf_rn / __fmul_rn / __fadd_rn), so their scores
// equal these bit for bit. Contraction cannot change these expressions: each multiply is
// already fused by std::fma or is an fma operand (m · qs), and the adds are of non-products.
// (The fp16 dot was a rounded product then a rounded add; as an FMA the GQA scorers, which
// spend r × group of them per row, run one instruction per channel instead of two.)
#include "kernels/label_score_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/dtype.h"
#include "kernels/label_reference.h"

namespace dsinfer {
namespace {

// Aggregated score of one label row (fp32 values) over KV head h's query heads (inlined into
// each target clone of its caller).
__attribute__((always_inline)) inline float GroupScore(const float* q, const int32_t* ch,
                                                       const float* label,
                                                       const LabelScoreShape& s, int h) {
  const int group = s.heads_q / s.heads_kv;
  float agg = s.aggregation == ScoreAggregation::kMax ? -std::numeric_limits<float>::infinity()
                                                      : 0.0f;
  for (int g = 0; g < group; ++g) {
    const float* qh = q + static_cast<int64_t>(h * group + g) * s.head_dim;
    float dot = 0.0f;
    for (int j = 0; j < s.r; ++j) dot = std::fma(qh[ch[j]], label[j], dot);
    agg = s.aggregation == ScoreAggregation::kMax ? std::max(agg, dot) : agg + dot;
  }
  return agg;
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
  for (int h = 0; h < shape.heads_kv; ++h) {
    const int32_t* ch = channels + static_cast<int64_t>(h) * shape.r;
    for (int64_t t = 0; t < tokens; ++t) {
      const uint16_t* bits = labels + t * label_stride + static_cast<int64_t>(h) * shape.r;
      for (int j = 0; j < shape.r; ++j) row[j] = F16ToF32(bits[j]);
      scores[h * score_stride + t] = GroupScore(q, ch, row, shape, h);
    }
  }
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
  // Query heads in chunks of kHeadChunk, so that qs is computed once per (KV head, query head)
  // into a fixed buffer and each row's codes are made floats once per chunk (once for every
  // GQA group up to kHeadChunk); a token's score still folds its dots in query-head order.
  constexpr int kHeadChunk = 16;
  const int group = shape.heads_q / shape.heads_kv;
  const bool max_agg = shape.aggregation == ScoreAggregation::kMax;
  const int64_t row_bytes = Label4BitRowBytes(shape.r);
  float code[256];
  float qs[kHeadChunk];
  for (int h = 0; h < shape.heads_kv; ++h) {
    const int32_t* ch = channels + static_cast<int64_t>(h) * shape.r;
    float* out = scores + h * score_stride;
    const float start = max_agg ? -std::numeric_limits<float>::infinity() : 0.0f;
    for (int64_t t = 0; t < tokens; ++t) out[t] = start;
    for (int g0 = 0; g0 < group; g0 += kHeadChunk) {
      const int heads = std::min(kHeadChunk, group - g0);
      const float* q0 = q + static_cast<int64_t>(h * group + g0) * shape.head_dim;
      for (int g = 0; g < heads; ++g) {
        qs[g] = 0.0f;
        for (int j = 0; j < shape.r; ++j) qs[g] += q0[g * shape.head_dim + ch[j]];
      }
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t slot = t * shape.heads_kv + h;
        const uint8_t* row = codes + t * code_stride + h * row_bytes;
        for (int j = 0; j < shape.r; ++j) {
          code[j] = static_cast<float>((row[j / 2] >> ((j % 2) * 4)) & 0xf);
        }
        const float s = F16ToF32(scales[slot]);
        const float m = F16ToF32(minimums[slot]);
        for (int g = 0; g < heads; ++g) {
          const float* qh = q0 + static_cast<int64_t>(g) * shape.head_dim;
          float qc = 0.0f;
          for (int j = 0; j < shape.r; ++j) qc = std::fma(qh[ch[j]], code[j], qc);
          const float dot = std::fma(s, qc, m * qs[g]);
          out[t] = max_agg ? std::max(out[t], dot) : out[t] + dot;
        }
      }
    }
  }
}

}  // namespace dsinfer
