// The offload tier's decode-time state (DESIGN §3–§4, docs/offload.md): where the K/V rows
// that attention reads come from when the KV cache lives in the host pool.
//
// Attention in `offload` and `dense-offload` modes never reads the pool. Each (layer, batch
// sequence) gets a segment of a fetch buffer; a fetch copies the chosen rows into it, per KV
// head, in ascending token order, and attention runs over that buffer plus the current
// token's row, which comes from the step's own q/k/v (never from the host). Two fetch
// buffers alternate by layer parity (ping-pong), so layer l+1's gather, issued during layer l
// (cross-layer prediction), writes the buffer layer l is not reading.
//
// Two reuse caches, either of which may be on (both off by default in the binaries):
//  - previous-step reuse (`reuse_previous`): each layer keeps the rows its sparse fetch placed
//    at the previous step in a buffer of its own (kept buffers rotate: a layer's new fetch
//    takes a free one and frees the old one once it has been read), with the token of every
//    row beside it. A row selected again is copied from there (HBM) instead of the pool. The
//    hit/miss decision needs no host bookkeeping: on the host lists are merged (Plan), on the
//    device the gather looks each selected token up in the previous step's ascending tokens.
//  - an LRU cache per (layer, KV head) (`reuse_rows`): slots shared by all sequences, least
//    recently used evicted first, never a row the current fetch still needs; its bookkeeping
//    is on the host.
// A row found in either is copied from it (HBM on the GPU) instead of from the pool (PCIe);
// only misses count as bytes fetched from the host.
//
// The tier is split into bookkeeping (this class: segments, which rows to fetch, cache slots,
// exact accounting) and data movement (ExecuteFetchPlan, the CPU twin of the CUDA gather
// kernel). Storage — fetch buffers and cache slabs — comes from a HostMemory allocator: on
// the CPU backend ordinary memory; on CUDA a device allocator behind the same interface.
// Rows are stored in the pool's element type; ExecuteFetchPlan handles fp32 (the CPU pool).
//
// Not thread-safe: the engine thread owns it.
#ifndef DSINFER_OFFLOAD_OFFLOAD_TIER_H_
#define DSINFER_OFFLOAD_OFFLOAD_TIER_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"
#include "kernels/paged_kv.h"
#include "offload/host_memory.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

// Where decode attention reads K/V from (DESIGN §4).
//   kGpu:          the pool itself (the whole KV is resident; today's behaviour).
//   kOffload:      only rows fetched into the fetch buffer — Double Sparsity's selection
//                  (predicted one layer ahead where allowed), or every row for rows that
//                  resolve to dense attention.
//   kDenseOffload: every row of every layer streamed into the buffer (FlexGen-style
//                  baseline); Double Sparsity is not used.
enum class KvMode { kGpu, kOffload, kDenseOffload };

absl::StatusOr<KvMode> ParseKvMode(absl::string_view name);  // "gpu" | "offload" | "dense-offload"
absl::string_view KvModeName(KvMode mode);

// Which hidden state predicts layer l+1's query during layer l (docs/offload.md).
//   kNextNorm: layer l's residual input normalized with layer l+1's RMSNorm weight — exactly
//              layer l+1's q input if the residual did not change across layer l.
//   kOwnNorm:  layer l's own normalized input (layer l's RMSNorm weight), as the reference
//              implementation does.
enum class PredictionInput { kNextNorm, kOwnNorm };

