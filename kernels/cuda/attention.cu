// Dense attention over the paged K/V pool: flash-decoding for one query per sequence and a
// tiled flash-attention kernel for prefill. Both keep the softmax online (running max m, sum
// l, unnormalised accumulator) in fp32, in base 2 (q pre-scaled by scale·log2 e), and read
// K/V through the block tables, so prefill chunks and decode rows need no contiguous copy.
//
// Decode: grid (splits, kv-head groups, rows). A block owns one piece of one row's context
// for one KV head and up to kMaxGroup query heads of its group, so each K/V row is read from
// HBM once for the whole group (GQA). Pieces write (m, l, acc) to the workspace; a combine
// kernel merges them. splits == 1 writes the output directly. Three block bodies:
//  - tiled (DecodeTiledKernel, the default until the pipelined body): 64-token K and V tiles
//    go to shared memory with 16-byte cp.async loads (16 independent loads per thread in
//    flight, coalesced 256-byte rows); a thread scores one token for up to 4 query heads (the
//    K row read once, no shuffles), one warp per head takes the tile's softmax at once (one
//    rescale per tile), and P·V runs with each thread owning 8 channels of one head over a
//    strided subset of tokens.
//    Nothing overlaps a tile's loads inside a block (wait all, 4 __syncthreads per tile), and
//    with G query heads the SIMT score and P·V work grows G-fold: 1.6–1.8x the HBM floor for
//    Llama-3-8B heads (G = 4) at batch 8–32 on an H200, 1.1–1.25x for MHA.
//  - pipelined (the CUDA backend's default, DecodePipelinedKernel; its body is in
//    decode_pipeline.cuh, shared with Double Sparsity's attention): 4 warps, each its own pipeline
//    with no __syncthreads in the loop: warp w takes the piece's 16-token tiles w, w + 4, …,
//    streaming K and V (16-byte cp.async, zero-filled past the piece) through a private 3-stage
//    ring (two tiles in flight while one is computed; 96 KiB a block at head_dim 128: 2 blocks an
//    SM). Scores and P·V run on tensor cores (mma.m16n8k16, fp32 accumulate) with the block's up to
//    8 query heads as the rows of one m16 tile: S = Q·Kᵀ with Q's fragments in registers (q
//    unscaled, exact in T; the scale goes onto S in fp32) and K's by ldmatrix; P goes from the S
//    accumulators straight into the A fragment of P·V (V by ldmatrix.trans), rounded to bf16/fp16
//    as hi + lo, the lo part riding in the unused rows 8-15 (~16 bits of P at no extra MMA). Each
//    warp keeps its own online softmax and rescales O only when a head's max rises; the 4 warp
//    states merge through shared memory at the end. A warp's 16 tokens take 32 MMAs and 16
//    ldmatrix.x4 (head_dim 128) whatever the group size, where the tiled body's SIMT work grows
//    with G. On an H200 (docs/benchmarks.md, run 8; fp16, >= 64K tokens): 1.00–1.05x the floor for
//    Llama-3-8B and Llama-2 heads at every batch (tiled: 1.09–2.07x); at batch 1 and 64K the
//    combine kernel (then ~33 µs over 132 pieces, since spread over 8 threads per channel) was most
//    of what was left above the floor.
//  - warp (the first version, DecodeAttentionKernel, kept as a cross-check and fallback): 4
//    warps take tokens round-robin, a lane holds head_dim/32 channels, a warp reduction per
//    score; latency-bound (0.5–1.3 TB/s on an H100).
// The decode bodies and the combine are launched dependent (dependent_launch.cuh): each lets the
// next kernel start at once and waits for the previous one first, so the o_proj GEMV begins
// streaming its weights during the last wave of attention blocks.
//
// Prefill: three bodies (PrefillAttentionAlgo). kSimt, the first one, is here: grid (16-row
// query tiles, query heads). A block loads 16 query rows (one sequence) and streams 32-token K/V
// tiles through shared memory up to the tile's last position; each warp owns 4 query rows,
// lane j scores token j of the tile, and each lane accumulates head_dim/32 output channels.
// SIMT fp32 (no tensor cores): correct, 13% of the matmul rate. kMma, the first tensor-core body
// (prefill_attention_mma.cu), takes 128-row tiles; where it cannot take the operands it falls
// back to this kernel run over 16-row sub-tiles of them. kWgmma, the default
// (prefill_attention_wgmma.cu, Hopper only), takes the same tiles and falls back to kMma.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/decode_pieces.cuh"
#include "kernels/cuda/decode_pipeline.cuh"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/prefill_attention_mma.h"
#include "kernels/cuda/prefill_attention_wgmma.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::CpAsync16;
using cuda::CpAsyncWaitAll;
using cuda::DecodeCombineKernel;
using cuda::DenseDecodeRows;
using cuda::kCombineParts;
using cuda::kPipeMinBlocks;
using cuda::kPipeThreads;
using cuda::KvOffset;
using cuda::Num;
using cuda::PipeSmemBytes;
using cuda::Unpack8;
using cuda::WarpMax;
using cuda::WarpSum;
using cuda::WritePiece;

