// Sampling on the GPU: temperature, top-k, top-p and min-p over one row of logits per
// thread-block cluster, without sorting the vocabulary. Every filter of engine/sampler.cc is a
// prefix cut of the tokens in descending probability, so the kept set is {p >= theta} for one
// threshold: top-k's theta is the largest value with at least k tokens at or above it, top-p's
// the largest whose mass (within top-k's set) still reaches top_p of that set's mass, min-p's
// min_p · p_max. Probabilities are unnormalised, p = 2^((x - max) · log2e / T), so p_max is
// exactly 1 and every p lies in [0, 1]: its bit pattern is a 30-bit key, monotonic in p.
//
// A cluster of up to 8 blocks takes a row (SampleClusterBlocks), each block a slice of it, whose
// probabilities it holds in shared memory (slices over kSliceCap tokens are computed from the
// logits, read from L2, at every pass instead). The thresholds are found by radix descent over the
// keys, three 10-bit digits: each digit is one pass that counts the slice's tokens and their mass
// per digit value in a shared-memory histogram; the cluster's histograms are merged through
// distributed shared memory, and every block takes the same branch. Masses are fixed point
// (p · 2^39, rounded, in 64-bit integers), so sums are exact and independent of order: a bin's mass
// is exactly its sub-bins', and every block (and every run) decides alike. Top-k and top-p share
// the first digit's histogram, and top-p reuses top-k's later ones while its digits are the same.
// The token is then drawn by inverse CDF in id order over the same fixed-point masses: a block's
// slice in 32 warp-contiguous runs, the target located by rank, then warp, then one 32-token step.
// Ties at a threshold keep every tied token (the CPU sampler keeps the lowest ids); with continuous
// logits ties do not occur.
//
// It replaced one block a row that found each threshold by bisection, ~30 passes over the row
// each summing fp32 masses: 0.33-0.54 ms for a top-p or top-k row of fp32 logits at 128K vocab,
// against 33-51 µs now at batch 1-8 (run 35, H200, dsinfer-sampling-bench; docs/benchmarks.md,
// "GPU sampling").
//
// Knobs are per row (read from a device array), so one launch serves a batch whose requests
// sample differently; a row with temperature 0 takes the greedy branch (each block's argmax of
// its slice, merged by rank 0: LaunchArgmax's semantics). A branch is uniform over a cluster
// (one row each), so the cluster barriers behind it stay legal.
#include <cooperative_groups.h>

#include <cstdint>
#include <cstring>
#include <cub/block/block_scan.cuh>

#include "kernels/cuda/cluster_launch.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_info.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

namespace cg = cooperative_groups;
using cuda::Num;
using cuda::WarpInclusiveSum;
using Mass = unsigned long long;

constexpr int kSampleThreads = 1024;
constexpr int kWarps = kSampleThreads / 32;
constexpr int kMaxSampleBlocks = 8;  // a row's cluster at most (the portable size)
constexpr int kDigitBits = 10;
constexpr int kBins = 1 << kDigitBits;
constexpr int kDigits = 3;  // 30-bit keys: p <= 1.0f = 0x3f800000 < 2^30
static_assert(kBins == kSampleThreads, "a thread per histogram bin");
// Probabilities a block holds in shared memory (128 KB): rows up to 262144 tokens on 8 blocks.
constexpr int64_t kSliceCap = 32768;
constexpr float kLog2eF = 1.4426950408889634f;
// Fixed-point scale of a probability: p <= 1 and vocab <= 2^24 keep every sum under 2^63; a
// token's rounding is at most 2^-40, so a sum over 128K tokens is within 1.2e-7 of exact.
constexpr float kFixedOne = 549755813888.0f;  // 2^39

__device__ __forceinline__ Mass FixedMass(float p) { return __float2ull_rn(p * kFixedOne); }

