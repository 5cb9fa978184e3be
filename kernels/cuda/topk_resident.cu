// kResident top-k (topk_resident.h). The striped kernel's time at a few dozen pairs is not its
// bytes but its per-key instructions and the phases between them (ncu, run 20: at 64 pairs ×
// 32K, ~0.5 warp instructions a key for the histogram read, ~0.9 for the ordered split and a
// finish moving every winner), on 16 warps an SM. Here one block of 1024 threads per pair:
//  1. reads the pair's candidate scores once, as 8-byte chunks, into shared memory as their
//     order-preserving keys, counting the first 13-bit digit as it goes;
//  2. finds the first digit's boundary bucket, gathers that bucket's keys (~1% of a 1/16
//     row) and narrows to the boundary key over them (a 10-bit digit, unless the bucket is
//     taken whole; the 9 bits below it cannot split stored scores' keys; over every key where
//     the bucket does not fit): what stays is (prefix,
//     mask) and how many boundary ties to take;
//  3. one ordered compaction over the keys in shared memory (a thread's 16 consecutive keys
//     as bit masks, one block scan of their counts a tile) writes the keys above the prefix
//     and the first ties by index, ascending: no winner moves afterwards.
// The selection is the one-block kernel's (the same keys, digits and tie rule). Shared memory:
// the histogram, then the keys on the row's 8-byte chunk grid (non-candidates as key 0, below
// every score's key: -inf's is 0x007fffff).
#include "kernels/cuda/topk_resident.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/topk_common.cuh"
#include "kernels/cuda/topk_in_memory.cuh"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace {

using cuda::DigitSplitsScores;
using cuda::LoadScore;
using cuda::LoadScoreBits4;
using cuda::NarrowToBoundaryBucket;
using cuda::OrderKey;
using cuda::OrderKeys4;
using cuda::StartTopKSegment;
using cuda::TopKScan;
using cuda::TopKSegment;
using cuda::WarpInclusiveSum;

constexpr int kResidentThreads = 1024;
constexpr int kResidentBits0 = 13;  // the first digit, counted as the keys load
constexpr int kResidentBins = 1 << kResidentBits0;
// The boundary bucket's keys, gathered over the histogram once it is read.
constexpr int kResidentCandidates = kResidentBins / 2;
constexpr int kResidentSubBins = 1 << 10;  // the later digits: 10 and 9 bits
constexpr int kResidentLoadBatch = 4;      // 8-byte loads a thread has in flight
// Dynamic shared memory: the histogram and the keys, under sm_90's 227 KB opt-in limit with
// the static storage beside it.
constexpr int64_t kResidentSmemBytes = 216 * 1024;
constexpr int64_t kResidentMaxChunks = (kResidentSmemBytes - kResidentBins * 4) / 16;

// Chunks of a row of `cand` candidates starting `a` scores past an 8-byte boundary.
__host__ __device__ __forceinline__ int64_t ResidentChunks(int64_t cand, int64_t a) {
  return (a + cand + 3) / 4;
}

// Tiles of the passes after the load: kResidentThreads × 4 chunks, thread T owning chunks
// c0 + 4T .. c0 + 4T + 3 (16 consecutive keys: its counts are a few adds, and its ordered
// writes a loop over set bits). It reads them in the order (j + T / 2) & 3 so that a
// quarter-warp's 16-byte reads fall in distinct banks.
constexpr int kResidentTileChunks = kResidentThreads * 4;

// Bit 4g + e of .x set where in_a(key e of chunk c + g), of .y where in_b(that key), over
// this thread's four chunks from c (chunks past `chunks`: key 0).
template <typename PredA, typename PredB>
__device__ __forceinline__ uint2 OwnedKeyMasks(const uint4* keys4, int chunks, int c,
                                               PredA in_a, PredB in_b) {
  uint2 m = make_uint2(0u, 0u);
  const int rot = static_cast<int>(threadIdx.x >> 1) & 3;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int g = (j + rot) & 3;
    const uint4 k4 = c + g < chunks ? keys4[c + g] : make_uint4(0u, 0u, 0u, 0u);
    const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
    uint32_t a = 0, b = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      a |= static_cast<uint32_t>(in_a(k[e])) << e;
      b |= static_cast<uint32_t>(in_b(k[e])) << e;
    }
    m.x |= a << (4 * g);
    m.y |= b << (4 * g);
  }
  return m;
}

struct ResidentShared {
  typename TopKScan<kResidentThreads>::TempStorage scan_tmp;
  int sub_hist[kResidentSubBins];
  int bucket, greater, cands;
};

