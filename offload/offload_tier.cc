// Buffers grow geometrically to the largest step seen and slabs are allocated once, so a
// warm decode loop allocates nothing — the discipline the CUDA side needs (its buffers are
// device memory sized at start-up). Plans are built on the host here; docs/offload.md says
// how the CUDA side keeps the hit/miss decision on the device.
#include "offload/offload_tier.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<KvMode> ParseKvMode(absl::string_view name) {
  if (name == "gpu") return KvMode::kGpu;
  if (name == "offload") return KvMode::kOffload;
  if (name == "dense-offload") return KvMode::kDenseOffload;
  return absl::InvalidArgumentError(
      absl::StrCat("kv mode must be gpu, offload or dense-offload, got '", name, "'"));
}

absl::string_view KvModeName(KvMode mode) {
  switch (mode) {
    case KvMode::kGpu:
      return "gpu";
    case KvMode::kOffload:
      return "offload";
    case KvMode::kDenseOffload:
      return "dense-offload";
  }
  return "gpu";
}

absl::Status OffloadOptions::Validate() const {
  if (own_query_layers < 0) return absl::InvalidArgumentError("own_query_layers must be >= 0");
  if (max_buffer_rows < 0) return absl::InvalidArgumentError("max_buffer_rows must be >= 0");
  if (resident_layers < -1) {
    return absl::InvalidArgumentError("resident_layers must be >= 0 (or -1: the default)");
  }
  if (reuse_rows < 0 || reuse_rows > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("reuse_rows must be in [0, 2^31), got ", reuse_rows));
  }
  for (int l : own_query_extra) {
    if (l < 0) return absl::InvalidArgumentError("own_query_extra layers must be >= 0");
  }
  return absl::OkStatus();
}

bool OffloadOptions::OwnQuery(int layer) const {
  return !predict || layer < own_query_layers ||
         std::find(own_query_extra.begin(), own_query_extra.end(), layer) != own_query_extra.end();
}

OffloadTier::OffloadTier(int layers, int kv_heads, int head_dim, DType kv_dtype,
                         const OffloadOptions& options, HostMemory& memory)
    : layers_(layers),
      kv_heads_(kv_heads),
      head_dim_(head_dim),
      kv_dtype_(kv_dtype),
      options_(options),
      memory_(memory),
      row_bytes_(static_cast<int64_t>(head_dim) * static_cast<int64_t>(DTypeSize(kv_dtype))),
      pending_(layers),
      has_pending_(layers),
      pending_listed_(layers),
      pending_counts_(layers),
      slab_(layers, nullptr),
      cache_(static_cast<size_t>(layers) * kv_heads) {}

OffloadTier::~OffloadTier() {
  for (void* b : buffer_) {
    if (b != nullptr) memory_.Free(b);
  }
  for (void* s : slab_) {
    if (s != nullptr) memory_.Free(s);
  }
}

absl::StatusOr<std::unique_ptr<OffloadTier>> OffloadTier::Create(int layers, int kv_heads,
                                                                 int head_dim, DType kv_dtype,
                                                                 const OffloadOptions& options,
                                                                 HostMemory& memory) {
  RETURN_IF_ERROR(options.Validate());
  if (layers <= 0 || kv_heads <= 0 || head_dim <= 0) {
    return absl::InvalidArgumentError("offload tier needs positive layers, kv_heads, head_dim");
  }
  auto tier = std::unique_ptr<OffloadTier>(
      new OffloadTier(layers, kv_heads, head_dim, kv_dtype, options, memory));
  const int64_t n = options.reuse_rows;
  if (n > 0) {
    const int64_t half = n * kv_heads * tier->row_bytes_;
    for (int l = 0; l < layers; ++l) {
      absl::StatusOr<void*> slab = memory.Allocate(static_cast<size_t>(2 * half));
      if (!slab.ok()) {
        return absl::ResourceExhaustedError(
            absl::StrCat("offload reuse cache of ", n,
                         " rows per layer and KV head: ", slab.status().message()));
      }
      tier->slab_[l] = *slab;
      tier->reuse_bytes_ += 2 * half;
    }
    for (CacheHead& c : tier->cache_) {
      c.key_of.assign(n, Key{0, -1});
      c.stamp.assign(n, -1);
      c.where.resize(n);
      c.used.assign(n, false);
      c.free.reserve(n);
      for (int64_t s = n - 1; s >= 0; --s) c.free.push_back(static_cast<int32_t>(s));
    }
  }
  return tier;
}

