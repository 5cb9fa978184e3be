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
  if (max_kept_rows < 0) return absl::InvalidArgumentError("max_kept_rows must be >= 0");
  if (resident_layers < -1) {
    return absl::InvalidArgumentError("resident_layers must be >= 0 (or -1: the default)");
  }
  if (reuse_rows < 0 || reuse_rows > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("reuse_rows must be in [0, 2^31), got ", reuse_rows));
  }
  if (reuse_previous && reuse_rows > 0) {
    return absl::InvalidArgumentError(
        "previous-step reuse and the LRU reuse cache (reuse_rows > 0) exclude each other");
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
      cache_(static_cast<size_t>(layers) * kv_heads),
      kept_of_(layers, -1),
      previous_of_(layers, -1),
      kept_step_(layers, -1),
      kept_now_(layers),
      kept_before_(layers),
      pending_kept_(layers) {}

OffloadTier::~OffloadTier() {
  for (void* b : buffer_) {
    if (b != nullptr) memory_.Free(b);
  }
  for (void* s : slab_) {
    if (s != nullptr) memory_.Free(s);
  }
  for (void* b : kept_) memory_.Free(b);
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

absl::Status OffloadTier::BeginStep(const std::vector<int64_t>& rows,
                                    const std::vector<int64_t>& sparse_rows) {
  if (!sparse_rows.empty() && sparse_rows.size() != rows.size()) {
    return absl::InternalError("offload step: sparse_rows and rows differ in length");
  }
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
  if (options_.reuse_previous) {
    const std::vector<int64_t>& kept = sparse_rows.empty() ? rows : sparse_rows;
    const int64_t cap = options_.max_kept_rows > 0    ? options_.max_kept_rows
                        : options_.max_buffer_rows > 0 ? options_.max_buffer_rows
                                                       : INT64_MAX;
    int64_t kept_total = 0;
    kept_segment_row_.assign(kept.size(), 0);
    kept_segment_rows_.assign(kept.size(), 0);
    for (size_t j = 0; j < kept.size(); ++j) {
      const int64_t want = std::max<int64_t>(kept[j], 0);
      if (kept_total + want > cap) continue;  // beyond what was planned: fetched without reuse
      kept_segment_row_[j] = kept_total;
      kept_segment_rows_[j] = want;
      kept_total += want;
    }
    if (kept_total > kept_rows_) {
      // Larger buffers: what the old ones kept is dropped with them (the next step fetches
      // everything once more); new ones are allocated as layers take them.
      for (void* b : kept_) memory_.Free(b);
      kept_.clear();
      kept_free_.clear();
      std::fill(kept_of_.begin(), kept_of_.end(), -1);
      std::fill(previous_of_.begin(), previous_of_.end(), -1);
      for (int l = 0; l < layers_; ++l) {
        kept_now_[l].clear();
        kept_before_[l].clear();
      }
      kept_rows_ = std::max(kept_total, std::min(2 * kept_rows_, cap));
    }
  }
  ++step_serial_;
  device_lookups_ = false;
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
    pending_kept_[l].assign(rows.size(), false);
  }
  return absl::OkStatus();
}

bool OffloadTier::KeepsPrevious(int layer, size_t segment, bool use_cache) const {
  // A resident layer's rows are in device memory already: keeping them would save nothing.
  return options_.reuse_previous && use_cache && layer >= options_.resident_layers &&
         segment < kept_segment_rows_.size() && kept_segment_rows_[segment] > 0;
}

void OffloadTier::AbandonStep() {
  ForgetKept([](KvBlockPool::SequenceId) { return true; });
}

int64_t OffloadTier::KeptBufferBytes() const {
  const int64_t rows = kept_rows_ * kv_heads_;
  return 2 * rows * row_bytes_ + (rows * 4 + 255) / 256 * 256;
}

SegmentRows OffloadTier::KeptRows(int buffer, int64_t row) const {
  char* base = static_cast<char*>(kept_[buffer]);
  const int64_t half = kept_rows_ * kv_heads_ * row_bytes_;
  const int64_t first = row * kv_heads_;
  SegmentRows r;
  r.k = base + first * row_bytes_;
  r.v = base + half + first * row_bytes_;
  r.tokens = reinterpret_cast<int32_t*>(base + 2 * half) + first;
  return r;
}

absl::Status OffloadTier::TakeKeptBuffer(int layer) {
  if (kept_step_[layer] == step_serial_) return absl::OkStatus();
  int fresh = -1;
  if (!kept_free_.empty()) {
    fresh = kept_free_.back();
    kept_free_.pop_back();
    // Its rows were some layer's previous rows: that layer's fetches this step are all
    // planned (layers plan in order), but it must not be read as theirs again.
    for (int l = 0; l < layers_; ++l) {
      if (previous_of_[l] == fresh) {
        previous_of_[l] = -1;
        kept_before_[l].clear();
      }
    }
  } else {
    absl::StatusOr<void*> p = memory_.Allocate(static_cast<size_t>(KeptBufferBytes()));
    if (!p.ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("offload kept buffer of ", kept_rows_, " rows: ", p.status().message()));
    }
    kept_.push_back(*p);
    fresh = static_cast<int>(kept_.size()) - 1;
  }
  // The old buffer is read by this layer's fetches of this step, all queued before any later
  // layer's fetch can write it (one copy stream on CUDA; synchronous on the CPU).
  if (kept_of_[layer] >= 0) kept_free_.push_back(kept_of_[layer]);
  previous_of_[layer] = kept_of_[layer];
  kept_before_[layer] = std::move(kept_now_[layer]);
  kept_now_[layer].clear();
  kept_of_[layer] = fresh;
  kept_step_[layer] = step_serial_;
  return absl::OkStatus();
}

