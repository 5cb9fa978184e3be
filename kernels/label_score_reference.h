// Approximate attention scores of Double Sparsity (DESIGN §1): one query row's r label
// channels dotted with every cached token's label row, per KV head. Query heads of a GQA
// group share one token set, so their scores are aggregated per KV head — summed (the mean
// up to a constant factor, i.e. the group's average approximate logit; computed as one dot of
// the group's summed query channels) or maxed (a token any head wants: a dot per query head).
// No softmax scale: it does not change the ranking. Each score is computed in fp32 and stored
// rounded to the nearest fp16 value (RoundF32ToF16Value; kept as fp32 here, as fp16 bits by the
// CUDA scorers, which round the same fp32 sum the same way), so ties are a real case for the
// top-k; past fp16's range a score becomes ±inf. The CPU twins of the scoring kernels:
// pointers, shapes and strides, no allocation.
#ifndef DSINFER_KERNELS_LABEL_SCORE_REFERENCE_H_
#define DSINFER_KERNELS_LABEL_SCORE_REFERENCE_H_

#include <cstdint>

namespace dsinfer {

enum class ScoreAggregation { kSum, kMax };

struct LabelScoreShape {
  int heads_q = 0;
  int heads_kv = 0;
  int head_dim = 0;
  int r = 0;  // label channels per KV head
  ScoreAggregation aggregation = ScoreAggregation::kSum;
};

// The query vectors a KV head's scores fold: for sum aggregation one (the group's label
// channels summed), for max each query head of the group.
inline int ScoreHeads(const LabelScoreShape& s) {
  return s.aggregation == ScoreAggregation::kMax ? s.heads_q / s.heads_kv : 1;
}

// q: [heads_q, head_dim] post-RoPE query of one token; channels: [heads_kv, r];
// labels: [tokens, heads_kv, r] fp16 bits, token stride label_stride elements;
// scores: [heads_kv, tokens], head stride score_stride.
void LabelScoresF16Reference(const float* q, const int32_t* channels, const uint16_t* labels,
                             int64_t label_stride, int64_t tokens, const LabelScoreShape& shape,
                             float* scores, int64_t score_stride);

// As LabelScoresF16Reference over 4-bit labels: codes [tokens, heads_kv, ceil(r/2)] with token
// stride code_stride bytes, scales / minimums [tokens, heads_kv] fp16 bits. Scale s and minimum
// m are folded out of each score head's dot: fma(s, Σ q·c as an FMA chain, m · Σ q) (the
// exact order in label_score_reference.cc), which equals Σ q·(c·s + m) up to fp32 rounding.
void LabelScores4BitReference(const float* q, const int32_t* channels, const uint8_t* codes,
                              int64_t code_stride, const uint16_t* scales,
                              const uint16_t* minimums, int64_t tokens,
                              const LabelScoreShape& shape, float* scores, int64_t score_stride);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_LABEL_SCORE_REFERENCE_H_