constexpr int kMaxGroup = 8;
constexpr int kDecodeWarps = 4;
constexpr int kKeyTile = 32;
constexpr int kSimtRows = kPrefillTileRowsSimt;  // rows per SIMT prefill block
// SIMT blocks per kMma tile, for kMma's fallback to the SIMT body.
constexpr int kSimtSubTilesOfMma = kPrefillTileRowsMma / kSimtRows;
static_assert(kPrefillTileRowsMma % kSimtRows == 0, "SIMT sub-tiles of kMma tiles");
constexpr float kLog2e = 1.4426950408889634f;

// Where a decode block works (grid: splits × KV-head groups × rows): its piece [begin, end) of
// row `row`'s context (tokens [0, positions[row]] cut into `splits` pieces), KV head kvh, and
// query heads [qh0, qh0 + heads) of that head's group (at most kMaxGroup per block).
struct DecodePiece {
  int split, kvh, heads, qh0, begin, end;
  int64_t row;
};
__device__ __forceinline__ DecodePiece LocateDecodePiece(const int32_t* positions, int heads_q,
                                                         int heads_kv, int splits) {
  DecodePiece p;
  p.split = blockIdx.x;
  const int group = heads_q / heads_kv;
  const int chunks = (group + kMaxGroup - 1) / kMaxGroup;
  p.kvh = blockIdx.y / chunks;
  const int g0 = (blockIdx.y % chunks) * kMaxGroup;
  p.heads = min(kMaxGroup, group - g0);
  p.qh0 = p.kvh * group + g0;
  p.row = blockIdx.z;
  const int ctx = positions[p.row] + 1;
  const int per = (ctx + splits - 1) / splits;
  p.begin = p.split * per;
  p.end = min(ctx, p.begin + per);
  return p;
}

