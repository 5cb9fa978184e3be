// The striped top-k's pieces (its kernels in topk_select.cu, kMultiBlock's in
// topk_multi_block.cu). kStriped: kTwoRead's two reads and shared-memory finish
// (FinishSplitInShared, topk_two_read.cuh), with the
// instruction count per score cut (ncu of kTwoRead: ~83 per score, latency-bound, 57% of its
// global sectors excess). Loads are striped: consecutive lanes take consecutive 16-byte
// chunks of the row (chunks of the 16-byte-aligned address at or before it, so any row stride
// gets them; the chunks that hold a token outside the candidates are loaded by element, in
// the tiles that hold them). Read 1 adds every key's 13-bit digit to the histogram, with
// kStripedHistChunks chunks in flight per thread. Read 2 is OwnedSplit (below), the split
// kStriped ran until run 21 StripedSplit, which kMultiBlock's split kernel still runs (its
// slices start at a count of earlier winners and candidates, into the workspace): it
// classifies by two float comparisons
// (against the least scores of the boundary bucket and of the bucket above it, which order
// exactly as the keys do) into one bit per score of two masks; a tile gives each warp
// kStripedRounds × 32 consecutive chunks (round u: chunks u × 32 + lane), so the order among
// a warp's winners and candidates is a warp scan of per-round counts packed one per byte
// (four rounds of both kinds in two words), and the order among warps one exchange of 16
// counts per tile (one __syncthreads, double-buffered). Winners are staged per warp in shared
// memory (over the histogram, free by then) and leave as contiguous runs; a candidate's key is
// read again (L1), the first one per lane before the next tile's loads reuse the registers.
// The next tile's loads are issued before this tile's scan, exchange and writes.
#ifndef DSINFER_KERNELS_CUDA_TOPK_STRIPED_CUH_
#define DSINFER_KERNELS_CUDA_TOPK_STRIPED_CUH_

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/topk_two_read.cuh"

