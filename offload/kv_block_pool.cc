// Free blocks are kept as a stack so that a released sequence's blocks are reused first
// (they are warm in cache). Reserve checks capacity before touching anything, so a failure
// leaves the pool exactly as it was.
#include "offload/kv_block_pool.h"

#include <algorithm>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace dsinfer {

absl::Status KvPoolOptions::Validate() const {
  if (layers <= 0 || kv_heads <= 0 || head_dim <= 0 || block_tokens <= 0 || num_blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV pool needs positive layers, kv_heads, head_dim, block_tokens and num_blocks; got ",
        layers, ", ", kv_heads, ", ", head_dim, ", ", block_tokens, ", ", num_blocks));
  }
  if (num_blocks > INT32_MAX) return absl::InvalidArgumentError("KV pool has too many blocks");
  if (dtype == DType::kI32) return absl::InvalidArgumentError("KV pool dtype must be a float type");
  if (resident_layers < 0 || resident_layers > layers) {
    return absl::InvalidArgumentError(absl::StrCat("KV pool resident_layers must be in [0, ",
                                                   layers, "]; got ", resident_layers));
  }
  return absl::OkStatus();
}

int64_t KvPoolOptions::BytesPerBlock() const {
  return 2LL * layers * block_tokens * kv_heads * head_dim * static_cast<int64_t>(DTypeSize(dtype));
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(const KvPoolOptions& options,
                                                                 HostMemory& memory,
                                                                 HostMemory* resident) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (options.resident_layers > 0 && resident == nullptr) {
    return absl::InvalidArgumentError("KV pool with resident layers needs their memory");
  }
  const int64_t per_layer = options.BytesPerBlock() / options.layers * options.num_blocks;
  auto allocate = [&](HostMemory& from, int layers, const char* what) -> absl::StatusOr<void*> {
    if (layers == 0) return nullptr;
    const int64_t bytes = per_layer * layers;
    absl::StatusOr<void*> p = from.Allocate(static_cast<size_t>(bytes));
    if (!p.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat("KV pool of ", options.num_blocks,
                                                       " blocks (", what, layers, " layers, ",
                                                       bytes, " bytes): ", p.status().message()));
    }
    return *p;
  };
  ASSIGN_OR_RETURN(void* base, allocate(memory, options.layers - options.resident_layers, ""));
  absl::StatusOr<void*> resident_base =
      allocate(options.resident_layers > 0 ? *resident : memory, options.resident_layers,
               "resident: ");
  if (!resident_base.ok()) {
    if (base != nullptr) memory.Free(base);
    return resident_base.status();
  }
  return std::unique_ptr<KvBlockPool>(
      new KvBlockPool(options, memory, base, resident, *resident_base));
}