template <typename T, int HD>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    DecodeAttentionKernel(const T* q, int64_t q_stride, const int32_t* positions,
                          const int32_t* row_seq, int heads_q, int heads_kv, float scale_log2,
                          CudaPagedKv kv, float* ws, int splits, T* out, int64_t out_stride) {
  constexpr int VEC = HD / 32;
  using Vec2 = typename Num<T>::Vec2;
  cuda::StartNextThenWaitForPrior();
  if (positions[blockIdx.z] < 0) return;  // a row outside the launch
  const DecodePiece piece = LocateDecodePiece(positions, heads_q, heads_kv, splits);
  const int split = piece.split, kvh = piece.kvh, gcount = piece.heads, qh0 = piece.qh0;
  const int begin = piece.begin, end = piece.end;
  const int64_t row = piece.row;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  float qr[kMaxGroup][VEC];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      qr[g][i] = g < gcount ? Num<T>::ToF(q[row * q_stride + static_cast<int64_t>(qh0 + g) * HD +
                                          lane * VEC + i]) * scale_log2
                            : 0.0f;
    }
  }
  float m[kMaxGroup], l[kMaxGroup], acc[kMaxGroup][VEC];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[g][i] = 0.0f;
  }
  const int32_t* table = kv.block_tables + static_cast<int64_t>(row_seq[row]) * kv.max_blocks;
  const T* kbase = static_cast<const T*>(kv.k);
  const T* vbase = static_cast<const T*>(kv.v);
  for (int t = begin + warp; t < end; t += kDecodeWarps) {
    const int64_t off = KvOffset(kv, table, t, kvh, HD) + lane * VEC;
    float kf[VEC], vf[VEC];
#pragma unroll
    for (int i = 0; i < VEC; i += 2) {
      const float2 k2 = Num<T>::ToF2(*reinterpret_cast<const Vec2*>(kbase + off + i));
      const float2 v2 = Num<T>::ToF2(*reinterpret_cast<const Vec2*>(vbase + off + i));
      kf[i] = k2.x;
      kf[i + 1] = k2.y;
      vf[i] = v2.x;
      vf[i + 1] = v2.y;
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < gcount) {
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < VEC; ++i) s += qr[g][i] * kf[i];
        s = WarpSum(s);
        const float m_new = fmaxf(m[g], s);
        const float corr = exp2f(m[g] - m_new);
        const float p = exp2f(s - m_new);
        l[g] = l[g] * corr + p;
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[g][i] = acc[g][i] * corr + p * vf[i];
        m[g] = m_new;
      }
    }
  }

  __shared__ float sm_m[kDecodeWarps][kMaxGroup];
  __shared__ float sm_l[kDecodeWarps][kMaxGroup];
  __shared__ float sm_acc[kDecodeWarps][kMaxGroup][HD];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < gcount) {
      if (lane == 0) {
        sm_m[warp][g] = m[g];
        sm_l[warp][g] = l[g];
      }
#pragma unroll
      for (int i = 0; i < VEC; ++i) sm_acc[warp][g][lane * VEC + i] = acc[g][i];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < gcount * HD; idx += blockDim.x) {
    const int g = idx / HD, d = idx % HD;
    float big = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) big = fmaxf(big, sm_m[w][g]);
    float sum_l = 0.0f, sum_a = 0.0f;
    if (big != -INFINITY) {
      for (int w = 0; w < kDecodeWarps; ++w) {
        const float f = exp2f(sm_m[w][g] - big);
        sum_l += sm_l[w][g] * f;
        sum_a += sm_acc[w][g][d] * f;
      }
    }
    WritePiece<T, HD>(sum_a, big, sum_l, row, row, qh0 + g, d, heads_q, splits, split, ws, out,
                      out_stride);
  }
}

constexpr int kTiledThreads = 128;
constexpr int kTiledTokens = 64;