struct OffloadOptions {
  // Predict layer l+1's selection during layer l and fetch it ahead. Off = every sparse
  // layer selects with its own query and fetches synchronously (exact selection).
  bool predict = true;
  // Layers below this select with their own query even when predicting (layer 0 has no
  // predecessor; layer 1's predecessor input is the raw embedding).
  int own_query_layers = 2;
  // Further layers that select with their own query (layers where prediction is poor).
  // Exempt layers fetch synchronously with their own query (exact selection): the bytes
  // are the same, but their fetch is no longer hidden behind the previous layer.
  std::vector<int> own_query_extra;
  // When own_query_extra is empty, the Model (kv mode offload) takes it from the channel
  // config's calibrated list (ChannelConfig::prediction, "dsinfer.prediction", written by
  // dsinfer-calibrate --prediction from recall measured on its calibration text). A
  // non-empty own_query_extra always wins; false ignores the calibrated list.
  bool use_calibrated_own_query = true;
  PredictionInput prediction_input = PredictionInput::kNextNorm;
  // Reuse cache slots per (layer, KV head), shared by all sequences; 0 disables reuse.
  int64_t reuse_rows = 4096;
  // Keep each layer's sparse fetch for the next step and copy rows selected again from there
  // (previous-step reuse). Exclusive with reuse_rows > 0.
  bool reuse_previous = false;
  // Rows per KV head a kept buffer holds at most (one step's sparse budgets; 0 = the
  // max_buffer_rows cap): what the memory plan counted. A step whose budgets sum to more keeps
  // the segments that fit and fetches the others without reuse.
  int64_t max_kept_rows = 0;
  // Upper bound on the rows each fetch buffer grows to by doubling (0 = none): a step that
  // needs more still gets exactly what it needs, but growth ahead of need stops here, so the
  // buffers never exceed what the memory plan counted (Model sets it to the pool's tokens).
  int64_t max_buffer_rows = 0;
  // Also compute each predicted layer's exact selection and count the overlap (costs one
  // more label scan per predicted layer; for eval and tests).
  bool measure_prediction_recall = false;
  // The first layers whose K/V stay in device memory (KvPoolOptions::resident_layers): their
  // dense rows attend the pool in place, with nothing fetched over PCIe. -1 = 0: by default
  // the GPU holds no K/V, and in kv mode offload the layers that dense_layers keeps dense run
  // Double Sparsity on their own query instead (DoubleSparsity::set_dense_layer_limit). N > 0
  // keeps up to N of the dense layers dense, at N layers' K/V of GPU memory. Rows the tier
  // gathers from these layers (sparse rows) count as rows_resident, not as host reads.
  int resident_layers = -1;

  absl::Status Validate() const;
  // Whether layer `layer` selects with its own query rather than a predicted one.
  bool OwnQuery(int layer) const;
};

// Counters of one sequence (or of the whole tier), summed over layers, rows and KV heads.
struct FetchCounters {
  int64_t rows_requested = 0;   // rows the fetches placed in the buffer
  int64_t rows_from_host = 0;   // of those, read from the host pool (cache misses)
  int64_t rows_reused = 0;      // of those, copied from the reuse cache
  int64_t rows_resident = 0;    // of those, read from a resident layer (device memory)
  int64_t bytes_from_host = 0;  // K and V bytes read from the host pool
  // Rows looked up in the reuse cache (sparse selections; dense streaming bypasses it).
  // The hit rate is rows_reused / rows_looked_up.
  int64_t rows_looked_up = 0;

  void Add(const FetchCounters& o) {
    rows_requested += o.rows_requested;
    rows_from_host += o.rows_from_host;
    rows_reused += o.rows_reused;
    rows_resident += o.rows_resident;
    bytes_from_host += o.bytes_from_host;
    rows_looked_up += o.rows_looked_up;
  }
};

// The rows of one segment as raw bytes in the tier's element type: row i of KV head h at byte
// (i * kv_heads + h) * row_bytes of `k` and of `v`; `tokens[i * kv_heads + h]` is its token
// (kept buffers only; null elsewhere).
struct SegmentRows {
  void* k = nullptr;
  void* v = nullptr;
  int32_t* tokens = nullptr;
};

// One fetch: per KV head, the tokens to place in rows [0, n_h) of a buffer segment, each
// read from a reuse source (from_slot >= 0: an LRU slot, or with reuse_previous a row of
// `previous`) or the host pool, and optionally copied into an LRU slot after a host read
// (to_slot >= 0). All arrays are [kv_heads][n_h].
struct FetchPlan {
  int layer = 0;
  size_t segment = 0;
  int buffer = 0;           // which ping-pong buffer (layer parity); names the fetch's event
  int64_t segment_row = 0;  // first buffer row of the segment (ping-pong buffers)
  SegmentRows destination;  // where the rows go
  // Previous-step reuse: the rows this layer fetched for the sequence at its last sparse
  // fetch (k null: none), and how many rows of every head are there.
  SegmentRows previous;
  int64_t previous_per_head = 0;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<int32_t>> from_slot;
  std::vector<std::vector<int32_t>> to_slot;
  FetchCounters counts;  // this plan's share of the accounting
};

