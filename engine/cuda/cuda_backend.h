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
// Not thread-safe: one engine thread drives it. CUDA graphs for decode are not implemented
// yet (each op is its own launch).
#ifndef DSINFER_ENGINE_CUDA_CUDA_BACKEND_H_
#define DSINFER_ENGINE_CUDA_CUDA_BACKEND_H_

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/model_config.h"
#include "kernels/cuda/cuda_kernels.h"

namespace dsinfer {

struct CudaBackendOptions {
  int device = 0;
  DType dtype = DType::kBF16;  // activations, weights and KV: kBF16 or kF16

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

// GPU memory needed to serve `config` with a KV pool of `kv_pool_tokens` tokens and batches of
// up to `max_rows` rows, against what the device has free. RESOURCE_EXHAUSTED, naming each
// term, when it does not fit.
struct CudaMemoryPlan {
  int64_t weight_bytes = 0;
  int64_t kv_bytes = 0;
  int64_t workspace_bytes = 0;
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
  int64_t needed() const { return weight_bytes + kv_bytes + workspace_bytes; }
  std::string ToString() const;
};
absl::StatusOr<CudaMemoryPlan> PlanCudaMemory(const ModelConfig& config, int64_t kv_pool_tokens,
                                              int64_t max_rows, DType dtype, int device);

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
  absl::Status AddRmsNorm(DeviceTensor& residual, const DeviceTensor& delta,
                          const DeviceTensor& weight, float eps, DeviceTensor& out) override;
  absl::Status Linear(const DeviceTensor& x, const DeviceTensor& w, DeviceTensor& y) override;
  absl::Status SwiGlu(const DeviceTensor& gate_up, DeviceTensor& out) override;
  absl::Status RopeAndStoreKv(int layer, const AttentionConfig& config, const ForwardBatch& batch,
                              KvBlockPool& pool, DeviceTensor& qkv) override;
  absl::Status Attention(int layer, const AttentionConfig& config, const ForwardBatch& batch,
                         const KvBlockPool& pool, const DeviceTensor& qkv,
                         DeviceTensor& out) override;

  // Fills `t` with uniform random values in [-scale, scale) (benchmark weights).
  absl::Status FillRandom(DeviceTensor& t, uint64_t seed, float scale);
  // Waits for all queued work; returns the first asynchronous error.
  absl::Status Synchronize();
  cudaStream_t stream() const { return stream_; }
  int sm_count() const { return sm_count_; }

 private:
  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {}
  // Uploads positions, row→sequence map, prefill tiles and block tables of `batch`.
  absl::Status PrepareBatch(const ForwardBatch& batch, const KvBlockPool& pool);
  CudaPagedKv KvView(const KvBlockPool& pool, int layer) const;
  CudaBatchRows BatchRows() const;
  absl::Status UploadInvFreq(const AttentionConfig& config);

  // A grow-only device buffer.
  struct Buffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  absl::Status Ensure(Buffer& buffer, size_t bytes);

  CudaBackendOptions options_;
  DeviceKvMemory kv_memory_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int sm_count_ = 0;

  Buffer meta_, ids_, scratch_, scratch_f32_, attn_ws_, inv_freq_;
  std::vector<float> inv_freq_host_;
  std::vector<int32_t> meta_host_;
  // Layout of the uploaded batch metadata (offsets into meta_, in int32 elements).
  const ForwardBatch* batch_ = nullptr;
  int64_t rows_ = 0, tiles_ = 0, tiles_off_ = 0, tables_off_ = 0, seq_off_ = 0;
  int max_blocks_ = 0;
  int max_context_ = 0;
  bool decode_only_ = false;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_CUDA_BACKEND_H_
