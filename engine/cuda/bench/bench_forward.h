// One engine step as dsinfer-bench times it: Model::Forward's sequence of Backend operations on
// a RandomWeightModel, the activation buffers it runs in, and a K/V pool of random contents.
// The decode and the prefill sections both time this step, so it lives apart from either, with
// the median every section reports.
#ifndef DSINFER_ENGINE_CUDA_BENCH_BENCH_FORWARD_H_
#define DSINFER_ENGINE_CUDA_BENCH_BENCH_FORWARD_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/forward_batch.h"
#include "engine/model_config.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

// The median of `v`, the statistic every section reports (the upper one of an even count).
double Median(std::vector<double> v);

// The activation buffers of one step: `n` rows through the layers, `m` rows of logits. They
// outlive the timed steps, so that no step times an allocation.
struct Workspace {
  explicit Workspace(CudaBackend* b) : backend(b) {}
  CudaBackend* backend;
  DeviceTensor residual, normed, qkv, attn, delta, gate_up, mlp, last, logits;
  DeviceTensor* all[9] = {&residual, &normed, &qkv, &attn, &delta, &gate_up, &mlp, &last, &logits};
  int32_t* ids = nullptr;
  absl::Status Init(const ModelConfig& c, int64_t n, int64_t m) {
    ASSIGN_OR_RETURN(residual, backend->AllocateF32(n, c.hidden_size));
    ASSIGN_OR_RETURN(normed, backend->Allocate(n, c.hidden_size));
    ASSIGN_OR_RETURN(qkv, backend->Allocate(n, c.q_size() + 2 * c.kv_size()));
    ASSIGN_OR_RETURN(attn, backend->Allocate(n, c.q_size()));
    ASSIGN_OR_RETURN(delta, backend->Allocate(n, c.hidden_size));
    ASSIGN_OR_RETURN(gate_up, backend->Allocate(n, 2 * c.intermediate_size));
    ASSIGN_OR_RETURN(mlp, backend->Allocate(n, c.intermediate_size));
    ASSIGN_OR_RETURN(last, backend->Allocate(m, c.hidden_size));
    ASSIGN_OR_RETURN(logits, backend->AllocateF32(m, c.vocab_size));
    CUDA_RETURN_IF_ERROR(cudaMalloc(&ids, m * sizeof(int32_t)));
    return absl::OkStatus();
  }
  ~Workspace() {
    for (DeviceTensor* t : all) backend->Free(*t);
    cudaFree(ids);
  }
};

// Model::Forward's sequence of operations over `layers` layers, then the LM head and a GPU
// argmax over batch.logit_rows (no logits to the host).
// With `ds`, sequences run as Model::Forward runs them under Double Sparsity (labels stored,
// sparse sequences through SparseAttention), captured as graphs by the same rule.
absl::Status Forward(RandomWeightModel& m, Workspace& ws, const ForwardBatch& batch,
                     KvBlockPool& pool, int layers, DoubleSparsity* ds = nullptr,
                     bool baseline = false);

// A bf16 K/V pool of 16-token blocks with room for `tokens` tokens at `c`'s shape, filled with
// random values (fixed seeds) so that attention reads data as it would in a real run.
absl::StatusOr<std::unique_ptr<KvBlockPool>> MakePool(CudaBackend& b, const ModelConfig& c,
                                                      int64_t tokens);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_BENCH_FORWARD_H_