absl::Status OffloadTier::BeginStep(const std::vector<int64_t>& rows) {
  int64_t total = 0;
  for (int64_t r : rows) total += std::max<int64_t>(r, 0);
  if (total > buffer_rows_) {
    int64_t ahead = 2 * buffer_rows_;
    if (options_.max_buffer_rows > 0) ahead = std::min(ahead, options_.max_buffer_rows);
    const int64_t grown = std::max(total, ahead);
    const int64_t bytes = 2 * grown * kv_heads_ * row_bytes_;  // K then V
    void* fresh[2] = {nullptr, nullptr};
    for (int b = 0; b < 2; ++b) {
      absl::StatusOr<void*> p = memory_.Allocate(static_cast<size_t>(bytes));
      if (!p.ok()) {
        if (fresh[0] != nullptr) memory_.Free(fresh[0]);
        return absl::ResourceExhaustedError(
            absl::StrCat("offload fetch buffer of ", grown, " rows: ", p.status().message()));
      }
      fresh[b] = *p;
    }
    for (int b = 0; b < 2; ++b) {
      if (buffer_[b] != nullptr) memory_.Free(buffer_[b]);
      buffer_[b] = fresh[b];
    }
    buffer_rows_ = grown;
    buffer_bytes_each_ = bytes;
  }
  step_ = FetchCounters();
  segment_row_.assign(rows.size(), 0);
  segment_rows_.assign(rows.size(), 0);
  int64_t next = 0;
  for (size_t j = 0; j < rows.size(); ++j) {
    segment_row_[j] = next;
    segment_rows_[j] = std::max<int64_t>(rows[j], 0);
    next += segment_rows_[j];
  }
  for (int l = 0; l < layers_; ++l) {
    pending_[l].assign(rows.size(), {});
    has_pending_[l].assign(rows.size(), false);
    pending_listed_[l].assign(rows.size(), false);
    pending_counts_[l].assign(rows.size(), {});
  }
  return absl::OkStatus();
}

absl::StatusOr<FetchPlan> OffloadTier::NewPlan(int layer, size_t segment, size_t heads) const {
  if (layer < 0 || layer >= layers_ || segment >= segment_rows_.size() ||
      static_cast<int>(heads) != kv_heads_) {
    return absl::InternalError("offload plan: bad layer, segment or head count");
  }
  FetchPlan plan;
  plan.layer = layer;
  plan.buffer = layer % 2;
  plan.segment_row = segment_row_[segment];
  return plan;
}

FetchCounters OffloadTier::Record(KvBlockPool::SequenceId seq, FetchCounters counts) {
  counts.bytes_from_host = 2 * counts.rows_from_host * row_bytes_;
  counters_[seq].Add(counts);
  totals_.Add(counts);
  step_.Add(counts);
  return counts;
}

void OffloadTier::Account(KvBlockPool::SequenceId seq, FetchCounters counts, FetchPlan& plan) {
  if (plan.layer < options_.resident_layers) {  // the pool rows are in device memory
    counts.rows_resident = counts.rows_from_host;
    counts.rows_from_host = 0;
  }
  plan.counts = Record(seq, counts);
}

