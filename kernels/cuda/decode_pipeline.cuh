// The pipelined decode block body: one query row's up to 8 query heads of one KV head attend a
// piece [begin, end) of a slot list, on tensor cores, leaving per (head, channel) a softmax
// state for the kernel to write. The kernels around it differ only in how a block finds its
// piece, how a slot maps to a token and where the result goes:
//  - DecodePipelinedKernel (attention.cu): slots are the row's context, slot i = token i;
//  - the pipelined sparse attention (sparse_attention.cu): slots are a (sequence, KV head)'s
//    selected rows, slot i = token sel[i].
//
// How it runs: 4 warps, each its own pipeline with no __syncthreads in the loop: warp w takes
// the piece's 16-token tiles w, w + 4, …, streaming K and V (16-byte cp.async, zero-filled past
// the piece) through a private 3-stage ring (two tiles in flight while one is computed). Scores
// and P·V run on mma.m16n8k16 (fp32 accumulate) with the query heads as the rows of one m16 tile:
// S = Q·Kᵀ with Q's fragments in registers (q unscaled, exact in T; the scale goes onto S in
// fp32) and K's by ldmatrix; P goes from the S accumulators straight into the A fragment of P·V
// (V by ldmatrix.trans), rounded to T as hi + lo, the lo part riding in the unused rows 8-15
// (~16 bits of P at no extra MMA). Each warp keeps its own online softmax (base 2) and rescales
// O only when a head's max rises; the 4 warp states merge through shared memory at the end.
#ifndef DSINFER_KERNELS_CUDA_DECODE_PIPELINE_CUH_
#define DSINFER_KERNELS_CUDA_DECODE_PIPELINE_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/cuda/paged_kv.cuh"