template <typename T, int HD>
__global__ void __launch_bounds__(kTiledThreads)
    DecodeTiledKernel(const T* q, int64_t q_stride, const int32_t* positions,
                      const int32_t* row_seq, int heads_q, int heads_kv, float scale_log2,
                      CudaPagedKv kv, float* ws, int splits, T* out, int64_t out_stride) {
  constexpr int TK = kTiledTokens;
  constexpr int CH = HD / 8;                  // 16-byte chunks per row
  constexpr int KS = HD + 8;                  // K row stride: conflict-free 16-byte reads
  constexpr int NG = kTiledThreads / CH;      // P·V thread groups (8 or 16)
  constexpr int kHeadsPerThread = kMaxGroup * TK / kTiledThreads;  // 4
  cuda::StartNextThenWaitForPrior();
  if (positions[blockIdx.z] < 0) return;  // a row outside the launch
  const DecodePiece piece = LocateDecodePiece(positions, heads_q, heads_kv, splits);
  const int split = piece.split, kvh = piece.kvh, G = piece.heads, qh0 = piece.qh0;
  const int begin = piece.begin, end = piece.end;
  const int64_t row = piece.row;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  __shared__ __align__(16) T ks[TK][KS];
  __shared__ __align__(16) T vs[TK][HD];
  __shared__ __align__(16) float qs[kMaxGroup][HD];
  __shared__ float ps[kMaxGroup][TK];
  __shared__ float m_s[kMaxGroup], l_s[kMaxGroup], corr_s[kMaxGroup];

  for (int i = tid; i < G * HD; i += kTiledThreads) {
    const int g = i / HD, d = i % HD;
    qs[g][d] = Num<T>::ToF(q[row * q_stride + static_cast<int64_t>(qh0 + g) * HD + d]) *
               scale_log2;
  }
  if (tid < kMaxGroup) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  const int32_t* table = kv.block_tables + static_cast<int64_t>(row_seq[row]) * kv.max_blocks;
  const T* kbase = static_cast<const T*>(kv.k);
  const T* vbase = static_cast<const T*>(kv.v);

  // Scores: thread (t, slice) scores token t for heads [slice·hpt, slice·hpt + hpt).
  const int hpt = (G + 1) / 2;
  const int score_t = tid % TK, score_g0 = (tid / TK) * hpt;
  // P·V: thread (chunk c, group grp) owns channels [8c, 8c + 8) of head grp % G for the tokens
  // t ≡ grp / G (mod R); groups past G·R idle.
  const int pv_c = tid % CH, pv_grp = tid / CH;
  const int R = max(1, NG / G);
  const int pv_g = pv_grp % G, pv_sub = pv_grp / G;
  const bool pv_on = pv_grp < G * R;
  float acc[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i] = 0.0f;

  for (int t0 = begin; t0 < end; t0 += TK) {
    const int count = min(TK, end - t0);
    for (int i = tid; i < count * CH; i += kTiledThreads) {
      const int t = i / CH, c = i % CH;
      const int64_t off = KvOffset(kv, table, t0 + t, kvh, HD) + c * 8;
      CpAsync16(&ks[t][c * 8], kbase + off);
      CpAsync16(&vs[t][c * 8], vbase + off);
    }
    CpAsyncWaitAll();
    __syncthreads();
    // Scores (base 2) into ps; masked tokens get -inf.
    {
      float sc[kHeadsPerThread];
#pragma unroll
      for (int j = 0; j < kHeadsPerThread; ++j) sc[j] = 0.0f;
      if (score_t < count) {
#pragma unroll 4
        for (int c = 0; c < CH; ++c) {
          float kf[8];
          Unpack8<T>(*reinterpret_cast<const uint4*>(&ks[score_t][c * 8]), kf);
#pragma unroll
          for (int j = 0; j < kHeadsPerThread; ++j) {
            if (j < hpt && score_g0 + j < G) {
              const float4 qa = *reinterpret_cast<const float4*>(&qs[score_g0 + j][c * 8]);
              const float4 qb = *reinterpret_cast<const float4*>(&qs[score_g0 + j][c * 8 + 4]);
              sc[j] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] +
                       qb.y * kf[5] + qb.z * kf[6] + qb.w * kf[7];
            }
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kHeadsPerThread; ++j) {
        if (j < hpt && score_g0 + j < G) {
          ps[score_g0 + j][score_t] = score_t < count ? sc[j] : -INFINITY;
        }
      }
    }
    __syncthreads();
    // Softmax of the tile, one warp per head: new running max, rescale factor, P in place.
    for (int g = warp; g < G; g += kTiledThreads / 32) {
      const float s0 = ps[g][lane], s1 = ps[g][lane + 32];
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, WarpMax(fmaxf(s0, s1)));  // finite: count >= 1
      const float p0 = exp2f(s0 - m_new), p1 = exp2f(s1 - m_new);
      const float sum = WarpSum(p0 + p1);
      ps[g][lane] = p0;
      ps[g][lane + 32] = p1;
      __syncwarp();
      if (lane == 0) {
        const float corr = exp2f(m_old - m_new);
        corr_s[g] = corr;
        l_s[g] = l_s[g] * corr + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    if (pv_on) {
      const float corr = corr_s[pv_g];
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] *= corr;
      for (int t = pv_sub; t < count; t += R) {
        const float p = ps[pv_g][t];
        float vf[8];
        Unpack8<T>(*reinterpret_cast<const uint4*>(&vs[t][pv_c * 8]), vf);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] += p * vf[i];
      }
    }
    __syncthreads();  // the next tile overwrites ks, vs and ps
  }

  // Sum the R partial accumulators of each head (reusing the K tile as scratch), then write.
  float* red = reinterpret_cast<float*>(&ks[0][0]);  // [NG][HD] floats fit in ks
  static_assert(NG * HD * sizeof(float) <= sizeof(ks), "reduction scratch");
  if (pv_on) {
#pragma unroll
    for (int i = 0; i < 8; ++i) red[pv_grp * HD + pv_c * 8 + i] = acc[i];
  }
  __syncthreads();
  for (int idx = tid; idx < G * HD; idx += kTiledThreads) {
    const int g = idx / HD, d = idx % HD;
    float sum_a = 0.0f;
    for (int sub = 0; sub < R; ++sub) sum_a += red[(sub * G + g) * HD + d];
    const float m = m_s[g], l = l_s[g];
    WritePiece<T, HD>(sum_a, m, l, row, row, qh0 + g, d, heads_q, splits, split, ws, out,
                      out_stride);
  }
}

