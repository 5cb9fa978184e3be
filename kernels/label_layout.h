// The label cache's row layout on the GPU (kernels/cuda/double_sparsity.cuh), shared by the
// kernels, the engine's label storage and memory plan (plain C++: CPU builds include it), and
// the tests that read labels back.
#ifndef DSINFER_KERNELS_LABEL_LAYOUT_H_
#define DSINFER_KERNELS_LABEL_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/host_device.h"

namespace dsinfer {

// Label rows are stored in pages of kLabelPageTokens tokens, each page head-major: the row of
// (token t, KV head h) is row LabelRow(t, h, kv_heads) = ((t / P) × kv_heads + h) × P + t % P.
// One KV head's rows of a page are contiguous, so a reader of one head (the fused scorer and
// top-k, LaunchScoreSelectCluster) streams runs of P rows — from a token-major layout it read
// 16-byte rows 512 bytes apart at ~1.6 TB/s (H200); and a prefix of tokens is a prefix of whole
// pages, so growth copies one span.
constexpr int kLabelPageTokens = 128;
DSINFER_HOST_DEVICE inline int64_t LabelRow(int64_t token, int head, int kv_heads) {
  return ((token / kLabelPageTokens) * kv_heads + head) * kLabelPageTokens +
         token % kLabelPageTokens;
}
// Tokens a label buffer holding `tokens` tokens must have rows for: whole pages.
DSINFER_HOST_DEVICE inline int64_t LabelCapacity(int64_t tokens) {
  return (tokens + kLabelPageTokens - 1) / kLabelPageTokens * kLabelPageTokens;
}

// Host side: `tokens` tokens' rows of row_bytes from the paged layout (src: LabelCapacity(tokens)
// × kv_heads rows) to token-major order (dst: [tokens][kv_heads] rows), the twins' layout.
inline void LabelRowsToTokenMajor(const void* src, int64_t tokens, int kv_heads, size_t row_bytes,
                                  void* dst) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < kv_heads; ++h) {
      std::memcpy(static_cast<char*>(dst) + (t * kv_heads + h) * row_bytes,
                  static_cast<const char*>(src) + LabelRow(t, h, kv_heads) * row_bytes, row_bytes);
    }
  }
}

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_LABEL_LAYOUT_H_
