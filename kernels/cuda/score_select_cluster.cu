// Fused label scoring and top-k (LaunchScoreSelectCluster, declared in double_sparsity.cuh):
// the chain's LaunchLabelScores + LaunchTopKSelect as one kernel, so the scores never reach
// memory. A thread-block cluster per (sequence, KV head); each block scores a slice of the
// candidates from the label cache (the paged layout keeps one head's rows contiguous,
// LabelRow) straight into shared memory as the top-k's 16-bit order-preserving keys
// (OrderKey16), counting their high bytes as it goes, then the cluster selects from shared
// memory (ClusterSelect, as the cluster top-k). Run 28 (H200): 16-bit keys and the two-pass
// select took the kernel from 26.7 to 23.6 us (Llama-2 heads batch 8, 4K, 1/16 fp16 r 8), 44.4
// to 38.0 (1/8 fp16 r 16), 12.4 to 12.0 (Llama-3 heads batch 8, 4K), even at 2K rows.
//
// Exactness: each score is ScoreLabelRow, the fixed-row scorers' arithmetic in the twin's order,
// with the query channels staged as StageQueryChannels stages them, so the keys are those of
// LaunchLabelScores' scores bit for bit, and the selection is LaunchTopKSelect's (and
// TopKSelectReference's): identical sets, ties included.
#include <algorithm>
#include <cooperative_groups.h>
#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda/cluster_select.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/label_dot.cuh"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/topk_common.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::CachedLaunchInfo;
using cuda::ClearClusterHistograms;
using cuda::CountFirstDigit;
using cuda::ClusterSelect;
using cuda::ClusterSelectShared;
using cuda::ClusterSlice;
using cuda::ClusterSliceBytes;
using cuda::ClusterSliceOf;
using cuda::HeadQueryChannels;
using cuda::LaunchInfo;
using cuda::OrderKey16;
using cuda::ScoreBits;
using cuda::ScoreHeadsOf;
using cuda::ScoreLabelRow;
using cuda::ScoreQueryChannel;
using cuda::StagedChannelSum;
using cuda::StartTopKSegment;
using cuda::TopKSegment;
using cuda::VecOf;

constexpr int kFusedThreads = 512;
constexpr int kFusedClusterMax = 16;  // non-portable past 8 (MaxClusterBlocks)
constexpr int kFusedMaxGroup = 16;    // query (so score) heads per KV head: the staging's room
// Candidates per block below which a smaller cluster is used: a block's fixed cost (staging,
// the cluster barriers, the merges) is a few microseconds, so short rows take fewer blocks.
constexpr int64_t kFusedMinSlice = 2048;
// Keys a block aims to hold: 32 KB, two blocks an SM.
constexpr int64_t kFusedTargetSlice = 16384;
// ScoreSelectClusterPays: the fused kernel where a launch's (sequence, KV head) rows hold at most
// this many tokens in all. Run 14 (H200, docs/benchmarks.md): up to there it saves the scores'
// round trip and a launch (Llama-2 heads batch 1, 4K: the chain 21.7-23.6 us against 26.1-29.8;
// Llama-3 heads batch 1, 16K: 22.2-29.3 against 28.9-33.4); past it each block's select (three
// cluster barriers, the first digit's shared-memory atomics over every key) costs more than the
// second read it saves (Llama-2 heads batch 8, 256K, 1/16: 830 us against 485). And rows of
// at most kFusedPaysTokens: past them the two launches' top-k is the resident kernel, which
// beat the fused kernel at 10 of 12 shapes (run 20, Llama-3 heads batch 1: 16K 1/16 fp16 r 8
// the chain 19.1 us against 21.1, 4-bit r 32 21.8 against 24.6; 32K 1/8 fp16 r 16 28.0
// against 37.0; 32K 4-bit r 8 the one loss, 26.5 against 25.1).
constexpr int64_t kFusedPaysRows = int64_t{1} << 18;
constexpr int64_t kFusedPaysTokens = 8192;

