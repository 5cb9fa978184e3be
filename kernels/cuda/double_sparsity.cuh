// The CUDA kernels of Double Sparsity at decode (DESIGN §1, issue 7), as host-callable
// launchers; this header holds declarations only, so g++-compiled code includes it too.
//
// The chain per layer and step: LaunchWriteLabels (the new rows' label channels, fp16 or 4-bit
// with per-(token, KV head) fp16 scale and minimum) → LaunchLabelScores (the query's label
// channels dotted with every cached label row, GQA group aggregated by sum or max in fp32, one
// score per (sequence, KV head, token) stored as fp16 bits, score_format.cuh) →
// LaunchTopKSelect (radix select of the budget's best candidates per (sequence, KV head), kept
// sink/recent/current tokens merged in, ascending indices) → LaunchSparseAttention (exact
// attention over the selected rows, split over the selected set, one pass over each K/V row for
// all query heads of its group, gathered by index through a pointer that may address device
// memory or mapped pinned host memory; by default on dense decode's pipelined tensor-core body,
// SparseAttentionAlgo).
//
// Exactness: the label writer rounds exactly as kernels/label_reference does; the scorer
// rounds in the reference's order with explicit intrinsics (fp16 labels: an __fmaf_rn chain
// over the channels; 4-bit labels: scale and minimum folded out as the twin does, an
// __fmaf_rn chain over the codes and fma(scale, Σ q·c, minimum · Σ q) per row and query head),
// so its scores equal LabelScores*Reference's bit for bit; the selection is TopKSelectReference's
// total order (score descending, index ascending, NaN as -inf), so the selected sets are
// identical, ties included. Attention matches SelectedAttentionReference within the dtype's
// rounding.
//
// Every launcher takes non-owning device views and a stream, allocates nothing, dispatches the
// runtime dtype / head_dim in one switch whose default returns INVALID_ARGUMENT, and checks the
// launch. On failure nothing was launched; a launched kernel that faults leaves its outputs
// unspecified.
#ifndef DSINFER_KERNELS_CUDA_DOUBLE_SPARSITY_CUH_
#define DSINFER_KERNELS_CUDA_DOUBLE_SPARSITY_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/label_layout.h"

