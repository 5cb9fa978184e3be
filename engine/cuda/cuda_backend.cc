// Shape checks are programmer invariants of the forward pass, returned as INTERNAL errors (as
// the CPU backend does) so a bug cannot take a server down. Host-side validation of token ids
// and row indices happens before anything is uploaded, so a bad id never reaches a kernel.
#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/cuda/graph_signature.h"
#include "engine/cuda/sparse_state.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

absl::Status ShapeError(const char* op, const std::string& what) {
  return absl::InternalError(absl::StrCat("cuda backend ", op, ": ", what));
}

absl::Status CublasStatus(cublasStatus_t st, const char* expr) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(expr, " failed: ", cublasGetStatusString(st)));
}

constexpr int64_t kMaxGraphRows = 256;
constexpr size_t kMaxGraphs = 64;
constexpr size_t kCublasWorkspaceBytes = 32ull << 20;

}  // namespace

absl::Status CudaBackendOptions::Validate() const {
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    return absl::InvalidArgumentError("cuda backend dtype must be bf16 or f16");
  }
  if (device < 0) return absl::InvalidArgumentError("cuda device must be >= 0");
  if (beside_waves < -1) return absl::InvalidArgumentError("cuda beside_waves must be >= -1");
  if (fetch_blocks < 1 || fetch_reuse_blocks < 1) {
    return absl::InvalidArgumentError(
        "cuda backend fetch_blocks and fetch_reuse_blocks must be >= 1");
  }
  return absl::OkStatus();
}

absl::StatusOr<void*> DeviceKvMemory::Allocate(size_t bytes) {
  void* ptr = nullptr;
  if (const cudaError_t e = cudaMalloc(&ptr, std::max<size_t>(bytes, 256)); e != cudaSuccess) {
    cudaGetLastError();  // a refused allocation leaves the device usable
    return absl::ResourceExhaustedError(absl::StrCat("cudaMalloc of ", bytes,
                                                     " bytes of device memory: ",
                                                     cudaGetErrorString(e)));
  }
  CUDA_RETURN_IF_ERROR(cudaMemset(ptr, 0, bytes));
  // cudaMemset may return before it is done, on the legacy stream, which the backend's
  // non-blocking streams do not wait for: the memory is handed out zeroed only once it is.
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(nullptr));
  return ptr;
}

void DeviceKvMemory::Free(void* ptr) {
  if (ptr != nullptr) cudaFree(ptr);
}

bool CudaDeviceAvailable() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return count > 0;
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const CudaBackendOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  if (!CudaDeviceAvailable()) return absl::UnavailableError("no CUDA device is available");
  auto backend = std::unique_ptr<CudaBackend>(new CudaBackend(options));
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&backend->sm_count_, cudaDevAttrMultiProcessorCount, options.device));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&backend->stream_, cudaStreamNonBlocking));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&backend->side_stream_, cudaStreamNonBlocking));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&backend->split_stream_, cudaStreamNonBlocking));
  for (cudaEvent_t* e : {&backend->side_fork_, &backend->side_join_, &backend->split_fork_,
                         &backend->split_join_}) {
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
  }
  RETURN_IF_ERROR(CublasStatus(cublasCreate(&backend->cublas_), "cublasCreate"));
  RETURN_IF_ERROR(CublasStatus(cublasSetStream(backend->cublas_, backend->stream_),
                               "cublasSetStream"));
  // An explicit cuBLAS workspace: a captured GEMM must not allocate.
  RETURN_IF_ERROR(backend->Ensure(backend->cublas_ws_, kCublasWorkspaceBytes));
  RETURN_IF_ERROR(CublasStatus(cublasSetWorkspace(backend->cublas_, backend->cublas_ws_.ptr,
                                                  backend->cublas_ws_.bytes),
                               "cublasSetWorkspace"));
  return backend;
}

CudaBackend::~CudaBackend() {
  AbortStep();
  for (cudaStream_t s : {stream_, side_stream_, split_stream_}) {
    if (s != nullptr) cudaStreamSynchronize(s);
  }
  ClearGraphs();
  for (Buffer* b : {&meta_, &ids_, &scratch_, &scratch_f32_, &attn_ws_, &inv_freq_, &cublas_ws_,
                    &subset_positions_}) {
    if (b->ptr != nullptr) cudaFree(b->ptr);
  }
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  for (cudaEvent_t e : {side_fork_, side_join_, split_fork_, split_join_}) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  for (cudaStream_t s : {side_stream_, split_stream_}) {
    if (s != nullptr) cudaStreamDestroy(s);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status CudaBackend::Ensure(Buffer& buffer, size_t bytes) {
  if (bytes <= buffer.bytes) return absl::OkStatus();
  if (mode_ != StepMode::kEager) {
    AbortStep();
    return absl::InternalError("cuda backend: a buffer must grow inside a graph step");
  }
  if (buffer.ptr != nullptr) {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // no kernel may still read it
    ClearGraphs();  // they hold the old pointer
    CUDA_RETURN_IF_ERROR(cudaFree(buffer.ptr));
    buffer.ptr = nullptr;
    buffer.bytes = 0;
  }
  const size_t grown = std::max<size_t>(bytes, 4096) * 3 / 2;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&buffer.ptr, grown));
  buffer.bytes = grown;
  return absl::OkStatus();
}

