// The CUDA backend (DESIGN §2): bf16 (or fp16) activations, weights and KV, all in device
// memory; GEMMs through cuBLAS with fp32 accumulation; every other operation one kernel of
// dsinfer_kernels_cuda. All work is ordered on one stream owned by the backend; the host waits
// only where the interface hands data back (CopyRowsToHost).
//
// The KV pool is the ordinary KvBlockPool, its memory handed out by DeviceKvMemory
// (cudaMalloc) instead of host memory. Per step the backend uploads the batch's positions,
// row-to-sequence map, prefill tiles and block tables once (at layer 0) and reuses them for
// every layer. Decode-only batches run flash-decoding; any batch with a multi-row sequence
// runs the tiled prefill kernel.
//
// The residual stream and the logits are fp32 (AllocateF32): the embedding writes, the fused
// add + RMSNorm reads and updates, and the LM-head GEMM writes fp32; everything else is 16-bit.
//
// Decode steps as CUDA graphs (options.decode_graphs): between BeginStep and EndStep of a
// capturable all-decode batch, the step's metadata (token ids, positions, block tables padded
// to a power-of-two bucket of blocks) is uploaded first, then the layer loop is captured once
// per (rows, block bucket) and replayed afterwards: each operation only checks that its
// arguments (a hash of op, pointers, shapes) match the recorded step and launches nothing;
// EndStep launches the graph. The first decode step of a shape runs eagerly (it learns the
// attention shape), the second captures. Any Free or buffer regrowth drops the graphs (they
// hold raw pointers); a full cache (64) drops its least recently used one. Double Sparsity
// steps are captured too, where every sequence runs sparse at the same layers and has its
// labels up to the previous token: BeginStep then
// describes every sparse layer and uploads the descriptors (label views, sequences, the
// current token's label range) before the graph runs, sized by the block bucket, and the
// graph's key also holds those sizes and the scratch buffers' addresses
// (cuda_backend_sparse_graph.cc).
//
// Not thread-safe: one engine thread drives it.
#ifndef DSINFER_ENGINE_CUDA_CUDA_BACKEND_H_
#define DSINFER_ENGINE_CUDA_CUDA_BACKEND_H_

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "engine/backend.h"
#include "engine/cuda/pinned_host_memory.h"
#include "engine/cuda/score_and_select.h"
#include "engine/model_config.h"
#include "kernels/cuda/offload_gather.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/dependent_launch.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/offload_gather_reference.h"

namespace dsinfer {

struct SparseLayerPlan;  // engine/cuda/sparse_state.h

struct CudaBackendOptions {
  int device = 0;
  DType dtype = DType::kBF16;  // activations, weights and KV: kBF16 or kF16
  bool decode_graphs = false;  // capture/replay decode steps as CUDA graphs (see above)
  // Flash-decoding block body: the tensor-core pipelined one (docs/benchmarks.md), and the
  // blocks its split count aims at, in waves of the SM count (DecodeAttentionSplits; 0: its
  // rule of one or two rounds by piece length).
  DecodeAttentionAlgo decode_algo = DecodeAttentionAlgo::kPipelined;
  int decode_waves = 0;
  // Kernel bodies, the fastest measured as defaults (docs/benchmarks.md; the others stay for
  // comparison benchmarks): prefill attention (the tiles PrepareBatch builds follow it; kWgmma
  // runs kMma on GPUs other than Hopper), Double Sparsity label scoring and top-k.
  PrefillAttentionAlgo prefill_algo = PrefillAttentionAlgo::kWgmma;
  LabelScoreAlgo ds_score_algo = LabelScoreAlgo::kStrided;
  TopKAlgo ds_topk_algo = TopKAlgo::kAuto;
  // Scoring and top-k fused into one kernel (LaunchScoreSelectCluster): kAuto where it pays
  // (ScoreSelectClusterPays), kAlways wherever it takes the shape (tests), kOff never. Only
  // with the default scorer and top-k (kStrided, kAuto).
  FusedSelectMode ds_fused_select = FusedSelectMode::kAuto;
  // Linear layers: cuBLAS, the few-row GEMV kernels for decode steps, or kAuto's mix of the
  // two (LinearAlgo, AutoPicksGemv).
  LinearAlgo linear_algo = LinearAlgo::kAuto;
  // Offload gather (LaunchFetchRows): the most blocks its grid may have; it runs on the copy
  // stream beside the layer's compute, whose kernels it must leave room for. Gathers that
  // also look rows up among the previous step's (previous-step reuse) take fetch_reuse_blocks.
  int fetch_blocks = kFetchRowsMaxBlocks;
  int fetch_reuse_blocks = kFetchRowsReuseMaxBlocks;
  // The device token path (engine/token_choice.h; cuda_backend_token_choice.cc): steps whose
  // requests allow it get their tokens chosen by LaunchSample beside the logits, and only the
  // ids and log-probabilities cross PCIe. Off: every step copies its logit rows to the host.
  bool device_token_choice = true;
  // MixedAttention: the dense decode rows of a step with sparse ones attend on a side stream
  // beside Double Sparsity's chain (off: one after the other; the benchmark compares them).
  // Their split count aims at beside_waves waves of the SM count; 0: as alone (decode_waves'
  // rule); -1 (the default): in graph steps one wave, leaving SMs to the chain, where their
  // K/V of a layer is small enough to hide under it (kBesideOneWaveBytes), else as alone.
  bool dense_beside_sparse = true;
  int beside_waves = -1;
  // A sparse layer's chain in two halves of its sequences on two streams, the second half
  // starting once the first half's scores are written, so that one half's scoring and
  // attention run beside the other's top-k (cuda_backend_split_chain.cc; SplitChainHalf's
  // rule, measured in docs/benchmarks.md runs 19, 20 and 25).
  bool split_sparse_chain = true;