// kPipelined: the pipelined body (decode_pipeline.cuh) over the row's context, slot i being
// token i. Grid, workspace and (m, l, acc) output as DecodeTiledKernel.
static_assert(kMaxGroup == cuda::kPipeMaxHeads, "a block takes a head group's chunk whole");

// The pipelined body's slot list for a dense row: its context, slot i = token i.
struct ContextSlots {
  const int32_t* row_seq;
  int64_t row;
  __device__ __forceinline__ const int32_t* Table(const CudaPagedKv& kv) const {
    return kv.block_tables + static_cast<int64_t>(row_seq[row]) * kv.max_blocks;
  }
  __device__ __forceinline__ int Token(int slot) const { return slot; }
};

template <typename T, int HD>
__global__ void __launch_bounds__(kPipeThreads, kPipeMinBlocks)
    DecodePipelinedKernel(const T* q, int64_t q_stride, const int32_t* positions,
                          const int32_t* row_seq, int heads_q, int heads_kv, float scale_log2,
                          CudaPagedKv kv, float* ws, int splits, T* out, int64_t out_stride) {
  extern __shared__ __align__(16) unsigned char pipe_smem[];
  // Dependent launch with early loads: the positions and block tables were uploaded before the
  // step, and the K/V of a row's older tokens were written by earlier steps (ordered by the
  // step's q|k|v projection, a kernel launched as usual), so a warp's first tiles of them load
  // while the kernel before (RoPE + K/V write) still runs. Only the row's own token and q wait.
  cuda::LetDependentsStart();
  if (positions[blockIdx.z] < 0) return;  // a row outside the launch
  const DecodePiece piece = LocateDecodePiece(positions, heads_q, heads_kv, splits);
  const cuda::PipePiece pipe{piece.row,   piece.qh0, piece.heads,         piece.kvh,
                             piece.begin, piece.end, positions[piece.row]};
  cuda::PipelinedDecodeBody<T, HD>(
      q, q_stride, pipe, kv, scale_log2, ContextSlots{row_seq, piece.row},
      [&](int g, int d, float acc, float m, float l) {
        WritePiece<T, HD>(acc, m, l, piece.row, piece.row, piece.qh0 + g, d, heads_q, splits,
                          piece.split, ws, out, out_stride);
      },
      [] { cuda::WaitForPrior(); }, pipe_smem);
}