absl::Status CudaBackend::Synchronize() {
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::StatusOr<DeviceTensor> CudaBackend::Allocate(int64_t rows, int64_t cols) {
  DeviceTensor t;
  t.rows = rows;
  t.cols = cols;
  t.dtype = options_.dtype;
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(rows * cols, 1)) *
                       DTypeSize(options_.dtype);
  CUDA_RETURN_IF_ERROR(cudaMalloc(&t.data, bytes));
  return t;
}

absl::StatusOr<DeviceTensor> CudaBackend::AllocateF32(int64_t rows, int64_t cols) {
  DeviceTensor t;
  t.rows = rows;
  t.cols = cols;
  t.dtype = DType::kF32;
  CUDA_RETURN_IF_ERROR(
      cudaMalloc(&t.data, static_cast<size_t>(std::max<int64_t>(rows * cols, 1)) * sizeof(float)));
  return t;
}

void CudaBackend::Free(DeviceTensor& tensor) {
  AbortStep();
  if (tensor.data != nullptr) {
    cudaStreamSynchronize(stream_);
    ClearGraphs();  // a graph may hold this pointer
    cudaFree(tensor.data);
  }
  tensor.data = nullptr;
}

absl::Status CudaBackend::FillRandom(DeviceTensor& t, uint64_t seed, float scale) {
  return LaunchFillRandom(t.dtype, t.data, t.elements(), seed, scale, stream_);
}

absl::StatusOr<DeviceTensor> CudaBackend::UploadWeight(absl::Span<const TensorRef* const> parts) {
  ASSIGN_OR_RETURN(const auto shape, StackedShape(parts));
  ASSIGN_OR_RETURN(DeviceTensor t, Allocate(shape.first, shape.second));
  std::vector<float> f32;
  std::vector<uint16_t> half;
  char* dst = static_cast<char*>(t.data);
  for (const TensorRef* p : parts) {
    const size_t n = static_cast<size_t>(p->NumElements());
    const void* src = p->data;
    if (p->dtype != options_.dtype) {
      f32.resize(n);
      half.resize(n);
      RETURN_IF_ERROR(ConvertToF32(p->dtype, p->data, n, f32.data()));
      for (size_t i = 0; i < n; ++i) {
        half[i] = options_.dtype == DType::kBF16 ? F32ToBf16(f32[i]) : F32ToF16(f32[i]);
      }
      src = half.data();
    }
    CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, n * 2, cudaMemcpyHostToDevice));
    dst += n * 2;
  }
  return t;
}

absl::Status CudaBackend::GatherRows(const DeviceTensor& src, absl::Span<const int64_t> rows,
                                     DeviceTensor& dst) {
  // Same dtype, 16-bit to fp32, or fp32 rounded to 16-bit (the fp32 residual into a 16-bit
  // activation, as the offload path's layer prediction does).
  if (dst.cols != src.cols || dst.rows < static_cast<int64_t>(rows.size()) ||
      (dst.dtype != src.dtype && dst.dtype != DType::kF32 && src.dtype != DType::kF32)) {
    return ShapeError("GatherRows", "output shape");
  }
  if (mode_ != StepMode::kEager) return ShapeError("GatherRows", "inside a graph step");
  std::vector<int32_t> ids(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= src.rows) return ShapeError("GatherRows", "row out of range");
    ids[i] = static_cast<int32_t>(rows[i]);
  }
  RETURN_IF_ERROR(Ensure(ids_, ids.size() * sizeof(int32_t)));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ids_.ptr, ids.data(), ids.size() * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream_));
  return LaunchEmbeddingEx(src.dtype, dst.dtype, src.data, src.cols,
                           static_cast<int32_t*>(ids_.ptr), static_cast<int64_t>(ids.size()),
                           dst.data, dst.cols, stream_);
}

