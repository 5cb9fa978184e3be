// dsinfer-attention-bench's Double Sparsity rows: the variants it can time (label precision,
// rank and budget) and the chain of one configuration — label scoring, top-k selection and
// sparse attention — whole, stage by stage, fused, as a CUDA graph and split in two halves. The
// chain's settings arrive as values parsed by the main program, which owns the flags.
#ifndef DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_DS_H_
#define DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_DS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/bench/attention_bench_common.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "nlohmann/json.hpp"

namespace dsinfer {

// One Double Sparsity variant: its budget (a fraction of the context) and its labels' rank and
// precision.
struct Variant {
  const char* name;
  int denominator;  // k = L / denominator
  int r;
  int bits;
};

// The variants --ds_variants names (all where it is empty); an unknown name is an error.
absl::StatusOr<std::vector<Variant>> ChosenVariants(const std::string& names);

// The chain's settings, from the --ds_* flags; each list's first body is the chain's.
struct DsChainOptions {
  std::vector<LabelScoreAlgo> score_algos;
  std::vector<TopKAlgo> topk_algos;
  std::vector<SparseAttentionAlgo> attn_algos;
  double stride_factor = 1.0;    // --ds_score_stride_factor
  bool max_aggregation = false;  // --ds_aggregation=max
  int other_waves = 8;           // --ds_other_waves
};

// Times every variant of `variants` at `config`, prints a row each and appends it to
// out["results"], its speedup against `dense_us`. Fails where the fused scorer or the split
// chain selects differently from the two launches of the whole chain.
absl::Status RunDsVariants(const DecodeBenchEnv& env, const DecodeConfig& config,
                           const DsChainOptions& options, const std::vector<Variant>& variants,
                           double dense_us, nlohmann::json& out);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_DS_H_
