// The KV tier's storage: one pool of fixed-size token blocks shared by all sequences, with a
// block table per sequence (DESIGN §4). Per layer, K and V are each laid out
// [block][token_in_block][kv_head][head_dim], so a (token, head) row is contiguous.
//
// The pool does exact accounting (blocks and bytes in use, per sequence and in total), which
// the scheduler uses to admit requests and the tests use to prove that cancel and finish
// return every byte. Memory comes from a HostMemory: ordinary memory for the CPU backend,
// pinned mapped memory for the CUDA offload tier.
//
// Not thread-safe: one engine thread owns it.
#ifndef DSINFER_OFFLOAD_KV_BLOCK_POOL_H_
#define DSINFER_OFFLOAD_KV_BLOCK_POOL_H_

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "offload/host_memory.h"

namespace dsinfer {

struct KvPoolOptions {
  int layers = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 16;
  int64_t num_blocks = 0;
  DType dtype = DType::kF32;
  // The first resident_layers layers keep their K/V in Create's resident memory (the offload
  // modes: device memory for the dense layers, which read every token each step); the rest
  // in its main memory. 0 = every layer in the main memory.
  int resident_layers = 0;

  absl::Status Validate() const;
  // Bytes of K plus V that one block holds across all layers.
  int64_t BytesPerBlock() const;
  // Bytes of one block in one layer's K (or V) region.
  int64_t LayerBlockBytes() const { return BytesPerBlock() / (2LL * layers); }
};

class KvBlockPool {
 public:
  using SequenceId = int64_t;

  // Allocates the whole pool up front — layers [0, resident_layers) from `resident` (needed
  // when resident_layers > 0), the others from `memory`; fails (RESOURCE_EXHAUSTED, nothing
  // kept) if memory cannot be had.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(const KvPoolOptions& options,
                                                             HostMemory& memory,
                                                             HostMemory* resident = nullptr);
  ~KvBlockPool();
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  // A new sequence with an empty block table.
  SequenceId AddSequence();
  // A new sequence holding exactly `blocks` (in that order), taken from the free list:
  // a staging pool mirroring another pool's sequence (Model::PrefillLayerMajor).
  // FAILED_PRECONDITION (and no change) when any of them is not free or out of range.
  absl::StatusOr<SequenceId> AddSequenceWithBlocks(const std::vector<int32_t>& blocks);
  // Grows `id`'s block table to hold at least `tokens` tokens. RESOURCE_EXHAUSTED (and no
  // change at all) when the free blocks do not suffice; NOT_FOUND for an unknown id.
  absl::Status Reserve(SequenceId id, int64_t tokens);
  // Returns every block of `id` to the free list and forgets it. Unknown ids are ignored.
  void Release(SequenceId id);

  // The block table of `id` (must exist).
  const std::vector<int32_t>& BlockTable(SequenceId id) const;
  bool Contains(SequenceId id) const { return tables_.count(id) != 0; }

  // Blocks needed for `tokens` tokens; whether that many could ever fit in this pool.
  int64_t BlocksFor(int64_t tokens) const;
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t blocks_in_use() const { return options_.num_blocks - free_blocks(); }
  int64_t bytes_in_use() const { return blocks_in_use() * options_.BytesPerBlock(); }
  int64_t sequences() const { return static_cast<int64_t>(tables_.size()); }
  int64_t SequenceBytes(SequenceId id) const;

  // Base of layer `layer`'s K (or V) region: [num_blocks, block_tokens, kv_heads, head_dim].
  void* KBase(int layer) const;
  void* VBase(int layer) const;
  const KvPoolOptions& options() const { return options_; }

 private:
  KvBlockPool(const KvPoolOptions& options, HostMemory& memory, void* base,
              HostMemory* resident, void* resident_base);

  KvPoolOptions options_;
  HostMemory& memory_;
  void* base_;  // layers [resident_layers, layers); nullptr when all are resident
  HostMemory* resident_;
  void* resident_base_;  // layers [0, resident_layers)
  int64_t layer_bytes_;  // bytes of one layer's K region (V is the same size)
  std::vector<int32_t> free_;
  std::unordered_map<SequenceId, std::vector<int32_t>> tables_;
  SequenceId next_id_ = 1;
};

// One contiguous piece of a copy between two pools.
struct KvBlockCopy {
  const void* from = nullptr;
  void* to = nullptr;
  int64_t bytes = 0;
};

// The pieces of copying `blocks` of layer `src_layer` of `src` to the same block ids of layer
// `dst_layer` of `dst`: K, then V, of each run of consecutive ids. INVALID_ARGUMENT when the
// pools differ in block geometry or dtype, or an id or layer is out of range.
absl::StatusOr<std::vector<KvBlockCopy>> KvBlockCopies(const KvBlockPool& src, int src_layer,
                                                       const KvBlockPool& dst, int dst_layer,
                                                       const std::vector<int32_t>& blocks);

}  // namespace dsinfer

#endif  // DSINFER_OFFLOAD_KV_BLOCK_POOL_H_