absl::Status CudaBackend::CopyRowsToHost(const DeviceTensor& src, absl::Span<const int64_t> rows,
                                         float* dst) {
  const int64_t n = static_cast<int64_t>(rows.size());
  if (n == 0) return absl::OkStatus();
  if (mode_ != StepMode::kEager) return ShapeError("CopyRowsToHost", "inside a graph step");
  RETURN_IF_ERROR(Ensure(scratch_f32_, static_cast<size_t>(n * src.cols) * sizeof(float)));
  if (src.dtype == DType::kF32) {  // gather straight into the fp32 staging buffer
    DeviceTensor gathered{scratch_f32_.ptr, DType::kF32, n, src.cols};
    RETURN_IF_ERROR(GatherRows(src, rows, gathered));
  } else {
    DeviceTensor gathered{nullptr, src.dtype, n, src.cols};
    RETURN_IF_ERROR(Ensure(scratch_, static_cast<size_t>(n * src.cols) * DTypeSize(src.dtype)));
    gathered.data = scratch_.ptr;
    RETURN_IF_ERROR(GatherRows(src, rows, gathered));
    RETURN_IF_ERROR(LaunchToF32(src.dtype, gathered.data, n * src.cols,
                                static_cast<float*>(scratch_f32_.ptr), stream_));
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, scratch_f32_.ptr,
                                       static_cast<size_t>(n * src.cols) * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::LogitStats(const DeviceTensor& logits, int64_t rows,
                                     std::vector<LogitRowStat>& out) {
  out.clear();
  if (rows == 0) return absl::OkStatus();
  if (mode_ != StepMode::kEager) return ShapeError("LogitStats", "inside a graph step");
  if (logits.dtype != DType::kF32 || logits.rows < rows) return ShapeError("LogitStats", "logits");
  const size_t n = static_cast<size_t>(rows);
  RETURN_IF_ERROR(Ensure(logit_stats_, 2 * n * 4));
  int32_t* ids = static_cast<int32_t*>(logit_stats_.ptr);
  float* lse = reinterpret_cast<float*>(ids + n);
  RETURN_IF_ERROR(
      LaunchArgmax(DType::kF32, logits.data, rows, logits.cols, logits.cols, ids, stream_));
  RETURN_IF_ERROR(LaunchLogSumExp(static_cast<const float*>(logits.data), rows, logits.cols,
                                  logits.cols, lse, stream_));
  std::vector<int32_t> host(2 * n);
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host.data(), logit_stats_.ptr, 2 * n * 4,
                                       cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].argmax = host[i];
    std::memcpy(&out[i].log_sum_exp, &host[n + i], 4);
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Embedding(const DeviceTensor& table, absl::Span<const int32_t> ids,
                                    DeviceTensor& out) {
  if (out.cols != table.cols || out.rows < static_cast<int64_t>(ids.size())) {
    return ShapeError("Embedding", "output shape");
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= table.rows) {
      AbortStep();
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", table.rows, ")"));
    }
  }
  if (mode_ != StepMode::kEager) {
    // BeginStep uploaded the ids (the same span: the batch's token ids) before the capture.
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(Sig({1, SigTensor(table), SigTensor(out), ids.size()})));
    if (skip) return absl::OkStatus();
  } else {
    RETURN_IF_ERROR(Ensure(ids_, ids.size() * sizeof(int32_t)));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ids_.ptr, ids.data(), ids.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
  }
  return LaunchEmbeddingEx(options_.dtype, out.dtype, table.data, table.cols,
                           static_cast<int32_t*>(ids_.ptr), static_cast<int64_t>(ids.size()),
                           out.data, out.cols, stream_);
}

absl::Status CudaBackend::RmsNorm(const DeviceTensor& x, const DeviceTensor& weight, float eps,
                                  DeviceTensor& out) {
  if (weight.elements() != x.cols || out.cols != x.cols) return ShapeError("RmsNorm", "shape");
  if (mode_ != StepMode::kEager) {
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(Sig({2, SigTensor(x), SigTensor(weight), SigTensor(out)})));
    if (skip) return absl::OkStatus();
  }
  return LaunchRmsNormEx(options_.dtype, x.dtype, x.data, weight.data, x.rows, x.cols, eps,
                         out.data, stream_);
}

