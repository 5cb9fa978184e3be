// Device label caches, channel sets and descriptor uploads (device_labels.h).
#include "engine/cuda/device_labels.h"

#include <algorithm>
#include <utility>

#include "engine/cuda/packed_upload.h"
#include "engine/sparse/channel_config.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

size_t Align256(size_t b) { return (b + 255) / 256 * 256; }

}  // namespace

size_t DeviceLabels::DataBytes(int kv_heads) const {
  const int64_t row = format.bits == 16 ? 2 * format.r : (format.r + 1) / 2;
  return Align256(static_cast<size_t>(capacity) * kv_heads * row);
}

size_t DeviceLabels::ScaleBytes(int kv_heads) const {
  return format.bits == 16 ? 0 : Align256(static_cast<size_t>(capacity) * kv_heads * 2);
}

CudaLabelSeq DeviceLabels::View(int layer, int kv_heads) const {
  CudaLabelSeq v;
  char* p = static_cast<char*>(base) + static_cast<size_t>(layer) * LayerBytes(kv_heads);
  v.data = p;
  v.scales = reinterpret_cast<uint16_t*>(p + DataBytes(kv_heads));
  v.minimums = reinterpret_cast<uint16_t*>(p + DataBytes(kv_heads) + ScaleBytes(kv_heads));
  v.r = format.r;
  v.bits = format.bits;
  return v;
}

absl::Status DeviceLabels::Reserve(const LabelFormat& want, int64_t tokens, int64_t reserved_tokens,
                                   int layers, int kv_heads, cudaStream_t stream) {
  if (base != nullptr &&
      (!(format == want) || this->layers != layers || this->kv_heads != kv_heads)) {
    CUDA_RETURN_IF_ERROR(cudaFreeAsync(base, stream));
    *this = DeviceLabels{};
  }
  if (base != nullptr && capacity >= tokens) return absl::OkStatus();
  DeviceLabels grown;
  grown.format = want;
  grown.layers = layers;
  grown.kv_heads = kv_heads;
  grown.capacity = LabelCapacity(std::max<int64_t>({tokens, reserved_tokens, 2 * capacity}));
  grown.written = written;
  grown.written.resize(layers, 0);
  CUDA_RETURN_IF_ERROR(cudaMallocAsync(&grown.base, grown.LayerBytes(kv_heads) * layers, stream));
  if (base != nullptr) {
    const size_t row_bytes = want.bits == 16 ? 2 * want.r : (want.r + 1) / 2;
    for (int l = 0; l < layers; ++l) {
      const CudaLabelSeq from = View(l, kv_heads), to = grown.View(l, kv_heads);
      // Tokens [0, w) are the first whole pages of the paged layout: rows [0, pages × kv_heads).
      const int64_t w = LabelCapacity(written[l]);
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to.data, from.data, w * kv_heads * row_bytes,
                                           cudaMemcpyDeviceToDevice, stream));
      if (want.bits == 4) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to.scales, from.scales, w * kv_heads * 2,
                                             cudaMemcpyDeviceToDevice, stream));
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to.minimums, from.minimums, w * kv_heads * 2,
                                             cudaMemcpyDeviceToDevice, stream));
      }
    }
    CUDA_RETURN_IF_ERROR(cudaFreeAsync(base, stream));
  }
  *this = std::move(grown);
  return absl::OkStatus();
}

DeviceChannelSets::~DeviceChannelSets() {
  for (auto& [key, set] : sets_) cudaFree(set.dev);
}

absl::StatusOr<const DeviceChannelSet*> DeviceChannelSets::Upload(const DoubleSparsity& ds,
                                                                  ChannelStatistic statistic,
                                                                  int layer, int heads_q,
                                                                  int kv_heads, int r, int head_dim,
                                                                  cudaStream_t stream) {
  DeviceChannelSet& set = sets_[{static_cast<int>(statistic), r, layer}];
  if (set.derived && set.config_id == ds.channel_config_id() && set.heads_q == heads_q &&
      set.kv_heads == kv_heads) {
    return &set;
  }
  set.derived = false;  // until derived again (an error below leaves it to the next call)
  std::vector<int32_t> host;
  if (ds.channel_config().has_value()) {
    ASSIGN_OR_RETURN(host,
                     KvHeadChannels(*ds.channel_config(), statistic, layer, heads_q, kv_heads, r));
  } else if (r == head_dim) {
    host.resize(static_cast<size_t>(kv_heads) * head_dim);
    for (size_t j = 0; j < host.size(); ++j) host[j] = static_cast<int32_t>(j % head_dim);
  } else {
    return absl::FailedPreconditionError("Double Sparsity with r < head_dim needs channels");
  }
  if (set.dev == nullptr || set.host != host) {
    // The device copy must not change under earlier queued work: a changed set (a new
    // config, or other heads) is rare, so wait for the stream before replacing or
    // overwriting it.
    if (set.dev != nullptr && set.host.size() != host.size()) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
      CUDA_RETURN_IF_ERROR(cudaFree(set.dev));
      set.dev = nullptr;
    }
    if (set.dev == nullptr) {
      CUDA_RETURN_IF_ERROR(cudaMallocAsync(&set.dev, host.size() * 4, stream));
    }
    set.host = host;
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    CUDA_RETURN_IF_ERROR(
        cudaMemcpy(set.dev, set.host.data(), host.size() * 4, cudaMemcpyHostToDevice));
  }
  set.config_id = ds.channel_config_id();
  set.heads_q = heads_q;
  set.kv_heads = kv_heads;
  set.derived = true;
  return &set;
}

CudaDsSequence SparseSequence(const AttentionOptions& options, int64_t tokens, int64_t q_row,
                              int kv_seq) {
  const int64_t budget = std::min(std::max<int64_t>(options.BudgetFor(tokens), 1), tokens);
  CudaDsSequence seq;
  seq.tokens = static_cast<int32_t>(tokens);
  seq.budget = static_cast<int32_t>(budget);
  seq.sink = options.sink;
  seq.recent = options.recent;
  seq.q_row = static_cast<int32_t>(q_row);
  seq.kv_seq = kv_seq;
  seq.aggregation = options.aggregation == GroupAggregation::kMax ? 1 : 0;
  return seq;
}

absl::StatusOr<DeviceLabelDescriptors> UploadLabelDescriptors(
    absl::Span<const CudaLabelSeq> labels, absl::Span<const CudaDsSequence> sequences,
    absl::Span<const CudaLabelRange> ranges, std::vector<char>& staging, StreamBuffer& device,
    cudaStream_t stream) {
  PackedUpload upload(staging);
  const size_t labels_off = upload.Add(labels);
  const size_t sequences_off = upload.Add(sequences);
  const size_t ranges_off = upload.Add(ranges);
  ASSIGN_OR_RETURN(const char* base, upload.Upload(device, stream));
  DeviceLabelDescriptors d;
  d.labels = reinterpret_cast<const CudaLabelSeq*>(base + labels_off);
  d.sequences = reinterpret_cast<const CudaDsSequence*>(base + sequences_off);
  d.ranges = reinterpret_cast<const CudaLabelRange*>(base + ranges_off);
  return d;
}

}  // namespace dsinfer
