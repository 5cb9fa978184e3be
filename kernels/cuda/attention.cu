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
//  - pipelined (the CUDA backend's default, DecodePipelinedKernel): 4 warps, each its own pipeline
//    with no __syncthreads in the loop: warp w takes the piece's 16-token tiles w, w + 4, …,
//    streaming K and V (16-byte cp.async, zero-filled past the piece) through a private 3-stage
//    ring (two tiles in flight while one is computed; 102 KiB a block at head_dim 128: 2 blocks an
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
// Prefill: two bodies (PrefillAttentionAlgo). kSimt, the default and the verified one, is
// here: grid (16-row query tiles, query heads). A block loads 16 query rows (one sequence) and
// streams 32-token K/V tiles through shared memory up to the tile's last position; each warp
// owns 4 query rows, lane j scores token j of the tile, and each lane accumulates head_dim/32
// output channels. SIMT fp32 (no tensor cores): correct, 13% of the matmul rate. kMma, the
// tensor-core body and the default (prefill_attention_mma.cu), takes 128-row tiles; where it
// cannot take the operands it falls back to this kernel run over 16-row sub-tiles of them.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/cuda/prefill_attention_mma.h"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace {

using cuda::CpAsync16;
using cuda::CpAsyncCommit;
using cuda::CpAsyncWaitAll;
using cuda::CpAsyncWaitGroup;
using cuda::LdMatrixX4;
using cuda::LdMatrixX4Trans;
using cuda::Mma16816;
using cuda::Num;
using cuda::PackF;
using cuda::SmemAddr;
using cuda::Unpack8;
using cuda::WarpMax;
using cuda::WarpSum;

constexpr int kMaxGroup = 8;
constexpr int kDecodeWarps = 4;
constexpr int kKeyTile = 32;
constexpr int kSimtRows = kPrefillTileRowsSimt;  // rows per SIMT prefill block
// SIMT blocks per kMma tile, for kMma's fallback to the SIMT body.
constexpr int kSimtSubTilesOfMma = kPrefillTileRowsMma / kSimtRows;
static_assert(kPrefillTileRowsMma % kSimtRows == 0, "SIMT sub-tiles of kMma tiles");
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ int64_t KvOffset(const CudaPagedKv& kv, const int32_t* table, int t,
                                            int kvh, int hd) {
  const int64_t block = table[t / kv.block_tokens];
  return ((block * kv.block_tokens + t % kv.block_tokens) * kv.kv_heads + kvh) *
         static_cast<int64_t>(hd);
}

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