absl::Status CudaBackend::Linear(const DeviceTensor& x, const DeviceTensor& w, DeviceTensor& y) {
  if (x.cols != w.cols || y.cols < w.rows || y.rows < x.rows) {
    return ShapeError("Linear", absl::StrCat("x [", x.rows, ",", x.cols, "] w [", w.rows, ",",
                                             w.cols, "] y [", y.rows, ",", y.cols, "]"));
  }
  if (mode_ != StepMode::kEager) {
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(Sig({4, SigTensor(x), SigTensor(w), SigTensor(y)})));
    if (skip) return absl::OkStatus();
  }
  if (UsesGemv(x.rows, w) && GemvApplies(options_.dtype, y.dtype, x.data, x.rows, x.cols, w.data)) {
    return LaunchGemv(options_.dtype, y.dtype, x.data, x.rows, x.cols, w.data, w.rows, y.data,
                      y.cols, stream_);
  }
  return GemmEx(cublas_, options_.dtype, y.dtype, x.data, x.rows, x.cols, w.data, w.rows, y.data,
                y.cols);
}

bool CudaBackend::UsesGemv(int64_t rows, const DeviceTensor& w) const {
  switch (options_.linear_algo) {
    case LinearAlgo::kCublas:
      return false;
    case LinearAlgo::kGemv:
      return rows <= kGemvMaxRows;
    case LinearAlgo::kAuto:
      return AutoPicksGemv(rows, w.rows, w.cols);
  }
  return false;
}

absl::Status CudaBackend::NormLinear(const DeviceTensor& residual,
                                     const DeviceTensor& norm_weight, float eps,
                                     const DeviceTensor& w, DeviceTensor& normed,
                                     DeviceTensor& y) {
  if (norm_weight.elements() != residual.cols || normed.cols != residual.cols ||
      normed.rows < residual.rows || w.cols != residual.cols || y.cols < w.rows ||
      y.rows < residual.rows) {
    return ShapeError("NormLinear", "shape");
  }
  const bool fused =
      residual.dtype == DType::kF32 && y.dtype == options_.dtype && UsesGemv(residual.rows, w) &&
      NormGemvApplies(options_.dtype, static_cast<const float*>(residual.data), residual.rows,
                      residual.cols, norm_weight.data, w.data, normed.data);
  if (!fused) {
    RETURN_IF_ERROR(RmsNorm(residual, norm_weight, eps, normed));
    DeviceTensor x = normed;
    x.rows = residual.rows;
    return Linear(x, w, y);
  }
  if (mode_ != StepMode::kEager) {
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(Sig({8, SigTensor(residual), SigTensor(norm_weight), SigTensor(w),
                                  SigTensor(normed), SigTensor(y)})));
    if (skip) return absl::OkStatus();
  }
  return LaunchNormGemv(options_.dtype, static_cast<const float*>(residual.data), residual.rows,
                        residual.cols, norm_weight.data, eps, w.data, w.rows, y.data, y.cols,
                        normed.data, stream_);
}

absl::Status CudaBackend::AddLinear(const DeviceTensor& x, const DeviceTensor& w,
                                    DeviceTensor& delta, DeviceTensor& residual) {
  if (x.cols != w.cols || residual.cols != w.rows || residual.rows < x.rows ||
      delta.cols < w.rows || delta.rows < x.rows) {
    return ShapeError("AddLinear", "shape");
  }
  if (mode_ != StepMode::kEager) {
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(Sig({3, SigTensor(x), SigTensor(w), SigTensor(residual)})));
    if (skip) return absl::OkStatus();
  }
  // The fp32 residual takes the projection's fp32 sums, unrounded (GEMV or cuBLAS alike).
  if (residual.dtype == DType::kF32 && UsesGemv(x.rows, w) &&
      GemvApplies(options_.dtype, DType::kF32, x.data, x.rows, x.cols, w.data)) {
    return LaunchGemvAdd(options_.dtype, x.data, x.rows, x.cols, w.data, w.rows,
                         static_cast<float*>(residual.data), residual.cols, stream_);
  }
  return GemmEx(cublas_, options_.dtype, residual.dtype, x.data, x.rows, x.cols, w.data, w.rows,
                residual.data, residual.cols, /*accumulate=*/true);
}

absl::Status CudaBackend::SwiGlu(const DeviceTensor& gate_up, DeviceTensor& out) {
  if (gate_up.cols != 2 * out.cols) return ShapeError("SwiGlu", "shape");
  if (mode_ != StepMode::kEager) {
    ASSIGN_OR_RETURN(const bool skip, GraphOp(Sig({5, SigTensor(gate_up), SigTensor(out)})));
    if (skip) return absl::OkStatus();
  }
  return LaunchSwiGlu(options_.dtype, gate_up.data, gate_up.rows, out.cols, out.data, stream_);
}

