// Dequantized 4-bit rows are scored exactly as fp16 rows are, so the two paths differ only
// by the quantization itself; a kernel may fold scale and minimum into the dot product
// (Σ q·(c·s + m) = s·Σ q·c + m·Σ q) — the same value up to fp32 reassociation.
#include "kernels/label_score_reference.h"

#include <algorithm>
#include <limits>

#include "kernels/dtype.h"
#include "kernels/label_reference.h"

namespace dsinfer {
namespace {

// Aggregated score of one label row (fp32 values) over KV head h's query heads.
float GroupScore(const float* q, const int32_t* ch, const float* label,
                 const LabelScoreShape& s, int h) {
  const int group = s.heads_q / s.heads_kv;
  float agg = s.aggregation == ScoreAggregation::kMax ? -std::numeric_limits<float>::infinity()
                                                      : 0.0f;
  for (int g = 0; g < group; ++g) {
    const float* qh = q + static_cast<int64_t>(h * group + g) * s.head_dim;
    float dot = 0.0f;
    for (int j = 0; j < s.r; ++j) dot += qh[ch[j]] * label[j];
    agg = s.aggregation == ScoreAggregation::kMax ? std::max(agg, dot) : agg + dot;
  }
  return agg;
}

}  // namespace

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

void LabelScores4BitReference(const float* q, const int32_t* channels, const uint8_t* codes,
                              int64_t code_stride, const uint16_t* scales,
                              const uint16_t* minimums, int64_t tokens,
                              const LabelScoreShape& shape, float* scores, int64_t score_stride) {
  float row[256];
  const int64_t row_bytes = Label4BitRowBytes(shape.r);
  for (int h = 0; h < shape.heads_kv; ++h) {
    const int32_t* ch = channels + static_cast<int64_t>(h) * shape.r;
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t slot = t * shape.heads_kv + h;
      DequantizeLabelRow4Reference(codes + t * code_stride + h * row_bytes, scales[slot],
                                   minimums[slot], shape.r, row);
      scores[h * score_stride + t] = GroupScore(q, ch, row, shape, h);
    }
  }
}

}  // namespace dsinfer