// A piece's result for channel d of query head qh of `row`: the output itself when the context
// is one piece, else the piece's partial state for DecodeCombineKernel (acc, then m and l once
// per head). An empty piece writes acc 0, m -inf, l 0, which the combine skips.
template <typename T, int HD>
__device__ __forceinline__ void WritePiece(float acc, float m, float l, int64_t row, int qh, int d,
                                           int heads_q, int splits, int split, float* ws, T* out,
                                           int64_t out_stride) {
  if (splits == 1) {
    out[row * out_stride + static_cast<int64_t>(qh) * HD + d] = Num<T>::FromF(acc / l);
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

template <typename T, int HD>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    DecodeAttentionKernel(const T* q, int64_t q_stride, const int32_t* positions,
                          const int32_t* row_seq, int heads_q, int heads_kv, float scale_log2,
                          CudaPagedKv kv, float* ws, int splits, T* out, int64_t out_stride) {
  constexpr int VEC = HD / 32;
  using Vec2 = typename Num<T>::Vec2;
  cuda::StartNextThenWaitForPrior();
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
    WritePiece<T, HD>(sum_a, big, sum_l, row, qh0 + g, d, heads_q, splits, split, ws, out,
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
    WritePiece<T, HD>(sum_a, m, l, row, qh0 + g, d, heads_q, splits, split, ws, out, out_stride);
  }
}

// kPipelined: each warp streams its own 16-token K/V tiles through a private cp.async ring of
// kPipeStages buffers (no __syncthreads in the loop) and computes with tensor cores, treating
// the block's query heads as the rows of one m16 tile: S = Q·Kᵀ and O += P·V by mma.m16n8k16
// (fp32 accumulate). Rows 0-7 hold the up to kMaxGroup heads; rows 8-15 of P carry what
// rounding P to T dropped (P = hi + lo), so P·V costs no extra MMA and keeps ~16 bits of P.
constexpr int kPipeWarps = 4;
constexpr int kPipeThreads = kPipeWarps * 32;
constexpr int kPipeTokens = 16;  // tokens per warp tile: one k16 step of P·V
constexpr int kPipeStages = 3;   // tiles in flight per warp: the one computed and two loading
static_assert(kMaxGroup == 8, "heads are the 8 rows of the A operand that lane / 4 indexes");

template <int HD>
constexpr int PipeStride() {
  return HD + 8;  // shared row stride: 16 bytes of padding, conflict-free ldmatrix rows
}
template <int HD>
constexpr int PipeStageElems() {
  return 2 * kPipeTokens * PipeStride<HD>();  // K tile, then V tile
}
template <typename T, int HD>
constexpr int PipeSmemBytes() {
  return kPipeWarps * kPipeStages * PipeStageElems<HD>() * static_cast<int>(sizeof(T));
}
// 2 blocks per SM at head_dim 128 (102 KiB each), 4 at 64.
constexpr int kPipeMinBlocks = 2;

// Two T values as one fragment register, `lo` in the low half (the lower column).
template <typename T>
__device__ __forceinline__ uint32_t PackRaw(T lo, T hi) {
  typename Num<T>::Vec2 v;
  v.x = lo;
  v.y = hi;
  return *reinterpret_cast<const uint32_t*>(&v);
}
// Grid, workspace and (m, l, acc) output as DecodeTiledKernel. Warp w takes the piece's 16-token
// tiles w, w + 4, w + 8, … and keeps its own online softmax (m, l, O) over them; the four warp
// states are merged through shared memory at the end.
template <typename T, int HD>
__global__ void __launch_bounds__(kPipeThreads, kPipeMinBlocks)
    DecodePipelinedKernel(const T* q, int64_t q_stride, const int32_t* positions,
                          const int32_t* row_seq, int heads_q, int heads_kv, float scale_log2,
                          CudaPagedKv kv, float* ws, int splits, T* out, int64_t out_stride) {
  constexpr int kStride = PipeStride<HD>();
  constexpr int kTileElems = kPipeTokens * kStride;  // one K (or V) tile
  constexpr int kStageElems = PipeStageElems<HD>();
  constexpr int kChunks = HD / 8;             // 16-byte chunks per K/V row
  constexpr int kRowsPerPass = 32 / kChunks;  // rows one warp-wide cp.async covers
  constexpr int kPasses = kPipeTokens / kRowsPerPass;
  constexpr int kKSteps = HD / 16;    // k16 steps of S = Q·Kᵀ
  constexpr int kDTiles = HD / 8;     // n8 tiles of O
  constexpr int kRedStride = HD + 8;  // floats per head row of the merge scratch
  constexpr int kRedFloats = kMaxGroup * kRedStride + 2 * kMaxGroup;  // O, then m, then l
  static_assert(kPipeTokens == 16 && kRowsPerPass * kPasses == kPipeTokens, "tile shape");
  static_assert(HD % 32 == 0, "two k16 steps per K ldmatrix, two n8 tiles per V ldmatrix");
  static_assert(kRedFloats * sizeof(float) <= kPipeStages * kStageElems * sizeof(T),
                "a warp's merge scratch fits in its stage buffers");
  cuda::StartNextThenWaitForPrior();
  const DecodePiece piece = LocateDecodePiece(positions, heads_q, heads_kv, splits);
  const int split = piece.split, kvh = piece.kvh, G = piece.heads, qh0 = piece.qh0;
  const int begin = piece.begin, end = piece.end;
  const int64_t row = piece.row;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  // Fragment coordinates: a thread holds row lane / 4 (its head) and columns 2 (lane % 4), +1.
  const int frag_row = lane >> 2, frag_col = (lane & 3) * 2;

  extern __shared__ __align__(16) unsigned char pipe_smem[];
  T* const ring = reinterpret_cast<T*>(pipe_smem) + warp * kPipeStages * kStageElems;

  // Q as A fragments (unscaled T: exact; the scale goes onto S in fp32): a0 = dims
  // [16k + frag_col, +1], a2 = the same + 8 for head frag_row; rows 8-15 (a1, a3) are zero.
  uint32_t qa[kKSteps][2];
  {
    const bool head_on = frag_row < G;
    const T* qh = q + row * q_stride + static_cast<int64_t>(qh0 + (head_on ? frag_row : 0)) * HD;
    const T zero = Num<T>::FromF(0.0f);
#pragma unroll
    for (int k = 0; k < kKSteps; ++k) {
      const int d = 16 * k + frag_col;
      qa[k][0] = head_on ? PackRaw<T>(qh[d], qh[d + 1]) : PackRaw<T>(zero, zero);
      qa[k][1] = head_on ? PackRaw<T>(qh[d + 8], qh[d + 9]) : PackRaw<T>(zero, zero);
    }
  }
  const int32_t* table = kv.block_tables + static_cast<int64_t>(row_seq[row]) * kv.max_blocks;
  const T* kbase = static_cast<const T*>(kv.k);
  const T* vbase = static_cast<const T*>(kv.v);

  // Warp tile i holds tokens [tile_start(i), +16) ∩ [begin, end); only the piece's last tile is
  // partial. An empty piece (begin >= end) has no tiles.
  const int tiles = begin < end ? (end - begin + kPipeTokens - 1) / kPipeTokens : 0;
  const int my_tiles = tiles > warp ? (tiles - warp + kPipeWarps - 1) / kPipeWarps : 0;
  auto tile_start = [&](int i) { return begin + (i * kPipeWarps + warp) * kPipeTokens; };
  // Tile i's K and V rows into ring buffer i % kPipeStages; rows past `end` are zero-filled
  // (P·V over them adds exact zeros, never NaN from stale memory). Lane r < 16 looks token
  // t0 + r up in the block table (lanes 16-31 repeat it); the rows' offsets go round by shuffles.
  auto load_tile = [&](int i) {
    T* ks = ring + (i % kPipeStages) * kStageElems;
    T* vs = ks + kTileElems;
    const int t0 = tile_start(i);
    const int my_t = t0 + (lane & (kPipeTokens - 1));
    const long long my_off = my_t < end ? KvOffset(kv, table, my_t, kvh, HD) : 0;
    const int c = (lane % kChunks) * 8;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int r = pass * kRowsPerPass + lane / kChunks;
      const long long off = __shfl_sync(0xffffffffu, my_off, r);
      const bool valid = t0 + r < end;
      CpAsync16(ks + r * kStride + c, valid ? kbase + off + c : kbase, valid);
      CpAsync16(vs + r * kStride + c, valid ? vbase + off + c : vbase, valid);
    }
  };

  // acc[n]: c0, c1 = O[head frag_row][8n + frag_col, +1] from P's hi part; c2, c3 = the same
  // channels from its lo part (rows 8-15). m_run is the head's running max (equal over the
  // quad); l_run the thread's share of the running sum (summed over the quad at the end).
  float acc[kDTiles][4];
#pragma unroll
  for (int n = 0; n < kDTiles; ++n) {
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[n][j] = 0.0f;
  }
  float m_run = -INFINITY, l_run = 0.0f;

  // Prologue: tiles 0 .. kPipeStages - 2 in flight, one commit group each (empty past the end,
  // so that the group count stays uniform).
#pragma unroll
  for (int i = 0; i < kPipeStages - 1; ++i) {
    if (i < my_tiles) load_tile(i);
    CpAsyncCommit();
  }
  for (int i = 0; i < my_tiles; ++i) {
    // Every lane is done with the buffer of tile i - 1, which tile i + kPipeStages - 1 reuses.
    __syncwarp();
    if (i + kPipeStages - 1 < my_tiles) load_tile(i + kPipeStages - 1);
    CpAsyncCommit();
    // Committed: i + kPipeStages groups; tile i's is done once at most kPipeStages - 1 remain.
    CpAsyncWaitGroup<kPipeStages - 1>();
    __syncwarp();  // the other lanes' copies of tile i are visible too
    const T* ks = ring + (i % kPipeStages) * kStageElems;
    const T* vs = ks + kTileElems;
    const int t0 = tile_start(i);

    // S = Q·Kᵀ: two n8 token tiles; one ldmatrix.x4 of K rows gives the B fragments of two
    // k16 steps (K rows are the "col" layout as stored).
    float s[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int j = 0; j < 4; ++j) s[nt][j] = 0.0f;
#pragma unroll
      for (int k2 = 0; k2 < kKSteps / 2; ++k2) {
        uint32_t b[4];
        LdMatrixX4(b, SmemAddr(ks + (nt * 8 + (lane & 7)) * kStride + 32 * k2 + (lane >> 3) * 8));
        const uint32_t a0[4] = {qa[2 * k2][0], 0u, qa[2 * k2][1], 0u};
        const uint32_t a1[4] = {qa[2 * k2 + 1][0], 0u, qa[2 * k2 + 1][1], 0u};
        Mma16816<T>(s[nt], a0, b[0], b[1]);
        Mma16816<T>(s[nt], a1, b[2], b[3]);
      }
    }
    // Online softmax (base 2) over the tile: s[nt][e] is token t0 + 8 nt + frag_col + e of head
    // frag_row (s[nt][2, 3] are rows 8-15 of zero Q: unused). Tokens past `end` get -inf.
    float x[2][2];
    float tile_max = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        x[nt][e] = t0 + 8 * nt + frag_col + e < end ? s[nt][e] * scale_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, x[nt][e]);
      }
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float m_new = fmaxf(m_run, tile_max);  // finite: the tile holds token t0 < end
    // Rescale only when some head's max rose (warp-uniform; rare once the max has settled).
    if (__any_sync(0xffffffffu, m_new > m_run)) {
      const float corr = exp2f(m_run - m_new);  // 0 on the first tile, 1 where m stayed
      l_run *= corr;
#pragma unroll
      for (int n = 0; n < kDTiles; ++n) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[n][j] *= corr;
      }
    }
    m_run = m_new;
    // P as the A fragment of one k16 step (the S layout of two adjacent n8 tiles): a0/a2 the
    // hi part of tokens [frag_col, +1] / [8 + frag_col, +1], a1/a3 (rows 8-15) the lo part.
    uint32_t pa[4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const float p0 = exp2f(x[nt][0] - m_new), p1 = exp2f(x[nt][1] - m_new);
      l_run += p0 + p1;
      const uint32_t hi = PackF<T>(p0, p1);
      const float2 kept = Num<T>::ToF2(*reinterpret_cast<const typename Num<T>::Vec2*>(&hi));
      pa[2 * nt] = hi;
      pa[2 * nt + 1] = PackF<T>(p0 - kept.x, p1 - kept.y);
    }
    // O += P·V: one ldmatrix.x4.trans of V gives the B fragments of two n8 channel tiles.
