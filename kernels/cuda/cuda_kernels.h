// The CUDA kernels of the dense forward pass, as host-callable launchers. Each LaunchFoo
// takes non-owning device pointers, shapes and a stream; it allocates nothing, reads no
// globals, and dispatches the runtime dtype (bf16 or fp16) and head_dim (64 or 128) to
// template instances in one switch whose default returns INVALID_ARGUMENT. Every launcher
// checks the launch (not the kernel's completion: errors of an asynchronous kernel surface at
// the next synchronizing call). Each kernel's plain C++ twin is named in its comment; the GPU
// tests (tests/gpu) hold every kernel to its twin.
//
// On failure nothing was launched and the outputs are untouched; a launched kernel that later
// faults leaves its outputs unspecified.
#ifndef DSINFER_KERNELS_CUDA_CUDA_KERNELS_H_
#define DSINFER_KERNELS_CUDA_CUDA_KERNELS_H_

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/sample_knobs.h"

namespace dsinfer {

struct CudaLabelSeq;  // kernels/cuda/double_sparsity.cuh

// The paged K/V of one layer as the kernels see it, for a whole batch of sequences: sequence
// s's block table is block_tables[s * max_blocks ...]. K and V regions are
// [num_blocks, block_tokens, kv_heads, head_dim] (the KvBlockPool layout).
struct CudaPagedKv {
  void* k = nullptr;
  void* v = nullptr;
  const int32_t* block_tables = nullptr;  // device, [num_seqs, max_blocks]
  int max_blocks = 0;
  int block_tokens = 0;
  int kv_heads = 0;
  int head_dim = 0;
};

// The packed rows of one step as the attention kernels see them (all device pointers).
struct CudaBatchRows {
  const int32_t* positions = nullptr;  // [rows]: the row's token position = tokens it attends - 1
  const int32_t* row_seq = nullptr;    // [rows]: index of the row's sequence in block_tables
  int64_t rows = 0;
};

// out[i, :] = table[ids[i], :]. Twin: EmbeddingReference. ids must be in [0, table rows).
// table: [vocab, cols]; ids: device [n]; out: [n, cols] (row stride out_stride).
absl::Status LaunchEmbedding(DType dtype, const void* table, int64_t cols, const int32_t* ids,
                             int64_t n, void* out, int64_t out_stride, cudaStream_t stream);
// The same gather with `out` of out_dtype: dtype or kF32 (the fp32 residual stream; exact);
// an fp32 table (dtype kF32) also gathers into bf16 or fp16 (rounded to nearest even).
absl::Status LaunchEmbeddingEx(DType dtype, DType out_dtype, const void* table, int64_t cols,
                               const int32_t* ids, int64_t n, void* out, int64_t out_stride,
                               cudaStream_t stream);

// out = RmsNorm(x) * weight, fp32 math. Twin: RmsNormReference. x, out: [rows, dim].
absl::Status LaunchRmsNorm(DType dtype, const void* x, const void* weight, int64_t rows,
                           int64_t dim, float eps, void* out, cudaStream_t stream);
// The same with x of x_dtype: dtype or kF32 (weight and out stay dtype).
absl::Status LaunchRmsNormEx(DType dtype, DType x_dtype, const void* x, const void* weight,
                             int64_t rows, int64_t dim, float eps, void* out,
                             cudaStream_t stream);

// residual += delta (rounded to dtype), out = RmsNorm(residual) * weight. Twin:
// AddRmsNormReference. residual, delta, out: [rows, dim].
absl::Status LaunchAddRmsNorm(DType dtype, void* residual, const void* delta, const void* weight,
                              int64_t rows, int64_t dim, float eps, void* out,
                              cudaStream_t stream);
// The same with the residual of residual_dtype: dtype (rounded after the add, as above) or kF32
// (no rounding: the twin is AddRmsNormReference exactly). delta, weight and out stay dtype.
absl::Status LaunchAddRmsNormEx(DType dtype, DType residual_dtype, void* residual,
                                const void* delta, const void* weight, int64_t rows, int64_t dim,
                                float eps, void* out, cudaStream_t stream);

// out = silu(gate) * up. Twin: SwiGluReference. gate_up: [rows, 2 inter]; out: [rows, inter].
absl::Status LaunchSwiGlu(DType dtype, const void* gate_up, int64_t rows, int64_t inter,
                          void* out, cudaStream_t stream);

// Rotates q and k of every row of qkv in place (HF rotate-half, table inv_freq [head_dim/2],
// device fp32) and writes each row's k and v into `kv` at (row_seq, position). Twin:
// RopeReference + the CPU backend's row copy. qkv: [rows, (Hq + 2 Hkv) d], row stride
// qkv_stride; blocks for every written position must be in the block tables.
// With `labels` (device, one per sequence: Double Sparsity's label views of this layer, the
// channels set; only where RopeWritesLabels(head_dim)) each row's K heads also get their label
// rows at the row's position, from the stored keys: what LaunchWriteLabelsPaged writes for
// that token afterwards, bit for bit (twins: the label references on the rounded keys). A
// sequence whose entry has r 0 (one that runs dense beside sparse ones) gets none.
absl::Status LaunchRopeStoreKv(DType dtype, void* qkv, int64_t qkv_stride, const CudaBatchRows& rows,
                               int heads_q, int heads_kv, int head_dim, const float* inv_freq,
                               const CudaPagedKv& kv, cudaStream_t stream,
                               const CudaLabelSeq* labels = nullptr);
// Whether LaunchRopeStoreKv can write labels at this head_dim (a head's rotation pairs in one
// block of the kernel: head_dim 64, 128, 256, ...).
bool RopeWritesLabels(int head_dim);

// Floats of workspace LaunchDecodeAttention needs for `rows` rows and `splits` splits.
int64_t DecodeAttentionWorkspaceFloats(int64_t rows, int heads_q, int head_dim, int splits);

// The split count of flash-decoding for `rows` rows over contexts up to `context` tokens on
// `sm_count` SMs: the most (piece, head group, row) blocks that fit in `waves` × sm_count (at
// least one piece), no piece shorter than 64 tokens, at most 256 pieces. The pipelined body
// runs 2 blocks per SM at head_dim 128, so 4 waves are two whole rounds of resident blocks;
// rounding the count up instead left a few blocks for a round of their own (run 12: Llama-2
// heads at batch 1 took 17 pieces, 544 blocks on 132 SMs).
// waves <= 0 is the CUDA backend's rule (H200, the pipelined body, docs/benchmarks.md run 12):
// kDecodeAttentionWaves (one whole round of resident blocks), or twice that where one round
// leaves pieces of kDecodeLongPieceTokens or more. One round was as fast as two or faster end
// to end at every measured shape (batch 1 and 8, 4K and 32K: 4K batch 1 decode 1.5-2.3%
// faster) and in the operator alone on pieces up to 16K tokens (up to 23% at 4K), but 0.4-3%
// slower on pieces of 32K-256K tokens (Llama-2 heads at batch 8 from 64K, batch 1 at 256K).
constexpr int kDecodeAttentionWaves = 2;
constexpr int64_t kDecodeLongPieceTokens = 32768;
int DecodeAttentionSplits(int64_t rows, int heads_q, int heads_kv, int64_t context, int sm_count,
                          int waves);

// The block body of flash-decoding: kTiled (64-token shared-memory tiles, 16-byte cp.async
// loads, one softmax rescale per tile), kWarp (the first, latency-bound version, kept as a
// cross-check) or kPipelined (each warp streams 16-token tiles through its own 3-stage cp.async
// ring; tensor-core scores and P·V with the group's heads as the MMA rows; the CUDA backend's
// default, 1.02-1.10x the HBM floor at 64K-256K on an H200). All have the same twin, grid and
// workspace layout.
enum class DecodeAttentionAlgo { kTiled, kWarp, kPipelined };

// Flash-decoding: causal attention of one query per row over its sequence's tokens
// [0, position]. The context is cut into `splits` pieces (grid: splits × kv-head groups ×
// rows); one block reads each (piece, KV head) once for all (up to 8) query heads of the
// group, and a combine kernel merges the pieces' partial softmax states. Twin:
// CausalAttentionReference. q: rows of qkv (stride q_stride, q heads first); out: [rows,
// heads_q d] (stride out_stride); workspace: DecodeAttentionWorkspaceFloats floats. A row at a
// negative position is outside the launch: its blocks end at once and its output rows stay
// untouched (the CUDA backend's SubsetAttention, beside Double Sparsity writing those rows).
absl::Status LaunchDecodeAttention(DType dtype, const void* q, int64_t q_stride,
                                   const CudaBatchRows& rows, int heads_q, int heads_kv,
                                   int head_dim, float scale, const CudaPagedKv& kv, int splits,
                                   float* workspace, void* out, int64_t out_stride,
                                   cudaStream_t stream,
                                   DecodeAttentionAlgo algo = DecodeAttentionAlgo::kTiled);

// The body of prefill attention:
//  - kSimt (the first body, kept as the cross-check; verified against the twin on an
//    H100/H200): CUDA-core fp32, one block per 16-row tile and query head, 32-token K/V tiles
//    through shared memory.
//  - kMma: tensor cores, FlashAttention-2 style: mma.sync m16n8k16 with fp32 accumulate,
//    ldmatrix fragments, double-buffered 64-token K/V tiles by bulk copies, P
//    rounded once to the 16-bit dtype for P·V, 128-row tiles (see prefill_attention_mma.cu).
//    It falls back to the kSimt body, run over 16-row sub-tiles of its 128-row tiles, for
//    operands it cannot load with 16-byte copies (q or K/V misaligned, q_stride not a multiple
//    of 8) and for a scale that is not positive and finite. It matches the twin and kSimt on an
//    H200 (tests/gpu/prefill_attention_kernels_gpu_test.cc) and runs 16-19x faster than kSimt
//    (run 4), ~1.4x faster again since run 36 (docs/benchmarks.md, "Prefill attention").
//  - kWgmma (the default): the same algorithm and tiles on Hopper's warpgroup MMA (wgmma),
//    each row's softmax sum over the fp32 values of P (kMma sums the rounded ones; run 39),
//    warp-specialized: a producer warpgroup filling rings of 128-token K/V tiles in swizzled
//    shared memory, two consumer warpgroups of 64 rows whose products read them, P·V of one
//    tile under the softmax of the next; see prefill_attention_wgmma.cu. Compute
//    capability 9.0 only; elsewhere, and for operands kMma's kernel could not take, it falls
//    back to kMma (and that to kSimt).
enum class PrefillAttentionAlgo { kSimt, kMma, kWgmma };

// Rows per query tile of prefill attention for each body: the most rows a tile of the list
// LaunchPrefillAttention takes may hold (kMma and kWgmma alike: either falls back to the
// other's tiles).
inline constexpr int kPrefillTileRowsSimt = 16;
inline constexpr int kPrefillTileRowsMma = 128;
constexpr int PrefillTileRows(PrefillAttentionAlgo algo) {
  return algo == PrefillAttentionAlgo::kSimt ? kPrefillTileRowsSimt : kPrefillTileRowsMma;
}

// Flash-attention-style prefill: causal attention of every row over its sequence's tokens
// [0, position] (rows may start past 0: a chunk attends over earlier chunks' K/V in the pool
// plus its own). tiles: device int32 pairs [first_row, count], count <= PrefillTileRows(algo)
// rows of one sequence each (any order; rows in a tile need not be consecutive positions). Each
// block takes one tile and one query head, streams the K/V up to the tile's last position
// through shared memory with an online softmax. Twin: CausalAttentionReference.
absl::Status LaunchPrefillAttention(DType dtype, const void* q, int64_t q_stride,
                                    const CudaBatchRows& rows, const int32_t* tiles,
                                    int64_t num_tiles, int heads_q, int heads_kv, int head_dim,
                                    float scale, const CudaPagedKv& kv, void* out,
                                    int64_t out_stride, cudaStream_t stream,
                                    PrefillAttentionAlgo algo = PrefillAttentionAlgo::kWgmma);

// ids[i] = argmax_j logits[i, j] (lowest index on ties; NaN never wins). Twin: ArgmaxReference.
// dtype: bf16, fp16 or fp32.
// logits: [rows, vocab] (row stride `stride`); ids: device [rows].
absl::Status LaunchArgmax(DType dtype, const void* logits, int64_t rows, int64_t vocab,
                          int64_t stride, int32_t* ids, cudaStream_t stream);

// lse[i] = log Σ_j exp(logits[i, j]) (fp32 logits, row stride `stride`; the maximum taken
// first, NaN ignored there, a NaN anywhere makes the row's sum NaN): with the argmax, what a
// greedy token and its log-probability need, without the row leaving the GPU.
// Twin: LogSumExpReference.
absl::Status LaunchLogSumExp(const float* logits, int64_t rows, int64_t vocab, int64_t stride,
                            float* lse, cudaStream_t stream);

// ids[i] = a token drawn from softmax(logits[i] / T_i) restricted to the tokens that top-k,
// then top-p (of the top-k mass), then min-p keep, by inverse CDF in id order at uniforms[i]
// in [0, 1) — the CPU sampler's order of filters and draw — with row i's own knobs[i]
// (kernels/sample_knobs.h), so one launch serves a batch of requests with different knobs. A
// row with temperature 0 is greedy: its argmax (lowest id on ties, NaN never wins, as
// LaunchArgmax), its uniform unread; a sampled row with no finite probability (NaN or +inf
// logits) gets id -1 and a NaN chosen logit. A cluster of up to 8 1024-thread blocks per row;
// no sort (thresholds found by radix descent over fixed-point masses, see sampling.cu). Twin:
// SampleReference.
// logits: [rows, vocab] (row stride `stride`; fp32, bf16 or fp16), vocab <= 2^24; knobs,
// uniforms, ids: device [rows]; chosen_logits: device [rows] or null, receives
// logits[i, ids[i]] in fp32 (with LaunchLogSumExp, the chosen token's log-probability). The
// knobs must pass ValidateSampleKnobs: the launcher cannot read them. thresholds: device
// [rows] or null, receives each sampled row's kept-set threshold (the kept tokens are those
// with exp2((logit - max) · log2 e / T) >= it; greedy rows are not written), as the twin's.
absl::Status LaunchSample(DType dtype, const void* logits, int64_t rows, int64_t vocab,
                          int64_t stride, const SampleKnobs* knobs, const float* uniforms,
                          int32_t* ids, float* chosen_logits, cudaStream_t stream,
                          float* thresholds = nullptr);

// Fills `count` elements with uniform values in [-scale, scale) from a counter-based hash of
// (seed, index): deterministic, for benchmark weights and test inputs.
absl::Status LaunchFillRandom(DType dtype, void* data, int64_t count, uint64_t seed, float scale,
                              cudaStream_t stream);

// Converts `count` elements of dtype (bf16, fp16, or fp32: a copy) to fp32 on the device.
absl::Status LaunchToF32(DType dtype, const void* src, int64_t count, float* dst,
                         cudaStream_t stream);

// y[:, :out] = x · wᵀ through cuBLAS (dtype in, fp32 accumulate, dtype out). Twin:
// LinearReference. x: [rows, in], w: [out, in], y: row stride y_stride >= out. The handle
// must be bound to the caller's stream.
absl::Status Gemm(cublasHandle_t handle, DType dtype, const void* x, int64_t rows, int64_t in,
                  const void* w, int64_t out, void* y, int64_t y_stride);
// The same with y of y_dtype: dtype or kF32 (the fp32 accumulator written unrounded: logits).
// accumulate: y += x · wᵀ (the residual stream's add; twin LinearAddReference).
absl::Status GemmEx(cublasHandle_t handle, DType dtype, DType y_dtype, const void* x, int64_t rows,
                    int64_t in, const void* w, int64_t out, void* y, int64_t y_stride,
                    bool accumulate = false);

// The same product for decode steps (1 to kGemvMaxRows rows), where reading w once from HBM
// is the whole cost: bulk copies stream groups of weight rows through shared memory and the
// block accumulates in fp32 (gemv.cu). Twin: LinearReference. Needs GemvApplies (bf16/fp16
// operands, y of the same dtype or fp32, `in` a multiple of 8, x and w 16-byte aligned);
// INVALID_ARGUMENT otherwise. x: [rows, in] contiguous; y: row stride y_stride >= out.
inline constexpr int kGemvMaxRows = 8;
// Which body a backend's linear layers use: kCublas (cublasGemmEx for every shape), kGemv
// (the GEMV kernels where they apply — decode steps of up to kGemvMaxRows rows — cuBLAS
// otherwise), or kAuto (AutoPicksGemv). The GEMV path folds the RMSNorm into the next
// projection (LaunchNormGemv) and adds the output projections into the residual stream
// (LaunchGemvAdd), so such a projection runs no separate norm and no split-K reduction.
enum class LinearAlgo { kCublas, kGemv, kAuto };
// kAuto's rule (docs/benchmarks.md, run 13): the GEMV at one and two rows, cuBLAS from three.
// At one row the GEMV reads the 7B/8B decode step's weights 2-5% faster than cuBLAS, at two
// about as fast, and it folds the RMSNorm in: whole decode steps at 4K were 7-8% faster at one
// row and 3-3.5% at two. cuBLAS's tensor-core kernels keep their speed at any row count,
// while the GEMV's FMAs and x columns grow with the rows (1.3× slower at four).
inline constexpr int kAutoGemvMaxRows = 2;
inline bool AutoPicksGemv(int64_t rows, int64_t /*out*/, int64_t /*in*/) {
  return rows <= kAutoGemvMaxRows;
}
bool GemvApplies(DType dtype, DType y_dtype, const void* x, int64_t rows, int64_t in,
                 const void* w);
absl::Status LaunchGemv(DType dtype, DType y_dtype, const void* x, int64_t rows, int64_t in,
                        const void* w, int64_t out, void* y, int64_t y_stride,
                        cudaStream_t stream);
// residual[:, :out] += x · wᵀ with the fp32 residual (row stride residual_stride >= out)
// taking the fp32 sums unrounded. Twin: LinearAddReference. Needs GemvApplies(dtype, kF32, …).
absl::Status LaunchGemvAdd(DType dtype, const void* x, int64_t rows, int64_t in, const void* w,
                           int64_t out, float* residual, int64_t residual_stride,
                           cudaStream_t stream);
// y[:, :out] = RmsNorm(residual) · wᵀ (y of dtype) with the norm folded into the product: the
// dot runs over residual ⊙ norm_weight in fp32 and is scaled by 1/rms at the end, so the
// normed rows are never rounded to dtype. `normed` (may be null): RmsNorm(residual) in dtype,
// as LaunchRmsNormEx writes it. Twin: NormLinearReference. residual: [rows, in] fp32,
// contiguous; norm_weight: [in]. Needs NormGemvApplies (GemvApplies plus 16-byte aligned
// norm_weight and normed).
bool NormGemvApplies(DType dtype, const float* residual, int64_t rows, int64_t in,
                     const void* norm_weight, const void* w, const void* normed);
absl::Status LaunchNormGemv(DType dtype, const float* residual, int64_t rows, int64_t in,
                            const void* norm_weight, float eps, const void* w, int64_t out,
                            void* y, int64_t y_stride, void* normed, cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_CUDA_KERNELS_H_