// *m += v in shared memory as two 32-bit atomics, the low word's carry added to the high word
// with its own (the sum is exact once the block has synced; a 64-bit shared-memory atomic add
// compiles to a compare-and-swap loop).
__device__ __forceinline__ void AtomicAddMass(Mass* m, Mass v) {
  uint32_t* word = reinterpret_cast<uint32_t*>(m);
  const uint32_t lo = static_cast<uint32_t>(v), hi = static_cast<uint32_t>(v >> 32);
  const uint32_t old = atomicAdd(&word[0], lo);
  const uint32_t high = hi + (old + lo < old ? 1u : 0u);
  if (high != 0) atomicAdd(&word[1], high);
}

// Tokens and fixed-point mass per digit value, in one block.
struct Histogram {
  uint32_t count[kBins];
  Mass mass[kBins];
};
// The histograms of a sampled row, each written once (so no block rewrites one a peer may
// still read): the first digit's, then top-k's and top-p's second and third.
enum { kFirst, kTopK2, kTopK3, kTopP2, kTopP3, kHistograms };
constexpr int64_t kHistogramBytes = kHistograms * sizeof(Histogram);

using MassScan = cub::BlockScan<Mass, kSampleThreads>;

struct SampleShared {
  MassScan::TempStorage scan;
  float warp_max[kWarps];             // each warp's largest logit
  float block_max;                    // ... and this block's
  float arg_value[kMaxSampleBlocks];  // greedy rows: each block's argmax (rank 0's copy)
  int32_t arg_index[kMaxSampleBlocks];
  Mass warp_mass[kWarps];  // kept mass of each warp's run of the slice
  Mass block_mass;         // ... and of the slice
  // A descent step's merge of the cluster's histograms: of nb blocks, block r sums bins
  // [r · 1024 / nb, (r + 1) · 1024 / nb) over the ranks into its merged[...] (its first 1024 /
  // nb bins), then every block reads the merged bins from their owners. Steps alternate between
  // the two (a step rewrites the one its predecessor's predecessor used; every peer has read
  // that one before the cluster barrier in between).
  Histogram merged[2];
  Mass above_count, above_mass, bin_mass, total_mass;  // a descent step's outcome
  int bin, draw_warp;
  Mass draw_rest;
};

// A block's part of its row, tokens [0, len): their probabilities p = 2^((x - mx) · c), held
// in shared memory (cache) or computed at every pass from the logits x in global memory.
template <typename T, bool kCached>
struct Slice {
  const T* x;
  const float* cache;
  int len;
  float mx, c;
  __device__ __forceinline__ float Prob(int i) const {
    if constexpr (kCached) {
      return cache[i];
    } else {
      return exp2f((Num<T>::ToF(x[i]) - mx) * c);
    }
  }
};

// Counts the slice's tokens whose key has the digits `prefix` above digit `digit` (0 = the
// highest), per value of that digit, into h. Ends with no barrier: the caller's cluster barrier
// publishes h.
template <typename T, bool kCached>
__device__ void CountDigit(const Slice<T, kCached>& s, int digit, uint32_t prefix, Histogram& h) {
  h.count[threadIdx.x] = 0;
  h.mass[threadIdx.x] = 0;
  __syncthreads();
  const int shift = kDigitBits * (kDigits - 1 - digit);
  for (int i = threadIdx.x; i < s.len; i += kSampleThreads) {
    const float p = s.Prob(i);
    if (!(p >= 0.0f)) continue;  // NaN: never counted, never kept
    const uint32_t key = __float_as_uint(p);
    if (digit > 0 && (key >> (shift + kDigitBits)) != prefix) continue;
    const int d = static_cast<int>((key >> shift) & (kBins - 1));
    atomicAdd(&h.count[d], 1u);
    AtomicAddMass(&h.mass[d], FixedMass(p));
  }
}

