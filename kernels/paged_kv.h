// A non-owning view of one sequence's K/V rows in one layer of a paged pool. Token t lives in
// block block_table[t / block_tokens], at slot t % block_tokens; inside a block, rows are laid
// out [token][kv_head][head_dim] (DESIGN §4), so one (token, head) row is contiguous.
#ifndef DSINFER_KERNELS_PAGED_KV_H_
#define DSINFER_KERNELS_PAGED_KV_H_

#include <cstdint>

namespace dsinfer {

template <typename T>
struct PagedKvView {
  T* k = nullptr;                        // this layer's K pool base
  T* v = nullptr;                        // this layer's V pool base
  const int32_t* block_table = nullptr;  // [ceil(tokens / block_tokens)]
  int block_tokens = 0;
  int kv_heads = 0;
  int head_dim = 0;

  int64_t RowOffset(int64_t token, int head) const {
    const int64_t block = block_table[token / block_tokens];
    const int64_t slot = token % block_tokens;
    return ((block * block_tokens + slot) * kv_heads + head) * static_cast<int64_t>(head_dim);
  }
  T* KRow(int64_t token, int head) const { return k + RowOffset(token, head); }
  T* VRow(int64_t token, int head) const { return v + RowOffset(token, head); }
};

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_PAGED_KV_H_
