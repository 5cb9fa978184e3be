// Double Sparsity sparse decode attention (LaunchSparseAttention, declared in
// double_sparsity.cuh).
//
// Attention (SparseAttentionAlgo), grid splits × KV heads × sequences, a block taking its
// split's share of the (sequence, KV head)'s selected rows for the whole GQA group:
//  - kPipelined (the default): SparsePipelinedKernel, dense decode's pipelined body
//    (decode_pipeline.cuh) with slot i = token sel[i]: per-warp cp.async rings of 16-row K/V
//    tiles gathered by index, tensor-core scores and P·V with the group's heads as MMA rows;
//    pieces go through dense decode's workspace and DecodeCombineKernel (decode_pieces.cuh),
//    which writes sequence s's row seqs[s].q_row. Split count: dense flash-decoding's rule.
//  - kWarp (the first, the cross-check): each warp takes 32 selected rows at a time, one lane
//    per row for the scores (a lane reads a whole K row in 16-byte loads, so every sector it
//    touches is used; no per-token shuffle reduction), then lanes over channels for V; one
//    online-softmax rescale per 32 rows; SIMT work that grows with the group. Every warp writes
//    its own partial state; SparseCombineKernel merges them.
// Both give 0 for an empty selection (the twin's empty sum), not 0 / 0.
// Neither starts its successor early (dependent_launch.cuh): each stage of the chain fills the
// GPU, and the next stage's blocks, started early and waiting, sat beside it — the operator
// chain at batch 8, 256K was ~1.25x slower with them (H200, docs/benchmarks.md run 9). They
// are launched dependent with no early start (LaunchChained, DependentSparseChain, on by
// default: run 16), so each waits for its predecessor's memory first (WaitForPrior).
#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode_pieces.cuh"
#include "kernels/cuda/decode_pipeline.cuh"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda_check.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::Num;
using cuda::WarpMax;
using cuda::WarpSum;

constexpr int kAttnWarps = 4;
constexpr int kAttnVRows = 16;  // V rows a warp has in flight (of its 32)
constexpr int kSparseWarpWaves = 2;  // kWarp's split rule aims at 2 waves of blocks