#pragma unroll
    for (int n2 = 0; n2 < kDTiles / 2; ++n2) {
      uint32_t b[4];
      LdMatrixX4Trans(b, SmemAddr(vs + (((lane >> 3) & 1) * 8 + (lane & 7)) * kStride +
                                  16 * n2 + (lane >> 4) * 8));
      Mma16816<T>(acc[2 * n2], pa, b[0], b[1]);
      Mma16816<T>(acc[2 * n2 + 1], pa, b[2], b[3]);
    }
  }

  // Nothing may still be in flight once the ring turns into merge scratch (the groups past the
  // warp's last tile are empty, but wait for all the same), and every lane must be done reading.
  CpAsyncWaitGroup<0>();
  __syncwarp();
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
  // Warp scratch (in its own ring): O [kMaxGroup][kRedStride] (hi + lo), then m, then l.
  float* red = reinterpret_cast<float*>(ring);
#pragma unroll
  for (int n = 0; n < kDTiles; ++n) {
    *reinterpret_cast<float2*>(&red[frag_row * kRedStride + 8 * n + frag_col]) =
        make_float2(acc[n][0] + acc[n][2], acc[n][1] + acc[n][3]);
  }
  if ((lane & 3) == 0) {
    red[kMaxGroup * kRedStride + frag_row] = m_run;
    red[kMaxGroup * kRedStride + kMaxGroup + frag_row] = l_run;
  }
  __syncthreads();
  // Merge the warps' states per (head, channel); a warp without tiles has m = -inf, l = 0, O = 0.
  const float* red0 = reinterpret_cast<const float*>(pipe_smem);
  constexpr int kWarpFloats = kPipeStages * kStageElems * static_cast<int>(sizeof(T)) / 4;
  for (int idx = tid; idx < G * HD; idx += kPipeThreads) {
    const int g = idx / HD, d = idx % HD;
    float big = -INFINITY;
#pragma unroll
    for (int w = 0; w < kPipeWarps; ++w) {
      big = fmaxf(big, red0[w * kWarpFloats + kMaxGroup * kRedStride + g]);
    }
    float sum_l = 0.0f, sum_a = 0.0f;
    if (big != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kPipeWarps; ++w) {
        const float* wr = red0 + w * kWarpFloats;
        const float f = exp2f(wr[kMaxGroup * kRedStride + g] - big);
        sum_l += wr[kMaxGroup * kRedStride + kMaxGroup + g] * f;
        sum_a += wr[g * kRedStride + d] * f;
      }
    }
    WritePiece<T, HD>(sum_a, big, sum_l, row, qh0 + g, d, heads_q, splits, split, ws, out,
                      out_stride);
  }
}