// One step of a descent from the largest keys over the cluster's histograms of one digit (each
// block's at the same address): the digit value at which the tokens at or above it first reach
// `want` (a count, or a fixed-point mass when by_mass; when fraction >= 0, want is set first to
// that fraction of the histograms' whole mass, at least 1). Every block finds the same one. The
// outcome lands in sh (bin -1: the row holds less than want). step: the caller's count of steps
// (which merged-bins buffer this one uses).
__device__ void DescendDigit(cg::cluster_group& cluster, int rank, const Histogram& h, Mass& want,
                             double fraction, bool by_mass, int& step, SampleShared& sh) {
  Histogram& merged = sh.merged[step++ & 1];
  const int nb = static_cast<int>(cluster.num_blocks()), per_rank = kBins / nb;
  {  // This block's share of the merge: nb lanes a bin, one rank each.
    const int peer = threadIdx.x & (nb - 1);
    const int b = static_cast<int>(threadIdx.x) / nb;
    const Histogram* ph = cluster.map_shared_rank(&h, peer);
    uint32_t count = ph->count[rank * per_rank + b];
    Mass mass = ph->mass[rank * per_rank + b];
    for (int o = 1; o < nb; o <<= 1) {
      count += __shfl_xor_sync(0xffffffffu, count, o);
      mass += __shfl_xor_sync(0xffffffffu, mass, o);
    }
    if (peer == 0) {
      merged.count[b] = count;
      merged.mass[b] = mass;
    }
  }
  if (threadIdx.x == 0) sh.bin = -1;
  cluster.sync();
  const int bin = kBins - 1 - static_cast<int>(threadIdx.x);  // thread t: the t-th largest value
  const Histogram* owner = cluster.map_shared_rank(&merged, bin / per_rank);
  const Mass count = owner->count[bin % per_rank], mass = owner->mass[bin % per_rank];
  Mass count_incl, mass_incl;
  MassScan(sh.scan).InclusiveSum(count, count_incl);
  __syncthreads();  // the scan's storage, reused
  MassScan(sh.scan).InclusiveSum(mass, mass_incl);
  if (threadIdx.x == kSampleThreads - 1) sh.total_mass = mass_incl;
  __syncthreads();
  if (fraction >= 0.0) {
    want = max(static_cast<Mass>(1),
               static_cast<Mass>(ceil(fraction * static_cast<double>(sh.total_mass))));
  }
  const Mass incl = by_mass ? mass_incl : count_incl, own = by_mass ? mass : count;
  if (incl >= want && incl - own < want) {
    sh.bin = bin;
    sh.above_count = count_incl - count;
    sh.above_mass = mass_incl - mass;
    sh.bin_mass = mass;
  }
  __syncthreads();
}

// A finished descent: the key found (found false: the row holds less than asked), the mass of
// the tokens at or above it, and each digit's value and histogram (for a descent that follows).
struct Descent {
  bool found = false;
  uint32_t key = 0;
  Mass mass = 0, total_mass = 0;
  int bins[kDigits] = {};
  Histogram* hist[kDigits] = {};
};

// The largest key whose tokens at or above it reach `want` (or `fraction` of the row's mass: see
// DescendDigit). first: the first digit's histogram, built by the caller; later digits are
// counted into own0, own1, or taken from `reuse` (a descent over the same slices) while this
// one's digits equal its.
template <typename T, bool kCached>
__device__ Descent Descend(cg::cluster_group& cluster, int rank, const Slice<T, kCached>& s,
                           Mass want, double fraction, bool by_mass, Histogram* first,
                           Histogram* own0, Histogram* own1, const Descent* reuse, int& step,
                           SampleShared& sh) {
  Descent d;
  Histogram* own[kDigits] = {first, own0, own1};
  bool same = reuse != nullptr && reuse->found;
  uint32_t prefix = 0;
  Mass above = 0;
  for (int digit = 0; digit < kDigits; ++digit) {
    Histogram* h = own[digit];
    if (digit > 0) {
      if (same) {
        h = reuse->hist[digit];
      } else {
        CountDigit(s, digit, prefix, *h);
        cluster.sync();
      }
    }
    DescendDigit(cluster, rank, *h, want, digit == 0 ? fraction : -1.0, by_mass, step, sh);
    const int bin = sh.bin;
    const Mass above_count = sh.above_count, above_mass = sh.above_mass;
    const Mass bin_mass = sh.bin_mass, total_mass = sh.total_mass;
    __syncthreads();  // sh is rewritten by the next step
    if (digit == 0) d.total_mass = total_mass;
    if (bin < 0) return d;
    d.bins[digit] = bin;
    d.hist[digit] = h;
    same = same && reuse->bins[digit] == bin;
    want -= by_mass ? above_mass : above_count;
    above += above_mass;
    prefix = (prefix << kDigitBits) | static_cast<uint32_t>(bin);
    if (digit == kDigits - 1) d.mass = above + bin_mass;
  }
  d.found = true;
  d.key = prefix;
  return d;
}