namespace dsinfer {
namespace cuda {

constexpr int kStripedThreads = 512;
constexpr int kStripedWarps = kStripedThreads / 32;
constexpr int kStripedHistChunks = 8;  // 8-byte chunks a thread has in flight in read 1
constexpr int kStripedRounds = 4;      // 8-byte chunks a lane classifies per tile in read 2
constexpr int kStripedWarpChunks = kStripedRounds * 32;
constexpr int kStripedTileChunks = kStripedWarps * kStripedWarpChunks;
static_assert(kStripedRounds * 8 <= 32, "a lane's classification of a tile fits a word");
static_assert(kStripedTileChunks * 4 <= kTwoReadFirstBins, "the winners' staging fits hist");
static_assert(kStripedWarps <= 32, "one warp exchanges the warps' counts");

// The candidates [lo, hi) of a score row as 8-byte chunks of four scores: chunk c holds tokens
// 4c - a .. 4c - a + 3 (a: the row's offset in scores from the 8-byte boundary at or before it).
struct StripedRow {
  const uint16_t* sc;
  const uint16_t* p4;  // the 8-byte boundary at or before sc: chunk c at p4 + 4c
  int a, lo, hi;
  int c_begin, c_end;        // chunks holding a candidate
  int full_begin, full_end;  // chunks holding only candidates
};

__device__ __forceinline__ StripedRow MakeStripedRow(const uint16_t* sc, int lo, int hi) {
  StripedRow r;
  r.sc = sc;
  r.p4 = reinterpret_cast<const uint16_t*>(reinterpret_cast<uintptr_t>(sc) & ~uintptr_t{7});
  r.a = static_cast<int>((reinterpret_cast<uintptr_t>(sc) >> 1) & 3);
  r.lo = lo;
  r.hi = hi;
  r.c_begin = (lo + r.a) >> 2;
  r.c_end = (hi + r.a + 3) >> 2;
  r.full_begin = (lo + r.a + 3) >> 2;
  r.full_end = (hi + r.a) >> 2;
  return r;
}

// Whether token t is a candidate of the row.
__device__ __forceinline__ bool StripedValid(const StripedRow& r, int t) {
  return static_cast<unsigned>(t - r.lo) < static_cast<unsigned>(r.hi - r.lo);
}

// Whether the tile of `chunks` chunks from tb holds a chunk that is not all candidates.
__device__ __forceinline__ bool StripedTileChecked(const StripedRow& r, int tb, int chunks) {
  return tb < r.full_begin || tb + chunks > r.full_end;
}

// Chunk c of the row as its fp16 bits (one 8-byte load), and as scores.
__device__ __forceinline__ uint2 LoadChunkBits(const StripedRow& r, int c) {
  return LoadScoreBits4(r.p4 + 4 * c);
}
__device__ __forceinline__ float4 LoadChunk(const StripedRow& r, int c) {
  return ScoreValues4(LoadChunkBits(r, c));
}

// Chunk c of the row's bits with its non-candidates' as 0 (and no load outside the candidates).
__device__ __forceinline__ uint2 LoadChunkBitsChecked(const StripedRow& r, int c) {
  if (c >= r.full_begin && c < r.full_end) return LoadChunkBits(r, c);
  uint16_t e[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int t = 4 * c - r.a + k;
    e[k] = StripedValid(r, t) ? __ldg(r.sc + t) : uint16_t{0};
  }
  return make_uint2(e[0] | static_cast<uint32_t>(e[1]) << 16,
                    e[2] | static_cast<uint32_t>(e[3]) << 16);
}

// Chunk c of the row with its non-candidates as 0 (and no load outside the candidates).
__device__ __forceinline__ float4 LoadChunkChecked(const StripedRow& r, int c) {
  return ScoreValues4(LoadChunkBitsChecked(r, c));
}

// Read 1 over one tile: chunks tb + u × kStripedThreads + thread, all loaded before any is
// counted. kCheck: the tile holds chunks that are not all candidates.
template <bool kCheck>
__device__ __forceinline__ void StripedHistogramTile(const StripedRow& r, int tb, int* hist) {
  constexpr int kShift = 32 - kTwoReadBits0;
  const int c0 = tb + static_cast<int>(threadIdx.x);
  uint2 x[kStripedHistChunks];
#pragma unroll
  for (int u = 0; u < kStripedHistChunks; ++u) {
    const int c = c0 + u * kStripedThreads;
    if (kCheck) {
      x[u] = c < r.c_end ? LoadChunkBitsChecked(r, c) : make_uint2(0u, 0u);
    } else {
      x[u] = LoadChunkBits(r, c);
    }
  }
#pragma unroll
  for (int u = 0; u < kStripedHistChunks; ++u) {
    const uint4 k4 = OrderKeys4(x[u]);
    const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
    const int t = 4 * (c0 + u * kStripedThreads) - r.a;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (!kCheck || StripedValid(r, t + e)) atomicAdd(&hist[k[e] >> kShift], 1);
    }
  }
}

// Read 2's loads for one tile: round u of this lane is chunk c0 + u × 32.
template <bool kCheck>
__device__ __forceinline__ void LoadSplitTile(const StripedRow& r, int c0,
                                              float4 (&x)[kStripedRounds]) {
#pragma unroll
  for (int u = 0; u < kStripedRounds; ++u) {
    const int c = c0 + u * 32;
    if (kCheck) {
      x[u] = c < r.c_end ? LoadChunkChecked(r, c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    } else {
      x[u] = LoadChunk(r, c);
    }
  }
}

// All ones where x >= y (NaN: never), else 0: one FSET, so that a flag costs a LOP3 more.
__device__ __forceinline__ uint32_t AtLeastBits(float x, float y) {
  uint32_t r;
  asm("set.ge.u32.f32 %0, %1, %2;" : "=r"(r) : "f"(x), "f"(y));
  return r;
}

// StripedSplit's classification of a lane's rounds of a tile (t0: the token of round 0's first
// element, round u 128 tokens on): bit 8u + e of *win is set where element e of round u is at
// least thr (a winner), of *ge where it is at least flo (a winner or a candidate); tokens
// outside the candidates (kCheck) set neither.
template <bool kCheck>
__device__ __forceinline__ void ClassifySplitTile(const StripedRow& r,
                                                  const float4 (&x)[kStripedRounds], int t0,
                                                  float thr, float flo, uint32_t* win,
                                                  uint32_t* ge) {
  uint32_t w = 0, g = 0;
#pragma unroll
  for (int u = 0; u < kStripedRounds; ++u) {
    const float f[4] = {x[u].x, x[u].y, x[u].z, x[u].w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      uint32_t bit = 1u << (8 * u + e);
      if (kCheck && !StripedValid(r, t0 + 128 * u + e)) bit = 0;
      w |= AtLeastBits(f[e], thr) & bit;
      g |= AtLeastBits(f[e], flo) & bit;
    }
  }
  *win = w;
  *ge = g;
}

// LoadSplitTile / ClassifySplitTile for the tile of kStripedTileChunks chunks from tb, checked
// only where the tile holds chunks that are not all candidates.
__device__ __forceinline__ void LoadSplitTileAt(const StripedRow& r, int tb, int lane_chunk,
                                                float4 (&x)[kStripedRounds]) {
  if (StripedTileChecked(r, tb, kStripedTileChunks)) {
    LoadSplitTile<true>(r, tb + lane_chunk, x);
  } else {
    LoadSplitTile<false>(r, tb + lane_chunk, x);
  }
}
__device__ __forceinline__ void ClassifySplitTileAt(const StripedRow& r, int tb,
                                                    const float4 (&x)[kStripedRounds], int t0,
                                                    float thr, float flo, uint32_t* win,
                                                    uint32_t* ge) {
  if (StripedTileChecked(r, tb, kStripedTileChunks)) {
    ClassifySplitTile<true>(r, x, t0, thr, flo, win, ge);
  } else {
    ClassifySplitTile<false>(r, x, t0, thr, flo, win, ge);
  }
}

// The token offset from a lane's t0 of bit 8u + e of its classification: round u's chunk is
// 32 chunks (128 tokens) after round u - 1's.
__device__ __forceinline__ int SplitBitToken(int bit) { return ((bit >> 3) << 7) + (bit & 7); }

// The sum of bytes 0 .. u - 1 (u < 4) of per-round counts packed one per byte, and of all four.
__device__ __forceinline__ int RoundsBefore(uint32_t rounds, int u) {
  return static_cast<int>(__dp4a(rounds, 0x01010101u & ((1u << (8 * u)) - 1u), 0u));
}
__device__ __forceinline__ int RoundsTotal(uint32_t rounds) {
  return static_cast<int>(__dp4a(rounds, 0x01010101u, 0u));
}

// The least score whose OrderKey is at least k (OrderKey's inverse on the keys it makes).
__device__ __forceinline__ float FloorOfKey(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// FloorOfKey for a key that may lie past +inf's: NaN there (no score is at least it).
__device__ __forceinline__ float KeyFloor(uint64_t key) {
  if (key > 0xff800000ull) return __uint_as_float(0x7fffffffu);
  return FloorOfKey(static_cast<uint32_t>(key));
}

// The least score whose OrderKey is at least bucket << 19 (13-bit buckets above -inf's, 15;
// bucket 8192 or one past +inf's: NaN, which no score compares at least).
__device__ __forceinline__ float BucketFloor(int bucket) {
  if (bucket >= kTwoReadFirstBins) return __uint_as_float(0x7fffffffu);
  return FloorOfKey(static_cast<uint32_t>(bucket) << (32 - kTwoReadBits0));
}

// Read 1 of the row r: every candidate's 13-bit digit added to hist.
__device__ __forceinline__ void StripedHistogram(const StripedRow& r, int* hist) {
  constexpr int kHistTile = kStripedHistChunks * kStripedThreads;
  for (int tb = r.c_begin; tb < r.c_end; tb += kHistTile) {
    if (StripedTileChecked(r, tb, kHistTile)) {
      StripedHistogramTile<true>(r, tb, hist);
    } else {
      StripedHistogramTile<false>(r, tb, hist);
    }
  }
}

// The shared memory read 2 works in: per warp its winners of a tile (kStripedWarpChunks × 4
// slots), and the warps' counts of a tile, double-buffered.
struct StripedSplitSmem {
  int* stage;                       // kStripedTileChunks × 4 ints
  int (*exchange)[kStripedWarps];  // [2][kStripedWarps]
};

// Where read 2 sends a row's keys: winners to mid at their rank among winners (winners of
// earlier rows or slices already counted in `winners`), the boundary bucket's candidates to
// cand_key / cand_idx / cand_wb at their rank (`held` before them), with the winners before
// each. thr / flo: the least scores of the bucket above the boundary's and of the boundary's.
// Winners at rank win_limit or later and candidates at cand_cap or later are counted but not
// written (a sampled band, below, may hold more than there is room for).
struct StripedSplitOut {
  int32_t* mid;
  uint32_t* cand_key;
  int32_t* cand_idx;
  int32_t* cand_wb;
  int winners, held;
  int win_limit, cand_cap;
};

// Read 2 over the row r (the whole block); returns the winners and candidates counted, those
// of dst included (the same for every thread).
__device__ __forceinline__ int2 StripedSplit(const StripedRow& r, float thr, float flo,
                                             StripedSplitOut dst, StripedSplitSmem sm) {
  int32_t* const mid = dst.mid;
  uint32_t* const cand_key = dst.cand_key;
  int32_t* const cand_idx = dst.cand_idx;
  int32_t* const cand_wb = dst.cand_wb;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  int* stage = sm.stage + warp * kStripedWarpChunks * 4;  // this warp's winners of a tile
  const int lane_chunk = warp * kStripedWarpChunks + lane;
  float4 x[kStripedRounds];
  LoadSplitTileAt(r, r.c_begin, lane_chunk, x);
  int winners = dst.winners, held = dst.held, parity = 0;
  for (int tb = r.c_begin; tb < r.c_end; tb += kStripedTileChunks) {
    const int t0 = 4 * (tb + lane_chunk) - r.a;
    uint32_t win, ge;
    ClassifySplitTileAt(r, tb, x, t0, thr, flo, &win, &ge);
    const uint32_t cand = ge & ~win;
    float first_cand = 0.0f;  // the lane's first candidate, read before x is reloaded
    if (cand != 0u) first_cand = LoadScore(r.sc + t0 + SplitBitToken(__ffs(cand) - 1));
    const int next = tb + kStripedTileChunks;
    if (next < r.c_end) LoadSplitTileAt(r, next, lane_chunk, x);
    // Per-round counts, one per byte (winners in the low nibbles, candidates in the high ones
    // before the split), and their exclusive prefix over the warp's lanes.
    uint32_t v = win | (cand << 4);
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    const uint32_t win_n = v & 0x0f0f0f0fu, cand_n = (v >> 4) & 0x0f0f0f0fu;
    uint32_t win_in = win_n, cand_in = cand_n;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const uint32_t w = __shfl_up_sync(0xffffffffu, win_in, d);
      const uint32_t c = __shfl_up_sync(0xffffffffu, cand_in, d);
      if (lane >= d) {
        win_in += w;
        cand_in += c;
      }
    }
    const uint32_t win_ex = win_in - win_n, cand_ex = cand_in - cand_n;
    const uint32_t win_rounds = __shfl_sync(0xffffffffu, win_in, 31);
    const uint32_t cand_rounds = __shfl_sync(0xffffffffu, cand_in, 31);
#pragma unroll
    for (int u = 0; u < kStripedRounds; ++u) {
      int* sp = stage + RoundsBefore(win_rounds, u) + static_cast<int>((win_ex >> (8 * u)) & 0xffu);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (win & (1u << (8 * u + e))) *sp++ = t0 + 128 * u + e;
      }
    }
    const int warp_wins = RoundsTotal(win_rounds);
    if (lane == 0) sm.exchange[parity][warp] = warp_wins | (RoundsTotal(cand_rounds) << 16);
    __syncthreads();  // every warp's counts (and this warp's staged winners) are complete
    const int2 order = WarpTotalsBefore<kStripedWarps>(sm.exchange[parity], warp, lane);
    const int before = order.x, total = order.y;
    const int win_base = winners + (before & 0xffff), cand_base = held + (before >> 16);
    for (int i = lane; i < warp_wins && win_base + i < dst.win_limit; i += 32) {
      mid[win_base + i] = stage[i];
    }
    uint32_t left = cand;
    for (bool first = true; left != 0u; first = false) {
      const int bit = __ffs(left) - 1;
      const int u = bit >> 3;
      const uint32_t below = ((1u << bit) - 1u) & ~((1u << (8 * u)) - 1u);  // this round's
      const int t = t0 + SplitBitToken(bit);
      const int c = cand_base + RoundsBefore(cand_rounds, u) +
                    static_cast<int>((cand_ex >> (8 * u)) & 0xffu) + __popc(cand & below);
      if (c < dst.cand_cap) {
        cand_key[c] = OrderKey(first ? first_cand : LoadScore(r.sc + t));
        cand_idx[c] = t;
        cand_wb[c] = win_base + RoundsBefore(win_rounds, u) +
                     static_cast<int>((win_ex >> (8 * u)) & 0xffu) + __popc(win & below);
      }
      left &= left - 1u;
    }
    winners += total & 0xffff;
    held += total >> 16;
    parity ^= 1;
    __syncwarp();  // this warp's stage is rewritten by the next tile
  }
  return make_int2(winners, held);
}

// Read 2 with each thread owning consecutive keys (OwnedSplit, kStriped's): StripedSplit's
// outputs from a fraction of its instructions. In StripedSplit a lane's keys of a tile are 128
// tokens apart (striped loads), so ordering them takes byte-packed per-round counts, two warp
// scans, an exchange and winners staged through shared memory (ncu, run 21: ~25 instructions a
// key at 256 pairs × 64K, 45% of the kernel). Here thread T owns chunks kChunks T .. kChunks T
// + kChunks - 1 of a tile (16 or 32 consecutive keys: a warp's 8-byte loads cover 1 or 2 KB,
// the repeated sectors hit L1), so its winners and candidates are contiguous in the output
// order: a warp scan of their counts and one exchange of the warps' totals a tile place them,
// and a loop over set bits writes them (as the resident top-k's compaction). The next tile's
// chunks load into registers of their own before this tile's scan and writes, so the
// candidates' scores are taken from registers (run 23: re-reading all but a thread's first
// candidate stalled on L1 at 32 keys a thread). The keys stay fp16 bits: two scores are
// classified by one paired fp16 comparison against each threshold (rounded up to fp16, which
// gives the fp32 comparisons' answers), half the instructions of converting each to fp32 and
// comparing it twice.
// kChunks (the 8-byte chunks, four scores each, a thread owns in a tile): 4 or 8. Each tile
// costs a chain of dependent steps (the scan, the barrier, the exchange) that does not grow
// with its keys: where the blocks number at most the SMs (one a SM: each block's latency is
// the kernel's) 8 chunks halve the tiles, compiled for one block a SM (80 registers). Run 23
// call 4 (H200, 1/16 of 256K rows): 64 pairs 73.0 -> 63.0 us, 128 pairs 77.2 -> 64.4; at 256
// pairs (two blocks a SM) 4 chunks, which were even with 8 there or 1-2% ahead (call 2).
constexpr int kOwnedChunksFew = 8, kOwnedChunksMany = 4;
// Winners a thread moves a pass in the finish (FinishSplitInShared's kMoveItems): 16 where a
// block has an SM's registers to itself (kOwnedChunksFew), 8 at two blocks an SM.
template <int kChunks>
constexpr int kOwnedMoveItems = kChunks == kOwnedChunksFew ? 16 : 8;
template <int kChunks>
constexpr int OwnedTileChunks() {
  static_assert(kChunks % 4 == 0 && 4 * kChunks <= 32, "a thread's keys fold to one word");
  static_assert(kStripedThreads * kChunks * 4 < 65536, "a tile's counts fit 16 bits");
  return kStripedThreads * kChunks;
}

// This thread's chunks of the tile from tb as the stored fp16 bits (two scores a word), all
// loaded before any is used. Chunks past the row are not loaded; where a chunk is not all
// candidates its loads are element loads (the bits of non-candidates are masked later).
template <bool kCheck, int kChunks>
__device__ __forceinline__ void LoadOwnedTile(const StripedRow& r, int tb, uint2 (&x)[kChunks]) {
  const int c0 = tb + kChunks * static_cast<int>(threadIdx.x);
#pragma unroll
  for (int g = 0; g < kChunks; ++g) {
    x[g] = kCheck ? LoadChunkBitsChecked(r, c0 + g) : LoadChunkBits(r, c0 + g);
  }
}
template <int kChunks>
__device__ __forceinline__ void LoadOwnedTileAt(const StripedRow& r, int tb, uint2 (&x)[kChunks]) {
  if (StripedTileChecked(r, tb, OwnedTileChunks<kChunks>())) {
    LoadOwnedTile<true>(r, tb, x);
  } else {
    LoadOwnedTile<false>(r, tb, x);
  }
}

// The bits of a thread's 4 kChunks scores (bit 4g + e: element e of chunk g) that are at
// least thr2 (both halves the threshold, as fp16 rounded up, OwnedThreshold): one paired fp16
// comparison for two scores, its 0xffff halves masked to bit b (low half) and bit 16 + b + 1
// (high half) of one word per four chunks, which folds to their 16 bits at the end.
template <int kChunks>
__device__ __forceinline__ uint32_t OwnedAtLeast(const uint2 (&x)[kChunks], __half2 thr2) {
  uint32_t bits = 0;
#pragma unroll
  for (int q = 0; q < kChunks / 4; ++q) {
    uint32_t acc = 0;
#pragma unroll
    for (int g = 0; g < 4; ++g) {
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        const uint32_t word = w == 0 ? x[4 * q + g].x : x[4 * q + g].y;
        const int b = 4 * g + 2 * w;
        acc |= __hge2_mask(*reinterpret_cast<const __half2*>(&word), thr2) &
               ((1u << b) | (1u << (17 + b)));
      }
    }
    bits |= ((acc | (acc >> 16)) & 0xffffu) << (16 * q);
  }
  return bits;
}