absl::Status CudaBackend::PrepareBatch(const ForwardBatch& batch, const KvBlockPool& pool) {
  const int64_t n = batch.rows();
  max_blocks_ = 1;
  max_context_ = 0;
  decode_only_ = true;
  for (const BatchSequence& s : batch.sequences) {
    max_blocks_ = std::max<int>(max_blocks_, static_cast<int>(pool.BlockTable(s.kv).size()));
    max_context_ = std::max<int>(max_context_, static_cast<int>(s.start_position + s.num_rows));
    if (s.num_rows != 1) decode_only_ = false;
    if (pool.BlocksFor(s.start_position + s.num_rows) >
        static_cast<int64_t>(pool.BlockTable(s.kv).size())) {
      return ShapeError("PrepareBatch", "no KV block reserved for a token");
    }
  }
  block_tokens_ = pool.options().block_tokens;
  if (graph_step_) {
    // A power-of-two bucket of blocks (at least 64): the graph bakes in the table stride and
    // the split count, so one graph serves a whole range of context lengths.
    int bucket = 64;
    while (bucket < max_blocks_) bucket *= 2;
    max_blocks_ = bucket;
  }
  // [positions n | row_seq n | tiles 2T | block tables S × max_blocks]
  std::vector<int32_t>& h = meta_host_;
  h.assign(static_cast<size_t>(2 * n), 0);
  std::copy(batch.positions.begin(), batch.positions.end(), h.begin());
  tiles_ = 0;
  for (size_t si = 0; si < batch.sequences.size(); ++si) {
    const BatchSequence& s = batch.sequences[si];
    for (int64_t r = 0; r < s.num_rows; ++r) h[n + s.first_row + r] = static_cast<int32_t>(si);
  }
  tiles_off_ = 2 * n;
  const int64_t tile_rows = PrefillTileRows(options_.prefill_algo);
  for (const BatchSequence& s : batch.sequences) {
    for (int64_t r = 0; r < s.num_rows; r += tile_rows) {
      h.push_back(static_cast<int32_t>(s.first_row + r));
      h.push_back(static_cast<int32_t>(std::min<int64_t>(tile_rows, s.num_rows - r)));
      ++tiles_;
    }
  }
  tables_off_ = static_cast<int64_t>(h.size());
  for (const BatchSequence& s : batch.sequences) {
    const std::vector<int32_t>& table = pool.BlockTable(s.kv);
    h.insert(h.end(), table.begin(), table.end());
    h.resize(h.size() + (max_blocks_ - table.size()), 0);
  }
  RETURN_IF_ERROR(Ensure(meta_, h.size() * sizeof(int32_t)));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(meta_.ptr, h.data(), h.size() * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream_));
  rows_ = n;
  seq_off_ = n;
  batch_ = &batch;
  subset_uploaded_.clear();
  return absl::OkStatus();
}

CudaBatchRows CudaBackend::BatchRows() const {
  const int32_t* base = static_cast<const int32_t*>(meta_.ptr);
  return CudaBatchRows{base, base + seq_off_, rows_};
}

CudaPagedKv CudaBackend::KvView(const KvBlockPool& pool, int layer) const {
  CudaPagedKv kv;
  // A pool in pinned mapped memory (offload modes) is read through its device address.
  kv.k = offload_memory_.DevicePointer(pool.KBase(layer));
  kv.v = offload_memory_.DevicePointer(pool.VBase(layer));
  kv.block_tables = static_cast<const int32_t*>(meta_.ptr) + tables_off_;
  kv.max_blocks = max_blocks_;
  kv.block_tokens = pool.options().block_tokens;
  kv.kv_heads = pool.options().kv_heads;
  kv.head_dim = pool.options().head_dim;
  return kv;
}

absl::Status CudaBackend::UploadInvFreq(const AttentionConfig& config) {
  if (inv_freq_host_ == config.rope_inv_freq) return absl::OkStatus();
  RETURN_IF_ERROR(Ensure(inv_freq_, config.rope_inv_freq.size() * sizeof(float)));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(inv_freq_.ptr, config.rope_inv_freq.data(),
                                       config.rope_inv_freq.size() * sizeof(float),
                                       cudaMemcpyHostToDevice, stream_));
  inv_freq_host_ = config.rope_inv_freq;
  return absl::OkStatus();
}