  absl::Status Validate() const;
};

// Device memory behind the HostMemory interface, so that KvBlockPool can live on the GPU.
// Allocations are zero-filled.
class DeviceKvMemory final : public HostMemory {
 public:
  absl::StatusOr<void*> Allocate(size_t bytes) override;
  void Free(void* ptr) override;
};

// Whether a GPU is usable in this process (false on CI machines).
bool CudaDeviceAvailable();

// Start-up memory planning (CudaMemoryPlan, PlanCudaMemory): engine/cuda/memory_plan.h.

class CudaBackend final : public Backend {
 public:
  // Selects the device, creates the stream and the cuBLAS handle. UNAVAILABLE without a GPU.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  absl::string_view name() const override { return "cuda"; }
  DType kv_dtype() const override { return options_.dtype; }
  HostMemory& kv_memory() override { return kv_memory_; }
  // Offload modes (docs/offload.md): the pool in pinned mapped host memory, the tier's fetch
  // buffers and reuse slabs in device memory.
  HostMemory& offload_kv_memory() override { return offload_memory_; }
  HostMemory& offload_buffer_memory() override { return kv_memory_; }
  const PinnedHostMemory& pinned_memory() const { return offload_memory_; }
  // Labels live in device label caches (cuda_backend_sparse.cc, offload_state.h).
  bool keeps_labels_on_device() const override { return true; }

  absl::StatusOr<DeviceTensor> Allocate(int64_t rows, int64_t cols) override;
  absl::StatusOr<DeviceTensor> AllocateF32(int64_t rows, int64_t cols) override;
  void Free(DeviceTensor& tensor) override;
  absl::StatusOr<DeviceTensor> UploadWeight(absl::Span<const TensorRef* const> parts) override;
  bool ComputesLogitStats() const override { return true; }
  absl::Status LogitStats(const DeviceTensor& logits, int64_t rows,
                          std::vector<LogitRowStat>& out) override;
  absl::Status CopyRowsToHost(const DeviceTensor& src, absl::Span<const int64_t> rows,
                              float* dst) override;
  // The device token path (cuda_backend_token_choice.cc): knobs and uniforms up through pinned
  // staging, LaunchSample and LaunchLogSumExp on the stream, ids and log-probabilities back.
  bool ChoosesTokensOnDevice() const override { return options_.device_token_choice; }
  absl::Status ChooseTokens(const DeviceTensor& logits,
                            absl::Span<const DeviceTokenChoice> choices,
                            std::vector<ChosenToken>& out) override;
  // Turns the device token path on or off (tests and benchmarks compare the two paths).
  void set_device_token_choice(bool on) { options_.device_token_choice = on; }
  // Steps whose tokens ChooseTokens chose (tests, bench).
  int64_t device_token_steps() const { return device_token_steps_; }

