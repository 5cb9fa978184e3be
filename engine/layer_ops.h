// The backend calls of a decoder layer after its attention, shared by Model and the CUDA
// benchmarks (which run the same step on their own random-weight models): the attention
// output projected and added into the residual stream, then the MLP sub-block, from its norm
// to its down projection added in. Backend::NormLinear / AddLinear let a backend fuse the norm
// and the adds into the projections.
#ifndef DSINFER_ENGINE_LAYER_OPS_H_
#define DSINFER_ENGINE_LAYER_OPS_H_

#include "absl/status/status.h"
#include "engine/backend.h"
#include "kernels/status.h"

namespace dsinfer {

// `Layer` has DeviceTensor members o_proj, post_attn_norm, gate_up_proj and down_proj.
// delta, normed, gate_up, mlp: the step's scratch rows.
template <typename Layer>
absl::Status FinishLayer(Backend& backend, const Layer& l, float eps, const DeviceTensor& attn,
                         DeviceTensor& delta, DeviceTensor& residual, DeviceTensor& normed,
                         DeviceTensor& gate_up, DeviceTensor& mlp) {
  RETURN_IF_ERROR(backend.AddLinear(attn, l.o_proj, delta, residual));
  RETURN_IF_ERROR(
      backend.NormLinear(residual, l.post_attn_norm, eps, l.gate_up_proj, normed, gate_up));
  RETURN_IF_ERROR(backend.SwiGlu(gate_up, mlp));
  return backend.AddLinear(mlp, l.down_proj, delta, residual);
}

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_LAYER_OPS_H_
