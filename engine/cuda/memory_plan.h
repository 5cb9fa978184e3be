// Start-up memory planning for the CUDA backend (docs/offload.md, "Memory"): what serving a
// model in a given kv mode will hold on the GPU and in pinned host memory, checked against what
// the device and the host have, so that a configuration that cannot fit fails at start-up with
// every term and the flag that changes it, not halfway through the weight upload or at the
// first long request.
//
// Where things live, by kv mode:
//   gpu:           GPU: weights, KV pool, Double Sparsity label caches, workspace.
//   offload:       GPU: weights, label caches, two ping-pong fetch buffers, reuse slabs,
//                  workspace. Host (pinned): the KV pool.
//   dense-offload: as offload, without labels (Double Sparsity is forced off there).
//
// The arithmetic (PlanMemory) is pure: it takes the device's free/total bytes and the host's
// available bytes as arguments, so a CPU unit test checks it. PlanCudaMemory is the thin
// wrapper that asks cudaMemGetInfo and /proc/meminfo (memory_plan_cuda.cc; CUDA builds only).
// This header includes no CUDA header.
#ifndef DSINFER_ENGINE_CUDA_MEMORY_PLAN_H_
#define DSINFER_ENGINE_CUDA_MEMORY_PLAN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/sparse/label_cache.h"
#include "kernels/dtype.h"
#include "offload/offload_tier.h"

namespace dsinfer {

// What the engine will be configured to hold. Every field mirrors a flag of dsinfer-run and
// dsinfer-server (named in the error messages).
struct MemoryPlanRequest {
  KvMode kv_mode = KvMode::kGpu;              // --kv-mode
  int64_t kv_pool_tokens = 0;                 // --kv-pool-tokens (0 = 4 × max_context)
  int kv_block_tokens = 16;                   // the pool is allocated in whole blocks
  int64_t max_context = 0;                    // --max-context (resolved, > 0)
  int64_t max_batch = 1;                      // decode sequences per step (--max-batch)
  int64_t max_rows = 1;                       // rows of the largest forward step
  int64_t max_logit_rows = 1;                 // rows of logits one step returns
  DType dtype = DType::kBF16;                 // weights, activations and KV
  // Double Sparsity's default label format (--channels, --label-bits); r = 0 when no sequence
  // keeps labels by default (attention mode dense, or auto without a channel config).
  LabelFormat labels{0, 16};
  int64_t reuse_rows = 4096;                  // OffloadOptions::reuse_rows (--offload-reuse-rows)
  // Previous-step reuse (--offload-reuse-previous): rows per KV head of one step's sparse
  // fetches, max_batch × the token budget at max_context; 0 = off. The engine caps its kept
  // buffers there (OffloadOptions::max_kept_rows): pass it on.
  int64_t kept_rows = 0;
  // Offload modes: the first layers whose pool K/V stay on the GPU (ResidentLayers, resolved;
  // --offload-resident-layers).
  int resident_layers = 0;
  // GeneratorOptions::layer_major_from (--layer-major-from; 0 = never): prompts that long
  // prefill through two one-layer staging pools and the prompt's fp32 hidden states.
  int64_t layer_major_from = 0;
  // Host memory left for everything but the pinned pool (tokenizer, weight staging, the OS):
  // pinning the last free gigabytes of a host makes it swap or kill.
  int64_t host_reserve_bytes = 2ll << 30;