// The fp16 threshold equivalent to fp32 threshold t over fp16 scores (x >= t exactly where
// x >= the result): the least fp16 value at least t (+inf past fp16's range, NaN for NaN).
__device__ __forceinline__ __half2 OwnedThreshold(float t) {
  return __half2half2(__float2half_ru(t));
}

// Score `bit` (4g + e: element e of chunk g) of a thread's tile, by selects over the registers.
template <int kChunks>
__device__ __forceinline__ float OwnedScore(const uint2 (&x)[kChunks], int bit) {
  uint32_t v = 0;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    v = bit >> 1 == 2 * c ? x[c].x : v;
    v = bit >> 1 == 2 * c + 1 ? x[c].y : v;
  }
  return cuda::ScoreValue(static_cast<uint16_t>(bit & 1 ? v >> 16 : v));
}

// Bits of a thread's kKeys tokens from t0 that are candidates of the row.
template <int kKeys>
__device__ __forceinline__ uint32_t OwnedValidBits(const StripedRow& r, int t0) {
  const int lo = min(max(r.lo - t0, 0), kKeys), hi = min(max(r.hi - t0, 0), kKeys);
  const uint64_t below_hi = (uint64_t{1} << hi) - 1u, below_lo = (uint64_t{1} << lo) - 1u;
  return static_cast<uint32_t>(below_hi & ~below_lo);
}