template <typename T, int kD>
__device__ __forceinline__ void LoadRow8(const T* p, float* f) {
  // 8 elements, one 16-byte load.
  union {
    uint4 v;
    typename Num<T>::Vec2 h[4];
  } u;
  u.v = *reinterpret_cast<const uint4*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = Num<T>::ToF2(u.h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

template <typename T, int kD, int kG>
__global__ void __launch_bounds__(kAttnWarps * 32)
    SparseAttentionKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs, int heads_kv,
                          float scale, CudaPagedKv kv, const int32_t* selected, int64_t sel_stride,
                          const int32_t* counts, int splits, float* workspace) {
  static_assert(kD == 64 || kD == 128, "head_dim 64 or 128");
  constexpr int kC = kD / 32;  // V channels per lane
  __shared__ float qs[kG][kD];
  __shared__ float ps[kAttnWarps][kG][32];
  cuda::WaitForPrior();  // (LaunchChained)
  const int s = blockIdx.z, h = blockIdx.y, split = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const CudaDsSequence seq = seqs[s];
  const int n = counts[s * heads_kv + h];
  const int32_t* sel = selected + (static_cast<int64_t>(s) * heads_kv + h) * sel_stride;
  const int per = (n + splits - 1) / splits;
  const int begin = split * per;
  const int end = min(n, begin + per);
  const T* qrow = q + static_cast<int64_t>(seq.q_row) * q_stride;
  for (int i = threadIdx.x; i < kG * kD; i += blockDim.x) {
    qs[i / kD][i % kD] =
        Num<T>::ToF(qrow[static_cast<int64_t>(h * kG + i / kD) * kD + i % kD]) * scale;
  }
  __syncthreads();
  const T* kbase = static_cast<const T*>(kv.k);
  const T* vbase = static_cast<const T*>(kv.v);
  const int32_t* bt = kv.block_tables + static_cast<int64_t>(seq.kv_seq) * kv.max_blocks;
  float m[kG], l[kG], acc[kG][kC];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int c = 0; c < kC; ++c) acc[g][c] = 0.0f;
  }
  for (int tile = begin + warp * 32; tile < end; tile += kAttnWarps * 32) {
    const int idx = tile + lane;
    const bool valid = idx < end;
    int64_t off = 0;
    float logit[kG];
#pragma unroll
    for (int g = 0; g < kG; ++g) logit[g] = 0.0f;
    if (valid) {
      const int token = sel[idx];
      off = ((static_cast<int64_t>(bt[token / kv.block_tokens]) * kv.block_tokens +
              token % kv.block_tokens) *
                 kv.kv_heads +
             h) *
            kD;
      const T* krow = kbase + off;
      // The whole row's loads in flight at once (ncu, H200: with a few rows' bytes in flight
      // per warp the kernel was latency-bound at ~2.6 TB/s, its grid filling half the SM's
      // warp slots, so registers are cheaper than waiting).
#pragma unroll
      for (int c = 0; c < kD / 8; ++c) {
        float f[8];
        LoadRow8<T, kD>(krow + c * 8, f);
#pragma unroll
        for (int g = 0; g < kG; ++g) {
#pragma unroll
          for (int e = 0; e < 8; ++e) logit[g] += qs[g][c * 8 + e] * f[e];
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      const float x = valid ? logit[g] : -INFINITY;
      const float m_new = fmaxf(m[g], WarpMax(x));
      const float p = valid ? __expf(x - m_new) : 0.0f;
      const float corr = __expf(m[g] - m_new);
      l[g] = l[g] * corr + WarpSum(p);
#pragma unroll
      for (int c = 0; c < kC; ++c) acc[g][c] *= corr;
      m[g] = m_new;
      ps[warp][g][lane] = p;
    }
    __syncwarp();
    // V: lanes over channels, kAttnVRows rows' loads issued before their use (a row at a time
    // would serialize 32 memory latencies per tile). Rows past `end` have p = 0 and load
    // nothing.
    const int rows = min(32, end - tile);
    for (int j0 = 0; j0 < rows; j0 += kAttnVRows) {
      float v[kAttnVRows][kC];
#pragma unroll
      for (int jj = 0; jj < kAttnVRows; ++jj) {
        const int64_t offj = __shfl_sync(0xffffffffu, off, j0 + jj);
        const T* vrow = vbase + offj + lane * kC;
        if (j0 + jj < rows) {
          if constexpr (kC == 4) {
            union {
              uint2 u;
              typename Num<T>::Vec2 h[2];
            } x;
            x.u = *reinterpret_cast<const uint2*>(vrow);
            const float2 a = Num<T>::ToF2(x.h[0]), b = Num<T>::ToF2(x.h[1]);
            v[jj][0] = a.x, v[jj][1] = a.y, v[jj][2] = b.x, v[jj][3] = b.y;
          } else {
            const float2 a = Num<T>::ToF2(*reinterpret_cast<const typename Num<T>::Vec2*>(vrow));
            v[jj][0] = a.x, v[jj][1] = a.y;
          }
        } else {
#pragma unroll
          for (int c = 0; c < kC; ++c) v[jj][c] = 0.0f;
        }
      }
#pragma unroll
      for (int jj = 0; jj < kAttnVRows; ++jj) {
#pragma unroll
        for (int g = 0; g < kG; ++g) {
          const float p = ps[warp][g][j0 + jj];
#pragma unroll
          for (int c = 0; c < kC; ++c) acc[g][c] += p * v[jj][c];
        }
      }
    }
    __syncwarp();
  }
  // Partial state of this warp: [m, l, acc[kD]] per query head.
  const int partials = splits * kAttnWarps;
  const int part = split * kAttnWarps + warp;
  const int heads_q = heads_kv * kG;
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    const int hq = h * kG + g;
    float* w = workspace + ((static_cast<int64_t>(s) * heads_q + hq) * partials + part) * (kD + 2);
    if (lane == 0) {
      w[0] = m[g];
      w[1] = l[g];
    }
#pragma unroll
    for (int c = 0; c < kC; ++c) w[2 + lane * kC + c] = acc[g][c];
  }
}