  absl::Status Validate() const;
  // The pool's capacity in tokens: kv_pool_tokens (or 4 × max_context) rounded up to blocks.
  int64_t PoolTokens() const;
};

// The request of a Model loaded from `model_dir` with `options` (pool size, kv mode, max
// context resolved as Model::Load does; labels of options.attention when its sequences keep
// labels: mode double_sparse, or auto with a channel config given or shipped in `model_dir`;
// options.offload.reuse_rows), serving up to `max_batch` decode sequences and `max_rows` rows
// and `max_logit_rows` logit rows per step, in `dtype`.
MemoryPlanRequest MemoryPlanRequestFor(const ModelConfig& config, const ModelOptions& options,
                                       const std::string& model_dir, int64_t max_batch,
                                       int64_t max_rows, int64_t max_logit_rows,
                                       DType dtype = DType::kBF16);

// What the device and the host have, measured at start-up.
struct MemoryAvailable {
  int64_t device_free_bytes = 0;
  int64_t device_total_bytes = 0;
  int64_t host_available_bytes = 0;  // /proc/meminfo MemAvailable
};

// Each term in bytes. Device terms sum to device_needed(), host terms to host_needed().
struct CudaMemoryPlan {
  MemoryPlanRequest request;
  MemoryAvailable available;
  int64_t pool_tokens = 0;
  // GPU.
  int64_t weight_bytes = 0;
  int64_t gpu_kv_bytes = 0;        // the KV pool (kv mode gpu), or its resident layers
  int64_t label_bytes = 0;         // layers × kv heads × label row bytes × pool tokens
  int64_t fetch_buffer_bytes = 0;  // 2 ping-pong buffers of K and V rows (offload modes)
  // reuse slabs: layers × K,V × reuse_rows × kv heads × row; or the kept buffers of
  // previous-step reuse: (layers − resident + 1) × (K,V + tokens) × kept_rows × kv heads
  int64_t reuse_bytes = 0;
  int64_t workspace_bytes = 0;     // activations, logits, cuBLAS and kernel scratch
  // Model::PrefillLayerMajor (request.layer_major_from > 0): two layers of the pool's K/V (the
  // staging pools) and the fp32 residual of a max_context prompt.
  int64_t layer_major_bytes = 0;
  // Host.
  int64_t host_kv_bytes = 0;       // the KV pool in pinned memory (offload modes)
  int64_t host_reserve_bytes = 0;  // request.host_reserve_bytes when the pool is on the host

  int64_t device_needed() const {
    return weight_bytes + gpu_kv_bytes + label_bytes + fetch_buffer_bytes + reuse_bytes +
           workspace_bytes + layer_major_bytes;
  }
  int64_t host_needed() const { return host_kv_bytes + host_reserve_bytes; }
  bool device_fits() const { return device_needed() <= available.device_free_bytes; }
  bool host_fits() const {
    return host_needed() == 0 || host_needed() <= available.host_available_bytes;
  }
  // One line per side: every term with the flag that changes it, the sum and what is there.
  std::string DeviceSummary() const;
  std::string HostSummary() const;
  std::string ToString() const;  // both lines
};

// The terms of `request` for `config`, without checking them against anything.
// INVALID_ARGUMENT when the request does not validate.
absl::StatusOr<CudaMemoryPlan> ComputeMemoryPlan(const ModelConfig& config,
                                                 const MemoryPlanRequest& request);

// ComputeMemoryPlan, checked against `available`. RESOURCE_EXHAUSTED when the device or the
// host side does not fit; the message names `where` (e.g. "GPU 0"), every term of the side that
// does not fit, and the flags that change them.
absl::StatusOr<CudaMemoryPlan> PlanMemory(const ModelConfig& config,
                                          const MemoryPlanRequest& request,
                                          const MemoryAvailable& available,
                                          absl::string_view where = "the GPU");

// MemAvailable of a /proc/meminfo text, in bytes. NOT_FOUND when the line is absent.
absl::StatusOr<int64_t> ParseMemAvailable(absl::string_view meminfo);
// MemAvailable of this host (reads /proc/meminfo). UNAVAILABLE when it cannot be read.
absl::StatusOr<int64_t> HostAvailableBytes();

// PlanMemory against device `device`'s cudaMemGetInfo and this host's MemAvailable
// (memory_plan_cuda.cc: defined in CUDA builds only). UNAVAILABLE without a GPU.
absl::StatusOr<CudaMemoryPlan> PlanCudaMemory(const ModelConfig& config,
                                              const MemoryPlanRequest& request, int device);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_MEMORY_PLAN_H_