// Label rows a thread loads per batch; two batches are in flight (the next loads while one is
// scored): 8 × 16 B a thread at 16-byte rows, fewer for 32-byte rows (registers).
template <int kRowBytes>
constexpr int FusedRowsInFlight() {
  return kRowBytes >= 32 ? 2 : 4;
}
// Grid (cluster size, heads_kv, sequences), clusters along x. Keys in dynamic shared memory: a
// block's slice of its segment's candidates. kG > 0: the score heads a compile-time constant
// (the query channels in registers where few); kG 0: the score heads at run time.
template <typename T, int kBits, int kR, int kG>
__global__ void __launch_bounds__(kFusedThreads)
    ScoreSelectClusterKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs,
                             const CudaLabelSeq* labels, int heads_q, int heads_kv, int head_dim,
                             int32_t* selected, int64_t sel_stride, int32_t* counts) {
  namespace cg = cooperative_groups;
  constexpr int kRowBytes = kBits == 16 ? 2 * kR : kR / 2;
  constexpr int kChunkBytes = kRowBytes >= 16 ? 16 : kRowBytes >= 8 ? 8 : 4;
  using Chunk = typename VecOf<kChunkBytes>::T;
  constexpr int kChunks = kRowBytes / kChunkBytes;
  constexpr int kInFlight = FusedRowsInFlight<kRowBytes>();
  extern __shared__ uint4 keys4[];  // this block's candidates' keys (OrderKey16), slice order
  uint16_t* keys = reinterpret_cast<uint16_t*>(keys4);
  __shared__ ClusterSelectShared<kFusedThreads> sh;
  // The score heads' query channels in QChannel's layout for one head: [j][g], j = kR the sums.
  __shared__ float qch[(kR + 1) * kFusedMaxGroup];
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int nb = static_cast<int>(cluster.num_blocks());
  const int gtid = rank * kFusedThreads + static_cast<int>(threadIdx.x);
  const int h = blockIdx.y, s = blockIdx.z;
  // Uniform over the cluster and touching no other block's shared memory: blocks may return
  // here without a barrier. No scores: the segment's `sc` is unused.
  const TopKSegment seg = StartTopKSegment(nullptr, 0, seqs, heads_kv, selected, sel_stride,
                                           counts, s, h, gtid, nb * kFusedThreads, gtid == 0);
  if (seg.want == 0) return;
  const ClusterSlice slice = ClusterSliceOf(seg, rank, nb);
  const CudaDsSequence& seq = seqs[s];
  const CudaLabelSeq lab = labels[s];
  const int group = heads_q / heads_kv;
  const bool max_agg = seq.aggregation == 1;
  const int heads = ScoreHeadsOf(group, max_agg);
  const T* qrow = q + static_cast<int64_t>(seq.q_row) * q_stride;
  for (int i = threadIdx.x; i < heads * kR; i += kFusedThreads) {
    const int g = i % heads, j = i / heads;
    qch[i] = ScoreQueryChannel(qrow, head_dim, group, max_agg, h, g, lab.channels[h * kR + j]);
  }
  if constexpr (kBits == 4) {
    __syncthreads();  // the channels are staged
    for (int g = threadIdx.x; g < heads; g += kFusedThreads) {
      qch[kR * heads + g] = StagedChannelSum(qch + g, kR, heads);
    }
  }
  ClearClusterHistograms(sh);  // ends with a barrier: qch is staged
  // (One score head's channels stay in shared memory here: in registers, as the fixed-row
  // scorer holds them, 4-bit r 32 ran 25-42% slower in this kernel: run 24 call 10.)
  const HeadQueryChannels<kG, kR, kBits == 4, false> qc(qch, 0, 1, heads);
  const uint8_t* data = static_cast<const uint8_t*>(lab.data);
  // Thread i of the block takes candidates i, i + kFusedThreads, ...: consecutive threads on
  // consecutive tokens of the head (contiguous rows, LabelRow). kFusedThreads tokens are whole
  // pages, so the row kFusedThreads candidates on is a fixed step away.
  static_assert(kFusedThreads % kLabelPageTokens == 0, "a thread's rows a fixed step apart");
  const int64_t row_step = static_cast<int64_t>(kFusedThreads / kLabelPageTokens) * heads_kv *
                           kLabelPageTokens;
  const int64_t row0 = LabelRow(slice.lo + static_cast<int>(threadIdx.x), h, heads_kv);
  constexpr int kBatch = kFusedThreads * kInFlight;  // candidates a batch
  using Rows = Chunk[kInFlight][kChunks];
  using ScaleMins = uint32_t[kInFlight];  // 4-bit rows: fp16 scale | fp16 minimum << 16
  // Loads the batch at candidate `base` (a multiple of kBatch) into raw / sm.
  auto load = [&](Rows& raw, ScaleMins& sm, int base) {
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int i = base + u * kFusedThreads + static_cast<int>(threadIdx.x);
      if (i < slice.len) {
        const int64_t row = row0 + (base / kFusedThreads + u) * row_step;
        const Chunk* p = reinterpret_cast<const Chunk*>(data + row * kRowBytes);
#pragma unroll
        for (int c = 0; c < kChunks; ++c) raw[u][c] = p[c];
        if constexpr (kBits == 4) {
          sm[u] = lab.scales[row] | static_cast<uint32_t>(lab.minimums[row]) << 16;
        }
      }
    }
  };
  // Scores the batch at `base` into keys and the first digit's histogram (CountFirstDigit).
  auto score = [&](const Rows& raw, const ScaleMins& sm, int base) {
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int i = base + u * kFusedThreads + static_cast<int>(threadIdx.x);
      if (i < slice.len) {
        // The score as the two launches store it (fp16, score_format.cuh), so both select alike.
        const uint32_t k = OrderKey16(
            ScoreBits(ScoreLabelRow<kBits, kR, kG, false>(raw[u], sm[u], heads, max_agg, qc)));
        keys[i] = static_cast<uint16_t>(k);
        CountFirstDigit(sh, k);
      }
    }
  };
  // Two register sets: the next batch's loads are in flight while this one is scored.
  Rows raw_a, raw_b;
  ScaleMins sm_a = {}, sm_b = {};
  if (slice.len > 0) load(raw_a, sm_a, 0);
  for (int base = 0; base < slice.len; base += 2 * kBatch) {
    if (base + kBatch < slice.len) load(raw_b, sm_b, base + kBatch);
    score(raw_a, sm_a, base);
    if (base + kBatch >= slice.len) break;
    if (base + 2 * kBatch < slice.len) load(raw_a, sm_a, base + 2 * kBatch);
    score(raw_b, sm_b, base + kBatch);
  }
  // No barrier here: the select's first cluster barrier completes the keys and the first digit.
  ClusterSelect<kFusedThreads>(cluster, keys4, slice.len, slice.lo, seg.want, seg.mid, sh);
}