namespace dsinfer {
namespace cuda {

constexpr int kPipeMaxHeads = 8;  // query heads per block: the 8 rows of A that lane / 4 indexes
constexpr int kPipeWarps = 4;
constexpr int kPipeThreads = kPipeWarps * 32;
constexpr int kPipeTokens = 16;  // tokens per warp tile: one k16 step of P·V
constexpr int kPipeStages = 3;   // tiles in flight per warp: the one computed and two loading
// 2 blocks per SM at head_dim 128 (96 KiB each), 4 at 64.
constexpr int kPipeMinBlocks = 2;

// A K or V tile in shared memory: kPipeTokens rows of HD elements, unpadded, the 16-byte
// chunks of row r stored at chunk index (chunk ^ (r & 7)). The 8 rows one ldmatrix phase reads
// then hit 8 different bank groups (conflict-free), and every row starts on a 128-byte line,
// which the cp.async stream needs: rows padded to HD + 8 elements (the layout before run 13)
// held a streaming read at 4.30 TB/s against 4.65 for aligned rows (dsinfer-read-bench's
// scratch variant, docs/benchmarks.md run 13).
template <int HD>
__device__ __forceinline__ int PipeTileOffset(int row, int chunk) {
  return row * HD + ((chunk ^ (row & 7)) * 8);
}
template <int HD>
constexpr int PipeStageElems() {
  return 2 * kPipeTokens * HD;  // K tile, then V tile
}
// Dynamic shared memory of a block (opted in by the launcher).
template <typename T, int HD>
constexpr int PipeSmemBytes() {
  return kPipeWarps * kPipeStages * PipeStageElems<HD>() * static_cast<int>(sizeof(T));
}

// Two T values as one fragment register, `lo` in the low half (the lower column).
template <typename T>
__device__ __forceinline__ uint32_t PackRaw(T lo, T hi) {
  typename Num<T>::Vec2 v;
  v.x = lo;
  v.y = hi;
  return *reinterpret_cast<const uint32_t*>(&v);
}

// What a block attends: query heads [qh0, qh0 + heads) (heads <= kPipeMaxHeads) of q row q_row,
// against KV head kvh, over slots [begin, end) of its slot list (empty when begin >= end).
// Slots below early_end hold K/V that no kernel of the step writes (a decode row's older
// tokens): a warp whose first tiles lie below it starts loading them before the body's wait.
struct PipePiece {
  int64_t q_row;
  int qh0, heads, kvh, begin, end;
  int early_end = 0;
};

// The body of a kernel launched with kPipeThreads threads and PipeSmemBytes<T, HD>() bytes of
// dynamic shared memory at pipe_smem (the kernel's extern __shared__ array, 16-byte aligned).
// q: [.., heads_q, HD] rows of stride q_stride; scale_log2 = scale · log2 e.
// Slots (the slot list of the block's KV sequence) provides
//   const int32_t* Table(const CudaPagedKv&) const   its block table (read once, after q), and
//   int Token(int slot) const                        the token at slot (only for slot < end).
// Emit is called once per (g, d), g < heads, d < HD, as emit(g, d, acc, m, l): the piece's
// unnormalised output, base-2 max and sum of query head qh0 + g, channel d (an empty piece:
// 0, -inf, 0). The whole block takes part; no thread returns early.
// wait() is called once by every thread before it reads q or any slot at or past
// piece.early_end (a dependent kernel's WaitForPrior; the block table and the slot list must be
// readable before it).
template <typename T, int HD, typename Slots, typename Emit, typename Wait>
__device__ __forceinline__ void PipelinedDecodeBody(const T* q, int64_t q_stride,
                                                    const PipePiece& piece, const CudaPagedKv& kv,
                                                    float scale_log2, const Slots& slots,
                                                    const Emit& emit, const Wait& wait,
                                                    unsigned char* pipe_smem) {
  constexpr int kTileElems = kPipeTokens * HD;  // one K (or V) tile (PipeTileOffset)
  constexpr int kStageElems = PipeStageElems<HD>();
  constexpr int kChunks = HD / 8;             // 16-byte chunks per K/V row
  constexpr int kRowsPerPass = 32 / kChunks;  // rows one warp-wide cp.async covers
  constexpr int kPasses = kPipeTokens / kRowsPerPass;
  constexpr int kKSteps = HD / 16;    // k16 steps of S = Q·Kᵀ
  constexpr int kDTiles = HD / 8;     // n8 tiles of O
  constexpr int kRedStride = HD + 8;  // floats per head row of the merge scratch
  constexpr int kRedFloats = kPipeMaxHeads * kRedStride + 2 * kPipeMaxHeads;  // O, m, then l
  static_assert(kPipeTokens == 16 && kRowsPerPass * kPasses == kPipeTokens, "tile shape");
  static_assert(HD % 32 == 0, "two k16 steps per K ldmatrix, two n8 tiles per V ldmatrix");
  static_assert(kRedFloats * sizeof(float) <= kPipeStages * kStageElems * sizeof(T),
                "a warp's merge scratch fits in its stage buffers");
  const int kvh = piece.kvh, G = piece.heads, qh0 = piece.qh0;
  const int begin = piece.begin, end = piece.end;
  const int64_t row = piece.q_row;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  // Fragment coordinates: a thread holds row lane / 4 (its head) and columns 2 (lane % 4), +1.
  const int frag_row = lane >> 2, frag_col = (lane & 3) * 2;

  T* const ring = reinterpret_cast<T*>(pipe_smem) + warp * kPipeStages * kStageElems;

  const int32_t* table = slots.Table(kv);
  const T* kbase = static_cast<const T*>(kv.k);
  const T* vbase = static_cast<const T*>(kv.v);

  // Warp tile i holds slots [tile_start(i), +16) ∩ [begin, end); only the piece's last tile is
  // partial. An empty piece (begin >= end) has no tiles.
  const int tiles = begin < end ? (end - begin + kPipeTokens - 1) / kPipeTokens : 0;
  const int my_tiles = tiles > warp ? (tiles - warp + kPipeWarps - 1) / kPipeWarps : 0;
  auto tile_start = [&](int i) { return begin + (i * kPipeWarps + warp) * kPipeTokens; };
  // Tile i's K and V rows into ring buffer i % kPipeStages; rows past `end` are zero-filled
  // (P·V over them adds exact zeros, never NaN from stale memory). Lane r < 16 looks the token
  // of slot t0 + r up in the block table (lanes 16-31 repeat it); the rows' offsets go round by
  // shuffles. (slots by value: by reference, DecodePipelinedKernel's PTX placed a cvta apart
  // from the body it was moved from.)
  auto load_tile = [&, slots](int i) {
    T* ks = ring + (i % kPipeStages) * kStageElems;
    T* vs = ks + kTileElems;
    const int t0 = tile_start(i);
    const int my_t = t0 + (lane & (kPipeTokens - 1));
    const long long my_off = my_t < end ? KvOffset(kv, table, slots.Token(my_t), kvh, HD) : 0;
    const int chunk = lane % kChunks, c = chunk * 8;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int r = pass * kRowsPerPass + lane / kChunks;
      const long long off = __shfl_sync(0xffffffffu, my_off, r);
      const bool valid = t0 + r < end;
      const int at = PipeTileOffset<HD>(r, chunk);
      CpAsync16(ks + at, valid ? kbase + off + c : kbase, valid);
      CpAsync16(vs + at, valid ? vbase + off + c : vbase, valid);
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
  // so that the group count stays uniform) — before the wait when they all lie below early_end.
  auto prologue = [&] {
#pragma unroll
    for (int i = 0; i < kPipeStages - 1; ++i) {
      if (i < my_tiles) load_tile(i);
      CpAsyncCommit();
    }
  };
  const int first_tiles = min(my_tiles, kPipeStages - 1);
  const bool early =
      first_tiles > 0 && tile_start(first_tiles - 1) + kPipeTokens <= piece.early_end;
  if (early) prologue();
  wait();
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
  if (!early) prologue();
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
        LdMatrixX4(b, SmemAddr(ks + PipeTileOffset<HD>(nt * 8 + (lane & 7), 4 * k2 + (lane >> 3))));
        const uint32_t a0[4] = {qa[2 * k2][0], 0u, qa[2 * k2][1], 0u};
        const uint32_t a1[4] = {qa[2 * k2 + 1][0], 0u, qa[2 * k2 + 1][1], 0u};
        Mma16816<T>(s[nt], a0, b[0], b[1]);
        Mma16816<T>(s[nt], a1, b[2], b[3]);
      }
    }
    // Online softmax (base 2) over the tile: s[nt][e] is slot t0 + 8 nt + frag_col + e of head
    // frag_row (s[nt][2, 3] are rows 8-15 of zero Q: unused). Slots past `end` get -inf.
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
    const float m_new = fmaxf(m_run, tile_max);  // finite: the tile holds slot t0 < end
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
    // hi part of slots [frag_col, +1] / [8 + frag_col, +1], a1/a3 (rows 8-15) the lo part.
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
      LdMatrixX4Trans(b, SmemAddr(vs + PipeTileOffset<HD>(((lane >> 3) & 1) * 8 + (lane & 7),
                                                          2 * n2 + (lane >> 4))));
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
  // Warp scratch (in its own ring): O [kPipeMaxHeads][kRedStride] (hi + lo), then m, then l.
  float* red = reinterpret_cast<float*>(ring);
#pragma unroll
  for (int n = 0; n < kDTiles; ++n) {
    *reinterpret_cast<float2*>(&red[frag_row * kRedStride + 8 * n + frag_col]) =
        make_float2(acc[n][0] + acc[n][2], acc[n][1] + acc[n][3]);
  }
  if ((lane & 3) == 0) {
    red[kPipeMaxHeads * kRedStride + frag_row] = m_run;
    red[kPipeMaxHeads * kRedStride + kPipeMaxHeads + frag_row] = l_run;
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
      big = fmaxf(big, red0[w * kWarpFloats + kPipeMaxHeads * kRedStride + g]);
    }
    float sum_l = 0.0f, sum_a = 0.0f;
    if (big != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kPipeWarps; ++w) {
        const float* wr = red0 + w * kWarpFloats;
        const float f = exp2f(wr[kPipeMaxHeads * kRedStride + g] - big);
        sum_l += wr[kPipeMaxHeads * kRedStride + kPipeMaxHeads + g] * f;
        sum_a += wr[g * kRedStride + d] * f;
      }
    }
    emit(g, d, sum_a, big, sum_l);
  }
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_DECODE_PIPELINE_CUH_