absl::StatusOr<FetchPlan> OffloadTier::Plan(int layer, size_t segment, KvBlockPool::SequenceId seq,
                                            std::vector<std::vector<int32_t>> tokens,
                                            bool use_cache) {
  ASSIGN_OR_RETURN(FetchPlan plan, NewPlan(layer, segment, tokens.size()));
  plan.from_slot.resize(kv_heads_);
  plan.to_slot.resize(kv_heads_);
  FetchCounters counts;
  const int64_t stamp = ++serial_;
  for (int h = 0; h < kv_heads_; ++h) {
    const std::vector<int32_t>& list = tokens[h];
    // One row per head stays free for the current token.
    if (static_cast<int64_t>(list.size()) + 1 > segment_rows_[segment]) {
      return absl::InternalError(absl::StrCat(
          "offload plan: ", list.size(), " rows do not fit a segment of ", segment_rows_[segment]));
    }
    std::vector<int32_t>& from = plan.from_slot[h];
    std::vector<int32_t>& to = plan.to_slot[h];
    from.assign(list.size(), -1);
    to.assign(list.size(), -1);
    counts.rows_requested += static_cast<int64_t>(list.size());
    if (options_.reuse_rows == 0 || !use_cache) {
      counts.rows_from_host += static_cast<int64_t>(list.size());
      continue;
    }
    counts.rows_looked_up += static_cast<int64_t>(list.size());
    CacheHead& c = cache_[static_cast<size_t>(layer) * kv_heads_ + h];
    // Hits first, so that a miss can never evict a row this plan reads from the cache.
    for (size_t i = 0; i < list.size(); ++i) {
      auto it = c.slot_of.find(Key{seq, list[i]});
      if (it == c.slot_of.end()) continue;
      const int32_t s = it->second;
      from[i] = s;
      c.stamp[s] = stamp;
      c.lru.splice(c.lru.begin(), c.lru, c.where[s]);
    }
    for (size_t i = 0; i < list.size(); ++i) {
      if (from[i] >= 0) {
        ++counts.rows_reused;
        continue;
      }
      ++counts.rows_from_host;
      int32_t s = -1;
      if (!c.free.empty()) {
        s = c.free.back();
        c.free.pop_back();
        c.lru.push_front(s);
        c.where[s] = c.lru.begin();
        c.used[s] = true;
      } else if (c.stamp[c.lru.back()] != stamp) {
        s = c.lru.back();
        c.slot_of.erase(c.key_of[s]);
        c.lru.splice(c.lru.begin(), c.lru, c.where[s]);
      }
      if (s < 0) continue;  // every slot holds a row this plan reads: do not cache
      c.key_of[s] = Key{seq, list[i]};
      c.slot_of[c.key_of[s]] = s;
      c.stamp[s] = stamp;
      to[i] = s;
    }
  }
  Account(seq, counts, plan);
  std::vector<int64_t>& sizes = pending_counts_[layer][segment];
  sizes.resize(kv_heads_);
  for (int h = 0; h < kv_heads_; ++h) sizes[h] = static_cast<int64_t>(tokens[h].size());
  plan.tokens = tokens;
  pending_[layer][segment] = std::move(tokens);
  has_pending_[layer][segment] = true;
  pending_listed_[layer][segment] = true;
  return plan;
}

absl::StatusOr<FetchPlan> OffloadTier::PlanCounted(int layer, size_t segment,
                                                   KvBlockPool::SequenceId seq,
                                                   const std::vector<int64_t>& rows) {
  ASSIGN_OR_RETURN(FetchPlan plan, NewPlan(layer, segment, rows.size()));
  FetchCounters counts;
  for (int h = 0; h < kv_heads_; ++h) {
    // One row per head stays free for the current token.
    if (rows[h] < 0 || rows[h] + 1 > segment_rows_[segment]) {
      return absl::InternalError(absl::StrCat("offload plan: ", rows[h],
                                              " rows do not fit a segment of ",
                                              segment_rows_[segment]));
    }
    counts.rows_requested += rows[h];
    counts.rows_from_host += rows[h];
  }
  Account(seq, counts, plan);
  pending_[layer][segment].clear();
  pending_counts_[layer][segment] = rows;
  has_pending_[layer][segment] = true;
  pending_listed_[layer][segment] = false;
  return plan;
}

bool OffloadTier::HasPending(int layer, size_t segment) const {
  return layer >= 0 && layer < layers_ && segment < has_pending_[layer].size() &&
         has_pending_[layer][segment];
}

const std::vector<int64_t>& OffloadTier::PendingCounts(int layer, size_t segment) const {
  static const std::vector<int64_t> kNone;
  return HasPending(layer, segment) ? pending_counts_[layer][segment] : kNone;
}

const std::vector<std::vector<int32_t>>* OffloadTier::Pending(int layer, size_t segment) const {
  if (!HasPending(layer, segment) || !pending_listed_[layer][segment]) return nullptr;
  return &pending_[layer][segment];
}

namespace {
const int32_t kOneBlock[1] = {0};
}  // namespace

PagedKvView<float> OffloadTier::BufferView(int layer) const {
  PagedKvView<float> view;
  char* base = static_cast<char*>(buffer_[layer % 2]);
  view.k = reinterpret_cast<float*>(base);
  view.v = reinterpret_cast<float*>(base + buffer_bytes_each_ / 2);
  view.block_table = kOneBlock;
  view.block_tokens = static_cast<int>(std::max<int64_t>(buffer_rows_, 1));
  view.kv_heads = kv_heads_;
  view.head_dim = head_dim_;
  return view;
}

PagedKvView<float> OffloadTier::SegmentView(int layer, size_t segment) const {
  PagedKvView<float> view = BufferView(layer);
  const int64_t offset = segment_row_[segment] * kv_heads_ * head_dim_;
  view.k += offset;
  view.v += offset;
  view.block_tokens = static_cast<int>(std::max<int64_t>(segment_rows_[segment], 1));
  return view;
}