  absl::Status GatherRows(const DeviceTensor& src, absl::Span<const int64_t> rows,
                          DeviceTensor& dst) override;
  absl::Status Embedding(const DeviceTensor& table, absl::Span<const int32_t> ids,
                         DeviceTensor& out) override;
  absl::Status RmsNorm(const DeviceTensor& x, const DeviceTensor& weight, float eps,
                       DeviceTensor& out) override;
  absl::Status Linear(const DeviceTensor& x, const DeviceTensor& w, DeviceTensor& y) override;
  absl::Status NormLinear(const DeviceTensor& residual, const DeviceTensor& norm_weight, float eps,
                          const DeviceTensor& w, DeviceTensor& normed, DeviceTensor& y) override;
  absl::Status AddLinear(const DeviceTensor& x, const DeviceTensor& w, DeviceTensor& delta,
                         DeviceTensor& residual) override;
  absl::Status SwiGlu(const DeviceTensor& gate_up, DeviceTensor& out) override;
  absl::Status CopyKvBlocks(const KvBlockPool& src, int src_layer, KvBlockPool& dst, int dst_layer,
                            const std::vector<int32_t>& blocks) override;
  // On the offload tier's copy stream, ordered by events (cuda_backend_offload.cc).
  absl::Status CopyKvBlocksAside(const KvBlockPool& src, int src_layer, KvBlockPool& dst,
                                 int dst_layer, const std::vector<int32_t>& blocks,
                                 int slot) override;
  absl::Status JoinKvCopy(int slot) override;
  absl::Status RopeAndStoreKv(int layer, const AttentionConfig& config, const ForwardBatch& batch,
                              KvBlockPool& pool, DeviceTensor& qkv) override;
  absl::Status Attention(int layer, const AttentionConfig& config, const ForwardBatch& batch,
                         const KvBlockPool& pool, const DeviceTensor& qkv,
                         DeviceTensor& out) override;
  // Decode rows: the whole prepared batch's rows with the other sequences' positions set to -1
  // (outside the launch; cuda_backend_subset_attention.cc), so a graph step mixing dense and
  // sparse sequences is captured like any other; prefill rows: the default's batch view.
  absl::Status SubsetAttention(int layer, const AttentionConfig& config,
                               const ForwardBatch& batch, absl::Span<const size_t> sequences,
                               const KvBlockPool& pool, const DeviceTensor& qkv,
                               DeviceTensor& out) override;
  // Dense decode rows beside sparse ones: SubsetAttention on a side stream while Double
  // Sparsity runs on the backend's (forked and joined by events, in graph steps too); any
  // other mix: the default, one after the other.
  absl::Status MixedAttention(int layer, const AttentionConfig& config, const ForwardBatch& batch,
                              absl::Span<const size_t> dense, absl::Span<const size_t> sparse,
                              const KvBlockPool& pool, DoubleSparsity& ds,
                              const DeviceTensor& qkv, DeviceTensor& out) override;
  absl::Status BeginStep(const ForwardBatch& batch, const KvBlockPool& pool, bool capturable,
                         DoubleSparsity* ds) override;
  absl::Status EndStep() override;