// Merges a (row, query head)'s pieces: HD × kCombineParts threads, thread (d, part) folding
// pieces part, part + kCombineParts, … of channel d into one online-softmax state (kUnroll
// pieces' loads issued before they are used), the parts then merged through shared memory.
// One thread per channel walking every piece twice was latency-bound: ~33 µs for 32 heads ×
// 132 pieces at batch 1 (H200), most of the pipelined body's distance to the floor there.
constexpr int kCombineParts = 8;
template <typename T, int HD>
__global__ void __launch_bounds__(HD * kCombineParts)
    DecodeCombineKernel(const float* ws, int64_t rows, int heads_q, int splits, T* out,
                        int64_t out_stride) {
  constexpr int kUnroll = 4;
  cuda::StartNextThenWaitForPrior();
  const int64_t row = blockIdx.x / heads_q;
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
  float big = -INFINITY;
#pragma unroll
  for (int p = 0; p < kCombineParts; ++p) big = fmaxf(big, part_m[p][d]);  // finite: piece 0
  float total_l = 0.0f, total_a = 0.0f;
#pragma unroll
  for (int p = 0; p < kCombineParts; ++p) {
    if (part_m[p][d] == -INFINITY) continue;
    const float f = exp2f(part_m[p][d] - big);
    total_l += part_l[p][d] * f;
    total_a += part_a[p][d] * f;
  }
  out[row * out_stride + static_cast<int64_t>(qh) * HD + d] = Num<T>::FromF(total_a / total_l);
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
        DecodeCombineKernel<T, HD>, dim3(static_cast<unsigned>(rows.rows * heads_q)),
        dim3(HD * kCombineParts), 0, stream, static_cast<const float*>(ws), rows.rows, heads_q,
        splits, static_cast<T*>(out), out_stride));
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
  const int64_t groups = (heads_q / heads_kv + kMaxGroup - 1) / kMaxGroup;
  const int64_t base_blocks = std::max<int64_t>(1, rows * heads_kv * groups);
  const int64_t want =
      (static_cast<int64_t>(waves) * sm_count + base_blocks - 1) / base_blocks;
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
  if (algo == PrefillAttentionAlgo::kMma &&
      PrefillAttentionMmaSupports(dtype, q, q_stride, head_dim, kv, out, out_stride)) {
    return LaunchPrefillAttentionMma(dtype, q, q_stride, rows, tiles, num_tiles, heads_q, heads_kv,
                                     head_dim, scale, kv, out, out_stride, stream);
  }
  // The SIMT body: one block per 16-row tile (kSimt), or per 16-row sub-tile of kMma's
  // 128-row tiles (kMma's fallback).
  const int sub_tiles = algo == PrefillAttentionAlgo::kMma ? kSimtSubTilesOfMma : 1;
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
