// Token selection of Double Sparsity with dsinfer's kept tokens (DESIGN §1): the first
// `sink` tokens, the last `recent` tokens and the current (last) token are always selected
// and count inside the budget k; the rest of the budget goes to the highest approximate
// scores, ties broken by the lower token index so every backend selects the same set. The
// CPU twin of the top-k kernel: pointers and sizes, no allocation.
#ifndef DSINFER_KERNELS_TOPK_SELECT_REFERENCE_H_
#define DSINFER_KERNELS_TOPK_SELECT_REFERENCE_H_

#include <cstdint>

namespace dsinfer {

// Selects at most k of `tokens` tokens (k >= 1). When the kept tokens alone exceed k, they
// are cut in priority order: the current token, then sink tokens from the first, then recent
// tokens from the newest — so the budget is a hard bound on rows read.
// scores: [tokens]; selected: [>= min(k, tokens)] receives the chosen indices in ascending
// order; scratch: [tokens] int32 workspace. Returns the number selected (min(k, tokens)).
int64_t TopKSelectReference(const float* scores, int64_t tokens, int64_t k, int sink, int recent,
                            int32_t* scratch, int32_t* selected);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_TOPK_SELECT_REFERENCE_H_