KvBlockPool::KvBlockPool(const KvPoolOptions& options, HostMemory& memory, void* base,
                         HostMemory* resident, void* resident_base)
    : options_(options),
      memory_(memory),
      base_(base),
      resident_(resident),
      resident_base_(resident_base) {
  layer_bytes_ = options.num_blocks * options.block_tokens * options.kv_heads * options.head_dim *
                 static_cast<int64_t>(DTypeSize(options.dtype));
  free_.reserve(options.num_blocks);
  for (int64_t b = options.num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

KvBlockPool::~KvBlockPool() {
  if (base_ != nullptr) memory_.Free(base_);
  if (resident_base_ != nullptr) resident_->Free(resident_base_);
}

KvBlockPool::SequenceId KvBlockPool::AddSequence() {
  const SequenceId id = next_id_++;
  tables_.emplace(id, std::vector<int32_t>{});
  return id;
}

int64_t KvBlockPool::BlocksFor(int64_t tokens) const {
  return (tokens + options_.block_tokens - 1) / options_.block_tokens;
}

absl::StatusOr<KvBlockPool::SequenceId> KvBlockPool::AddSequenceWithBlocks(
    const std::vector<int32_t>& blocks) {
  std::unordered_set<int32_t> want;
  for (int32_t b : blocks) {
    if (b < 0 || b >= options_.num_blocks || !want.insert(b).second) {
      return absl::FailedPreconditionError(
          absl::StrCat("KV block ", b, " is out of range or listed twice"));
    }
  }
  std::vector<int32_t> rest;
  rest.reserve(free_.size());
  for (int32_t b : free_) {
    if (want.count(b) == 0) rest.push_back(b);
  }
  if (free_.size() - rest.size() != want.size()) {
    return absl::FailedPreconditionError("a requested KV block is not free");
  }
  free_ = std::move(rest);
  const SequenceId id = AddSequence();
  tables_[id] = blocks;
  return id;
}

absl::Status KvBlockPool::Reserve(SequenceId id, int64_t tokens) {
  auto it = tables_.find(id);
  if (it == tables_.end()) return absl::NotFoundError(absl::StrCat("unknown KV sequence ", id));
  std::vector<int32_t>& table = it->second;
  const int64_t need = BlocksFor(tokens) - static_cast<int64_t>(table.size());
  if (need <= 0) return absl::OkStatus();
  if (need > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV pool exhausted: ", tokens, " tokens need ", need, " more blocks of ",
        options_.block_tokens, " tokens, ", free_blocks(), " of ", options_.num_blocks, " free"));
  }
  for (int64_t i = 0; i < need; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return absl::OkStatus();
}

void KvBlockPool::Release(SequenceId id) {
  auto it = tables_.find(id);
  if (it == tables_.end()) return;
  for (auto b = it->second.rbegin(); b != it->second.rend(); ++b) free_.push_back(*b);
  tables_.erase(it);
}

const std::vector<int32_t>& KvBlockPool::BlockTable(SequenceId id) const {
  return tables_.at(id);
}

int64_t KvBlockPool::SequenceBytes(SequenceId id) const {
  auto it = tables_.find(id);
  return it == tables_.end() ? 0
                             : static_cast<int64_t>(it->second.size()) * options_.BytesPerBlock();
}

void* KvBlockPool::KBase(int layer) const {
  if (layer < options_.resident_layers) {
    return static_cast<char*>(resident_base_) + 2 * layer * layer_bytes_;
  }
  return static_cast<char*>(base_) + 2 * (layer - options_.resident_layers) * layer_bytes_;
}

void* KvBlockPool::VBase(int layer) const {
  return static_cast<char*>(KBase(layer)) + layer_bytes_;  // V follows its layer's K region
}

absl::StatusOr<std::vector<KvBlockCopy>> KvBlockCopies(const KvBlockPool& src, int src_layer,
                                                       const KvBlockPool& dst, int dst_layer,
                                                       const std::vector<int32_t>& blocks) {
  const KvPoolOptions& x = src.options();
  const KvPoolOptions& y = dst.options();
  if (x.kv_heads != y.kv_heads || x.head_dim != y.head_dim || x.block_tokens != y.block_tokens ||
      x.dtype != y.dtype) {
    return absl::InvalidArgumentError("KV block copy between pools of different block geometry");
  }
  if (src_layer < 0 || src_layer >= x.layers || dst_layer < 0 || dst_layer >= y.layers) {
    return absl::InvalidArgumentError("KV block copy: layer out of range");
  }
  std::vector<std::pair<int32_t, int32_t>> runs;  // (first id, count)
  for (int32_t blk : blocks) {
    if (blk < 0 || blk >= x.num_blocks || blk >= y.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("KV block copy: block ", blk, " out of range"));
    }
    if (!runs.empty() && runs.back().first + runs.back().second == blk) {
      ++runs.back().second;
    } else {
      runs.emplace_back(blk, 1);
    }
  }
  const int64_t bytes = x.LayerBlockBytes();
  std::vector<KvBlockCopy> copies;
  for (const auto& [first, count] : runs) {
    for (int part = 0; part < 2; ++part) {
      const char* from =
          static_cast<const char*>(part == 0 ? src.KBase(src_layer) : src.VBase(src_layer));
      char* to = static_cast<char*>(part == 0 ? dst.KBase(dst_layer) : dst.VBase(dst_layer));
      copies.push_back(KvBlockCopy{from + first * bytes, to + first * bytes, count * bytes});
    }
  }
  return copies;
}

}  // namespace dsinfer