// Narrows (*prefix, *mask) by the later digits over keys[0 .. n), taking the keys above each
// boundary bucket off *remaining, until the bucket is taken whole or the digit could not split
// stored scores' keys (DigitSplitsScores: the 10-bit digit runs, the 9-bit one never does).
// Whole block; everyone gets the same results.
__device__ __forceinline__ void ResidentLaterPasses(const uint32_t* keys, int n, int* remaining,
                                                    uint32_t* prefix, uint32_t* mask,
                                                    ResidentShared& sh) {
  const int tid = static_cast<int>(threadIdx.x);
  int shift = 32 - kResidentBits0;
  for (int pass = 1; pass <= 2; ++pass) {
    const int bits = pass == 1 ? 10 : 9;
    const int bins = 1 << bits;
    shift -= bits;
    if (!DigitSplitsScores(shift, bits)) return;
    for (int b = tid; b < bins; b += kResidentThreads) sh.sub_hist[b] = 0;
    __syncthreads();
    for (int i = tid; i < n; i += kResidentThreads) {
      const uint32_t k = keys[i];
      if ((k & *mask) == *prefix) atomicAdd(&sh.sub_hist[(k >> shift) & (bins - 1)], 1);
    }
    __syncthreads();
    if (NarrowToBoundaryBucket<kResidentThreads>(sh.sub_hist, bins, shift, sh.scan_tmp,
                                                 &sh.bucket, &sh.greater, remaining, prefix,
                                                 mask)) {
      return;
    }
  }
}

