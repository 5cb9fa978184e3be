// The label cache of Double Sparsity on the CPU backend (DESIGN §4): per sequence and
// layer, `[tokens, kv_heads, r]` label rows, fp16 or 4-bit codes with per-row fp16 scale and
// minimum (kernels/label_reference.h). Per sequence rather than paged: a sequence's label
// format (r, bits) is fixed at its first step from its request options, and requests may
// differ, so one shared page layout would have to be sized for the widest. Storage grows
// geometrically to the sequence's KV reservation.
//
// A sequence's labels live exactly as long as its KV: Release frees them, and
// ReleaseMissing frees every sequence the KV pool no longer holds (the model calls it at each
// forward step, so a caller that only releases the pool still returns every byte).
//
// Storage: a backend that keeps its own labels (the CUDA backend holds them in device memory,
// Backend::keeps_labels_on_device) still needs this cache's bookkeeping — which sequences keep
// labels, their format and reserved capacity — but not its bytes. With
// LabelStorage::kAccountingOnly the cache tracks exactly that and allocates no host label
// memory: bytes_in_use() still reports what the labels take (wherever they live), host_bytes()
// is 0, and layer() storage stays empty (callers must not write labels through it).
// Not thread-safe: the engine thread owns it.
#ifndef DSINFER_ENGINE_SPARSE_LABEL_CACHE_H_
#define DSINFER_ENGINE_SPARSE_LABEL_CACHE_H_

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

struct LabelFormat {
  int r = 0;
  int bits = 16;  // 16 or 4
  bool operator==(const LabelFormat& o) const { return r == o.r && bits == o.bits; }
  // Bytes one (token, KV head) row takes: fp16 values, or codes + fp16 scale + fp16 minimum.
  int64_t RowBytes() const;
};

// Where the label bytes of a LabelCache live: here on the host (the CPU backend reads and
// writes them), or elsewhere (a backend keeps them) so that this cache only keeps accounts.
enum class LabelStorage { kHost, kAccountingOnly };

class LabelCache {
 public:
  struct Layer {
    std::vector<uint16_t> f16;       // [capacity, kv_heads, r] (16-bit format)
    std::vector<uint8_t> codes;      // [capacity, kv_heads, ceil(r/2)] (4-bit format)
    std::vector<uint16_t> scales;    // [capacity, kv_heads]
    std::vector<uint16_t> minimums;  // [capacity, kv_heads]
  };

  LabelCache(int layers, int kv_heads, LabelStorage storage = LabelStorage::kHost)
      : layers_(layers), kv_heads_(kv_heads), storage_(storage) {}

  LabelStorage storage() const { return storage_; }
  bool host_storage() const { return storage_ == LabelStorage::kHost; }

  // Makes room for `tokens` tokens of `seq` in `format`. The first call fixes the format;
  // a later call with another format is INVALID_ARGUMENT (labels already written cannot be
  // re-derived without the keys' full channels) and changes nothing.
  absl::Status Reserve(KvBlockPool::SequenceId seq, const LabelFormat& format, int64_t tokens);
  bool Contains(KvBlockPool::SequenceId seq) const { return sequences_.count(seq) != 0; }
  // Format and layer storage of a reserved sequence (must exist). In kAccountingOnly the
  // layer storage is empty.
  const LabelFormat& format(KvBlockPool::SequenceId seq) const;
  Layer& layer(KvBlockPool::SequenceId seq, int layer);
  const Layer& layer(KvBlockPool::SequenceId seq, int layer) const;
  int64_t capacity(KvBlockPool::SequenceId seq) const;

  void Release(KvBlockPool::SequenceId seq);
  void ReleaseMissing(const KvBlockPool& pool);

  int64_t SequenceBytes(KvBlockPool::SequenceId seq) const;
  // Label bytes reserved for all sequences, wherever they live (RowBytes × capacity).
  int64_t bytes_in_use() const { return bytes_; }
  // Of those, bytes held in host memory by this cache: bytes_in_use() or 0.
  int64_t host_bytes() const { return host_storage() ? bytes_ : 0; }
  int64_t sequences() const { return static_cast<int64_t>(sequences_.size()); }

 private:
  struct Sequence {
    LabelFormat format;
    int64_t capacity = 0;
    std::vector<Layer> layers;
  };
  int64_t BytesOf(const Sequence& s) const {
    return s.capacity * kv_heads_ * layers_ * s.format.RowBytes();
  }

  int layers_;
  int kv_heads_;
  LabelStorage storage_;
  int64_t bytes_ = 0;
  std::unordered_map<KvBlockPool::SequenceId, Sequence> sequences_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_LABEL_CACHE_H_
