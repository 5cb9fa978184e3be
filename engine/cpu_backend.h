// The CPU reference backend: fp32 activations, fp32 copies of the checkpoint's rounded
// weights, fp32 KV in ordinary memory, and the kernels' reference twins for every op. It is
// what CI runs, the golden tests hold against transformers, and the CUDA backend's twin.
#ifndef DSINFER_ENGINE_CPU_BACKEND_H_
#define DSINFER_ENGINE_CPU_BACKEND_H_

#include "engine/backend.h"
#include "kernels/paged_kv.h"

namespace dsinfer {

// Not final: tests derive from it to check engine accounting that depends on backend
// capabilities (e.g. keeps_labels_on_device).
class CpuBackend : public Backend {
 public:
  absl::string_view name() const override { return "cpu"; }
  DType kv_dtype() const override { return DType::kF32; }
  HostMemory& kv_memory() override { return memory_; }

  absl::StatusOr<DeviceTensor> Allocate(int64_t rows, int64_t cols) override;
  void Free(DeviceTensor& tensor) override;
  absl::StatusOr<DeviceTensor> UploadWeight(absl::Span<const TensorRef* const> parts) override;
  absl::Status CopyRowsToHost(const DeviceTensor& src, absl::Span<const int64_t> rows,
                              float* dst) override;

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
  absl::Status RopeAndStoreKv(int layer, const AttentionConfig& config, const ForwardBatch& batch,
                              KvBlockPool& pool, DeviceTensor& qkv) override;
  absl::Status Attention(int layer, const AttentionConfig& config, const ForwardBatch& batch,
                         const KvBlockPool& pool, const DeviceTensor& qkv,
                         DeviceTensor& out) override;
  absl::Status StoreLabels(int layer, const ForwardBatch& batch, DoubleSparsity& ds,
                           const DeviceTensor& qkv) override;
  absl::Status SparseAttention(int layer, const ForwardBatch& batch,
                               absl::Span<const size_t> sequences, const KvBlockPool& pool,
                               DoubleSparsity& ds, const DeviceTensor& qkv,
                               DeviceTensor& out) override;
  absl::Status RopeQueries(const AttentionConfig& config, absl::Span<const int32_t> positions,
                           DeviceTensor& q) override;
  absl::Status SelectTokens(int layer, const ForwardBatch& batch, size_t index,
                            DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                            bool current_label_written,
                            std::vector<std::vector<int32_t>>& selection) override;
  absl::Status FetchRows(const FetchPlan& plan, const KvBlockPool& pool,
                         KvBlockPool::SequenceId seq, OffloadTier& tier) override;
  absl::Status GatheredAttention(int layer, const AttentionConfig& config,
                                 const ForwardBatch& batch, size_t index,
                                 const std::vector<std::vector<int32_t>>* selection,
                                 OffloadTier& tier, size_t segment, const KvBlockPool& pool,
                                 DoubleSparsity& ds, const DeviceTensor& qkv,
                                 DeviceTensor& out) override;

 private:
  PageableHostMemory memory_;
};

// The view of `seq`'s K/V rows in `layer` of an fp32 pool.
PagedKvView<const float> CpuKvView(const KvBlockPool& pool, int layer, KvBlockPool::SequenceId seq);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CPU_BACKEND_H_