  // Selects the flash-decoding block body (the benchmark compares them).
  void set_decode_algo(DecodeAttentionAlgo algo) {
    options_.decode_algo = algo;
    ClearGraphs();
  }
  DecodeAttentionAlgo decode_algo() const { return options_.decode_algo; }
  // Whether Double Sparsity's scoring and top-k run fused (Options::ds_fused_select).
  void set_fused_select(FusedSelectMode mode) {
    options_.ds_fused_select = mode;
    ClearGraphs();
  }
  // Selects Double Sparsity's top-k kernel (Options::ds_topk_algo; tests and benchmarks).
  void set_topk_algo(TopKAlgo algo) {
    options_.ds_topk_algo = algo;
    ClearGraphs();
  }
  // Selects the linear-layer body (the benchmark compares them).
  void set_linear_algo(LinearAlgo algo) {
    options_.linear_algo = algo;
    ClearGraphs();
  }
  // Programmatic dependent launch of the forward pass's kernels (kernels/cuda/dependent_launch.h;
  // on by default). Process-wide: it sets the kernels' switch for every backend of the process
  // (the benchmark compares the two). Drops the cached graphs, which keep what they captured.
  void set_dependent_launch(bool on) {
    cuda::SetDependentLaunch(on);
    ClearGraphs();
  }
  // Double Sparsity's chain launched dependent, no early start (dependent_launch.h;
  // process-wide like the above). Drops the cached graphs.
  void set_dependent_sparse_chain(bool on) {
    cuda::SetDependentSparseChain(on);
    ClearGraphs();
  }
  // MixedAttention's side stream on or off, and its split aim (Options::dense_beside_sparse,
  // beside_waves).
  void set_dense_beside_sparse(bool on, int waves = -1) {
    options_.dense_beside_sparse = on;
    options_.beside_waves = waves;
    ClearGraphs();
  }
  // The sparse chain in two halves on two streams, or in one (Options::split_sparse_chain).
  void set_split_sparse_chain(bool on) {
    options_.split_sparse_chain = on;
    ClearGraphs();
  }
  bool split_sparse_chain() const { return options_.split_sparse_chain; }
  // Turns decode-step graphs on or off (off drops the cached graphs).
  void set_decode_graphs(bool on) {
    options_.decode_graphs = on;
    if (!on) ClearGraphs();
  }
  // Decode-step graphs: how many are cached, and how many steps replayed one (tests, bench).
  size_t graphs_cached() const { return graphs_.size(); }
  int64_t graph_replays() const { return graph_replays_; }
  // Sparse layers whose chain was issued in two halves (LaunchSplitSparseChain), eagerly or
  // into a captured graph.
  int64_t split_sparse_chains() const { return split_sparse_chains_; }

  // Fills `t` with uniform random values in [-scale, scale) (benchmark weights).
  absl::Status FillRandom(DeviceTensor& t, uint64_t seed, float scale);
  // Waits for all queued work; returns the first asynchronous error.
  absl::Status Synchronize();
  cudaStream_t stream() const { return stream_; }
  int sm_count() const { return sm_count_; }

  // Double Sparsity (cuda_backend_sparse.cc; kernels in kernels/cuda/double_sparsity.cuh).
  absl::Status StoreLabels(int layer, const ForwardBatch& batch, DoubleSparsity& ds,
                           const DeviceTensor& qkv) override;
  absl::Status SparseAttention(int layer, const ForwardBatch& batch,
                               absl::Span<const size_t> sequences, const KvBlockPool& pool,
                               DoubleSparsity& ds, const DeviceTensor& qkv,
                               DeviceTensor& out) override;

  // Test diagnostics for Double Sparsity: while on, every SparseAttention call waits for its
  // work and copies to host, per sparse sequence, exactly what its label writer, scorer and
  // selection read and produced, so a test can replay the CPU twins on the CUDA engine's own
  // data (bit-exact: no fp16-vs-fp32 activation noise in the comparison). Off by default;
  // nothing is copied while off.
  struct SparseCapture {
    int layer = -1;
    int heads_q = 0, heads_kv = 0, head_dim = 0;
    struct Seq {
      int r = 0, bits = 16, aggregation = 0, sink = 0, recent = 0;
      int64_t tokens = 0, budget = 0;
      std::vector<float> q;                        // [heads_q, head_dim] post-RoPE
      std::vector<float> keys;                     // [tokens, heads_kv, head_dim] from the pool
      std::vector<int32_t> channels;               // [heads_kv, r]
      std::vector<uint16_t> f16;                   // bits 16: [tokens, heads_kv, r]
      std::vector<uint8_t> codes;                  // bits 4: [tokens, heads_kv, ceil(r/2)]
      std::vector<uint16_t> scales, minimums;      // bits 4: [tokens, heads_kv]
      std::vector<float> scores;                   // [heads_kv, tokens], the fp16 scores
      std::vector<std::vector<int32_t>> selected;  // [heads_kv], ascending
    };
    std::vector<Seq> seqs;
  };
  void set_capture_sparse(bool on) { capture_sparse_ = on; }
  // Marks the device labels of each batch sequence's rows (from its start position on) as not
  // written, so that its next sparse step writes them again: a benchmark that repeats one
  // decode step pays that step's label write, as a real decode step does.
  void ForgetDeviceLabelsOf(const ForwardBatch& batch);
  // Frees the sparse decode path's device labels of every sequence (on the stream; the offload
  // tier keeps its own): for a caller ending a pool whose sequence ids a later pool will number
  // again (dsinfer-bench between configurations); the server's one pool never reuses an id.
  absl::Status ReleaseDeviceLabels();