// Previous-step reuse on the host: from[i] = j wherever wanted[i] == previous[j] (both lists
// ascending; other entries of `from` are left as they are). Returns the matches.
int64_t MatchPrevious(const std::vector<int32_t>& wanted, const std::vector<int32_t>& previous,
                      std::vector<int32_t>& from);

class OffloadTier {
 public:
  // `memory` (not owned) provides the fetch buffers and reuse slabs; rows are `kv_dtype`.
  static absl::StatusOr<std::unique_ptr<OffloadTier>> Create(int layers, int kv_heads, int head_dim,
                                                             DType kv_dtype,
                                                             const OffloadOptions& options,
                                                             HostMemory& memory);
  ~OffloadTier();
  OffloadTier(const OffloadTier&) = delete;
  OffloadTier& operator=(const OffloadTier&) = delete;

  const OffloadOptions& options() const { return options_; }

  // Lays out the step's segments: segment j holds up to rows[j] rows per KV head (0 = the
  // batch sequence uses no buffer), and in kept buffers (reuse_previous) up to
  // sparse_rows[j] (empty: rows). Grows both buffers when needed (RESOURCE_EXHAUSTED
  // leaves the tier unchanged); kept buffers that must grow are dropped with what they
  // kept. Forgets every pending selection of the previous step.
  absl::Status BeginStep(const std::vector<int64_t>& rows,
                         const std::vector<int64_t>& sparse_rows = {});

  // Plans the fetch of `tokens` ([kv_heads] ascending lists, none of them the current token)
  // of `seq` for layer `layer` into segment `segment`: looks each row up in the reuse cache,
  // claims slots for misses, counts, and remembers the lists as the segment's pending rows
  // for `layer`. `use_cache` = false bypasses the reuse cache (dense streaming would only
  // thrash it); with reuse_previous, `use_cache` plans go to the layer's kept buffer and
  // are merged with the lists the layer kept for `seq`. INTERNAL when a list exceeds the
  // segment; RESOURCE_EXHAUSTED when a kept buffer cannot be allocated.
  absl::StatusOr<FetchPlan> Plan(int layer, size_t segment, KvBlockPool::SequenceId seq,
                                 std::vector<std::vector<int32_t>> tokens, bool use_cache);
  // Plans a fetch whose token lists never reach the host (a backend that selects and gathers
  // on the device, Backend::SelectsOnDevice): rows[h] rows of KV head h of `seq`, all read
  // from the host pool (no reuse cache), counted as Plan counts them. The plan carries no
  // token lists; the segment's pending rows are known by count only (PendingCounts; Pending
  // returns nullptr). INTERNAL when a count exceeds the segment. With reuse_previous the
  // rows go to the layer's kept buffer and `previous` names what the layer kept for `seq`:
  // the device gather decides hits, which CountReusedOnDevice then moves in the counters.
  absl::StatusOr<FetchPlan> PlanCounted(int layer, size_t segment, KvBlockPool::SequenceId seq,
                                        const std::vector<int64_t>& rows);
  // Moves `rows` of seq's rows counted as host reads to reused (hits the device found in
  // previous-step reuse); returns the change, for DoubleSparsity::AddFetch.
  FetchCounters CountReusedOnDevice(KvBlockPool::SequenceId seq, int64_t rows);
  // Whether a PlanCounted plan of this step named previous rows (the device counts hits).
  bool device_lookups() const { return device_lookups_; }
  // A step that failed part-way: forgets every kept row (some may name rows no gather wrote).
  void AbandonStep();
  // Accounts `rows` (token, KV head) rows of `seq` that attention reads from the host pool
  // without the fetch buffer (prefill chunks over earlier chunks' K/V).
  FetchCounters CountDirect(KvBlockPool::SequenceId seq, int64_t rows);
  // Whether a fetch was planned for (layer, segment) this step (by Plan or PlanCounted).
  bool HasPending(int layer, size_t segment) const;
  // The rows Plan placed for (layer, segment) this step; nullptr when none was planned or the
  // plan was PlanCounted's.
  const std::vector<std::vector<int32_t>>* Pending(int layer, size_t segment) const;
  // Rows per KV head planned for (layer, segment) by either kind of plan; empty when none.
  const std::vector<int64_t>& PendingCounts(int layer, size_t segment) const;

