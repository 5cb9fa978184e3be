#include "kernels/swiglu_reference.h"

#include <cmath>

namespace dsinfer {

void SwiGluReference(const float* gate_up, int64_t rows, int64_t inter, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gate_up + r * 2 * inter;
    const float* u = g + inter;
    float* o = out + r * inter;
    for (int64_t i = 0; i < inter; ++i) {
      const float silu = g[i] / (1.0f + std::exp(-g[i]));
      o[i] = silu * u[i];
    }
  }
}

}  // namespace dsinfer