template <typename T, int kD>
__global__ void SparseCombineKernel(const CudaDsSequence* seqs, int heads_q, int partials,
                                    const float* workspace, T* out, int64_t out_stride) {
  cuda::WaitForPrior();  // (LaunchChained)
  const int s = blockIdx.y, hq = blockIdx.x, c = threadIdx.x;
  const float* w = workspace + (static_cast<int64_t>(s) * heads_q + hq) * partials * (kD + 2);
  float big = -INFINITY;
  for (int p = 0; p < partials; ++p) big = fmaxf(big, w[p * (kD + 2)]);
  float total = 0.0f, acc = 0.0f;
  for (int p = 0; p < partials; ++p) {
    const float* wp = w + p * (kD + 2);
    if (wp[1] == 0.0f) continue;  // an empty slice or warp
    const float f = __expf(wp[0] - big);
    total += wp[1] * f;
    acc += wp[2 + c] * f;
  }
  out[static_cast<int64_t>(seqs[s].q_row) * out_stride + static_cast<int64_t>(hq) * kD + c] =
      Num<T>::FromF(cuda::SoftmaxOutput<true>(acc, total));  // an empty selection: 0
}

// kPipelined: the pipelined decode body (decode_pipeline.cuh) over a (sequence, KV head)'s
// selected rows, its kG query heads the rows of the MMA tile; pieces merge in
// DecodeCombineKernel (decode_pieces.cuh), launch row s landing in q row seqs[s].q_row.

// The body's slot list: the selected rows, slot i = token sel[i] of KV sequence kv_seq.
struct SelectedSlots {
  const int32_t* sel;
  int32_t kv_seq;
  __device__ __forceinline__ const int32_t* Table(const CudaPagedKv& kv) const {
    return kv.block_tables + static_cast<int64_t>(kv_seq) * kv.max_blocks;
  }
  __device__ __forceinline__ int Token(int slot) const { return sel[slot]; }
};

// Output rows of the pieces (the combine's rows policy): launch row s is sequence s, written to
// q row seqs[s].q_row; an empty selection gives 0, as SelectedAttentionReference's empty sum.
struct SelectionRows {
  static constexpr bool kMayBeEmpty = true;
  const CudaDsSequence* seqs;
  __device__ __forceinline__ int64_t OutRow(int64_t s) const { return seqs[s].q_row; }
  __device__ __forceinline__ bool Skips(int64_t) const { return false; }
};

// Grid (splits, KV heads, sequences) as SparseAttentionKernel; the selection [0, n) is cut into
// `splits` pieces of ceil(n / splits) slots (pieces past n are empty).
template <typename T, int kD, int kG>
__global__ void __launch_bounds__(cuda::kPipeThreads, cuda::kPipeMinBlocks)
    SparsePipelinedKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs, int heads_kv,
                          float scale_log2, CudaPagedKv kv, const int32_t* selected,
                          int64_t sel_stride, const int32_t* counts, int splits, float* ws, T* out,
                          int64_t out_stride) {
  static_assert(kG <= cuda::kPipeMaxHeads, "one block takes the whole group");
  extern __shared__ __align__(16) unsigned char pipe_smem[];
  cuda::WaitForPrior();  // (LaunchChained)
  const int s = blockIdx.z, h = blockIdx.y, split = blockIdx.x;
  const int n = counts[s * heads_kv + h];
  const int per = (n + splits - 1) / splits;
  cuda::PipePiece piece;
  piece.q_row = seqs[s].q_row;
  piece.qh0 = h * kG;
  piece.heads = kG;
  piece.kvh = h;
  piece.begin = split * per;
  piece.end = min(n, piece.begin + per);
  const int heads_q = heads_kv * kG;
  const SelectedSlots slots{selected + (static_cast<int64_t>(s) * heads_kv + h) * sel_stride,
                            seqs[s].kv_seq};
  cuda::PipelinedDecodeBody<T, kD>(
      q, q_stride, piece, kv, scale_log2, slots,
      [&](int g, int d, float acc, float m, float l) {
        cuda::WritePiece<T, kD, SelectionRows::kMayBeEmpty>(acc, m, l, s, piece.q_row,
                                                            piece.qh0 + g, d, heads_q, splits,
                                                            split, ws, out, out_stride);
      },
      [] {}, pipe_smem);  // launched as usual: nothing to wait for, nothing loaded early
}

