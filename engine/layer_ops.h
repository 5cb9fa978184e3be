// The backend calls of a decoder layer shared by Model and the CUDA benchmarks (which run the
// same step on their own random-weight models): its attention under Double Sparsity's plan,
// and what follows the attention: the output projected and added into the residual stream,
// then the MLP sub-block, from its norm to its down projection added in. Backend::NormLinear /
// AddLinear let a backend fuse the norm and the adds into the projections.
#ifndef DSINFER_ENGINE_LAYER_OPS_H_
#define DSINFER_ENGINE_LAYER_OPS_H_

#include "absl/status/status.h"
#include "engine/backend.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/status.h"

namespace dsinfer {

// A layer's attention in a step `ds` planned (DoubleSparsity::BeginStep), after the layer's
// RoPE and K/V write: the dense op over the batch where no sequence runs sparse at `layer`,
// else MixedAttention of the layer's dense and sparse sequences.
inline absl::Status LayerAttention(Backend& backend, int layer, const AttentionConfig& config,
                                   const ForwardBatch& batch, const KvBlockPool& pool,
                                   DoubleSparsity& ds, const DeviceTensor& qkv,
                                   DeviceTensor& out) {
  if (!ds.AnySparse(layer)) return backend.Attention(layer, config, batch, pool, qkv, out);
  return backend.MixedAttention(layer, config, batch, ds.DenseSequences(layer),
                                ds.SparseSequences(layer), pool, ds, qkv, out);
}

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