const OffloadTier::KeptSegment* OffloadTier::Previous(int layer,
                                                      KvBlockPool::SequenceId seq) const {
  if (previous_of_[layer] < 0) return nullptr;
  for (const KeptSegment& k : kept_before_[layer]) {
    if (k.seq == seq) return &k;
  }
  return nullptr;
}

absl::Status OffloadTier::KeepPlan(FetchPlan& plan, KvBlockPool::SequenceId seq,
                                   const std::vector<int64_t>& rows,
                                   const std::vector<std::vector<int32_t>>* tokens) {
  const int layer = plan.layer;
  if (plan.segment >= kept_segment_rows_.size()) {
    return absl::InternalError("offload plan: segment outside the kept layout");
  }
  for (int64_t r : rows) {
    if (r + 1 > kept_segment_rows_[plan.segment]) {
      return absl::InternalError(absl::StrCat("offload plan: ", r,
                                              " rows do not fit a kept segment of ",
                                              kept_segment_rows_[plan.segment]));
    }
  }
  RETURN_IF_ERROR(TakeKeptBuffer(layer));
  if (const KeptSegment* prev = Previous(layer, seq)) {
    plan.previous = KeptRows(previous_of_[layer], prev->row);
    plan.previous_per_head = *std::min_element(prev->rows.begin(), prev->rows.end());
  }
  const int64_t row = kept_segment_row_[plan.segment];
  plan.destination = KeptRows(kept_of_[layer], row);
  KeptSegment kept;
  kept.seq = seq;
  kept.row = row;
  kept.rows = rows;
  if (tokens != nullptr) kept.tokens = *tokens;
  std::vector<KeptSegment>& now = kept_now_[layer];
  now.erase(std::remove_if(now.begin(), now.end(),
                           [seq](const KeptSegment& k) { return k.seq == seq; }),
            now.end());
  now.push_back(std::move(kept));
  pending_kept_[layer][plan.segment] = true;
  return absl::OkStatus();
}

