// The engine step dsinfer-bench times (bench_forward.h). The mixed-step baseline stays here,
// file-local, since only Forward calls it.
#include "engine/cuda/bench/bench_forward.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/forward_batch.h"
#include "engine/layer_ops.h"
#include "engine/model_config.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/status.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {
namespace {

// A sparse layer as it ran before SubsetAttention (`--ds_mixed_baseline`, timed eagerly
// only): Backend's default batch view for the dense sequences, then Double Sparsity.
absl::Status BatchViewMixedAttention(CudaBackend& b, RandomWeightModel& m, int layer,
                                     const ForwardBatch& batch, KvBlockPool& pool,
                                     DoubleSparsity& ds, const DeviceTensor& qkv,
                                     DeviceTensor& attn) {
  const std::vector<size_t> dense = ds.DenseSequences(layer);
  if (!dense.empty()) {
    RETURN_IF_ERROR(b.Backend::SubsetAttention(layer, m.attention, batch, dense, pool, qkv, attn));
  }
  return b.SparseAttention(layer, batch, ds.SparseSequences(layer), pool, ds, qkv, attn);
}

}  // namespace

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status Forward(RandomWeightModel& m, Workspace& ws, const ForwardBatch& batch,
                     KvBlockPool& pool, int layers, DoubleSparsity* ds, bool baseline) {
  CudaBackend& b = *m.backend;
  auto rows = [&](DeviceTensor t) {
    t.rows = batch.rows();
    return t;
  };
  DeviceTensor residual = rows(ws.residual), normed = rows(ws.normed), qkv = rows(ws.qkv),
               attn = rows(ws.attn), delta = rows(ws.delta), gate_up = rows(ws.gate_up),
               mlp = rows(ws.mlp);
  const float eps = m.config.rms_norm_eps;
  if (ds != nullptr) {
    // Every timed step repeats one position: its labels are written again, as a real decode
    // step writes its new token's.
    b.ForgetDeviceLabelsOf(batch);
    RETURN_IF_ERROR(ds->BeginStep(batch, pool));
  }
  RETURN_IF_ERROR(b.BeginStep(batch, pool, layers == m.config.num_layers, ds));
  RETURN_IF_ERROR(b.Embedding(m.embed, batch.token_ids, residual));
  for (int i = 0; i < layers; ++i) {
    const RandomWeightModel::Layer& l = m.layers[i];
    RETURN_IF_ERROR(b.NormLinear(residual, l.input_norm, eps, l.qkv_proj, normed, qkv));
    RETURN_IF_ERROR(b.RopeAndStoreKv(i, m.attention, batch, pool, qkv));
    if (ds != nullptr && ds->StoresLabels()) RETURN_IF_ERROR(b.StoreLabels(i, batch, *ds, qkv));
    if (ds == nullptr) {
      RETURN_IF_ERROR(b.Attention(i, m.attention, batch, pool, qkv, attn));
    } else if (baseline && ds->AnySparse(i)) {
      RETURN_IF_ERROR(BatchViewMixedAttention(b, m, i, batch, pool, *ds, qkv, attn));
    } else {
      RETURN_IF_ERROR(LayerAttention(b, i, m.attention, batch, pool, *ds, qkv, attn));
    }
    RETURN_IF_ERROR(FinishLayer(b, l, eps, attn, delta, residual, normed, gate_up, mlp));
  }
  RETURN_IF_ERROR(b.RmsNorm(residual, m.final_norm, eps, normed));
  RETURN_IF_ERROR(b.EndStep());
  DeviceTensor last = ws.last, logits = ws.logits;
  last.rows = logits.rows = static_cast<int64_t>(batch.logit_rows.size());
  RETURN_IF_ERROR(b.GatherRows(normed, batch.logit_rows, last));
  RETURN_IF_ERROR(b.Linear(last, m.lm_head, logits));
  return LaunchArgmax(logits.dtype, logits.data, logits.rows, logits.cols, logits.cols, ws.ids,
                      b.stream());
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> MakePool(CudaBackend& b, const ModelConfig& c,
                                                      int64_t tokens) {
  KvPoolOptions o;
  o.layers = c.num_layers;
  o.kv_heads = c.num_heads_kv;
  o.head_dim = c.head_dim;
  o.block_tokens = 16;
  o.num_blocks = (tokens + 15) / 16 + 1;
  o.dtype = DType::kBF16;
  ASSIGN_OR_RETURN(auto pool, KvBlockPool::Create(o, b.kv_memory()));
  const int64_t elems = o.num_blocks * o.block_tokens * o.kv_heads * o.head_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    RETURN_IF_ERROR(
        LaunchFillRandom(DType::kBF16, pool->KBase(l), elems, 100 + l, 1.0f, b.stream()));
    RETURN_IF_ERROR(
        LaunchFillRandom(DType::kBF16, pool->VBase(l), elems, 200 + l, 1.0f, b.stream()));
  }
  return pool;
}

}  // namespace dsinfer