// Read 2 over the row r (the whole block), StripedSplit's for the two-read layout in shared
// memory (CarveTwoReadSmem: `cands` the candidates' keys, then their indices, then the winners
// before each, kTwoReadCandidates of each; one base pointer, as the registers are tight):
// winners to mid at their rank (below win_limit), the boundary band's candidates to `cands` at
// theirs (below kTwoReadCandidates). Returns the winners and candidates counted (the same for
// every thread). The tile's counts are ordered by a warp scan and one exchange of the warps'
// totals (double-buffered: one barrier a tile). start: the winners and candidates of the row
// before r (another block's part of it), whose ranks r's follow.
template <int kChunks>
__device__ __forceinline__ int2 OwnedSplit(const StripedRow& r, float thr, float flo,
                                           int32_t* mid, int win_limit, uint32_t* cands,
                                           int (*exchange)[kStripedWarps],
                                           int2 start = make_int2(0, 0)) {
  constexpr int kCap = kTwoReadCandidates;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const __half2 thr2 = OwnedThreshold(thr), flo2 = OwnedThreshold(flo);
  constexpr int kTileChunks = OwnedTileChunks<kChunks>();
  uint2 x[kChunks];
  LoadOwnedTileAt(r, r.c_begin, x);
  int winners = start.x, held = start.y, parity = 0;
  for (int tb = r.c_begin; tb < r.c_end; tb += kTileChunks) {
    const int t0 = 4 * (tb + kChunks * static_cast<int>(threadIdx.x)) - r.a;
    uint32_t win = OwnedAtLeast(x, thr2), ge = OwnedAtLeast(x, flo2);
    if (StripedTileChecked(r, tb, kTileChunks)) {
      const uint32_t valid = OwnedValidBits<4 * kChunks>(r, t0);
      win &= valid;
      ge &= valid;
    }
    const uint32_t cand = ge & ~win;
    // The next tile's loads, in flight through the scan and the writes (into registers of
    // their own, so that the candidates' scores are still at hand).
    const int next = tb + kTileChunks;
    uint2 nx[kChunks] = {};
    if (next < r.c_end) LoadOwnedTileAt(r, next, nx);
    // Winners | candidates << 16: this lane's, then their prefix over the warp and the block.
    const int own = __popc(win) | (__popc(cand) << 16);
    const int incl = WarpInclusiveSum(own, lane);
    if (lane == 31) exchange[parity][warp] = incl;
    __syncthreads();  // every warp's total of this tile is in exchange[parity]
    const int2 order = WarpTotalsBefore<kStripedWarps>(exchange[parity], warp, lane);
    const int ex = order.x + incl - own, total = order.y;
    const int win_base = winners + (ex & 0xffff);
    int at = win_base;
    for (uint32_t m = win; m != 0u; m &= m - 1u, ++at) {
      if (at < win_limit) __stcg(mid + at, t0 + __ffs(m) - 1);
    }
    int c = held + (ex >> 16);
    for (uint32_t m = cand; m != 0u; m &= m - 1u, ++c) {
      const int bit = __ffs(m) - 1;
      if (c < kCap) {
        cands[c] = OrderKey(OwnedScore(x, bit));
        cands[kCap + c] = static_cast<uint32_t>(t0 + bit);
        cands[2 * kCap + c] = static_cast<uint32_t>(win_base + __popc(win & ((1u << bit) - 1u)));
      }
    }
    winners += total & 0xffff;
    held += total >> 16;
    parity ^= 1;
#pragma unroll
    for (int g = 0; g < kChunks; ++g) x[g] = nx[g];
  }
  return make_int2(winners, held);
}