void OffloadTier::ForgetKept(const std::function<bool(KvBlockPool::SequenceId)>& gone) {
  for (int l = 0; l < layers_; ++l) {
    for (auto* list : {&kept_now_[l], &kept_before_[l]}) {
      list->erase(std::remove_if(list->begin(), list->end(),
                                 [&](const KeptSegment& k) { return gone(k.seq); }),
                  list->end());
    }
  }
}

absl::StatusOr<FetchPlan> OffloadTier::NewPlan(int layer, size_t segment, size_t heads) const {
  if (layer < 0 || layer >= layers_ || segment >= segment_rows_.size() ||
      static_cast<int>(heads) != kv_heads_) {
    return absl::InternalError("offload plan: bad layer, segment or head count");
  }
  FetchPlan plan;
  plan.layer = layer;
  plan.segment = segment;
  plan.buffer = layer % 2;
  plan.segment_row = segment_row_[segment];
  plan.destination = PingPongRows(layer, segment);
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
  pending_kept_[layer][segment] = false;
  plan.from_slot.resize(kv_heads_);
  plan.to_slot.resize(kv_heads_);
  std::vector<int64_t> sizes(kv_heads_);
  for (int h = 0; h < kv_heads_; ++h) {
    sizes[h] = static_cast<int64_t>(tokens[h].size());
    // One row per head stays free for the current token.
    if (sizes[h] + 1 > segment_rows_[segment]) {
      return absl::InternalError(absl::StrCat("offload plan: ", sizes[h],
                                              " rows do not fit a segment of ",
                                              segment_rows_[segment]));
    }
  }
  const KeptSegment* previous = nullptr;
  const bool keep = KeepsPrevious(layer, segment, use_cache);
  if (keep) {
    RETURN_IF_ERROR(KeepPlan(plan, seq, sizes, &tokens));
    previous = Previous(layer, seq);
  }
  FetchCounters counts;
  const int64_t stamp = ++serial_;
  for (int h = 0; h < kv_heads_; ++h) {
    const std::vector<int32_t>& list = tokens[h];
    std::vector<int32_t>& from = plan.from_slot[h];
    std::vector<int32_t>& to = plan.to_slot[h];
    from.assign(list.size(), -1);
    to.assign(list.size(), -1);
    counts.rows_requested += static_cast<int64_t>(list.size());
    if (keep) {
      counts.rows_looked_up += static_cast<int64_t>(list.size());
      const int64_t hits = previous != nullptr && !previous->tokens.empty()
                               ? MatchPrevious(list, previous->tokens[h], from)
                               : 0;
      counts.rows_reused += hits;
      counts.rows_from_host += static_cast<int64_t>(list.size()) - hits;
      continue;
    }
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
  pending_counts_[layer][segment] = std::move(sizes);
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
  pending_kept_[layer][segment] = false;
  const bool keep = KeepsPrevious(layer, segment, /*use_cache=*/true);
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
    if (keep) counts.rows_looked_up += rows[h];
  }
  if (keep) {
    RETURN_IF_ERROR(KeepPlan(plan, seq, rows, nullptr));
    device_lookups_ = device_lookups_ || plan.previous.k != nullptr;
  }
  Account(seq, counts, plan);
  pending_[layer][segment].clear();
  pending_counts_[layer][segment] = rows;
  has_pending_[layer][segment] = true;
  pending_listed_[layer][segment] = false;
  return plan;
}