// kSubTiles: SIMT blocks per tile of the list. 1 for kSimt's own 16-row tiles (then this is
// the verified kernel: tile = blockIdx.x, sub = 0); kSimtSubTilesOfMma for kMma's fallback.
template <typename T, int HD, int kSubTiles>
__global__ void __launch_bounds__(128)
    PrefillAttentionKernel(const T* q, int64_t q_stride, const int32_t* positions,
                           const int32_t* row_seq, const int32_t* tiles, int heads_q,
                           int heads_kv, float scale_log2, CudaPagedKv kv, T* out,
                           int64_t out_stride) {
  constexpr int VEC = HD / 32;
  constexpr int kRowsPerWarp = kSimtRows / 4;
  using Vec2 = typename Num<T>::Vec2;
  const int tile = blockIdx.x / kSubTiles, sub = blockIdx.x % kSubTiles;
  const int first = tiles[2 * tile] + sub * kSimtRows;
  const int count = min(kSimtRows, tiles[2 * tile + 1] - sub * kSimtRows);
  if (count <= 0) return;  // block-uniform, before any barrier
  const int qh = blockIdx.y;
  const int kvh = qh / (heads_q / heads_kv);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  __shared__ float qs[kSimtRows][HD];
  __shared__ __align__(16) T ks[kKeyTile][HD + 2];  // +2: conflict-free column reads
  __shared__ __align__(16) T vs[kKeyTile][HD];
  __shared__ int pos_s[kSimtRows];
  for (int idx = threadIdx.x; idx < kSimtRows * HD; idx += blockDim.x) {
    const int r = idx / HD, d = idx % HD;
    qs[r][d] = r < count ? Num<T>::ToF(q[(first + r) * q_stride + static_cast<int64_t>(qh) * HD +
                                         d]) * scale_log2
                         : 0.0f;
  }
  if (threadIdx.x < kSimtRows) {
    pos_s[threadIdx.x] = threadIdx.x < count ? positions[first + threadIdx.x] : -1;
  }
  __syncthreads();
  int max_pos = -1;
  for (int r = 0; r < kSimtRows; ++r) max_pos = max(max_pos, pos_s[r]);
  const int32_t* table = kv.block_tables + static_cast<int64_t>(row_seq[first]) * kv.max_blocks;
  const T* kbase = static_cast<const T*>(kv.k);
  const T* vbase = static_cast<const T*>(kv.v);

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][VEC];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[rr][i] = 0.0f;
  }
  for (int t0 = 0; t0 <= max_pos; t0 += kKeyTile) {
    for (int idx = threadIdx.x; idx < kKeyTile * HD / 2; idx += blockDim.x) {
      const int j = idx / (HD / 2), p = idx % (HD / 2);
      const int t = t0 + j;
      Vec2 kk, vv;
      if (t <= max_pos) {
        const int64_t off = KvOffset(kv, table, t, kvh, HD) + 2 * p;
        kk = *reinterpret_cast<const Vec2*>(kbase + off);
        vv = *reinterpret_cast<const Vec2*>(vbase + off);
      } else {
        kk.x = kk.y = vv.x = vv.y = Num<T>::FromF(0.0f);
      }
      *reinterpret_cast<Vec2*>(&ks[j][2 * p]) = kk;
      *reinterpret_cast<Vec2*>(&vs[j][2 * p]) = vv;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp * kRowsPerWarp + rr;
      if (r >= count) continue;  // warp-uniform
      const int pos = pos_s[r];
      const int t = t0 + lane;
      float s = -INFINITY;
      if (t <= pos) {
        s = 0.0f;
#pragma unroll 8
        for (int p = 0; p < HD / 2; ++p) {
          const float2 k2 = Num<T>::ToF2(*reinterpret_cast<const Vec2*>(&ks[lane][2 * p]));
          s += qs[r][2 * p] * k2.x + qs[r][2 * p + 1] * k2.y;
        }
      }
      const float m_new = fmaxf(m[rr], WarpMax(s));  // finite: tile 0 holds token 0 <= pos
      const float p = exp2f(s - m_new);
      const float corr = exp2f(m[rr] - m_new);
      l[rr] = l[rr] * corr + WarpSum(p);
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[rr][i] *= corr;
#pragma unroll 4
      for (int j = 0; j < kKeyTile; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[rr][i] += pj * Num<T>::ToF(vs[j][lane + 32 * i]);
      }
      m[rr] = m_new;
    }
    __syncthreads();
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    if (r >= count) continue;
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      out[(first + r) * out_stride + static_cast<int64_t>(qh) * HD + lane + 32 * i] =
          Num<T>::FromF(acc[rr][i] / l[rr]);
    }
  }
}

constexpr int Key(DType dtype, int head_dim) { return static_cast<int>(dtype) * 4096 + head_dim; }

template <typename T, int HD>
absl::Status DecodeT(const void* q, int64_t q_stride, const CudaBatchRows& rows, int heads_q,
                     int heads_kv, float scale, const CudaPagedKv& kv, int splits, float* ws,
                     void* out, int64_t out_stride, DecodeAttentionAlgo algo,
                     cudaStream_t stream) {
  const int group = heads_q / heads_kv;
  const dim3 grid(splits, heads_kv * ((group + kMaxGroup - 1) / kMaxGroup),
                  static_cast<unsigned>(rows.rows));
  // The three bodies share one signature; each is launched dependent (dependent_launch.cuh).
  auto body = DecodeAttentionKernel<T, HD>;
  unsigned threads = kDecodeWarps * 32;
  size_t smem = 0;
  if (algo == DecodeAttentionAlgo::kTiled) {
    body = DecodeTiledKernel<T, HD>;
    threads = kTiledThreads;
  } else if (algo == DecodeAttentionAlgo::kPipelined) {
    constexpr int kSmem = PipeSmemBytes<T, HD>();  // kPipeMinBlocks blocks to an SM
    CUDA_RETURN_IF_ERROR(cuda::OptInSharedMemory(DecodePipelinedKernel<T, HD>, kSmem));
    body = DecodePipelinedKernel<T, HD>;
    threads = kPipeThreads;
    smem = kSmem;
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchDependent(body, grid, dim3(threads), smem, stream,
                                             static_cast<const T*>(q), q_stride, rows.positions,
                                             rows.row_seq, heads_q, heads_kv, scale * kLog2e, kv,
                                             ws, splits, static_cast<T*>(out), out_stride));
  if (splits > 1) {
    CUDA_RETURN_IF_ERROR(cuda::LaunchDependent(
        DecodeCombineKernel<T, HD, DenseDecodeRows>,
        dim3(static_cast<unsigned>(rows.rows * heads_q)), dim3(HD * kCombineParts), 0, stream,
        static_cast<const float*>(ws), rows.rows, heads_q, splits, static_cast<T*>(out),
        out_stride, DenseDecodeRows{rows.positions}));
  }
  return absl::OkStatus();
}