  // View of segment `segment` of layer `layer`'s buffer as a one-block paged view: row i of
  // KV head h is the i-th fetched row of that head; room for one more row per head after
  // the fetched ones is where the caller writes the current token. The buffer is the one the
  // segment's pending plan filled (a kept buffer or a ping-pong buffer). fp32 rows only.
  PagedKvView<float> SegmentView(int layer, size_t segment) const;
  // The same segment as raw rows in the tier's element type.
  SegmentRows Destination(int layer, size_t segment) const;
  // The whole buffer layer `layer` uses, [buffer rows, kv_heads, head_dim] (fp32 views).
  PagedKvView<float> BufferView(int layer) const;
  // Rows per KV head segment `segment` holds at `layer` (its kept segment where the pending
  // plan went to a kept buffer).
  int64_t segment_capacity(int layer, size_t segment) const;

  // Reuse-cache storage of `layer` as a view over slots: row `slot` of KV head h.
  PagedKvView<float> CacheView(int layer) const;
  // Where `plan`'s from_slot (and to_slot) rows are: the layer's LRU slab (reuse_rows > 0) or
  // the previous rows the plan names (previous-step reuse; null when none). Tokens unset.
  SegmentRows ReuseSource(const FetchPlan& plan) const;

  // Frees the reuse slots and counters of `seq` (unknown ids are ignored).
  void Release(KvBlockPool::SequenceId seq);
  // Releases every sequence the pool no longer holds.
  void ReleaseMissing(const KvBlockPool& pool);

  const FetchCounters* Counters(KvBlockPool::SequenceId seq) const;
  const FetchCounters& totals() const { return totals_; }
  // All sequences' counters since the last BeginStep (the current or latest step).
  const FetchCounters& step_totals() const { return step_; }
  // Reuse slots in use (summed over layers and KV heads) and bytes held by buffers + slabs
  // (reuse_bytes: LRU slabs and kept buffers).
  int64_t reuse_slots_in_use() const;
  int64_t buffer_bytes() const { return 2 * buffer_bytes_each_; }
  int64_t reuse_bytes() const {
    return reuse_bytes_ + static_cast<int64_t>(kept_.size()) * KeptBufferBytes();
  }
  int64_t kept_buffers() const { return static_cast<int64_t>(kept_.size()); }
  int64_t row_bytes() const { return row_bytes_; }  // one (token, head) row of K or of V

 private:
  OffloadTier(int layers, int kv_heads, int head_dim, DType kv_dtype, const OffloadOptions& options,
              HostMemory& memory);
  void ReleaseSlotsIf(const std::function<bool(KvBlockPool::SequenceId)>& gone);
  // A plan for (layer, segment) with `heads` lists, its layout filled in; INTERNAL when any is
  // out of range.
  absl::StatusOr<FetchPlan> NewPlan(int layer, size_t segment, size_t heads) const;
  // Completes counts (bytes from rows) and adds them to seq's counters and the totals;
  // returns the completed counts.
  FetchCounters Record(KvBlockPool::SequenceId seq, FetchCounters counts);
  // Record for a plan's rows (those of a resident layer count as resident, not host reads),
  // the result also in plan.counts.
  void Account(KvBlockPool::SequenceId seq, FetchCounters counts, FetchPlan& plan);

  // Previous-step reuse. What a layer's sparse fetch placed for one sequence in its kept
  // buffer: where (row), how many rows per head, and the lists when the plan had them.
  struct KeptSegment {
    KvBlockPool::SequenceId seq = 0;
    int64_t row = 0;
    std::vector<int64_t> rows;
    std::vector<std::vector<int32_t>> tokens;  // empty for PlanCounted's
  };
  // Whether a plan of (layer, segment) goes to a kept buffer (previous-step reuse, a sparse
  // plan, not a resident layer, a segment with kept rows this step).
  bool KeepsPrevious(int layer, size_t segment, bool use_cache) const;
  int64_t KeptBufferBytes() const;  // K, V and tokens of kept_rows_ rows
  bool PendingKept(int layer, size_t segment) const;
  SegmentRows PingPongRows(int layer, size_t segment) const;
  SegmentRows KeptRows(int buffer, int64_t row) const;
  // Gives `layer` a kept buffer for this step (once per step): what it kept before becomes
  // its previous rows, and the buffer holding them is free for layers planned later.
  absl::Status TakeKeptBuffer(int layer);
  // The previous rows of `seq` at `layer`; nullptr when none.
  const KeptSegment* Previous(int layer, KvBlockPool::SequenceId seq) const;
  // Routes (layer, segment)'s plan to the layer's kept buffer and records it there.
  absl::Status KeepPlan(FetchPlan& plan, KvBlockPool::SequenceId seq,
                        const std::vector<int64_t>& rows,
                        const std::vector<std::vector<int32_t>>* tokens);
  void ForgetKept(const std::function<bool(KvBlockPool::SequenceId)>& gone);

