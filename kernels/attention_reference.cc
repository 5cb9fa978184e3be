// Dense causal attention is the selected-set attention with the set {0..p}; both share one
// routine over an index list so there is one softmax to trust.
#include "kernels/attention_reference.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dsinfer {
namespace {

// out_head = softmax(scale * q_head · K_sel) · V_sel for one query head.
void AttendHead(const float* q_head, const PagedKvView<const float>& kv, int kv_head,
                int head_dim, float scale, const int32_t* indices, int64_t count,
                int64_t dense_count, std::vector<double>& scores, float* out_head) {
  const int64_t n = indices ? count : dense_count;
  scores.resize(n);
  double max_score = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t t = indices ? indices[j] : j;
    const float* k = kv.KRow(t, kv_head);
    double dot = 0.0;
    for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(q_head[d]) * k[d];
    scores[j] = dot * scale;
    max_score = std::max(max_score, scores[j]);
  }
  double denom = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    denom += scores[j];
  }
  std::vector<double> acc(head_dim, 0.0);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t t = indices ? indices[j] : j;
    const float* v = kv.VRow(t, kv_head);
    const double p = scores[j] / denom;
    for (int d = 0; d < head_dim; ++d) acc[d] += p * v[d];
  }
  for (int d = 0; d < head_dim; ++d) out_head[d] = static_cast<float>(acc[d]);
}

}  // namespace

void CausalAttentionReference(const float* q, int64_t q_stride, const int32_t* positions,
                              int64_t n, const PagedKvView<const float>& kv,
                              const AttentionShape& shape, float* out, int64_t out_stride) {
  const int group = shape.heads_q / shape.heads_kv;
  std::vector<double> scores;
  for (int64_t i = 0; i < n; ++i) {
    if (positions[i] < 0) continue;
    for (int h = 0; h < shape.heads_q; ++h) {
      AttendHead(q + i * q_stride + static_cast<int64_t>(h) * shape.head_dim, kv, h / group,
                 shape.head_dim, shape.scale, nullptr, 0, positions[i] + 1, scores,
                 out + i * out_stride + static_cast<int64_t>(h) * shape.head_dim);
    }
  }
}

void SelectedAttentionReference(const float* q, const PagedKvView<const float>& kv,
                                const AttentionShape& shape, const int32_t* const* indices,
                                const int64_t* counts, float* out) {
  const int group = shape.heads_q / shape.heads_kv;
  std::vector<double> scores;
  for (int h = 0; h < shape.heads_q; ++h) {
    const int kv_head = h / group;
    AttendHead(q + static_cast<int64_t>(h) * shape.head_dim, kv, kv_head, shape.head_dim,
               shape.scale, indices[kv_head], counts[kv_head], 0, scores,
               out + static_cast<int64_t>(h) * shape.head_dim);
  }
}

}  // namespace dsinfer