FetchCounters OffloadTier::CountReusedOnDevice(KvBlockPool::SequenceId seq, int64_t rows) {
  FetchCounters delta;
  if (rows <= 0) return delta;
  delta.rows_from_host = -rows;
  delta.rows_reused = rows;
  delta.bytes_from_host = -2 * rows * row_bytes_;
  counters_[seq].Add(delta);
  totals_.Add(delta);
  step_.Add(delta);
  return delta;
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

int64_t MatchPrevious(const std::vector<int32_t>& wanted, const std::vector<int32_t>& previous,
                      std::vector<int32_t>& from) {
  int64_t hits = 0;
  size_t j = 0;
  for (size_t i = 0; i < wanted.size(); ++i) {
    while (j < previous.size() && previous[j] < wanted[i]) ++j;
    if (j < previous.size() && previous[j] == wanted[i]) {
      from[i] = static_cast<int32_t>(j);
      ++hits;
    }
  }
  return hits;
}

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

bool OffloadTier::PendingKept(int layer, size_t segment) const {
  return HasPending(layer, segment) && pending_kept_[layer][segment];
}

SegmentRows OffloadTier::PingPongRows(int layer, size_t segment) const {
  char* base = static_cast<char*>(buffer_[layer % 2]);
  const int64_t offset = segment_row_[segment] * kv_heads_ * row_bytes_;
  SegmentRows r;
  r.k = base + offset;
  r.v = base + buffer_bytes_each_ / 2 + offset;
  return r;
}

SegmentRows OffloadTier::Destination(int layer, size_t segment) const {
  if (PendingKept(layer, segment)) return KeptRows(kept_of_[layer], kept_segment_row_[segment]);
  return PingPongRows(layer, segment);
}

PagedKvView<float> OffloadTier::SegmentView(int layer, size_t segment) const {
  PagedKvView<float> view = BufferView(layer);
  const SegmentRows rows = Destination(layer, segment);
  view.k = static_cast<float*>(rows.k);
  view.v = static_cast<float*>(rows.v);
  view.block_tokens = static_cast<int>(std::max<int64_t>(segment_capacity(layer, segment), 1));
  return view;
}

int64_t OffloadTier::segment_capacity(int layer, size_t segment) const {
  if (PendingKept(layer, segment)) return kept_segment_rows_[segment];
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

SegmentRows OffloadTier::ReuseSource(const FetchPlan& plan) const {
  SegmentRows source;
  if (options_.reuse_rows > 0) {
    const PagedKvView<float> cache = CacheView(plan.layer);
    source.k = cache.k;
    source.v = cache.v;
  } else {
    source.k = plan.previous.k;
    source.v = plan.previous.v;
  }
  return source;
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
  ForgetKept([seq](KvBlockPool::SequenceId s) { return s == seq; });
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
  ForgetKept([&pool](KvBlockPool::SequenceId s) { return !pool.Contains(s); });
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
  const int64_t row_floats = pool.head_dim;
  auto row_in = [&](const SegmentRows& rows, bool v, int64_t i, int head) {
    return static_cast<float*>(v ? rows.v : rows.k) + (i * pool.kv_heads + head) * row_floats;
  };
  const SegmentRows source = tier.ReuseSource(plan);
  const size_t row = static_cast<size_t>(pool.head_dim) * sizeof(float);
  for (size_t h = 0; h < plan.tokens.size(); ++h) {
    const int head = static_cast<int>(h);
    for (size_t i = 0; i < plan.tokens[h].size(); ++i) {
      const int64_t slot_in_buffer = static_cast<int64_t>(i);
      float* k_dst = row_in(plan.destination, false, slot_in_buffer, head);
      float* v_dst = row_in(plan.destination, true, slot_in_buffer, head);
      const int32_t t = plan.tokens[h][i];
      if (plan.destination.tokens != nullptr) {
        plan.destination.tokens[slot_in_buffer * pool.kv_heads + head] = t;
      }
      const int32_t from = plan.from_slot[h][i];
      if (from >= 0) {
        std::memcpy(k_dst, row_in(source, false, from, head), row);
        std::memcpy(v_dst, row_in(source, true, from, head), row);
        continue;
      }
      std::memcpy(k_dst, pool.KRow(t, head), row);
      std::memcpy(v_dst, pool.VRow(t, head), row);
      const int32_t to = plan.to_slot[h][i];
      if (to >= 0) {
        std::memcpy(row_in(source, false, to, head), k_dst, row);
        std::memcpy(row_in(source, true, to, head), v_dst, row);
      }
    }
  }
}

}  // namespace dsinfer
