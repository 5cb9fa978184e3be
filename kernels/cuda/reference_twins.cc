// Straight loops; they define the kernels' semantics, speed is no concern.
#include "kernels/cuda/reference_twins.h"

#include <cmath>
#include <cstring>

namespace dsinfer {

void EmbeddingReference(const float* table, int64_t cols, const int32_t* ids, int64_t n,
                        float* out) {
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * cols, table + static_cast<int64_t>(ids[i]) * cols, cols * sizeof(float));
  }
}

void ArgmaxReference(const float* logits, int64_t rows, int64_t vocab, int32_t* ids) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    int64_t best = -1;
    for (int64_t j = 0; j < vocab; ++j) {
      if (std::isnan(row[j])) continue;
      if (best < 0 || row[j] > row[best]) best = j;
    }
    ids[r] = best < 0 ? 0 : static_cast<int32_t>(best);
  }
}

}  // namespace dsinfer