template <typename T>
using FusedKernel = void (*)(const T*, int64_t, const CudaDsSequence*, const CudaLabelSeq*, int,
                             int, int, int32_t*, int64_t, int32_t*);

// ScoreSelectClusterKernel as a kernel family of FixedLabelKernel (its shapes and group rule).
template <typename T>
struct FusedKernels {
  template <int kBits, int kR, int kG>
  static FusedKernel<T> Of() {
    return ScoreSelectClusterKernel<T, kBits, kR, kG>;
  }
};

// Blocks per cluster for `pairs` rows of up to max_tokens tokens on `sms` SMs: slices of about
// kFusedTargetSlice keys (two blocks fit an SM's shared memory, so one block's select overlaps
// the other's scoring), more blocks where the pairs would not give two blocks per SM (never a
// slice under kFusedMinSlice), at least `min_blocks` (shared memory), at most `max_blocks`.
int FusedClusterBlocks(int64_t max_tokens, int64_t pairs, int sms, int64_t min_blocks,
                       int max_blocks) {
  const int64_t for_slices = (max_tokens + kFusedTargetSlice - 1) / kFusedTargetSlice;
  const int64_t for_sms = (2 * static_cast<int64_t>(sms) + pairs - 1) / pairs;
  const int64_t most = std::max<int64_t>(1, (max_tokens + kFusedMinSlice - 1) / kFusedMinSlice);
  return static_cast<int>(std::clamp<int64_t>(
      std::max({for_slices, std::min(for_sms, most), min_blocks}), 1, max_blocks));
}

