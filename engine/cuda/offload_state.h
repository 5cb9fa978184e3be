// The CUDA backend's offload tier state (docs/offload.md), shared by the files of the tier:
// cuda_backend_offload.cc (which defines its members: the copy stream, its events, the device
// block tables and label caches, memory accounting), cuda_backend_offload_select.cc (labels and
// selections) and cuda_backend_offload_fetch.cc (the gathers and the attention over their rows).
#ifndef DSINFER_ENGINE_CUDA_OFFLOAD_STATE_H_
#define DSINFER_ENGINE_CUDA_OFFLOAD_STATE_H_

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/stream_buffer.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/offload_gather.cuh"

namespace dsinfer {

inline absl::Status OffloadError(const char* op, const std::string& what) {
  return absl::InternalError(absl::StrCat("cuda backend ", op, ": ", what));
}

// Plan staging slots in flight before the oldest is reused (its copy must have finished).
constexpr size_t kStagingSlots = 16;

struct CudaBackend::OffloadState {
  // A sequence's block table on the device (read by the label writer on the backend stream
  // and by the gather on the copy stream).
  struct Table {
    std::vector<int32_t> host;  // what the device copy holds
    int32_t* dev = nullptr;
    size_t capacity = 0;  // entries
  };
  struct Staging {
    void* host = nullptr;  // pinned
    size_t bytes = 0;
    cudaEvent_t done = nullptr;  // its upload finished
  };
  ~OffloadState();

  // Sequence `s`'s device labels at `layer` (storage reserved for `tokens` tokens, grown
  // geometrically up to the sequence's reservation) with the layer's channel set for its
  // statistic and r, and the count of its tokens labelled so far at that layer.
  struct LayerLabels {
    CudaLabelSeq view;
    int64_t* written;
  };
  absl::StatusOr<LayerLabels> LabelsAt(DoubleSparsity& ds, const BatchSequence& s, int layer,
                                       int64_t tokens, int hq, const KvPoolOptions& po);

  // The copy stream follows everything queued on the backend stream so far.
  absl::Status CopyAfterMain();

  // The device block table of `seq` as the pool holds it now. Appended entries are uploaded
  // in place (no reader of the older entries is disturbed); a changed prefix waits for the
  // copy stream first; a regrown array frees the old one on the copy stream.
  absl::StatusOr<const int32_t*> EnsureTable(KvBlockPool::SequenceId seq, const KvBlockPool& pool);

  // Drops labels and tables of sequences the pool no longer holds.
  absl::Status Retire(const KvBlockPool& pool);

  int64_t DeviceBytes(int kv_heads, int layers) const;

  cudaStream_t main = nullptr;  // the backend's stream (not owned)
  cudaStream_t copy = nullptr;
  cudaEvent_t fetched[2] = {nullptr, nullptr};     // the latest fetch into ping-pong buffer b
  cudaEvent_t queued = nullptr;                    // recorded on main, waited on by copy
  cudaEvent_t copy_done = nullptr;                 // recorded on copy, waited on by main
  cudaEvent_t aside_done[2] = {nullptr, nullptr};  // CopyKvBlocksAside's copy in each slot
  const KvBlockPool* pool = nullptr;               // this step's (BeginOffloadStep)
  int heads_q = 0, kv_heads = 0, layers = 0;

  std::unordered_map<KvBlockPool::SequenceId, DeviceLabels> labels;
  std::unordered_map<KvBlockPool::SequenceId, Table> tables;
  DeviceChannelSets channels;

  std::array<Staging, kStagingSlots> staging;
  size_t next_staging = 0;
  std::vector<CudaFetchRow> rows;  // the plan being flattened
  StreamBuffer plan_dev;           // copy stream

  // Backend-stream scratch.
  StreamBuffer select_meta, scores, selected, counts, attend_meta, workspace, rope_meta;
  StreamBuffer label_meta;      // StoreCurrentLabels' [labels | positions | row labels]
  StreamBuffer topk_workspace;  // LaunchTopKSelect's, kept zeroed by it
  StreamBuffer iota;            // int32 0, 1, 2, ...: every head's "selection" over a segment
  StreamBuffer reuse_hits;      // uint64 per segment: previous-step reuse hits this step
  // SelectAndFetchMany's selections, read by the gathers on the copy stream: [layer parity].
  StreamBuffer device_selection[2];
  int32_t* selection_host = nullptr;  // pinned: counts then selected indices
  size_t selection_host_bytes = 0;
  std::vector<char> meta_host;  // staging of the descriptor uploads (PackedUpload)
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_OFFLOAD_STATE_H_