template <typename T, int kD, int kG>
absl::Status SparseAttentionTyped(const void* q, int64_t q_stride, const CudaDsSequence* seqs,
                                  int num_seqs, int heads_kv, float scale, const CudaPagedKv& kv,
                                  const int32_t* selected, int64_t sel_stride,
                                  const int32_t* counts, int splits, float* workspace, void* out,
                                  int64_t out_stride, SparseAttentionAlgo algo,
                                  cudaStream_t stream) {
  const dim3 grid(splits, heads_kv, num_seqs);
  const int heads_q = heads_kv * kG;
  if (algo == SparseAttentionAlgo::kPipelined) {
    constexpr int kSmem = cuda::PipeSmemBytes<T, kD>();
    constexpr float kLog2e = 1.4426950408889634f;
    CUDA_RETURN_IF_ERROR(cuda::OptInSharedMemory(SparsePipelinedKernel<T, kD, kG>, kSmem));
    CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
        SparsePipelinedKernel<T, kD, kG>, grid, dim3(cuda::kPipeThreads), kSmem, stream,
        static_cast<const T*>(q), q_stride, seqs, heads_kv, scale * kLog2e, kv, selected,
        sel_stride, counts, splits, workspace, static_cast<T*>(out), out_stride));
    if (splits > 1) {
      CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
          cuda::DecodeCombineKernel<T, kD, SelectionRows>,
          dim3(static_cast<unsigned>(num_seqs * heads_q)), dim3(kD * cuda::kCombineParts), 0,
          stream, static_cast<const float*>(workspace), static_cast<int64_t>(num_seqs), heads_q,
          splits, static_cast<T*>(out), out_stride, SelectionRows{seqs}));
    }
    return absl::OkStatus();
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
      SparseAttentionKernel<T, kD, kG>, grid, dim3(kAttnWarps * 32), 0, stream,
      static_cast<const T*>(q), q_stride, seqs, heads_kv, scale, kv, selected, sel_stride, counts,
      splits, workspace));
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
      SparseCombineKernel<T, kD>, dim3(heads_q, num_seqs), dim3(kD), 0, stream, seqs, heads_q,
      splits * kAttnWarps, static_cast<const float*>(workspace), static_cast<T*>(out), out_stride));
  return absl::OkStatus();
}

template <typename T, int kD>
absl::Status SparseAttentionByGroup(int group, const void* q, int64_t q_stride,
                                    const CudaDsSequence* seqs, int num_seqs, int heads_kv,
                                    float scale, const CudaPagedKv& kv, const int32_t* selected,
                                    int64_t sel_stride, const int32_t* counts, int splits,
                                    float* workspace, void* out, int64_t out_stride,
                                    SparseAttentionAlgo algo, cudaStream_t stream) {
#define DSINFER_SPARSE_CASE(G)                                                                  \
  case G:                                                                                       \
    return SparseAttentionTyped<T, kD, G>(q, q_stride, seqs, num_seqs, heads_kv, scale, kv,     \
                                          selected, sel_stride, counts, splits, workspace, out, \
                                          out_stride, algo, stream);
  switch (group) {
    DSINFER_SPARSE_CASE(1)
    DSINFER_SPARSE_CASE(2)
    DSINFER_SPARSE_CASE(4)
    DSINFER_SPARSE_CASE(8)
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("LaunchSparseAttention: unsupported GQA group ", group));
  }