// Greedy row: each block's argmax of its slice goes to rank 0, which merges them (larger value,
// then lower rank: the lowest id on ties; NaN never wins; 0 when every logit is NaN).
template <typename T>
__device__ void GreedyRow(cg::cluster_group& cluster, const T* row, int lo, int len, int rank,
                          int32_t* id_out, float* chosen_out, SampleShared& sh) {
  const int32_t local = len > 0 ? cuda::BlockArgmax(row + lo, len) : 0;
  if (threadIdx.x == 0) {
    const float v = len > 0 ? Num<T>::ToF(row[lo + local]) : NAN;
    *cluster.map_shared_rank(&sh.arg_value[rank], 0) = v;
    *cluster.map_shared_rank(&sh.arg_index[rank], 0) = lo + local;
  }
  cluster.sync();
  if (rank != 0 || threadIdx.x != 0) return;
  float best = NAN;
  int32_t best_id = 0;
  for (int r = 0; r < static_cast<int>(cluster.num_blocks()); ++r) {
    const float v = sh.arg_value[r];
    if (v == v && (best != best || v > best)) {
      best = v;
      best_id = sh.arg_index[r];
    }
  }
  *id_out = best_id;
  if (chosen_out != nullptr) *chosen_out = Num<T>::ToF(row[best_id]);
}

