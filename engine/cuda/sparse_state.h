// The CUDA backend's Double Sparsity state (cuda_backend_sparse.cc, and the graph steps of
// cuda_backend_sparse_graph.cc): device label caches per sequence, device channel sets, the
// scratch of the selections, and the plan of a graph step's sparse layers.
#ifndef DSINFER_ENGINE_CUDA_SPARSE_STATE_H_
#define DSINFER_ENGINE_CUDA_SPARSE_STATE_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/stream_buffer.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {

// Positions into the batch sequences `sequences`, stably ordered by their labels' shape
// (bits, r): a layer's plan lists its sequences so (OrderByLabelShape), as the offload tier's
// batched selection its rows, and its scorer launches once per shape (LaunchScoresByShape)
// rather than once per run of one shape, or for all on the general kernel, where a batch mixes
// per-request label options.
std::vector<size_t> LabelShapeOrder(const ForwardBatch& batch, absl::Span<const size_t> sequences,
                                    const DoubleSparsity& ds);

// The batch sequences `sequences` in LabelShapeOrder.
std::vector<size_t> OrderByLabelShape(const ForwardBatch& batch, absl::Span<const size_t> sequences,
                                      const DoubleSparsity& ds);

// One sparse layer of one step (CudaBackend::DescribeSparseLayer): the descriptors of its
// sequences on the host, the sizes its launches take, and (once uploaded) the device copies.
struct SparseLayerPlan {
  std::vector<CudaLabelSeq> labels;
  std::vector<CudaDsSequence> seqs;
  std::vector<CudaLabelRange> ranges;  // tokens whose labels the step writes first
  int64_t max_count = 0;               // the most tokens one range labels
  int64_t sel_stride = 0;              // selection row stride: at least every budget
  int64_t max_tokens = 0;              // score row length: at least every context
  // The top-k's row bound (TopKRowBound of the longest context; a graph step's key holds it).
  int64_t row_bound = 0;
  std::vector<std::vector<int32_t>> channels;  // host channel sets (SparseCapture only)
  DeviceLabelDescriptors device;
  // A graph step's label views per batch sequence for its RoPE launch (labels_in_rope): the
  // sparse sequences' as in `labels`, the others' with r 0 (no labels written); on the device
  // at rope_labels_device.
  std::vector<CudaLabelSeq> rope_labels;
  const CudaLabelSeq* rope_labels_device = nullptr;
  // A graph step's: the layer's RoPE launch writes the current token's labels (RopeWritesLabels
  // at this head_dim), so the layer's own launches skip the label writer.
  bool labels_in_rope = false;
};

struct CudaBackend::DsState {
  // Frees the labels of sequences DoubleSparsity no longer keeps (released, or finished).
  absl::Status Retire(const DoubleSparsity& ds, cudaStream_t stream);
  // Frees (on `stream`) and forgets the labels of the sequences `drop(id)` names.
  absl::Status DropLabelsIf(absl::FunctionRef<bool(KvBlockPool::SequenceId)> drop,
                            cudaStream_t stream);
  ~DsState();

  std::unordered_map<KvBlockPool::SequenceId, DeviceLabels> seqs;
  DeviceChannelSets channels;
  StreamBuffer meta, scores, selected, counts, workspace;
  StreamBuffer topk_workspace;  // LaunchTopKSelect's, kept zeroed by it
  std::vector<char> staging;
  // A graph step's sparse layers (empty plans at dense layers), their descriptors uploaded
  // together into graph_meta before the step is captured or replayed.
  std::vector<SparseLayerPlan> graph_layers;
  StreamBuffer graph_meta;
  std::vector<char> graph_staging;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_SPARSE_STATE_H_