namespace dsinfer {

// One sequence's label storage for one layer, as the kernels see it (all device pointers).
// Sequences of one batch may differ in r and bits (per-request options). Rows are numbered by
// LabelRow over a capacity of whole pages (LabelCapacity).
//   bits 16: data = [capacity × kv_heads rows][r] fp16 bits.
//   bits 4:  data = [capacity × kv_heads rows][ceil(r/2)] bytes (channel 2j low nibble), scales
//            and minimums = [capacity × kv_heads rows] fp16 bits.
struct CudaLabelSeq {
  void* data = nullptr;
  uint16_t* scales = nullptr;
  uint16_t* minimums = nullptr;
  const int32_t* channels = nullptr;  // [kv_heads, r] channel indices (< head_dim)
  int32_t r = 0;
  int32_t bits = 16;
};

// Per sparse sequence of the step (device array [num_seqs]).
struct CudaDsSequence {
  int32_t tokens = 0;  // context incl. the current token (its position + 1)
  int32_t budget = 0;  // k >= 1: rows read per KV head (hard bound)
  int32_t sink = 0;
  int32_t recent = 0;
  int32_t q_row = 0;        // row of q / out holding the sequence's decode query
  int32_t kv_seq = 0;       // index of its block table in CudaPagedKv::block_tables
  int32_t aggregation = 0;  // 0 = sum, 1 = max (ScoreAggregation order)
  int32_t pad = 0;
};

// Writes label rows of `rows` new K rows: row i (k at k + i * k_stride, [kv_heads, head_dim],
// dtype) goes to labels[row_label[i]] at token positions[i]; row_label[i] < 0 skips it.
// Twins: WriteLabelsF16Reference / WriteLabels4BitReference (bit-identical). r <= 256.
absl::Status LaunchWriteLabels(DType dtype, const void* k, int64_t k_stride, int64_t rows,
                               const int32_t* positions, const int32_t* row_label,
                               const CudaLabelSeq* labels, int kv_heads, int head_dim,
                               cudaStream_t stream);

// A token range of one sequence whose labels are derived from its K rows in the paged pool.
struct CudaLabelRange {
  int32_t label = 0;   // index into the CudaLabelSeq array
  int32_t kv_seq = 0;  // index of its block table in CudaPagedKv::block_tables
  int32_t first = 0;   // first token
  int32_t count = 0;   // tokens
};

// As LaunchWriteLabels, reading the keys from the paged pool (device or mapped host memory):
// labels of tokens [first, first + count) of each range (grid: max_count × ranges). The
// engine's CUDA path derives labels this way, lazily, when a sequence first runs sparse.
absl::Status LaunchWriteLabelsPaged(DType dtype, const CudaPagedKv& kv,
                                    const CudaLabelRange* ranges, int num_ranges, int64_t max_count,
                                    const CudaLabelSeq* labels, cudaStream_t stream);

// Bytes of one stored score (fp16 bits): a score buffer holds rows × score_stride of them.
// fp16 halves the scores' round trip (written by the scorer, read by the top-k) against fp32:
// 1/16 fp16 r 8 at Llama-2 heads, batch 8, 256K 995 -> 932 us (H200, docs/benchmarks.md run 22).
inline constexpr int kScoreBytes = 2;

// The body of label scoring. Every one gives the twin's scores bit for bit.
//  - kRowPerThread (the first body): one thread per (token, KV head) label row, consecutive
//    threads on consecutive heads of a token (a warp reads one contiguous span of the label
//    cache), 16-byte loads where the row size allows; the query's label channels staged per
//    block in shared memory as [heads_kv][score heads][r].
//  - kCoalesced: the query's channels staged KV head fastest (no bank conflicts across a
//    warp's heads), a fast path for 8-, 16- and 32-byte rows with every row of a thread loaded
//    before any is used, and scores written through shared memory as per-head token runs.
//    Needs heads_kv <= 1024. Bit-exact against the twin on an H200
//    (tests/gpu/double_sparsity_gpu_test.cc) and 1.2-6.1x faster than kRowPerThread at every
//    shape of docs/benchmarks.md.
//  - kStrided (the default): kCoalesced's kernels on one wave of resident blocks per launch,
//    each block staging the query's channels once and looping
//    over token tiles (1.0-1.35x faster than kCoalesced on an H200 with the fixed-shape
//    kernels below at two waves, slower only for 4-bit r 64 at GQA 4, batch 32).
// With kCoalesced and kStrided, rows of exactly 8, 16 or 32 bytes (fp16 r 8 / 16, 4-bit
// r 16 / 32 / 64) with heads_kv dividing 256 run a kernel compiled for that row (registers
// sized to it, a thread's rows all of one KV head, no I2F; the score heads a compile-time
// constant where heads × r <= 32) when every sequence of the launch shares it (label_bits and
// score_heads below); any other shape runs the general kernel. Score heads: sum aggregation
// folds one query vector per KV head, the group's label channels summed (so a GQA row costs r
// FMAs, as with MHA), max aggregation one per query head. All are bit-exact
// (tests/gpu/double_sparsity_gpu_test.cc runs each against the twin). On an H200 the fixed-row
// kernels made scoring 1.7-2.5x faster at fp16 r 8 (docs/benchmarks.md, run 6); the 4-bit
// r 16 one is not yet measured.
enum class LabelScoreAlgo { kRowPerThread, kCoalesced, kStrided };

// The label_bits argument of LaunchLabelScores for these labels (host copies of the device
// array): their bits when every one has r == max_r, the same bits and 16-byte-aligned data;
// else 0 (the general kernel).
int UniformLabelBits(const CudaLabelSeq* labels, int n, int max_r);

// The score_heads argument of LaunchLabelScores and LaunchScoreSelectCluster for these
// sequences (host copies of the device array): the query vectors every sequence's scores fold
// per KV head (1 for sum aggregation, the GQA group for max: ScoreHeads of the twin) where they
// agree, else 0 (each sequence's at run time).
int UniformScoreHeads(const CudaDsSequence* seqs, int n, int heads_q, int heads_kv);

// Approximate scores: scores[s, h, t] for t < seqs[s].tokens as fp16 bits (the fp32 score
// rounded to nearest even; row stride score_stride scores per (s, h)), from the query
// q + seqs[s].q_row * q_stride ([heads_q, head_dim], dtype) and labels[s]. max_tokens bounds
// every seqs[s].tokens (grid size); max_r bounds every r; label_bits is UniformLabelBits of the
// labels and score_heads UniformScoreHeads of the sequences (0 is always safe for both). Twins:
// LabelScoresF16Reference / LabelScores4BitReference (bit-identical: both round the same fp32
// sum to fp16 once).

absl::Status LaunchLabelScores(DType dtype, const void* q, int64_t q_stride,
                               const CudaDsSequence* seqs, int num_seqs, const CudaLabelSeq* labels,
                               int heads_q, int heads_kv, int head_dim, int max_r, int label_bits,
                               int score_heads, int64_t max_tokens, uint16_t* scores,
                               int64_t score_stride, cudaStream_t stream,
                               LabelScoreAlgo algo = LabelScoreAlgo::kCoalesced);

// The kernels of top-k. Each selects the twin's sets (verified on an H100/H200).
//  - kOneBlock: one 1024-thread block per (s, h) streaming the scores once per radix pass
//    (two such blocks resident per SM).
//  - kTwoRead: the same grid, reading the scores twice: a 13-bit histogram, then an ordered
//    split sending keys above the boundary bucket to the output and the bucket's keys (up to
//    6144) to shared memory, where the boundary is finished; a larger bucket continues as
//    kOneBlock (from its second radix pass). 1.2-1.3x faster than kOneBlock at batch 8-32,
//    64K-256K (H200), but still latency-bound per block (~10 GB/s a block).
//  - kStriped: kTwoRead's two reads and shared-memory finish with far fewer instructions per
//    score: striped 8-byte loads for the histogram (a warp reads 256 contiguous bytes), the
//    split with each thread owning 16 consecutive keys (their fp16 bits classified in pairs,
//    one paired comparison per threshold; ordered by a warp scan and one exchange of per-warp
//    counts per tile, written by loops over set bits), the finish's winner moves from a
//    difference array. 1.4-1.5x faster than kTwoRead at Llama-2 heads and 1.7-2.1x at Llama-3
//    heads (batch 8, 64K-256K, H200, docs/benchmarks.md run 9); the split and finish of run 21
//    another 8-9% at 128K-256K, the fp16 scores and paired classification of run 22 another
//    12-32% (Llama-2 heads batch 8, 256K: 145.6 -> 112.0 us; 64K: 57.8 -> 39.4). Where the
//    pairs number at most the SMs (a block a SM: latency-bound), a thread owns 32 keys (half
//    the tiles; run 23: 64 pairs of 256K 73.0 -> 63.0 us); where at most half the SMs (past
//    8K-token rows), a cluster of two blocks per pair each takes half the row (run 23: 64
//    pairs of 256K 63.0 -> 44.7 us, of 64K 22.4 -> 19.8).
//    On segments of 160K candidates or more (100K from 256 pairs on), read 1 is a sample of
//    the row instead (1/16 to 1/4 of it), whose band of scores around the budget's rank read 2
//    then counts exactly, the exact reads taking over where the band misses (run 11: 256K,
//    batch 8, Llama-2 heads, 1/16: 207 -> 161 us; 128K, 256 pairs: 109 -> 96 us).
//  - kCluster: for score_stride > 8192, a thread-block cluster of 2–16 blocks per (s, h)
//    (TopKClusterBlocks: 16K keys a block, 32K where that keeps the launch within 1.5 blocks
//    an SM; past 8 blocks where the hardware takes the non-portable size)
//    holding the keys in shared memory (scores read once; sm_90 clusters, histograms merged
//    through distributed shared memory); shorter strides, and slices that would not fit in
//    shared memory, run kOneBlock.
//  - kMultiBlock: kStriped's exact reads and finish spread over many blocks per (s, h) (three
//    kernels: histogram slices merged in the workspace, ordered split slices, a finish block
//    per pair), so that few pairs still fill the GPU; needs the workspace. Run 11 (H200,
//    256K): at 32 pairs (Llama-2 heads, batch 1) 76 us against kStriped's 93 and kCluster's
//    108; at 8 pairs kCluster is as fast, at 64 pairs and more kStriped is faster (its blocks
//    already fill the GPU, and the three kernels' extra steps cost more than they spread).
//  - kAuto (the default): kStriped up to 8192 tokens; past them kResident where the longest
//    row fits its shared memory (run 20, H200, 1/16 fp16 r 8 at 16K / 32K: faster than every
//    other kernel at 8–256 pairs — 64 pairs 9.7 / 13.9 us against kStriped's 14.6 / 19.9 and
//    kCluster's 14.5 / 19.2; 256 pairs, two rounds of blocks, 17.8 / 27.3 against 22.2 /
//    30.8); past that kCluster where TopKClusterBlocks finds it faster — few pairs, where a
//    block per pair leaves SMs idle (run 29, the 16-bit select: up to 24 pairs at any length, up
//    to 66 at 64K on an H200; before it, fp32 keys, up to an eighth of the SMs: run 14, 8 pairs
//    at 16K 12.7 us against kStriped's 14.5; run 23, 16 pairs at 64K / 128K / 256K 16.2 / 22.7
//    / 38.6 against kStriped's two-block clusters' 19.1 / 27.3 / 43.2); else kStriped (also
//    where the cluster's slice would not fit shared memory). kMultiBlock runs only when named.
//  - kResident (rows up to ~47K tokens; where the longest row is longer, kStriped): one
//    1024-thread block per (s, h) reading the scores once into shared memory, the later radix
//    passes over the boundary bucket's keys alone, one ordered compaction that writes every
//    selected index in place (topk_resident.cu).
enum class TopKAlgo { kOneBlock, kCluster, kAuto, kTwoRead, kStriped, kMultiBlock, kResident };

// kAuto's cluster top-k: the blocks a pair's cluster takes for `pairs` rows of score_stride keys
// on `sms` SMs, or 0 where the striped kernel is faster. Every pair gets 16K keys a block (up to
// 16 blocks) while the whole launch fits one block an SM; past that clusters of up to 8 (32K
// keys a block at 256K) while they fit 1.5 blocks an SM; rows of up to 64K keys also in
// two-block clusters of one block an SM. Run 29 (H200, 1/16 fp16 r 8, top-k µs, the cluster
// kernel against the striped one): 16 pairs at 256K 28.7 (8 blocks) against 42.9 (16 blocks:
// 30.3); 24 pairs 12.4 / 18.5 / 30.4 against 19.2 / 27.4 / 45.2 at 64K / 128K / 256K; at 64K
// 32, 48 and 64 pairs 18.2-18.3 (4, 4 and 2 blocks) against 19.4-19.8. Slower where this rule
// says 0: 32 pairs at 128K (28.6 with 4 blocks against 27.9), 48 at 128K (29.1 / 28.1), 64 at
// 128K (31.4 / 28.4) — above a block an SM, 64K keys a block or clusters of 4 or more cost
// more than the striped kernel's one block a pair.
int64_t TopKClusterBlocks(int64_t score_stride, int64_t pairs, int sms);

// The kernel `algo` runs for `pairs` (sequence, KV head) pairs over score rows of
// `score_stride` on a GPU of `sms` SMs: kCluster, kTwoRead, kStriped, kMultiBlock, kResident or
// kOneBlock (kCluster only past 8192 tokens; LaunchTopKSelect still falls back to a one-block
// kernel where a slice exceeds shared memory). longest_row: the row bound of the launch (0:
// score_stride) — the longest row's tokens, or for a graph step, whose score_stride is its
// bucket and whose rows grow from replay to replay, TopKRowBound's. kCluster's shared memory
// is sized by it (kResident's by the stride, up to its most); both stay correct, slower, for a
// row past it.
TopKAlgo ResolveTopKAlgo(TopKAlgo algo, int64_t score_stride, int64_t pairs, int sms,
                         int64_t longest_row = 0);

// The row bound (ResolveTopKAlgo's and LaunchTopKSelect's longest_row) a graph step plans its
// top-k for, rows of up to longest_row tokens now in score rows of score_stride (its block
// bucket): longest_row rounded up to a sixteenth of the stride, or the stride where the
// resident kernel holds rows of any length up to it. The step's graph key holds it, so a
// sequence growing through a bucket is captured again at most every sixteenth of it, and its
// top-k's shared memory follows its rows rather than the bucket (run 29: the cluster top-k at
// twice the rows' stride took 36.5 against 28.8 µs at 16 pairs × 256K).
int64_t TopKRowBound(int64_t score_stride, int64_t longest_row);

// Bytes of workspace LaunchTopKSelect's kMultiBlock needs for num_seqs × heads_kv score rows of
// score_stride (one per (sequence, KV head): ~230 KB a pair). It must be zeroed before its first
// use; every launch leaves it zeroed, so a buffer serves any later launch it is large enough
// for (one launch at a time per workspace: they share it).
int64_t TopKSelectWorkspaceBytes(int num_seqs, int heads_kv, int64_t score_stride);

// Top-k with kept tokens per (sequence, KV head): selected[s, h, 0 .. counts[s, h]) receives
// min(budget, tokens) ascending indices (row stride sel_stride >= max budget). A radix select
// on the scores' order-preserving 32-bit keys (11/11/10-bit digits, a histogram per pass,
// early exit once the boundary bucket is taken whole), then one ordered compaction.
// score_stride bounds every seqs[s].tokens. workspace: null, or TopKSelectWorkspaceBytes
// (num_seqs, heads_kv, score_stride) bytes (kMultiBlock's; kAuto may take that kernel with it).
// longest_row: ResolveTopKAlgo's. Twin: TopKSelectReference (identical sets, ties included).
absl::Status LaunchTopKSelect(const uint16_t* scores, int64_t score_stride,
                              const CudaDsSequence* seqs, int num_seqs, int heads_kv,
                              int32_t* selected, int64_t sel_stride, int32_t* counts,
                              cudaStream_t stream,
                              TopKAlgo algo = TopKAlgo::kAuto, void* workspace = nullptr,
                              int64_t longest_row = 0);

// Label scoring and top-k fused (LaunchLabelScores then LaunchTopKSelect in one kernel, whose
// selection it equals: the same bit-exact scores, the same total order): a thread-block cluster
// per (sequence, KV head) scores its candidates straight into shared memory as the top-k's keys
// and selects from there, so the scores never reach memory (score_select_cluster.cu). Takes the
// fixed-row label shapes (label_bits from UniformLabelBits, non-zero: fp16 r 8 / 16, 4-bit
// r 8 / 16 / 32 / 64; score_heads from UniformScoreHeads, 0 always safe), GQA groups up to 16
// and rows whose keys fit the cluster's shared memory
// (~400K tokens on an H100/H200). Returns false, launching nothing, for any other case: the
// caller runs the two launches. max_tokens bounds every seqs[s].tokens; selected and counts as
// LaunchTopKSelect's.
// Whether the fused kernel beats the two launches for `pairs` (sequence, KV head) rows of up to
// max_tokens tokens (the engine's rule, ScoreAndSelect's kAuto): where the rows hold at most
// 2^18 tokens in all and none more than 8192, past which the two launches' top-k is the
// resident kernel (measured on an H200, docs/benchmarks.md runs 14 and 20).
bool ScoreSelectClusterPays(int64_t max_tokens, int64_t pairs);

absl::StatusOr<bool> LaunchScoreSelectCluster(DType dtype, const void* q, int64_t q_stride,
                                              const CudaDsSequence* seqs, int num_seqs,
                                              const CudaLabelSeq* labels, int heads_q,
                                              int heads_kv, int head_dim, int max_r,
                                              int label_bits, int score_heads, int64_t max_tokens,
                                              int32_t* selected, int64_t sel_stride,
                                              int32_t* counts, cudaStream_t stream);

// The body of sparse attention. Both match SelectedAttentionReference within the dtype's
// rounding (tests/gpu/double_sparsity_gpu_test.cc runs each).
//  - kWarp (the first, kept as the cross-check): SIMT; each warp takes 32 selected rows at a
//    time, a lane scoring a whole K row for every query head, then lanes over channels for V;
//    a partial state per warp, merged by its own combine kernel. Its SIMT work grows with the
//    group: on an H200 ~3.6 TB/s of K/V at MHA but ~2.0 TB/s at GQA 4 (Llama-3-8B heads, batch
//    8, 256K, 1/16: 269 us against ~126 us of K/V bytes).
//  - kPipelined (the default): dense decode's pipelined tensor-core body (decode_pipeline.cuh)
//    over the selected rows: per warp a 3-stage cp.async ring of 16-row K/V tiles gathered by
//    index, scores and P·V on mma.m16n8k16 with the group's query heads as the MMA rows, so its
//    work per row does not grow with the group; pieces merged by DecodeCombineKernel. On an
//    H200 (docs/benchmarks.md run 10; batch 8, 256K, 1/16): Llama-3-8B heads 169 us against
//    kWarp's 264, Llama-2 heads 541 against 643.
enum class SparseAttentionAlgo { kWarp, kPipelined };

// Floats of workspace LaunchSparseAttention needs at `splits` splits, with either body.
int64_t SparseAttentionWorkspaceFloats(int num_seqs, int heads_q, int head_dim, int splits);

// The pipelined sparse attention's aim: one whole round of resident blocks, as dense decode's
// (kDecodeAttentionWaves). Run 18 (H200, docs/benchmarks.md; operator benchmark, 1/8 and 1/16,
// Llama-2 and Llama-3 heads, batch 1 and 8, 16K-256K) timed it beside two rounds (run 12's
// aim): as fast or faster at every shape where the two counts differ, most at short selections
// (Llama-3 heads batch 8, 1/16: 16K 15.2 -> 12.2 us, 32K 27.9 -> 25.0, 64K 43.9 -> 39.5;
// Llama-2 heads batch 8, 16K 41.5 -> 36.3); half a round was slower.
inline constexpr int kSparsePipelinedWaves = 2;

// A split count for `algo` that fills the GPU; waves <= 0 takes the body's own aim.
//  - kPipelined: DecodeAttentionSplits' rule with one block per (piece, KV head, sequence):
//    <= waves × sm_count blocks (default kSparsePipelinedWaves), no piece under 64 selected
//    rows (one 16-row tile per warp), at most 256 pieces.
//  - kWarp: ~256 selected rows per block at least, >= waves blocks per SM (default 2), at most
//    64 pieces.
int SparseAttentionSplits(int num_seqs, int heads_kv, int64_t max_budget, int sm_count,
                          SparseAttentionAlgo algo = SparseAttentionAlgo::kPipelined,
                          int waves = 0);

// Attention of each sequence's decode query over its selected rows: out[q_row, hq*d..] for
// every query head hq of KV head h, softmax over selected[s, h, 0 .. counts[s, h]) only (an
// empty selection, counts 0, gives 0: the twin's empty sum). K/V rows are gathered through kv
// (device or mapped pinned host memory). The selected set is cut into `splits` slices (grid
// splits × kv_heads × num_seqs; SparseAttentionSplits for `algo`), each block reads its slice's
// rows once for all query heads of the group (heads_q / heads_kv in {1, 2, 4, 8}; head_dim 64
// or 128); a combine kernel merges the partial softmax states. Twin:
// SelectedAttentionReference. q: stride q_stride; out: stride out_stride; workspace:
// SparseAttentionWorkspaceFloats(num_seqs, heads_q, head_dim, splits) floats.
absl::Status LaunchSparseAttention(DType dtype, const void* q, int64_t q_stride,
                                   const CudaDsSequence* seqs, int num_seqs, int heads_q,
                                   int heads_kv, int head_dim, float scale, const CudaPagedKv& kv,
                                   const int32_t* selected, int64_t sel_stride,
                                   const int32_t* counts, int splits, float* workspace, void* out,
                                   int64_t out_stride, cudaStream_t stream,
                                   SparseAttentionAlgo algo = SparseAttentionAlgo::kPipelined);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_DOUBLE_SPARSITY_CUH_