// kStriped's sampled band, for segments of at least kSampleMinCandidates candidates: read 1
// (the full histogram, ~40% of the kernel's time) is replaced by a sample of the row — runs
// of kSampleRunChunks chunks, one run in `period` — whose 13-bit histogram, refined by 10 more
// bits in the two buckets that matter, gives the scores of sample ranks k_s -+ delta (k_s the
// budget's rank scaled to the sample, delta kSampleZ binomial standard deviations): winners
// are the scores at least thr (above the upper one), candidates those in [flo, thr). Read 2
// then counts them exactly; the band holds the boundary when winners < want <= winners +
// candidates and the candidates fit shared memory (else the block runs the exact reads). The
// result is the exact reads' (the same total order, finished over the candidates' keys).
// period: the longest of 16, 8, 4 runs whose expected band, 2 z sqrt(p (1 - p) N period)
// candidates, stays under kSampleBandLimit. Measured on an H200 (docs/benchmarks.md run 11):
// at 256K the top-k took 10-22% less time (Llama-2 heads, batch 8: 240 -> 205 us at 1/8, 207
// -> 161 us at 1/16); at 64K the sampling's chain of dependent steps cost a lone block ~7 us
// more than read 1 saved (batch 1). At 128K (call 10) it saved 5-12% with 256 pairs (two
// blocks per SM: throughput-bound) and cost 8-19% with 8-64 (each block's latency is the
// kernel's), hence kSampleMinCandidates, and kSampleMinCandidatesFullGrid from
// kSampleFullGridPairs (sequence, KV head) pairs.
constexpr int kSampleRunChunks = 128;
constexpr int kSampleMinCandidates = 160000;
constexpr int kSampleMinCandidatesFullGrid = 100000;
constexpr int kSampleFullGridPairs = 256;
constexpr float kSampleZ = 4.5f;
constexpr int kSampleBandLimit = kTwoReadCandidates * 3 / 4;
constexpr int kSampleSubBins = 1 << kTwoReadBits1;  // the refinement's counters per bucket