#undef DSINFER_SPARSE_CASE
}

}  // namespace

int64_t SparseAttentionWorkspaceFloats(int num_seqs, int heads_q, int head_dim, int splits) {
  // kWarp's: a partial state per warp of each piece. kPipelined needs a quarter of it (one per
  // piece, DecodeCombineKernel's layout).
  return static_cast<int64_t>(num_seqs) * heads_q * splits * kAttnWarps * (head_dim + 2);
}

int SparseAttentionSplits(int num_seqs, int heads_kv, int64_t max_budget, int sm_count,
                          SparseAttentionAlgo algo, int waves) {
  if (algo == SparseAttentionAlgo::kPipelined) {
    // Dense flash-decoding's rule: one block per (piece, KV head, sequence), the whole group in
    // it (as dense attention with one head group per KV head).
    return DecodeAttentionSplits(num_seqs, heads_kv, heads_kv, max_budget, sm_count,
                                 waves > 0 ? waves : kSparsePipelinedWaves);
  }
  if (waves <= 0) waves = kSparseWarpWaves;
  const int64_t blocks = static_cast<int64_t>(num_seqs) * heads_kv;
  int64_t splits = (static_cast<int64_t>(waves) * sm_count + blocks - 1) / blocks;
  splits = std::min<int64_t>(splits, (max_budget + 255) / 256);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(splits, 64)));
}

absl::Status LaunchSparseAttention(DType dtype, const void* q, int64_t q_stride,
                                   const CudaDsSequence* seqs, int num_seqs, int heads_q,
                                   int heads_kv, int head_dim, float scale, const CudaPagedKv& kv,
                                   const int32_t* selected, int64_t sel_stride,
                                   const int32_t* counts, int splits, float* workspace, void* out,
                                   int64_t out_stride, cudaStream_t stream,
                                   SparseAttentionAlgo algo) {
  if (num_seqs == 0) return absl::OkStatus();
  if (splits < 1) return absl::InvalidArgumentError("LaunchSparseAttention: splits < 1");
  if (heads_kv <= 0 || heads_q % heads_kv != 0) {
    return absl::InvalidArgumentError("LaunchSparseAttention: heads_q % heads_kv != 0");
  }
  if (algo != SparseAttentionAlgo::kWarp && algo != SparseAttentionAlgo::kPipelined) {
    return absl::InvalidArgumentError("LaunchSparseAttention: unknown algo");
  }
  const int group = heads_q / heads_kv;
  const int key = (dtype == DType::kBF16 ? 0 : dtype == DType::kF16 ? 1 : 9) * 1000 + head_dim;
  switch (key) {
    case 64:
      return SparseAttentionByGroup<__nv_bfloat16, 64>(group, q, q_stride, seqs, num_seqs, heads_kv,
                                                       scale, kv, selected, sel_stride, counts,
                                                       splits, workspace, out, out_stride, algo,
                                                       stream);
    case 128:
      return SparseAttentionByGroup<__nv_bfloat16, 128>(
          group, q, q_stride, seqs, num_seqs, heads_kv, scale, kv, selected, sel_stride, counts,
          splits, workspace, out, out_stride, algo, stream);
    case 1064:
      return SparseAttentionByGroup<__half, 64>(group, q, q_stride, seqs, num_seqs, heads_kv, scale,
                                                kv, selected, sel_stride, counts, splits, workspace,
                                                out, out_stride, algo, stream);
    case 1128:
      return SparseAttentionByGroup<__half, 128>(group, q, q_stride, seqs, num_seqs, heads_kv,
                                                 scale, kv, selected, sel_stride, counts, splits,
                                                 workspace, out, out_stride, algo, stream);
    default:
      return absl::InvalidArgumentError(absl::StrCat("LaunchSparseAttention: unsupported dtype ",
                                                     static_cast<int>(dtype), " / head_dim ",
                                                     head_dim));
  }
}

}  // namespace dsinfer