  // The offload tier (cuda_backend_offload.cc, its selections in cuda_backend_offload_select.cc,
  // its gathers and GatheredAttention in cuda_backend_offload_fetch.cc; kernels in
  // kernels/cuda/offload_gather.cuh).
  // Selection runs on the backend's stream; SelectAndFetch (the model's path without a reuse
  // cache) leaves it on the device for the gather, SelectTokens copies it to host lists (one
  // host wait per selection). Fetches run on a second (copy) stream, ordered after the work
  // queued before them by an event, and attention waits for its buffer's fetch with
  // cudaStreamWaitEvent (no host wait).
  absl::Status BeginOffloadStep(const AttentionConfig& config, const ForwardBatch& batch,
                                const KvBlockPool& pool) override;
  absl::Status RopeQueries(const AttentionConfig& config, absl::Span<const int32_t> positions,
                           DeviceTensor& q) override;
  absl::Status SelectTokens(int layer, const ForwardBatch& batch, size_t index,
                            DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                            bool current_label_written,
                            std::vector<std::vector<int32_t>>& selection) override;
  absl::Status FetchRows(const FetchPlan& plan, const KvBlockPool& pool,
                         KvBlockPool::SequenceId seq, OffloadTier& tier) override;
  bool SelectsOnDevice() const override { return true; }
  absl::Status SelectAndFetch(int layer, const ForwardBatch& batch, size_t index,
                              DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                              bool current_label_written, const FetchPlan& plan,
                              const KvBlockPool& pool, OffloadTier& tier) override;
  absl::Status SelectAndFetchMany(int layer, const ForwardBatch& batch,
                                  const std::vector<SelectFetch>& rows, DoubleSparsity& ds,
                                  const DeviceTensor& q, bool current_label_written,
                                  const KvBlockPool& pool, OffloadTier& tier) override;
  absl::StatusOr<std::vector<int64_t>> DeviceReuseHits(size_t segments) override;
  absl::Status GatheredAttention(int layer, const AttentionConfig& config,
                                 const ForwardBatch& batch, size_t index,
                                 const std::vector<std::vector<int32_t>>* selection,
                                 OffloadTier& tier, size_t segment, const KvBlockPool& pool,
                                 DoubleSparsity& ds, const DeviceTensor& qkv,
                                 DeviceTensor& out) override;
  absl::Status LabelLayerFrom(int layer, const ForwardBatch& batch, size_t index,
                              DoubleSparsity& ds, const KvBlockPool& source, int source_layer,
                              const KvBlockPool& pool) override;
  // The copy stream of the offload tier (created on first use; nullptr before).
  cudaStream_t offload_copy_stream() const;
  // Device bytes held by the offload path's own state (label caches, scratch, plan buffers).
  int64_t offload_device_bytes() const;
  const std::vector<SparseCapture>& sparse_captures() const { return sparse_captures_; }
  void clear_sparse_captures() { sparse_captures_.clear(); }