struct SampledBand {
  float thr, flo;
  bool ok;
};

// Sample chunk i of row r at `period`: its chunk, or -1 past the row (-2 past the last run).
__device__ __forceinline__ int SampleChunk(const StripedRow& r, int i, int period) {
  const int run_start = r.c_begin + (i / kSampleRunChunks) * kSampleRunChunks * period;
  if (run_start >= r.c_end) return -2;
  const int c = run_start + i % kSampleRunChunks;
  return c < r.c_end ? c : -1;
}

// Adds the sample's keys (in buckets b_hi / b_lo only, by their next 10 bits, when refine) to
// hist and returns this thread's count of sampled candidates.
__device__ __forceinline__ int SampleHistogram(const StripedRow& r, int period, int* hist,
                                               bool refine, int b_hi, int b_lo) {
  constexpr int kBatch = 4;
  int n = 0;
  for (int i0 = threadIdx.x;; i0 += kBatch * kStripedThreads) {
    uint2 x[kBatch];
    int c[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      c[u] = SampleChunk(r, i0 + u * kStripedThreads, period);
      x[u] = c[u] >= 0 ? LoadChunkBitsChecked(r, c[u]) : make_uint2(0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (c[u] < 0) continue;
      const uint4 k4 = OrderKeys4(x[u]);
      const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
      const int t = 4 * c[u] - r.a;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (!StripedValid(r, t + e)) continue;
        ++n;
        const uint32_t key = k[e];
        const int b = static_cast<int>(key >> (32 - kTwoReadBits0));
        const int sub = static_cast<int>((key >> (32 - kTwoReadBits0 - kTwoReadBits1)) &
                                         (kSampleSubBins - 1));
        if (!refine) {
          atomicAdd(&hist[b], 1);
        } else if (b == b_hi) {
          atomicAdd(&hist[sub], 1);
        } else if (b == b_lo) {
          atomicAdd(&hist[kSampleSubBins + sub], 1);
        }
      }
    }
    if (SampleChunk(r, i0 + (kBatch - 1) * kStripedThreads, period) == -2) break;
  }
  return n;
}

