// The device side of a Double Sparsity selection on the CUDA backend, shared by the sparse
// decode path (cuda_backend_sparse.cc) and the offload tier (offload_state.h,
// cuda_backend_offload_select.cc): a sequence's label cache on the device (all layers), the
// per-layer channel sets the scorer reads beside it, and the one upload of a step's
// descriptors. Both paths feed the same kernels (kernels/cuda/double_sparsity.cuh), so the
// layout lives here once.
//
// Label layout (read by the kernels through CudaLabelSeq, so it must not change casually):
// one stream-ordered allocation of layers × [data | scales | minimums], each part 256-byte
// aligned and sized for `capacity` tokens (whole pages, LabelCapacity) × kv_heads rows, rows
// numbered by LabelRow — data rows are r fp16 values (bits 16) or ceil(r/2) bytes of 4-bit
// codes (bits 4); scales and minimums are one fp16 per row and absent for 16-bit labels.
// Capacity grows geometrically; the labelled prefix of every layer (whole pages) is copied on
// the stream, so labels are never recomputed because of growth.
#ifndef DSINFER_ENGINE_CUDA_DEVICE_LABELS_H_
#define DSINFER_ENGINE_CUDA_DEVICE_LABELS_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/attention_options.h"
#include "engine/cuda/stream_buffer.h"
#include "engine/sparse/double_sparsity.h"
#include "engine/sparse/label_cache.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {

// One sequence's device labels, all layers. A plain struct: its owner frees `base`
// (cudaFreeAsync on its stream, or cudaFree at teardown).
struct DeviceLabels {
  LabelFormat format;
  int layers = 0, kv_heads = 0;  // the shape `base` was allocated for
  int64_t capacity = 0;          // tokens, whole label pages
  void* base = nullptr;          // layers × [data | scales | minimums]
  std::vector<int64_t> written;  // per layer: tokens [0, written) are labelled

  // Bytes of one layer's data part, scales part (minimums take as much), and whole layer.
  size_t DataBytes(int kv_heads) const;
  size_t ScaleBytes(int kv_heads) const;
  size_t LayerBytes(int kv_heads) const { return DataBytes(kv_heads) + 2 * ScaleBytes(kv_heads); }
  // The kernels' view of `layer` (channels left null: see DeviceChannelSets).
  CudaLabelSeq View(int layer, int kv_heads) const;

  // Makes the cache hold labels in `want` for at least `tokens` tokens of every layer. A
  // different format or shape (layers, kv_heads: a sequence id of another pool, as a benchmark
  // timing several models on one backend meets) drops the old labels (freed on `stream`);
  // growth allocates max(tokens, reserved_tokens, 2 × capacity), copies each layer's labelled
  // prefix and frees the old block, all on `stream`. On failure the cache is as before (or
  // empty, after a format or shape change).
  absl::Status Reserve(const LabelFormat& want, int64_t tokens, int64_t reserved_tokens, int layers,
                       int kv_heads, cudaStream_t stream);
};

// One channel set on the device: [kv_heads, r] int32 channel indices, and the host copy the
// device holds (tests' captures read it).
struct DeviceChannelSet {
  std::vector<int32_t> host;
  void* dev = nullptr;
  uint64_t config_id = 0;  // DoubleSparsity::channel_config_id() `host` was derived from
  int heads_q = 0, kv_heads = 0;  // and the heads it was derived for
  bool derived = false;
};

// The channel sets of every (statistic, r, layer) used so far, uploaded once and re-uploaded
// only when DoubleSparsity's channel config changes them.
class DeviceChannelSets {
 public:
  DeviceChannelSets() = default;
  DeviceChannelSets(const DeviceChannelSets&) = delete;
  DeviceChannelSets& operator=(const DeviceChannelSets&) = delete;
  ~DeviceChannelSets();

  // The channels `layer`'s labels of width r read for `statistic`: KvHeadChannels of the
  // DoubleSparsity's channel config, or every channel in order when r == head_dim and there
  // is no config (FAILED_PRECONDITION otherwise). Derived once per config and heads (by the
  // config's id: a batch's sparse sequences ask at every layer, and deriving costs ~0.3 ms;
  // the heads, because one backend may serve models of other shapes in turn, as
  // dsinfer-bench's do); a changed set waits for `stream` before it is overwritten or
  // reallocated, because earlier queued work may still read the old one.
  absl::StatusOr<const DeviceChannelSet*> Upload(const DoubleSparsity& ds,
                                                 ChannelStatistic statistic, int layer, int heads_q,
                                                 int kv_heads, int r, int head_dim,
                                                 cudaStream_t stream);

 private:
  std::map<std::tuple<int, int, int>, DeviceChannelSet> sets_;  // (statistic, r, layer)
};

// The scorer's and top-k's descriptor of one sparse decode query: `tokens` of context (the
// current token included) and a budget of options.BudgetFor(tokens) clamped to [1, tokens].
CudaDsSequence SparseSequence(const AttentionOptions& options, int64_t tokens, int64_t q_row,
                              int kv_seq);

// Device pointers into one upload of a step's descriptors.
struct DeviceLabelDescriptors {
  const CudaLabelSeq* labels = nullptr;
  const CudaDsSequence* sequences = nullptr;
  const CudaLabelRange* ranges = nullptr;
};

// Uploads [labels | sequences | ranges] (16-byte aligned parts) into `device` (grown on
// `stream`) with one copy from the pageable `staging`, which may be reused when this returns.
absl::StatusOr<DeviceLabelDescriptors> UploadLabelDescriptors(
    absl::Span<const CudaLabelSeq> labels, absl::Span<const CudaDsSequence> sequences,
    absl::Span<const CudaLabelRange> ranges, std::vector<char>& staging, StreamBuffer& device,
    cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_DEVICE_LABELS_H_