template <typename T, bool kCached>
__global__ void __launch_bounds__(kSampleThreads)
    SampleKernel(const T* logits, int64_t vocab, int64_t stride, const SampleKnobs* knobs,
                 const float* uniforms, int32_t* ids, float* chosen_logits, float* thresholds) {
  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  __shared__ SampleShared sh;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int nb = static_cast<int>(cluster.num_blocks());
  const int64_t row = blockIdx.x / nb;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const T* x = logits + row * stride;
  const int per = static_cast<int>((vocab + nb - 1) / nb);
  const int lo = static_cast<int>(min(vocab, static_cast<int64_t>(rank) * per));
  const int len = static_cast<int>(min(vocab, static_cast<int64_t>(lo) + per)) - lo;
  const SampleKnobs k = knobs[row];
  if (k.temperature == 0.0f) {
    GreedyRow(cluster, x, lo, len, rank, ids + row,
              chosen_logits != nullptr ? chosen_logits + row : nullptr, sh);
    return;
  }
  auto* hist = reinterpret_cast<Histogram*>(dynamic_smem);
  auto* cache = reinterpret_cast<float*>(dynamic_smem + kHistogramBytes);

  // The row's max (the slice staged in shared memory on the way).
  float mx = -INFINITY;
  for (int i = tid; i < len; i += kSampleThreads) {
    const float v = Num<T>::ToF(x[lo + i]);
    if constexpr (kCached) cache[i] = v;
    mx = fmaxf(mx, v);
  }
  mx = cuda::WarpMax(mx);
  if (lane == 0) sh.warp_max[warp] = mx;
  __syncthreads();
  if (tid == 0) {
    float m = -INFINITY;
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, sh.warp_max[w]);
    sh.block_max = m;
  }
  cluster.sync();
  mx = -INFINITY;
  for (int r = 0; r < nb; ++r) {
    mx = fmaxf(mx, *cluster.map_shared_rank(&sh.block_max, r));
  }
  const float c = kLog2eF / k.temperature;
  if constexpr (kCached) {  // the slice's logits become its probabilities
    for (int i = tid; i < len; i += kSampleThreads) cache[i] = exp2f((cache[i] - mx) * c);
    __syncthreads();
  }
  const Slice<T, kCached> s{x + lo, cache, len, mx, c};

  float theta = 0.0f;
  const bool use_top_k = k.top_k > 0 && k.top_k < vocab, use_top_p = k.top_p < 1.0f;
  if (use_top_k || use_top_p) {
    CountDigit(s, 0, 0, hist[kFirst]);
    cluster.sync();
    int step = 0;
    Descent dk;
    if (use_top_k) {
      dk = Descend(cluster, rank, s, static_cast<Mass>(k.top_k), -1.0, false, &hist[kFirst],
                   &hist[kTopK2], &hist[kTopK3], nullptr, step, sh);
      if (dk.found) theta = __uint_as_float(dk.key);
    }
    if (use_top_p) {
      // Of top-k's set's mass (fewer finite tokens than k: all kept) or of the whole row's.
      const Mass base = dk.found ? dk.mass : dk.total_mass;
      const Mass want =
          max(static_cast<Mass>(1),
              static_cast<Mass>(ceil(static_cast<double>(k.top_p) * static_cast<double>(base))));
      const Descent dp =
          Descend(cluster, rank, s, want, use_top_k ? -1.0 : static_cast<double>(k.top_p), true,
                  &hist[kFirst], &hist[kTopP2], &hist[kTopP3], use_top_k ? &dk : nullptr, step, sh);
      if (dp.found) theta = __uint_as_float(dp.key);
    }
  }
  if (k.min_p > 0.0f) theta = fmaxf(theta, k.min_p);  // min_p · p_max, p_max = 1
  if (thresholds != nullptr && rank == 0 && tid == 0) thresholds[row] = theta;

  // Inverse CDF in id order: warp w of a block owns the run [w · run, (w + 1) · run) of its
  // slice, read lane by lane (coalesced); ranks, then warps, then 32-token steps in id order.
  const int run = ((len + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int run_lo = min(len, warp * run), run_hi = min(len, run_lo + run);
  auto kept_mass = [&](int i) {
    const float p = s.Prob(i);
    return p >= theta ? FixedMass(p) : 0ull;
  };
  Mass mine = 0;
  for (int i = run_lo + lane; i < run_hi; i += 32) mine += kept_mass(i);
  mine = cuda::WarpSum(mine);
  if (lane == 0) sh.warp_mass[warp] = mine;
  __syncthreads();
  if (tid == 0) {
    Mass sum = 0;
    for (int w = 0; w < kWarps; ++w) sum += sh.warp_mass[w];
    sh.block_mass = sum;
  }
  cluster.sync();
  Mass total = 0, before = 0;
  for (int r = 0; r < nb; ++r) {
    const Mass m = *cluster.map_shared_rank(&sh.block_mass, r);
    total += m;
    if (r < rank) before += m;
  }
  cluster.sync();    // no block leaves while a peer may still read its shared memory
  if (total == 0) {  // no finite probability (non-finite logits): no token, as the engine checks
    if (rank == 0 && tid == 0) {
      ids[row] = -1;
      if (chosen_logits != nullptr) chosen_logits[row] = NAN;
    }
    return;
  }
  const double u = uniforms[row];
  const Mass target = min(static_cast<Mass>(u * static_cast<double>(total)), total - 1);
  if (target < before || target - before >= sh.block_mass) return;  // another block's token
  if (tid == 0) {
    Mass rest = target - before;
    int w = 0;
    while (rest >= sh.warp_mass[w]) rest -= sh.warp_mass[w++];
    sh.draw_warp = w;
    sh.draw_rest = rest;
  }
  __syncthreads();
  if (warp != sh.draw_warp) return;
  Mass rest = sh.draw_rest;
  for (int base = run_lo; base < run_hi; base += 32) {
    const int i = base + lane;
    const Mass m = i < run_hi ? kept_mass(i) : 0ull;
    const Mass incl = WarpInclusiveSum(m, lane);
    const Mass step = __shfl_sync(0xffffffffu, incl, 31);
    if (rest >= step) {
      rest -= step;
      continue;
    }
    if (incl > rest && incl - m <= rest) {  // the one lane whose interval holds the target
      ids[row] = lo + i;
      if (chosen_logits != nullptr) chosen_logits[row] = Num<T>::ToF(x[lo + i]);
    }
    return;
  }
}

// Blocks a row's cluster takes: 8, halved while the launch's blocks would not fit on the SMs at
// once (one block an SM: a block holds the SM's 64K registers), so that a batch runs in one wave
// (run 35: at 32 rows a top-p row of 128K tokens took 96 µs on 8-block clusters, two waves, and
// 80 on 4-block ones).
int SampleClusterBlocks(int64_t rows, int sms) {
  int nb = kMaxSampleBlocks;
  while (nb > 1 && rows * nb > sms) nb /= 2;
  return nb;
}

template <typename T>
absl::Status LaunchSampleRows(const T* logits, int64_t rows, int64_t vocab, int64_t stride,
                              const SampleKnobs* knobs, const float* uniforms, int32_t* ids,
                              float* chosen_logits, float* thresholds, cudaStream_t stream) {
  ASSIGN_OR_RETURN(const cuda::LaunchInfo device, cuda::CachedLaunchInfo(nullptr, 0, 0));
  int nb = SampleClusterBlocks(rows, device.sms);
  void (*kernel)(const T*, int64_t, int64_t, const SampleKnobs*, const float*, int32_t*, float*,
                 float*) = nullptr;
  int64_t smem = 0;
  for (;;) {  // halved further where the device cannot hold such a cluster (a partitioned GPU)
    const int64_t per = (vocab + nb - 1) / nb;
    const bool cached = per <= kSliceCap;
    kernel = cached ? SampleKernel<T, true> : SampleKernel<T, false>;
    smem = kHistogramBytes + (cached ? per * static_cast<int64_t>(sizeof(float)) : 0);
    ASSIGN_OR_RETURN(const int fits,
                     cuda::MaxClusterBlocks(reinterpret_cast<const void*>(kernel), kSampleThreads,
                                            static_cast<size_t>(smem), nb));
    if (fits >= nb || nb == 1) break;
    while (nb > fits) nb /= 2;
  }
  // (MaxClusterBlocks raises the shared-memory limit only when it queries, once a key; the
  // launch raises it again for this row length.)
  return cuda::LaunchClusters(kernel, dim3(static_cast<unsigned>(rows * nb)), nb, kSampleThreads,
                              smem, /*dependent=*/false, stream, logits, vocab, stride, knobs,
                              uniforms, ids, chosen_logits, thresholds);
}

}  // namespace