// The block's sampled band for the row r and `want` of its candidates (whole block; hist
// (kTwoReadFirstBins counters) and scan_tmp free on entry and on return).
template <int kThreads>
__device__ __forceinline__ SampledBand SampleBand(
    const StripedRow& r, int want, int* hist, typename TopKScan<kThreads>::TempStorage& scan_tmp,
    int* sh_bucket, int* sh_greater) {
  __shared__ int sh_count;
  SampledBand band{0.0f, 0.0f, false};
  const int total = r.hi - r.lo;
  const bool full_grid = static_cast<int>(gridDim.x * gridDim.y) >= kSampleFullGridPairs;
  if (total < (full_grid ? kSampleMinCandidatesFullGrid : kSampleMinCandidates)) return band;
  const float p = static_cast<float>(want) / static_cast<float>(total);
  int period = 0;
  for (int candidate : {16, 8, 4}) {
    const float expect = 2.0f * kSampleZ * sqrtf(p * (1.0f - p) * total * candidate);
    if (expect <= kSampleBandLimit) {
      period = candidate;
      break;
    }
  }
  if (period == 0) return band;

  // The sample's 13-bit histogram and size.
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) hist[b] = 0;
  if (threadIdx.x == 0) sh_count = 0;
  __syncthreads();
  const int n = __reduce_add_sync(0xffffffffu, SampleHistogram(r, period, hist, false, 0, 0));
  if (threadIdx.x % 32 == 0) atomicAdd(&sh_count, n);
  __syncthreads();
  const int n_s = sh_count;
  const float k_s = p * static_cast<float>(n_s);
  const float delta = ceilf(kSampleZ * sqrtf(k_s * (1.0f - p))) + 2.0f;
  const int m_hi = static_cast<int>(floorf(k_s - delta));  // ranks from 1 (the largest)
  const int m_lo = static_cast<int>(ceilf(k_s + delta));
  if (m_lo > n_s) {
    __syncthreads();
    return band;
  }
  // The buckets of sample ranks m_hi and m_lo, then their sub-buckets.
  int b_hi = -1, g_hi = 0;
  if (m_hi >= 1) {
    FindBoundaryBucketInBlock<kThreads>(hist, kTwoReadFirstBins, m_hi, scan_tmp, sh_bucket,
                                        sh_greater);
    __syncthreads();
    b_hi = *sh_bucket;
    g_hi = *sh_greater;
    __syncthreads();
  }
  FindBoundaryBucketInBlock<kThreads>(hist, kTwoReadFirstBins, m_lo, scan_tmp, sh_bucket,
                                      sh_greater);
  __syncthreads();
  const int b_lo = *sh_bucket, g_lo = *sh_greater;
  __syncthreads();
  if (b_lo < 16) return band;  // -inf / NaN bucket: no float bound orders as the keys do
  for (int b = threadIdx.x; b < 2 * kSampleSubBins; b += kThreads) hist[b] = 0;
  __syncthreads();
  SampleHistogram(r, period, hist, true, b_hi, b_lo);
  __syncthreads();
  constexpr int kSubShift = 32 - kTwoReadBits0 - kTwoReadBits1;
  uint64_t thr_key = ~0ull;  // no winner
  if (m_hi >= 1) {
    FindBoundaryBucketInBlock<kThreads>(hist, kSampleSubBins, m_hi - g_hi, scan_tmp, sh_bucket,
                                        sh_greater);
    __syncthreads();
    thr_key = ((static_cast<uint64_t>(b_hi) << kTwoReadBits1) + *sh_bucket + 1) << kSubShift;
    __syncthreads();
  }
  FindBoundaryBucketInBlock<kThreads>(hist + kSampleSubBins, kSampleSubBins, m_lo - g_lo,
                                      scan_tmp, sh_bucket, sh_greater);
  __syncthreads();
  const uint64_t flo_key =
      ((static_cast<uint64_t>(b_lo) << kTwoReadBits1) + *sh_bucket) << kSubShift;
  __syncthreads();
  band.thr = KeyFloor(thr_key);
  band.flo = KeyFloor(flo_key);
  band.ok = true;
  return band;
}

// Chunks [c0, c0 + chunks) of row as a row of its own (its candidates only; c0 on the row's
// chunk grid, so no chunk is shared with another slice but the row's first).
__device__ __forceinline__ StripedRow SliceOfRow(const StripedRow& row, int c0, int chunks) {
  const int lo = max(row.lo, 4 * c0 - row.a);
  const int hi = min(row.hi, 4 * (c0 + chunks) - row.a);
  return MakeStripedRow(row.sc, lo, max(lo, hi));
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_TOPK_STRIPED_CUH_