 private:
  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {}
  // Uploads positions, row→sequence map, prefill tiles and block tables of `batch`.
  absl::Status PrepareBatch(const ForwardBatch& batch, const KvBlockPool& pool);
  CudaPagedKv KvView(const KvBlockPool& pool, int layer) const;
  CudaBatchRows BatchRows() const;
  absl::Status UploadInvFreq(const AttentionConfig& config);
  // Flash-decoding of `rows` (the prepared batch's rows, or their subset view) over kv in
  // `splits` pieces a row, on `stream`.
  absl::Status DecodeAttention(const AttentionConfig& config, const CudaBatchRows& rows,
                               int splits, const CudaPagedKv& kv, const DeviceTensor& qkv,
                               DeviceTensor& out, cudaStream_t stream);
  // The decode workspace grown for the prepared batch's rows at `splits` pieces a row.
  absl::Status EnsureDecodeWorkspace(int heads_q, int head_dim, int splits);
  // An eager SubsetAttention's preparation on the backend's stream: the batch prepared, the
  // subset's positions uploaded, the workspace grown for its split count (nothing is redone
  // for a batch and subset already up, so MixedAttention does it before its fork and its side
  // launch finds it done).
  absl::Status PrepareSubset(const AttentionConfig& config, const ForwardBatch& batch,
                             const KvBlockPool& pool, absl::Span<const size_t> sequences,
                             bool beside);
  // SubsetAttention's launch on `stream`, once the batch and the subset's positions are up.
  // (`beside`: on MixedAttention's side stream, its split count SubsetDecodeSplits' for that).
  absl::Status SubsetAttentionOn(int layer, const AttentionConfig& config,
                                 const ForwardBatch& batch, absl::Span<const size_t> sequences,
                                 const KvBlockPool& pool, const DeviceTensor& qkv,
                                 DeviceTensor& out, cudaStream_t stream, bool beside);
  // Uploads, for each subset of `subsets` (index lists into batch.sequences), the prepared
  // batch's positions with every row outside it at position -1 (outside the launch: the decode
  // kernels leave its output alone), one slot of rows a subset, in place of those up before.
  absl::Status UploadSubsetPositions(const ForwardBatch& batch,
                                     const std::vector<std::vector<size_t>>& subsets);
  // SubsetAttention's positions for `sequences`: their slot if uploaded for this prepared
  // batch (subset_uploaded_), else null.
  const int32_t* SubsetPositions(absl::Span<const size_t> sequences) const;
  // SubsetAttention's split count: for the subset's rows and their longest context (a graph
  // step: its block bucket's); `beside` Double Sparsity, aimed by Options::beside_waves.
  int SubsetDecodeSplits(int heads_q, int heads_kv, int head_dim, const ForwardBatch& batch,
                         absl::Span<const size_t> sequences, bool beside) const;
  // A graph step's operation signature of a layer's attention over `pool` (Attention: op 7,
  // SubsetAttention: op 10).
  static uint64_t AttentionOpSig(uint64_t op, int layer, const AttentionConfig& config,
                                 const KvBlockPool& pool, const DeviceTensor& qkv,
                                 const DeviceTensor& out);

  // A grow-only device buffer.
  struct Buffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  absl::Status Ensure(Buffer& buffer, size_t bytes);

  enum class StepMode { kEager, kCapture, kReplay };
  struct StepGraph {
    cudaGraphExec_t exec = nullptr;
    std::vector<uint64_t> ops;  // signature of each operation of the recorded step
    uint64_t last_used = 0;     // graph_clock_ at its last capture or replay
  };
  // Whether a linear layer of `rows` rows over `w` takes the GEMV kernels
  // (options_.linear_algo).
  bool UsesGemv(int64_t rows, const DeviceTensor& w) const;
  // In a graph step, records (capture) or checks (replay) one operation's signature. Returns
  // true when the caller must skip its launch (replay).
  absl::StatusOr<bool> GraphOp(uint64_t signature);
  // Drops an unfinished capture or replay (after a failed operation).
  void AbortStep();
  void ClearGraphs();
  // Flash-decoding split count for the prepared batch, or for `rows` of it that attend up to
  // `context` tokens (a graph step: its block bucket's).
  // waves: the aim (DecodeAttentionSplits); -1 takes Options::decode_waves.
  int DecodeSplits(int heads_q, int heads_kv, int64_t rows = -1, int64_t context = -1,
                   int waves = -1) const;

  CudaBackendOptions options_;
  DeviceKvMemory kv_memory_;
  PinnedHostMemory offload_memory_;
  cudaStream_t stream_ = nullptr;
  // MixedAttention's side stream for the dense rows, and its fork and join events.
  cudaStream_t side_stream_ = nullptr;
  cudaEvent_t side_fork_ = nullptr, side_join_ = nullptr;
  // The split sparse chain's second stream, and its fork and join events.
  cudaStream_t split_stream_ = nullptr;
  cudaEvent_t split_fork_ = nullptr, split_join_ = nullptr;
  // While MixedAttention runs a layer's chain beside its dense launch (SparseChainSplit
  // leaves such a chain whole).
  bool chain_beside_dense_ = false;
  cublasHandle_t cublas_ = nullptr;
  int sm_count_ = 0;