int64_t OffloadTier::segment_capacity(size_t segment) const {
  return segment < segment_rows_.size() ? segment_rows_[segment] : 0;
}

PagedKvView<float> OffloadTier::CacheView(int layer) const {
  PagedKvView<float> view;
  char* base = static_cast<char*>(slab_[layer]);
  view.k = reinterpret_cast<float*>(base);
  view.v = reinterpret_cast<float*>(base + options_.reuse_rows * kv_heads_ * row_bytes_);
  view.block_table = kOneBlock;
  view.block_tokens = static_cast<int>(std::max<int64_t>(options_.reuse_rows, 1));
  view.kv_heads = kv_heads_;
  view.head_dim = head_dim_;
  return view;
}

FetchCounters OffloadTier::CountDirect(KvBlockPool::SequenceId seq, int64_t rows) {
  FetchCounters counts;
  counts.rows_requested = rows;
  counts.rows_from_host = rows;
  return Record(seq, counts);
}

void OffloadTier::Release(KvBlockPool::SequenceId seq) {
  counters_.erase(seq);
  ReleaseSlotsIf([seq](KvBlockPool::SequenceId s) { return s == seq; });
}

void OffloadTier::ReleaseSlotsIf(const std::function<bool(KvBlockPool::SequenceId)>& gone) {
  for (CacheHead& c : cache_) {
    for (size_t s = 0; s < c.key_of.size(); ++s) {
      if (!c.used[s] || !gone(c.key_of[s].seq)) continue;
      c.slot_of.erase(c.key_of[s]);
      c.lru.erase(c.where[s]);
      c.used[s] = false;
      c.key_of[s] = Key{0, -1};
      c.stamp[s] = -1;
      c.free.push_back(static_cast<int32_t>(s));
    }
  }
}

void OffloadTier::ReleaseMissing(const KvBlockPool& pool) {
  for (auto it = counters_.begin(); it != counters_.end();) {
    it = pool.Contains(it->first) ? std::next(it) : counters_.erase(it);
  }
  ReleaseSlotsIf([&pool](KvBlockPool::SequenceId s) { return !pool.Contains(s); });
}

const FetchCounters* OffloadTier::Counters(KvBlockPool::SequenceId seq) const {
  auto it = counters_.find(seq);
  return it == counters_.end() ? nullptr : &it->second;
}

int64_t OffloadTier::reuse_slots_in_use() const {
  int64_t n = 0;
  for (const CacheHead& c : cache_) n += static_cast<int64_t>(c.lru.size());
  return n;
}

void ExecuteFetchPlanReference(const FetchPlan& plan, const PagedKvView<const float>& pool,
                               const OffloadTier& tier) {
  PagedKvView<float> buffer = tier.BufferView(plan.layer);
  const int64_t shift = plan.segment_row * pool.kv_heads * pool.head_dim;
  buffer.k += shift;
  buffer.v += shift;
  const bool reuse = tier.options().reuse_rows > 0;
  const PagedKvView<float> cache = reuse ? tier.CacheView(plan.layer) : PagedKvView<float>();
  const size_t row = static_cast<size_t>(pool.head_dim) * sizeof(float);
  for (size_t h = 0; h < plan.tokens.size(); ++h) {
    const int head = static_cast<int>(h);
    for (size_t i = 0; i < plan.tokens[h].size(); ++i) {
      const int64_t slot_in_buffer = static_cast<int64_t>(i);
      float* k_dst = buffer.k + (slot_in_buffer * pool.kv_heads + head) * pool.head_dim;
      float* v_dst = buffer.v + (slot_in_buffer * pool.kv_heads + head) * pool.head_dim;
      const int32_t from = plan.from_slot[h][i];
      if (from >= 0) {
        std::memcpy(k_dst, cache.KRow(from, head), row);
        std::memcpy(v_dst, cache.VRow(from, head), row);
        continue;
      }
      const int32_t t = plan.tokens[h][i];
      std::memcpy(k_dst, pool.KRow(t, head), row);
      std::memcpy(v_dst, pool.VRow(t, head), row);
      const int32_t to = plan.to_slot[h][i];
      if (to >= 0) {
        std::memcpy(cache.KRow(to, head), k_dst, row);
        std::memcpy(cache.VRow(to, head), v_dst, row);
      }
    }
  }
}

}  // namespace dsinfer