__global__ void __launch_bounds__(kResidentThreads, 1)
    TopKSelectResidentKernel(const uint16_t* scores, int64_t score_stride,
                             const CudaDsSequence* seqs, int heads_kv, int32_t* selected,
                             int64_t sel_stride, int32_t* counts, int capacity_chunks) {
  constexpr int kThreads = kResidentThreads;
  __shared__ ResidentShared sh;
  extern __shared__ uint4 resident_smem[];
  int* const hist = reinterpret_cast<int*>(resident_smem);
  uint4* const keys4 = resident_smem + kResidentBins / 4;
  const uint32_t* const keys = reinterpret_cast<const uint32_t*>(keys4);
  const TopKSegment seg =
      StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                       blockIdx.y, blockIdx.x, threadIdx.x, kThreads, threadIdx.x == 0);
  if (seg.want == 0) return;
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % 32;
  const uint16_t* p = seg.sc + seg.lo;
  // Chunks of four scores from the 8-byte boundary at or before p: chunk c at q4 + 4c.
  const int a = static_cast<int>((reinterpret_cast<uintptr_t>(p) >> 1) & 3);
  const uint16_t* q4 = p - a;
  const int cand = seg.hi - seg.lo;
  const int chunks = static_cast<int>(ResidentChunks(cand, a));
  if (chunks > capacity_chunks) {
    // A row longer than the launch's shared memory holds (a graph captured for shorter rows,
    // replayed once they grew): the one-block passes over the scores in memory (hist: 2048
    // counters). Inlined: called (__noinline__, a 48-byte stack frame) the kernel ran 0.3-1.0
    // us slower at 64-256 pairs of 16K-40K rows (run 30, H200: 13.1 against 12.7 at 64 pairs
    // × 32K).
    cuda::SelectInMemory<kResidentThreads, 4, 8>(seg, hist, sh.scan_tmp);
    return;
  }
  for (int b = tid; b < kResidentBins; b += kThreads) hist[b] = 0;
  __syncthreads();

  // 1. The keys into shared memory, the first digit counted. The first and last chunks may
  // hold non-candidates (key 0, below -inf's 0x007fffff, never counted): element loads there.
  constexpr int kShift0 = 32 - kResidentBits0;
  if (tid < 2 && (tid == 0 || chunks > 1)) {
    const int c = tid == 0 ? 0 : chunks - 1;
    uint32_t k[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = 4 * c + e - a;
      k[e] = 0u;
      if (static_cast<unsigned>(i) < static_cast<unsigned>(cand)) {
        k[e] = OrderKey(LoadScore(p + i));
        atomicAdd(&hist[k[e] >> kShift0], 1);
      }
    }
    keys4[c] = make_uint4(k[0], k[1], k[2], k[3]);
  }
  for (int c0 = 1; c0 < chunks - 1; c0 += kThreads * kResidentLoadBatch) {
    uint2 x[kResidentLoadBatch];
#pragma unroll
    for (int u = 0; u < kResidentLoadBatch; ++u) {
      const int c = c0 + u * kThreads + tid;
      if (c < chunks - 1) x[u] = LoadScoreBits4(q4 + 4 * c);
    }
#pragma unroll
    for (int u = 0; u < kResidentLoadBatch; ++u) {
      const int c = c0 + u * kThreads + tid;
      if (c >= chunks - 1) continue;
      const uint4 k = OrderKeys4(x[u]);
      keys4[c] = k;
      atomicAdd(&hist[k.x >> kShift0], 1);
      atomicAdd(&hist[k.y >> kShift0], 1);
      atomicAdd(&hist[k.z >> kShift0], 1);
      atomicAdd(&hist[k.w >> kShift0], 1);
    }
  }
  __syncthreads();

  // 2. The boundary: the first digit's bucket, then the later digits over that bucket's keys
  // gathered into shared memory (over the histogram), or over every key where they do not fit.
  if (tid == 0) sh.cands = 0;
  int remaining = seg.want;
  uint32_t prefix = 0, mask = 0;
  const bool whole = NarrowToBoundaryBucket<kThreads>(hist, kResidentBins, kShift0, sh.scan_tmp,
                                                      &sh.bucket, &sh.greater, &remaining,
                                                      &prefix, &mask);
  const uint32_t b0 = prefix >> kShift0;
  const int in_b0 = hist[b0];
  __syncthreads();  // hist is overwritten by the gathered keys
  if (!whole && in_b0 <= kResidentCandidates) {
    uint32_t* const cand_key = reinterpret_cast<uint32_t*>(hist);
    for (int t0 = 0; t0 < chunks; t0 += kResidentTileChunks) {
      const int c = t0 + 4 * tid;
      // Key 0 is never in the bucket: b0 >= 15.
      const auto in_bucket = [b0](uint32_t k) { return (k >> kShift0) == b0; };
      uint32_t m = OwnedKeyMasks(keys4, chunks, c, in_bucket, [](uint32_t) { return false; }).x;
      const int n = __popc(m);
      const int incl = WarpInclusiveSum(n, lane);
      int base = 0;
      if (lane == 31 && incl != 0) base = atomicAdd(&sh.cands, incl);
      int at = __shfl_sync(0xffffffffu, base, 31) + incl - n;
      for (; m != 0u; m &= m - 1u) cand_key[at++] = keys[4 * c + __ffs(m) - 1];
    }
    __syncthreads();
    ResidentLaterPasses(cand_key, in_b0, &remaining, &prefix, &mask, sh);
  } else if (!whole) {
    ResidentLaterPasses(keys, 4 * chunks, &remaining, &prefix, &mask, sh);
  }

  // 3. The ordered compaction: per thread the masks of its keys above the prefix and of its
  // ties, one block scan of their counts a tile; the first `remaining` ties by index are taken.
  // A thread's selected keys go after every key above before it and the ties taken before it.
  const int quota = remaining;
  int above_seen = 0, ties_seen = 0;
  for (int t0 = 0; t0 < chunks; t0 += kResidentTileChunks) {
    const int c = t0 + 4 * tid;
    // Key 0 is never above nor a tie: prefix >= 15 << 19.
    const uint2 m = OwnedKeyMasks(
        keys4, chunks, c, [=](uint32_t k) { return (k & mask) > prefix; },
        [=](uint32_t k) { return (k & mask) == prefix; });
    const uint32_t above = m.x;
    uint32_t ties = m.y;
    const int n_above = __popc(above), n_ties = __popc(ties);
    int ex = 0, total = 0;
    TopKScan<kThreads>(sh.scan_tmp).ExclusiveSum(n_above | (n_ties << 16), ex, total);
    const int ties_before = ties_seen + (ex >> 16);
    uint32_t sel = above;
    for (int take = min(max(quota - ties_before, 0), n_ties); take > 0; --take) {
      sel |= ties & (0u - ties);  // its lowest tie
      ties &= ties - 1u;
    }
    int at = above_seen + (ex & 0xffff) + min(ties_before, quota);
    const int token = seg.lo + 4 * c - a;
    for (; sel != 0u; sel &= sel - 1u) seg.mid[at++] = token + __ffs(sel) - 1;
    above_seen += total & 0xffff;
    ties_seen += total >> 16;
    __syncthreads();  // scan_tmp is reused by the next tile
  }
}

}  // namespace

bool TopKResidentFits(int64_t tokens) {
  return tokens >= 1 && ResidentChunks(tokens, 3) <= kResidentMaxChunks;
}

absl::Status LaunchTopKResident(const uint16_t* scores, int64_t score_stride,
                                const CudaDsSequence* seqs, int num_seqs, int heads_kv,
                                int32_t* selected, int64_t sel_stride, int32_t* counts,
                                cudaStream_t stream) {
  // Shared memory for rows up to score_stride tokens (which bounds every row), or as many as
  // it holds: a longer row runs the passes in memory.
  const int64_t capacity = std::min(ResidentChunks(score_stride, 3), kResidentMaxChunks);
  const size_t smem = static_cast<size_t>(kResidentBins) * sizeof(int) +
                      static_cast<size_t>(capacity) * sizeof(uint4);
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(TopKSelectResidentKernel,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(TopKSelectResidentKernel, dim3(heads_kv, num_seqs),
                                           dim3(kResidentThreads), smem, stream, scores,
                                           score_stride, seqs, heads_kv, selected, sel_stride,
                                           counts, static_cast<int>(capacity)));
  return absl::OkStatus();
}

}  // namespace dsinfer