absl::Status CudaBackend::CopyKvBlocksOn(const KvBlockPool& src, int src_layer,
                                         KvBlockPool& dst, int dst_layer,
                                         const std::vector<int32_t>& blocks,
                                         cudaStream_t stream) {
  ASSIGN_OR_RETURN(const std::vector<KvBlockCopy> copies,
                   KvBlockCopies(src, src_layer, dst, dst_layer, blocks));
  // One async copy per run of consecutive blocks (a fresh sequence's blocks are mostly one
  // run); unified addressing lets cudaMemcpyDefault take pinned host and device pools alike.
  for (const KvBlockCopy& c : copies) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(c.to, c.from, static_cast<size_t>(c.bytes),
                                         cudaMemcpyDefault, stream));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::CopyKvBlocks(const KvBlockPool& src, int src_layer, KvBlockPool& dst,
                                       int dst_layer, const std::vector<int32_t>& blocks) {
  return CopyKvBlocksOn(src, src_layer, dst, dst_layer, blocks, stream_);
}

absl::Status CudaBackend::RopeAndStoreKv(int layer, const AttentionConfig& config,
                                         const ForwardBatch& batch, KvBlockPool& pool,
                                         DeviceTensor& qkv) {
  const int d = config.head_dim;
  const int64_t q_cols = static_cast<int64_t>(config.num_heads_q) * d;
  const int64_t kv_cols = static_cast<int64_t>(config.num_heads_kv) * d;
  if (qkv.cols != q_cols + 2 * kv_cols || qkv.rows < batch.rows()) {
    return ShapeError("RopeAndStoreKv", "qkv shape");
  }
  if (pool.options().dtype != options_.dtype) return ShapeError("RopeAndStoreKv", "pool dtype");
  if (static_cast<int>(config.rope_inv_freq.size()) != d / 2) {
    return ShapeError("RopeAndStoreKv", "inv_freq size");
  }
  if (mode_ != StepMode::kEager) {
    // BeginStep prepared the batch; inv_freq was uploaded by an earlier eager step.
    if (inv_freq_host_ != config.rope_inv_freq) {
      AbortStep();
      return ShapeError("RopeAndStoreKv", "rope table changed inside a graph step");
    }
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(Sig({6, static_cast<uint64_t>(layer), SigTensor(qkv),
                                  SigPtr(pool.KBase(layer)), SigPtr(pool.VBase(layer)),
                                  static_cast<uint64_t>(config.num_heads_q),
                                  static_cast<uint64_t>(config.num_heads_kv)})));
    if (skip) return absl::OkStatus();
  } else {
    // Layer 0 starts a step: the batch (and the pool's block tables) may have changed.
    if (layer == 0 || batch_ != &batch || rows_ != batch.rows()) {
      RETURN_IF_ERROR(PrepareBatch(batch, pool));
    }
    RETURN_IF_ERROR(UploadInvFreq(config));
  }
  return LaunchRopeStoreKv(options_.dtype, qkv.data, qkv.cols, BatchRows(), config.num_heads_q,
                           config.num_heads_kv, d, static_cast<const float*>(inv_freq_.ptr),
                           KvView(pool, layer), stream_, GraphRopeLabels(layer));
}

absl::Status CudaBackend::Attention(int layer, const AttentionConfig& config,
                                    const ForwardBatch& batch, const KvBlockPool& pool,
                                    const DeviceTensor& qkv, DeviceTensor& out) {
  const int64_t q_cols = static_cast<int64_t>(config.num_heads_q) * config.head_dim;
  if (out.cols != q_cols || out.rows < batch.rows()) return ShapeError("Attention", "out shape");
  if (mode_ != StepMode::kEager) {
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(AttentionOpSig(7, layer, config, pool, qkv, out)));
    if (skip) return absl::OkStatus();
  } else if (batch_ != &batch || rows_ != batch.rows()) {
    RETURN_IF_ERROR(PrepareBatch(batch, pool));
  }
  const CudaPagedKv kv = KvView(pool, layer);
  if (!decode_only_) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
    return LaunchPrefillAttention(options_.dtype, qkv.data, qkv.cols, BatchRows(),
                                  static_cast<const int32_t*>(meta_.ptr) + tiles_off_, tiles_,
                                  config.num_heads_q, config.num_heads_kv, config.head_dim, scale,
                                  kv, out.data, out.cols, stream_, options_.prefill_algo);
  }
  const int splits = DecodeSplits(config.num_heads_q, config.num_heads_kv);
  return DecodeAttention(config, BatchRows(), splits, kv, qkv, out, stream_);
}

absl::Status CudaBackend::EnsureDecodeWorkspace(int heads_q, int head_dim, int splits) {
  const int64_t ws_floats = DecodeAttentionWorkspaceFloats(rows_, heads_q, head_dim, splits);
  return Ensure(attn_ws_, static_cast<size_t>(std::max<int64_t>(ws_floats, 1)) * 4);
}