  Buffer meta_, ids_, scratch_, scratch_f32_, attn_ws_, inv_freq_;
  Buffer logit_stats_;  // LogitStats: [rows] argmax then [rows] log Σ exp
  // SubsetAttention's positions (UploadSubsetPositions), a slot of rows_ positions per subset,
  // and the subsets in slot order; PrepareBatch clears them (a new batch's positions). A graph
  // step's are uploaded by BeginStep, every layer's subset, and SubsetAttention finds its own.
  Buffer subset_positions_;
  std::vector<std::vector<size_t>> subset_uploaded_;
  std::vector<float> inv_freq_host_;
  std::vector<int32_t> meta_host_;
  // Layout of the uploaded batch metadata (offsets into meta_, in int32 elements).
  const ForwardBatch* batch_ = nullptr;
  int64_t rows_ = 0, tiles_ = 0, tiles_off_ = 0, tables_off_ = 0, seq_off_ = 0;
  int max_blocks_ = 0;
  int max_context_ = 0;
  bool decode_only_ = false;
  int block_tokens_ = 0;

  // CUDA graphs of decode steps, keyed by (rows, block-table bucket, sparse layout: 0 for
  // none, else PlanSparseGraphStep's key).
  using StepKey = std::tuple<int64_t, int, uint64_t>;
  StepMode mode_ = StepMode::kEager;
  bool graph_step_ = false;  // PrepareBatch pads block tables to a bucket
  std::map<StepKey, StepGraph> graphs_;
  StepKey step_key_;
  std::vector<uint64_t> op_log_;
  size_t op_index_ = 0;
  int64_t graph_replays_ = 0;
  int64_t split_sparse_chains_ = 0;
  uint64_t graph_clock_ = 0;  // counts graph steps, for the cache's least-recently-used rule
  // From the last eager decode Attention or SparseAttention.
  int last_heads_q_ = 0, last_heads_kv_ = 0;
  Buffer cublas_ws_;
  // Double Sparsity state: device label caches per sequence, device channel sets, scratch
  // (defined in cuda_backend_sparse.cc; shared_ptr so that this header needs no definition).
  struct DsState;
  std::shared_ptr<DsState> ds_state_;
  bool capture_sparse_ = false;
  std::vector<SparseCapture> sparse_captures_;
  // One sparse layer's descriptors for `sequences` (labels reserved, channels uploaded, the
  // missing labels' ranges; `written` advanced). bucket_tokens 0: sized for this step (eager);
  // else for any context of the graph step's block bucket, with the current token's label
  // always rewritten.
  absl::Status DescribeSparseLayer(int layer, const ForwardBatch& batch,
                                   absl::Span<const size_t> sequences, const KvBlockPool& pool,
                                   DoubleSparsity& ds, int heads_q, int64_t bucket_tokens,
                                   SparseLayerPlan& plan);
  // Grows the selection scratch for `plan` (and, with `scores`, the score buffer and top-k
  // workspace, which ScoreAndSelect otherwise grows itself).
  absl::Status GrowSparseScratch(const SparseLayerPlan& plan, int heads_q, int heads_kv,
                                 int head_dim, bool scores);
  // The four launches of an uploaded plan: label catch-up, scores and top-k, attention.
  absl::Status LaunchSparseLayer(const SparseLayerPlan& plan, const CudaPagedKv& kv, int heads_q,
                                 const DeviceTensor& qkv, DeviceTensor& out);
  // Where a sparse layer's chain of plan's sequences splits (Options::split_sparse_chain):
  // the first sequence of its second half, or 0 to run it whole — SplitChainHalf's rule
  // (split_chain.h) under the backend's top-k and fusing, and never beside MixedAttention's
  // dense launch.
  int SparseChainSplit(const SparseLayerPlan& plan, int heads_kv) const;
  // Scores, top-k and attention of `job`'s sequences [0, half) on the backend's stream and
  // [half, num_seqs) on the split stream, forked after the first half's scores and joined at
  // the end; each half in its own rows of the layer's scratch (GrowSparseScratch sized the
  // workspace for both). The same results as one chain.
  absl::Status LaunchSplitSparseChain(const ScoreSelectJob& job, int half, const CudaPagedKv& kv,
                                      DeviceTensor& out);
  // A graph step's Double Sparsity, before capture or replay (BeginStep): checks the step can
  // run as a graph (0 if not: it runs eagerly), then describes every sparse layer, uploads the
  // descriptors and grows the scratch. Returns the layout's key (never 0).
  absl::StatusOr<uint64_t> PlanSparseGraphStep(const ForwardBatch& batch,
                                               const KvBlockPool& pool, DoubleSparsity& ds);
  // A capture's label views for `layer`'s RoPE launch, where the graph step's plan has that
  // launch write the current token's labels (SparseLayerPlan::labels_in_rope); else null.
  const CudaLabelSeq* GraphRopeLabels(int layer) const;
  // SparseAttention inside a graph step: the recorded layer plan's launches (capture) or none
  // (replay); the statistics count either way.
  absl::Status GraphSparseAttention(int layer, const ForwardBatch& batch,
                                    absl::Span<const size_t> sequences, const KvBlockPool& pool,
                                    DoubleSparsity& ds, const DeviceTensor& qkv,
                                    DeviceTensor& out);
  // How a selection may run fused: Options::ds_fused_select with the default kernels, else
  // kOff.
  FusedSelectMode FusedSelect() const {
    return FusingFor(options_.ds_score_algo, options_.ds_topk_algo, options_.ds_fused_select);
  }
  // How this backend's selections run: FusedSelect, or kOff under the test capture (which
  // copies the scores back, so it takes the two launches).
  FusedSelectMode SelectionFusing() const {
    return capture_sparse_ ? FusedSelectMode::kOff : FusedSelect();
  }
  // Offload tier state: copy stream, events, plan staging, label caches, scratch
  // (defined in offload_state.h).
  struct OffloadState;
  std::shared_ptr<OffloadState> offload_state_;
  // The device token path's pinned staging and device buffer (cuda_backend_token_choice.cc).
  struct TokenChoiceState;
  std::shared_ptr<TokenChoiceState> token_choice_state_;
  int64_t device_token_steps_ = 0;
  absl::StatusOr<OffloadState*> Offload();
  // The gather of `plan` (pool rows of `table` into the plan's buffer segment) with no rows
  // named yet: the caller sets rows, a selection, or a dense range (and reuse slabs).
  CudaFetchJob FetchJobFor(const FetchPlan& plan, const KvBlockPool& pool, const int32_t* table,
                           const OffloadTier& tier) const;
  // CopyKvBlocks' copies queued on `stream`.
  absl::Status CopyKvBlocksOn(const KvBlockPool& src, int src_layer, KvBlockPool& dst,
                              int dst_layer, const std::vector<int32_t>& blocks,
                              cudaStream_t stream);
  // Offload steps (StoreLabels): the current token's label at `layer` of each decode row whose
  // labels there reach up to it, written from the step's post-RoPE K in qkv (on the device), so
  // that the next selection at the layer has nothing to catch up from the host pool (one small
  // launch per sequence reading the previous token's K over PCIe; docs/benchmarks.md run 10).
  absl::Status StoreCurrentLabels(int layer, const ForwardBatch& batch, DoubleSparsity& ds,
                                  const DeviceTensor& qkv);
  // The device part of the selections of `rows` (their plans unread): labels caught up, then
  // one scoring and one top-k launch for all of them, row i's into selected + i · Hkv ·
  // sel_stride as [Hkv, sel_stride] (its first k entries per head: k = the sequence's
  // AttentionOptions::BudgetFor its tokens, the selection's size, <= sel_stride; counts into
  // the state's scratch [rows, Hkv]), on the backend stream.
  absl::Status SelectIntoDevice(int layer, const ForwardBatch& batch,
                                const std::vector<SelectFetch>& rows, DoubleSparsity& ds,
                                const DeviceTensor& q, bool current_label_written,
                                int32_t* selected, int64_t sel_stride);
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_CUDA_BACKEND_H_
