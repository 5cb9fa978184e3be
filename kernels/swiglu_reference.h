// SwiGLU activation of the Llama MLP: out = silu(gate) * up.
#ifndef DSINFER_KERNELS_SWIGLU_REFERENCE_H_
#define DSINFER_KERNELS_SWIGLU_REFERENCE_H_

#include <cstdint>

namespace dsinfer {

// gate_up: [rows, 2 * inter] (gate in the first half of each row, up in the second);
// out: [rows, inter].
void SwiGluReference(const float* gate_up, int64_t rows, int64_t inter, float* out);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_SWIGLU_REFERENCE_H_