  struct Key {
    KvBlockPool::SequenceId seq;
    int32_t token;
    bool operator==(const Key& o) const { return seq == o.seq && token == o.token; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<int64_t>()(k.seq * 1000003 + k.token);
    }
  };
  // LRU over one (layer, KV head)'s slots: `lru` front = most recently used. Each slot's
  // `stamp` is the plan serial that last touched it, so a slot the current plan already
  // uses is never evicted by the same plan.
  struct CacheHead {
    std::unordered_map<Key, int32_t, KeyHash> slot_of;
    std::vector<Key> key_of;                          // [reuse_rows]
    std::vector<int64_t> stamp;                       // [reuse_rows]
    std::list<int32_t> lru;                           // slots in use
    std::vector<std::list<int32_t>::iterator> where;  // [reuse_rows] into lru
    std::vector<bool> used;                           // [reuse_rows]
    std::vector<int32_t> free;
  };

  int layers_, kv_heads_, head_dim_;
  DType kv_dtype_;
  OffloadOptions options_;
  HostMemory& memory_;
  int64_t row_bytes_;

  // Fetch buffers: K then V, each [rows_, kv_heads, head_dim].
  void* buffer_[2] = {nullptr, nullptr};
  int64_t buffer_rows_ = 0;
  int64_t buffer_bytes_each_ = 0;
  std::vector<int64_t> segment_row_;   // [segments] first row
  std::vector<int64_t> segment_rows_;  // [segments] capacity per KV head (incl. current row)
  // Pending rows per (layer, segment) this step.
  std::vector<std::vector<std::vector<std::vector<int32_t>>>> pending_;  // [layer][segment]
  std::vector<std::vector<bool>> has_pending_;
  std::vector<std::vector<bool>> pending_listed_;  // Plan's (lists known), not PlanCounted's
  std::vector<std::vector<std::vector<int64_t>>> pending_counts_;  // [layer][segment][head]

  // Reuse slabs: per layer K then V, each [reuse_rows, kv_heads, head_dim].
  std::vector<void*> slab_;
  int64_t reuse_bytes_ = 0;
  std::vector<CacheHead> cache_;  // [layer * kv_heads + head]
  int64_t serial_ = 0;

  // Kept buffers (reuse_previous): K, V, then tokens, each over kept_rows_ rows.
  std::vector<void*> kept_;
  std::vector<int> kept_free_;
  int64_t kept_rows_ = 0;
  std::vector<int64_t> kept_segment_row_;   // [segments] this step's layout
  std::vector<int64_t> kept_segment_rows_;  // [segments]
  std::vector<int> kept_of_;                // [layer] its buffer (-1: none)
  std::vector<int> previous_of_;            // [layer] the buffer of its previous rows (-1)
  std::vector<int64_t> kept_step_;          // [layer] step of its latest TakeKeptBuffer
  std::vector<std::vector<KeptSegment>> kept_now_, kept_before_;  // [layer]
  std::vector<std::vector<bool>> pending_kept_;  // [layer][segment] plan went to kept_of_
  int64_t step_serial_ = 0;
  bool device_lookups_ = false;

  std::unordered_map<KvBlockPool::SequenceId, FetchCounters> counters_;
  FetchCounters totals_;
  FetchCounters step_;
};

// Copies the plan's rows into its destination: from the LRU slab or the previous rows
// (reuse_previous), or from `pool` (the sequence's view of the plan's layer); fills the slots
// named by to_slot and the destination's tokens where it has them. The CPU twin of the
// zero-copy gather kernel; fp32 rows.
void ExecuteFetchPlanReference(const FetchPlan& plan, const PagedKvView<const float>& pool,
                               const OffloadTier& tier);

}  // namespace dsinfer

#endif  // DSINFER_OFFLOAD_OFFLOAD_TIER_H_