template <typename T, int HD>
absl::Status PrefillT(const void* q, int64_t q_stride, const CudaBatchRows& rows,
                      const int32_t* tiles, int64_t num_tiles, int heads_q, int heads_kv,
                      float scale, const CudaPagedKv& kv, void* out, int64_t out_stride,
                      int sub_tiles, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(num_tiles * sub_tiles), heads_q);
  if (sub_tiles == 1) {
    PrefillAttentionKernel<T, HD, 1><<<grid, 128, 0, stream>>>(
        static_cast<const T*>(q), q_stride, rows.positions, rows.row_seq, tiles, heads_q,
        heads_kv, scale * kLog2e, kv, static_cast<T*>(out), out_stride);
  } else {
    PrefillAttentionKernel<T, HD, kSimtSubTilesOfMma><<<grid, 128, 0, stream>>>(
        static_cast<const T*>(q), q_stride, rows.positions, rows.row_seq, tiles, heads_q,
        heads_kv, scale * kLog2e, kv, static_cast<T*>(out), out_stride);
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status CheckHeads(const char* op, int heads_q, int heads_kv, int head_dim,
                        const CudaPagedKv& kv) {
  if (heads_kv <= 0 || heads_q % heads_kv != 0 || kv.kv_heads != heads_kv ||
      kv.head_dim != head_dim) {
    return absl::InvalidArgumentError(std::string(op) + ": inconsistent head shapes");
  }
  return absl::OkStatus();
}

}  // namespace

int DecodeAttentionSplits(int64_t rows, int heads_q, int heads_kv, int64_t context, int sm_count,
                          int waves) {
  if (waves <= 0) {
    const int one_round =
        DecodeAttentionSplits(rows, heads_q, heads_kv, context, sm_count, kDecodeAttentionWaves);
    if ((context + one_round - 1) / one_round < kDecodeLongPieceTokens) return one_round;
    return DecodeAttentionSplits(rows, heads_q, heads_kv, context, sm_count,
                                 2 * kDecodeAttentionWaves);
  }
  const int64_t groups = (heads_q / heads_kv + kMaxGroup - 1) / kMaxGroup;
  const int64_t base_blocks = std::max<int64_t>(1, rows * heads_kv * groups);
  // Whole rounds of resident blocks: a few blocks past them would cost a round of their own.
  const int64_t want = static_cast<int64_t>(waves) * sm_count / base_blocks;
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>({want, (context + 63) / 64, 256})));
}

int64_t DecodeAttentionWorkspaceFloats(int64_t rows, int heads_q, int head_dim, int splits) {
  return splits <= 1 ? 0 : rows * heads_q * splits * (head_dim + 2);
}