uint64_t CudaBackend::AttentionOpSig(uint64_t op, int layer, const AttentionConfig& config,
                                     const KvBlockPool& pool, const DeviceTensor& qkv,
                                     const DeviceTensor& out) {
  return Sig({op, static_cast<uint64_t>(layer), SigTensor(qkv), SigTensor(out),
              SigPtr(pool.KBase(layer)), SigPtr(pool.VBase(layer)),
              static_cast<uint64_t>(config.num_heads_q),
              static_cast<uint64_t>(config.num_heads_kv)});
}

absl::Status CudaBackend::DecodeAttention(const AttentionConfig& config,
                                          const CudaBatchRows& rows, int splits,
                                          const CudaPagedKv& kv, const DeviceTensor& qkv,
                                          DeviceTensor& out, cudaStream_t stream) {
  if (mode_ == StepMode::kEager) {
    last_heads_q_ = config.num_heads_q;
    last_heads_kv_ = config.num_heads_kv;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  RETURN_IF_ERROR(EnsureDecodeWorkspace(config.num_heads_q, config.head_dim, splits));
  return LaunchDecodeAttention(options_.dtype, qkv.data, qkv.cols, rows, config.num_heads_q,
                               config.num_heads_kv, config.head_dim, scale, kv, splits,
                               static_cast<float*>(attn_ws_.ptr), out.data, out.cols, stream,
                               options_.decode_algo);
}

}  // namespace dsinfer

namespace dsinfer {

int CudaBackend::DecodeSplits(int heads_q, int heads_kv, int64_t rows, int64_t context,
                              int waves) const {
  // A graph step sizes by the block bucket (its capacity), not by the current context, so the
  // split count stays fixed for the graph's whole range.
  if (graph_step_) context = static_cast<int64_t>(max_blocks_) * block_tokens_;
  return DecodeAttentionSplits(rows < 0 ? rows_ : rows, heads_q, heads_kv,
                               context < 0 ? max_context_ : context, sm_count_,
                               waves < 0 ? options_.decode_waves : waves);
}

const CudaLabelSeq* CudaBackend::GraphRopeLabels(int layer) const {
  if (mode_ != StepMode::kCapture || ds_state_ == nullptr ||
      layer >= static_cast<int>(ds_state_->graph_layers.size())) {
    return nullptr;
  }
  const SparseLayerPlan& plan = ds_state_->graph_layers[layer];
  return !plan.seqs.empty() && plan.labels_in_rope ? plan.rope_labels_device : nullptr;
}

absl::StatusOr<bool> CudaBackend::GraphOp(uint64_t signature) {
  if (mode_ == StepMode::kCapture) {
    op_log_.push_back(signature);
    return false;
  }
  const StepGraph& g = graphs_.at(step_key_);
  if (op_index_ >= g.ops.size() || g.ops[op_index_] != signature) {
    AbortStep();
    ClearGraphs();
    return absl::InternalError(absl::StrCat(
        "cuda backend: graph replay diverged from the recorded step at operation ", op_index_));
  }
  ++op_index_;
  return true;
}

void CudaBackend::AbortStep() {
  if (mode_ == StepMode::kCapture) {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream_, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();  // an invalidated capture leaves an error behind
  }
  mode_ = StepMode::kEager;
  graph_step_ = false;
}

void CudaBackend::ClearGraphs() {
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);
  graphs_.clear();
}

