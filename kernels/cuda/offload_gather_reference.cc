#include "kernels/cuda/offload_gather_reference.h"

#include <cstring>

namespace dsinfer {
namespace {

char* Row(void* base, int64_t row, int32_t row_bytes) {
  return static_cast<char*>(base) + row * row_bytes;
}
const char* Row(const void* base, int64_t row, int32_t row_bytes) {
  return static_cast<const char*>(base) + row * row_bytes;
}

}  // namespace

void FetchRowsReference(const CudaFetchJob& job) {
  const int64_t n = job.rows != nullptr     ? job.num_rows
                    : job.selected != nullptr ? static_cast<int64_t>(job.per_head) * job.kv_heads
                                              : static_cast<int64_t>(job.dense_tokens) * job.kv_heads;
  for (int64_t e = 0; e < n; ++e) {
    CudaFetchRow r;
    if (job.rows != nullptr) {
      r = job.rows[e];
    } else if (job.selected != nullptr) {
      r.token = job.selected[(e % job.kv_heads) * job.sel_stride + e / job.kv_heads];
      r.dst = static_cast<int32_t>(e);
      if (job.prev_tokens != nullptr) {
        r.from_slot = FindPreviousRow(job, e % job.kv_heads, r.token);
        if (r.from_slot >= 0 && job.hits != nullptr) ++*job.hits;
      }
    } else {
      r.token = static_cast<int32_t>(e / job.kv_heads);
      r.dst = static_cast<int32_t>(e);
    }
    const int64_t h = r.dst % job.kv_heads;
    if (job.out_tokens != nullptr) job.out_tokens[r.dst] = r.token;
    for (int part = 0; part < 2; ++part) {
      const void* pool = part == 0 ? job.pool_k : job.pool_v;
      void* slab = part == 0 ? job.slab_k : job.slab_v;
      void* out = part == 0 ? job.out_k : job.out_v;
      const char* src;
      if (r.from_slot >= 0) {
        src = Row(slab, static_cast<int64_t>(r.from_slot) * job.kv_heads + h, job.row_bytes);
      } else {
        const int64_t block = job.block_table[r.token / job.block_tokens];
        const int64_t slot = block * job.block_tokens + r.token % job.block_tokens;
        src = Row(pool, slot * job.kv_heads + h, job.row_bytes);
      }
      std::memcpy(Row(out, r.dst, job.row_bytes), src, job.row_bytes);
      if (r.from_slot < 0 && r.to_slot >= 0) {
        std::memcpy(Row(slab, static_cast<int64_t>(r.to_slot) * job.kv_heads + h, job.row_bytes),
                    src, job.row_bytes);
      }
    }
  }
}

void WriteCurrentKvReference(const CudaCurrentKv& job) {
  for (int32_t h = 0; h < job.kv_heads; ++h) {
    const int64_t dst = static_cast<int64_t>(job.rows[h]) * job.kv_heads + h;
    std::memcpy(Row(job.out_k, dst, job.row_bytes), Row(job.k, h, job.row_bytes), job.row_bytes);
    std::memcpy(Row(job.out_v, dst, job.row_bytes), Row(job.v, h, job.row_bytes), job.row_bytes);
  }
}

}  // namespace dsinfer