absl::Status LaunchDecodeAttention(DType dtype, const void* q, int64_t q_stride,
                                   const CudaBatchRows& rows, int heads_q, int heads_kv,
                                   int head_dim, float scale, const CudaPagedKv& kv, int splits,
                                   float* workspace, void* out, int64_t out_stride,
                                   cudaStream_t stream, DecodeAttentionAlgo algo) {
  if (rows.rows == 0) return absl::OkStatus();
  if (auto s = CheckHeads("LaunchDecodeAttention", heads_q, heads_kv, head_dim, kv); !s.ok()) {
    return s;
  }
  if (splits < 1 || splits > 65535) return absl::InvalidArgumentError("bad split count");
  switch (Key(dtype, head_dim)) {
    case Key(DType::kBF16, 64):
      return DecodeT<__nv_bfloat16, 64>(q, q_stride, rows, heads_q, heads_kv, scale, kv, splits,
                                        workspace, out, out_stride, algo, stream);
    case Key(DType::kBF16, 128):
      return DecodeT<__nv_bfloat16, 128>(q, q_stride, rows, heads_q, heads_kv, scale, kv, splits,
                                         workspace, out, out_stride, algo, stream);
    case Key(DType::kF16, 64):
      return DecodeT<__half, 64>(q, q_stride, rows, heads_q, heads_kv, scale, kv, splits,
                                 workspace, out, out_stride, algo, stream);
    case Key(DType::kF16, 128):
      return DecodeT<__half, 128>(q, q_stride, rows, heads_q, heads_kv, scale, kv, splits,
                                  workspace, out, out_stride, algo, stream);
    default:
      return absl::InvalidArgumentError("LaunchDecodeAttention: unsupported dtype " +
                                        std::string(DTypeName(dtype)) + " / head_dim " +
                                        std::to_string(head_dim));
  }
}

absl::Status LaunchPrefillAttention(DType dtype, const void* q, int64_t q_stride,
                                    const CudaBatchRows& rows, const int32_t* tiles,
                                    int64_t num_tiles, int heads_q, int heads_kv, int head_dim,
                                    float scale, const CudaPagedKv& kv, void* out,
                                    int64_t out_stride, cudaStream_t stream,
                                    PrefillAttentionAlgo algo) {
  if (num_tiles == 0) return absl::OkStatus();
  if (auto s = CheckHeads("LaunchPrefillAttention", heads_q, heads_kv, head_dim, kv); !s.ok()) {
    return s;
  }
  if (algo != PrefillAttentionAlgo::kSimt &&
      PrefillAttentionMmaSupports(dtype, q, q_stride, head_dim, scale, kv, out, out_stride)) {
    const cuda::PrefillArgs args{q,        q_stride, rows, tiles, num_tiles,  heads_q,
                                 heads_kv, scale,    kv,   out,   out_stride, stream};
    if (algo == PrefillAttentionAlgo::kWgmma) {
      ASSIGN_OR_RETURN(const cuda::LaunchInfo device, cuda::CachedLaunchInfo(nullptr, 0, 0));
      if (RunsWgmma(device)) return LaunchPrefillAttentionWgmma(dtype, head_dim, args);
    }
    return LaunchPrefillAttentionMma(dtype, head_dim, args);
  }
  // The SIMT body: one block per 16-row tile (kSimt), or per 16-row sub-tile of the 128-row
  // tiles (kMma's and kWgmma's fallback).
  const int sub_tiles = algo == PrefillAttentionAlgo::kSimt ? 1 : kSimtSubTilesOfMma;
  if (num_tiles * sub_tiles > 0x7fffffff || heads_q > 65535) {
    return absl::InvalidArgumentError("LaunchPrefillAttention: grid too large");
  }
  switch (Key(dtype, head_dim)) {
    case Key(DType::kBF16, 64):
      return PrefillT<__nv_bfloat16, 64>(q, q_stride, rows, tiles, num_tiles, heads_q, heads_kv,
                                         scale, kv, out, out_stride, sub_tiles, stream);
    case Key(DType::kBF16, 128):
      return PrefillT<__nv_bfloat16, 128>(q, q_stride, rows, tiles, num_tiles, heads_q, heads_kv,
                                          scale, kv, out, out_stride, sub_tiles, stream);
    case Key(DType::kF16, 64):
      return PrefillT<__half, 64>(q, q_stride, rows, tiles, num_tiles, heads_q, heads_kv, scale,
                                  kv, out, out_stride, sub_tiles, stream);
    case Key(DType::kF16, 128):
      return PrefillT<__half, 128>(q, q_stride, rows, tiles, num_tiles, heads_q, heads_kv, scale,
                                   kv, out, out_stride, sub_tiles, stream);
    default:
      return absl::InvalidArgumentError("LaunchPrefillAttention: unsupported dtype " +
                                        std::string(DTypeName(dtype)) + " / head_dim " +
                                        std::to_string(head_dim));
  }
}

}  // namespace dsinfer