absl::Status CudaBackend::BeginStep(const ForwardBatch& batch, const KvBlockPool& pool,
                                    bool capturable, DoubleSparsity* ds) {
  AbortStep();  // an earlier step that failed half-way
  const int64_t n = batch.rows();
  if (!options_.decode_graphs || !capturable || last_heads_q_ == 0 || n == 0 ||
      n > kMaxGraphRows) {
    return absl::OkStatus();
  }
  for (const BatchSequence& s : batch.sequences) {
    if (s.num_rows != 1) return absl::OkStatus();
  }
  graph_step_ = true;
  absl::Status prepared = [&]() -> absl::Status {
    // Everything the graph reads from the host goes up before the capture or the replay.
    RETURN_IF_ERROR(PrepareBatch(batch, pool));
    RETURN_IF_ERROR(Ensure(ids_, static_cast<size_t>(n) * sizeof(int32_t)));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ids_.ptr, batch.token_ids.data(),
                                         static_cast<size_t>(n) * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
    const int splits = DecodeSplits(last_heads_q_, last_heads_kv_);
    // Sized for any head_dim up to 256, so that the captured Attention never regrows it.
    return EnsureDecodeWorkspace(last_heads_q_, 256, splits);
  }();
  if (!prepared.ok()) {
    graph_step_ = false;
    return prepared;
  }
  // Double Sparsity: StoreLabels does nothing inside a graph step, so the labels of sequences
  // that left are retired here, and a step with sparse layers is planned before it is captured
  // or replayed (key 0: it cannot be, and runs eagerly).
  uint64_t sparse_key = 0;
  bool eager = false;
  const absl::Status sparse = [&]() -> absl::Status {
    if (ds_state_ != nullptr) {
      for (SparseLayerPlan& plan : ds_state_->graph_layers) plan.seqs.clear();  // none planned
    }
    if (ds == nullptr) return absl::OkStatus();
    if (ds_state_ != nullptr) RETURN_IF_ERROR(ds_state_->Retire(*ds, stream_));
    for (int l = 0; l < static_cast<int>(pool.options().layers); ++l) {
      if (!ds->AnySparse(l)) continue;
      ASSIGN_OR_RETURN(sparse_key, PlanSparseGraphStep(batch, pool, *ds));
      eager = sparse_key == 0;
      break;
    }
    if (eager) return absl::OkStatus();
    // The dense sequences beside sparse ones (SubsetAttention at the sparse layers): every
    // sparse layer's subset, each distinct one uploaded once, in a slot of its own.
    std::vector<std::vector<size_t>> subsets;
    for (int l = 0; l < static_cast<int>(pool.options().layers); ++l) {
      std::vector<size_t> dense = ds->DenseSequences(l);
      if (dense.empty() || dense.size() == batch.sequences.size()) continue;  // all or none
      if (std::find(subsets.begin(), subsets.end(), dense) == subsets.end()) {
        subsets.push_back(std::move(dense));
      }
    }
    if (subsets.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(UploadSubsetPositions(batch, subsets));
    // SubsetAttention's split count (for its fewer rows) may exceed the step's: its workspace.
    int splits = 1;
    for (const std::vector<size_t>& dense : subsets) {
      splits = std::max(splits, SubsetDecodeSplits(last_heads_q_, last_heads_kv_,
                                                   pool.options().head_dim, batch, dense,
                                                   options_.dense_beside_sparse));
      sparse_key = SignatureMix(sparse_key, Sig({static_cast<uint64_t>(dense.size())}));
    }
    RETURN_IF_ERROR(EnsureDecodeWorkspace(last_heads_q_, 256, splits));
    sparse_key = SignatureMix(sparse_key, Sig({static_cast<uint64_t>(subsets.size()),
                                               SigPtr(subset_positions_.ptr)})) | 1;
    return absl::OkStatus();
  }();
  if (!sparse.ok() || eager) {
    graph_step_ = false;
    return sparse;
  }
  step_key_ = {n, max_blocks_, sparse_key};
  const auto found = graphs_.find(step_key_);
  if (found != graphs_.end()) {
    found->second.last_used = ++graph_clock_;
    mode_ = StepMode::kReplay;
    op_index_ = 0;
    return absl::OkStatus();
  }
  if (graphs_.size() >= kMaxGraphs) {
    // A full cache gives up its least recently used graph (a server's batch sizes and
    // context buckets come and go; clearing them all would recapture the ones still in use).
    const auto oldest =
        std::min_element(graphs_.begin(), graphs_.end(), [](const auto& a, const auto& b) {
          return a.second.last_used < b.second.last_used;
        });
    cudaGraphExecDestroy(oldest->second.exec);
    graphs_.erase(oldest);
  }
  op_log_.clear();
  CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  mode_ = StepMode::kCapture;
  return absl::OkStatus();
}

absl::Status CudaBackend::EndStep() {
  const StepMode mode = mode_;
  mode_ = StepMode::kEager;
  graph_step_ = false;
  if (mode == StepMode::kEager) return absl::OkStatus();
  if (mode == StepMode::kReplay) {
    const StepGraph& g = graphs_.at(step_key_);
    if (op_index_ != g.ops.size()) {
      ClearGraphs();
      return absl::InternalError("cuda backend: a replayed step issued fewer operations");
    }
    CUDA_RETURN_IF_ERROR(cudaGraphLaunch(g.exec, stream_));
    ++graph_replays_;
    return absl::OkStatus();
  }
  cudaGraph_t graph = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamEndCapture(stream_, &graph));
  StepGraph g;
  g.ops = std::move(op_log_);
  g.last_used = ++graph_clock_;
  const cudaError_t inst = cudaGraphInstantiate(&g.exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_RETURN_IF_ERROR(inst);
  CUDA_RETURN_IF_ERROR(cudaGraphLaunch(g.exec, stream_));
  graphs_[step_key_] = std::move(g);
  return absl::OkStatus();
}

}  // namespace dsinfer