absl::Status LaunchSample(DType dtype, const void* logits, int64_t rows, int64_t vocab,
                          int64_t stride, const SampleKnobs* knobs, const float* uniforms,
                          int32_t* ids, float* chosen_logits, cudaStream_t stream,
                          float* thresholds) {
  if (rows == 0) return absl::OkStatus();
  if (rows < 0 || vocab <= 0 || stride < vocab) {
    return absl::InvalidArgumentError("LaunchSample: bad shape");
  }
  if (logits == nullptr || knobs == nullptr || uniforms == nullptr || ids == nullptr) {
    return absl::InvalidArgumentError("LaunchSample: null pointer");
  }
  // Fixed-point masses: vocab · 2^39 must stay under 2^64.
  if (vocab > (1 << 24)) return absl::InvalidArgumentError("LaunchSample: vocab over 2^24");
  if (rows > (int64_t{1} << 27)) return absl::InvalidArgumentError("LaunchSample: rows over 2^27");
  switch (dtype) {
    case DType::kF32:
      return LaunchSampleRows(static_cast<const float*>(logits), rows, vocab, stride, knobs,
                              uniforms, ids, chosen_logits, thresholds, stream);
    case DType::kBF16:
      return LaunchSampleRows(static_cast<const __nv_bfloat16*>(logits), rows, vocab, stride, knobs,
                              uniforms, ids, chosen_logits, thresholds, stream);
    case DType::kF16:
      return LaunchSampleRows(static_cast<const __half*>(logits), rows, vocab, stride, knobs,
                              uniforms, ids, chosen_logits, thresholds, stream);
    default:
      return absl::InvalidArgumentError("LaunchSample: unsupported dtype " +
                                        std::string(DTypeName(dtype)));
  }
}

}  // namespace dsinfer
