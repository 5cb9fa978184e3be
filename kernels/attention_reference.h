// Exact causal attention of a sequence's new queries over its paged K/V (GQA: query head h
// reads KV head h / (heads_q / heads_kv)). Softmax in double over the attended set. This is
// the dense reference every attention kernel — prefill, flash-decoding, sparse — is judged by.
#ifndef DSINFER_KERNELS_ATTENTION_REFERENCE_H_
#define DSINFER_KERNELS_ATTENTION_REFERENCE_H_

#include <cstdint>

#include "kernels/paged_kv.h"

namespace dsinfer {

struct AttentionShape {
  int heads_q = 0;
  int heads_kv = 0;
  int head_dim = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
};

// q: [n, heads_q, head_dim] (row stride q_stride elements between tokens);
// positions: [n] — query i attends to tokens [0, positions[i]] of `kv`, which must already
// hold them; a negative position leaves row i of out untouched (a row outside the launch);
// out: [n, heads_q, head_dim] (row stride out_stride).
void CausalAttentionReference(const float* q, int64_t q_stride, const int32_t* positions,
                              int64_t n, const PagedKvView<const float>& kv,
                              const AttentionShape& shape, float* out, int64_t out_stride);

// One query row (all heads) over an explicit token set per KV head: indices[h] points to
// counts[h] token indices, all within the sequence. The softmax runs over that set only.
// q: [heads_q, head_dim]; out: [heads_q, head_dim].
void SelectedAttentionReference(const float* q, const PagedKvView<const float>& kv,
                                const AttentionShape& shape, const int32_t* const* indices,
                                const int64_t* counts, float* out);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_ATTENTION_REFERENCE_H_
