// The offload tier's data movement on the device side (docs/offload.md), described in plain
// C++ so that the CUDA kernels (kernels/cuda/offload_gather.cuh) and their twins here share
// one definition. Rows are opaque bytes (row_bytes per K or V row of one KV head): the
// kernels never look at the element type, so one twin serves bf16, fp16 and fp32.
#ifndef DSINFER_KERNELS_CUDA_OFFLOAD_GATHER_REFERENCE_H_
#define DSINFER_KERNELS_CUDA_OFFLOAD_GATHER_REFERENCE_H_

#include <cstdint>

#include "kernels/host_device.h"

namespace dsinfer {

// One row of a fetch plan, flattened over KV heads. `dst` is the row's place in the buffer
// segment, i * kv_heads + head (so head = dst % kv_heads): the i-th fetched token of that head.
struct CudaFetchRow {
  int32_t token = 0;      // token position in the sequence (read from the pool on a miss)
  int32_t from_slot = -1; // reuse-cache slot holding the row, or -1 = read the host pool
  int32_t to_slot = -1;   // after a pool read, also store the row in this slot (-1 = no)
  int32_t dst = 0;
};

// One fetch: what the gather kernel reads and writes. Pool and slab regions are laid out
// [rows, kv_heads, row_bytes] (pool rows addressed through the block table), K and V apart.
struct CudaFetchJob {
  const void* pool_k = nullptr;  // the layer's pool K / V (kernel: mapped host addresses)
  const void* pool_v = nullptr;
  const int32_t* block_table = nullptr;  // the sequence's pool blocks
  int32_t block_tokens = 0;
  void* slab_k = nullptr;  // the layer's reuse slab [slots, kv_heads, row_bytes]; may be null
  void* slab_v = nullptr;  //   when no row has from_slot or to_slot >= 0
  void* out_k = nullptr;   // the segment's first row in the fetch buffer
  void* out_v = nullptr;
  // What to fetch, one of three forms (all from the pool, no reuse slots, except `rows`):
  //  - `rows`: a flattened plan (num_rows entries);
  //  - `selected`: a selection that stays where top-k wrote it — head h's tokens at
  //    selected[h * sel_stride + i]; entries i < per_head of every head go to row
  //    i * kv_heads + h (the offload path without a host round trip);
  //  - neither: a dense range, token i of every head for i < dense_tokens into row
  //    i * kv_heads + h (dense-offload and dense decode rows; no upload).
  const CudaFetchRow* rows = nullptr;
  int64_t num_rows = 0;  // entries of `rows`
  const int32_t* selected = nullptr;
  int64_t sel_stride = 0;
  int32_t per_head = 0;
  int32_t dense_tokens = 0;
  int32_t kv_heads = 0;
  int32_t row_bytes = 0;  // a multiple of 16
  // Previous-step reuse of a `selected` fetch: the ascending tokens of the rows the layer kept
  // for the sequence at its last fetch, prev_per_head of every head at
  // prev_tokens[j * kv_heads + h], their rows in the slab (slab_k / slab_v, laid out alike). A
  // selected token found at j is copied from slab row j instead of the pool. Null: no lookup.
  const int32_t* prev_tokens = nullptr;
  int32_t prev_per_head = 0;
  // Where each placed row's token is stored (row dst's at out_tokens[dst]); may be null.
  int32_t* out_tokens = nullptr;
  // Incremented by the rows found among the previous rows; may be null.
  unsigned long long* hits = nullptr;
};

// The row of `token` among the previous rows of KV head h (binary search over their ascending
// tokens), or -1. Shared by the gather kernel and its twin.
DSINFER_HOST_DEVICE inline int32_t FindPreviousRow(const CudaFetchJob& job, int64_t h,
                                                   int32_t token) {
  int32_t lo = 0, hi = job.prev_per_head;
  while (lo < hi) {
    const int32_t mid = (lo + hi) / 2;
    const int32_t t = job.prev_tokens[static_cast<int64_t>(mid) * job.kv_heads + h];
    if (t == token) return mid;
    if (t < token) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return -1;
}

// Host twin of LaunchFetchRows: every pointer of `job` is a host address.
void FetchRowsReference(const CudaFetchJob& job);

// The current token's K and V rows placed behind the fetched rows of each head: head h's
// row goes to segment row rows[h] * kv_heads + h.
struct CudaCurrentKv {
  const void* k = nullptr;  // [kv_heads, row_bytes]: the step's post-RoPE K of the token
  const void* v = nullptr;  // [kv_heads, row_bytes]
  void* out_k = nullptr;    // the segment's first row
  void* out_v = nullptr;
  const int32_t* rows = nullptr;  // [kv_heads]: rows fetched for each head
  int32_t kv_heads = 0;
  int32_t row_bytes = 0;  // a multiple of 16
};

// Host twin of LaunchWriteCurrentKv.
void WriteCurrentKvReference(const CudaCurrentKv& job);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_OFFLOAD_GATHER_REFERENCE_H_