template <typename T>
absl::StatusOr<bool> LaunchFused(int label_bits, int score_heads, int r, const T* q,
                                 int64_t q_stride, const CudaDsSequence* seqs, int num_seqs,
                                 const CudaLabelSeq* labels, int heads_q, int heads_kv,
                                 int head_dim, int64_t max_tokens, int32_t* selected,
                                 int64_t sel_stride, int32_t* counts, cudaStream_t stream) {
  const FusedKernel<T> kernel =
      cuda::FixedLabelKernel<FusedKernels<T>>(label_bits, r, score_heads);
  if (kernel == nullptr) return false;
  ASSIGN_OR_RETURN(const LaunchInfo info,
                   CachedLaunchInfo(reinterpret_cast<const void*>(kernel), 0, 0));
  // Keys a block's shared memory holds (less 32 bytes: a slice rounds up to 4 keys, its bytes
  // to whole vectors: ClusterSliceBytes).
  const int64_t room = (static_cast<int64_t>(info.smem_optin) -
                        static_cast<int64_t>(info.static_smem) - 32) / 2;
  if (room <= 0) return false;
  // The cluster sizes the hardware takes at the largest slice that fits.
  ASSIGN_OR_RETURN(const int max_blocks,
                   cuda::MaxClusterBlocks(reinterpret_cast<const void*>(kernel), kFusedThreads,
                                          static_cast<size_t>(ClusterSliceBytes(room)),
                                          kFusedClusterMax));
  const int nb = FusedClusterBlocks(max_tokens, static_cast<int64_t>(num_seqs) * heads_kv,
                                    info.sms, (max_tokens + room - 1) / room, max_blocks);
  // candidates <= max_tokens.
  const int64_t smem = ClusterSliceBytes(cuda::ClusterSliceKeys(max_tokens, nb));
  if (smem + static_cast<int64_t>(info.static_smem) > info.smem_optin) return false;
  RETURN_IF_ERROR(cuda::LaunchSegmentClusters(kernel, nb, heads_kv, num_seqs, kFusedThreads, smem,
                                              stream, q, q_stride, seqs, labels, heads_q,
                                              heads_kv, head_dim, selected, sel_stride, counts));
  return true;
}

}  // namespace

bool ScoreSelectClusterPays(int64_t max_tokens, int64_t pairs) {
  return max_tokens <= kFusedPaysTokens && pairs * max_tokens <= kFusedPaysRows;
}

absl::StatusOr<bool> LaunchScoreSelectCluster(DType dtype, const void* q, int64_t q_stride,
                                              const CudaDsSequence* seqs, int num_seqs,
                                              const CudaLabelSeq* labels, int heads_q,
                                              int heads_kv, int head_dim, int max_r,
                                              int label_bits, int score_heads,
                                              int64_t max_tokens, int32_t* selected,
                                              int64_t sel_stride, int32_t* counts,
                                              cudaStream_t stream) {
  if (num_seqs == 0) return true;
  if (label_bits == 0 || heads_kv <= 0 || heads_q % heads_kv != 0 ||
      heads_q / heads_kv > kFusedMaxGroup || max_tokens <= 0 || max_tokens > INT32_MAX ||
      (score_heads != 0 && score_heads != 1 && score_heads != heads_q / heads_kv)) {
    return false;
  }
  switch (dtype) {
    case DType::kBF16:
      return LaunchFused(label_bits, score_heads, max_r, static_cast<const __nv_bfloat16*>(q),
                         q_stride, seqs, num_seqs, labels, heads_q, heads_kv, head_dim,
                         max_tokens, selected, sel_stride, counts, stream);
    case DType::kF16:
      return LaunchFused(label_bits, score_heads, max_r, static_cast<const __half*>(q),
                         q_stride, seqs, num_seqs, labels, heads_q, heads_kv, head_dim,
                         max_tokens, selected, sel_stride, counts, stream);
    default:
      return false;
  }
}

}  // namespace dsinfer
