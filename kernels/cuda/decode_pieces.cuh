// Flash-decoding pieces: a block attends one piece of a row's tokens and leaves its partial
// softmax state (m, l, acc: base-2 running max, sum, unnormalised output) in a workspace that
// DecodeCombineKernel merges; with one piece per row it writes the output itself. Shared by the
// dense decode bodies (attention.cu) and the pipelined sparse attention (sparse_attention.cu).
//
// Workspace of a launch over `rows` rows (grid z), heads_q query heads and `splits` pieces:
// acc [rows, heads_q, splits, HD] floats, then (m, l) [rows, heads_q, splits, 2]. A launch row
// is where the state lives; the output row it lands in is the rows policy's (DenseDecodeRows:
// the same row; the sparse one: its sequence's query row).
#ifndef DSINFER_KERNELS_CUDA_DECODE_PIECES_CUH_
#define DSINFER_KERNELS_CUDA_DECODE_PIECES_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dependent_launch.cuh"

namespace dsinfer {
namespace cuda {

// acc / l, a finished softmax state's output. With kMayBeEmpty a state over no token (l = 0: an
// empty selection) gives 0, as the twin's empty sum does, instead of 0 / 0.
template <bool kMayBeEmpty>
__device__ __forceinline__ float SoftmaxOutput(float acc, float l) {
  if constexpr (kMayBeEmpty) {
    return l > 0.0f ? acc / l : 0.0f;
  } else {
    return acc / l;
  }
}

// Dense decode rows: launch row r is output row r, and never empty (it attends its own token);
// a row at a negative position is outside the launch (Skips: no block writes it).
struct DenseDecodeRows {
  static constexpr bool kMayBeEmpty = false;
  const int32_t* positions;
  __device__ __forceinline__ int64_t OutRow(int64_t row) const { return row; }
  __device__ __forceinline__ bool Skips(int64_t row) const { return positions[row] < 0; }
};

// A piece's result for channel d of query head qh of launch row `row` (output row `out_row`):
// the output itself when the row is one piece, else the piece's partial state for
// DecodeCombineKernel (acc, then m and l once per head). An empty piece writes acc 0, m -inf,
// l 0, which the combine skips.
template <typename T, int HD, bool kMayBeEmpty = false>
__device__ __forceinline__ void WritePiece(float acc, float m, float l, int64_t row,
                                           int64_t out_row, int qh, int d, int heads_q, int splits,
                                           int split, float* ws, T* out, int64_t out_stride) {
  if (splits == 1) {
    out[out_row * out_stride + static_cast<int64_t>(qh) * HD + d] =
        Num<T>::FromF(SoftmaxOutput<kMayBeEmpty>(acc, l));
    return;
  }
  const int64_t base = (row * heads_q + qh) * splits + split;
  ws[base * HD + d] = acc;
  if (d == 0) {
    float* ml = ws + static_cast<int64_t>(gridDim.z) * heads_q * splits * HD;
    ml[base * 2] = m;
    ml[base * 2 + 1] = l;
  }
}

// Merges a (row, query head)'s pieces: HD × kCombineParts threads, thread (d, part) folding
// pieces part, part + kCombineParts, … of channel d into one online-softmax state (kUnroll
// pieces' loads issued before they are used), the parts then merged through shared memory.
// One thread per channel walking every piece twice was latency-bound: ~33 µs for 32 heads ×
// 132 pieces at batch 1 (H200), most of the pipelined body's distance to the floor there.
// Grid: rows × heads_q blocks. Rows: DenseDecodeRows or another policy with the same members;
// a row it Skips keeps its output untouched.
constexpr int kCombineParts = 8;
template <typename T, int HD, typename Rows>
__global__ void __launch_bounds__(HD * kCombineParts)
    DecodeCombineKernel(const float* ws, int64_t rows, int heads_q, int splits, T* out,
                        int64_t out_stride, Rows out_rows) {
  constexpr int kUnroll = 4;
  StartNextThenWaitForPrior();
  const int64_t row = blockIdx.x / heads_q;
  if (out_rows.Skips(row)) return;
  const int qh = blockIdx.x % heads_q;
  const int d = threadIdx.x % HD, part = threadIdx.x / HD;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * splits;
  const float* ml = ws + rows * heads_q * splits * HD;
  float m = -INFINITY, sum_l = 0.0f, sum_a = 0.0f;
  for (int s0 = part; s0 < splits; s0 += kCombineParts * kUnroll) {
    float pm[kUnroll], pl[kUnroll], pa[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int s = s0 + u * kCombineParts;
      pm[u] = s < splits ? ml[(base + s) * 2] : -INFINITY;
      pl[u] = s < splits ? ml[(base + s) * 2 + 1] : 0.0f;
      pa[u] = s < splits ? ws[(base + s) * HD + d] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (pm[u] == -INFINITY) continue;  // an empty piece
      if (pm[u] > m) {
        const float c = exp2f(m - pm[u]);  // 0 while m is -inf (the sums are 0 then)
        sum_l *= c;
        sum_a *= c;
        m = pm[u];
      }
      const float f = exp2f(pm[u] - m);
      sum_l += pl[u] * f;
      sum_a += pa[u] * f;
    }
  }
  __shared__ float part_m[kCombineParts][HD], part_l[kCombineParts][HD], part_a[kCombineParts][HD];
  part_m[part][d] = m;
  part_l[part][d] = sum_l;
  part_a[part][d] = sum_a;
  __syncthreads();
  if (part != 0) return;
  // -inf only where every piece was empty (Rows::kMayBeEmpty); the totals stay 0 then.
  float big = -INFINITY;
#pragma unroll
  for (int p = 0; p < kCombineParts; ++p) big = fmaxf(big, part_m[p][d]);
  float total_l = 0.0f, total_a = 0.0f;
#pragma unroll
  for (int p = 0; p < kCombineParts; ++p) {
    if (part_m[p][d] == -INFINITY) continue;
    const float f = exp2f(part_m[p][d] - big);
    total_l += part_l[p][d] * f;
    total_a += part_a[p][d] * f;
  }
  out[out_rows.OutRow(row) * out_stride + static_cast<int64_t>(qh) * HD + d] =
      Num<T>::FromF(SoftmaxOutput<Rows::kMayBeEmpty>(total_a, total_l));
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_DECODE_PIECES_CUH_
