// The Double Sparsity quality report (dsinfer-eval): perplexity of a token sequence under
// dense attention and under Double Sparsity at several budgets, label widths and GQA
// aggregations, plus per-layer recall — the share of the true softmax mass of each query
// head that the selected tokens hold. Every later change to selection is judged by it.
//
// Procedure, identical for every run: the first `prefill` tokens go in one dense prefill
// step; every later token is fed alone as a decode row (the rows Double Sparsity applies
// to) and the log-probability of its successor is scored. So the dense run and each sparse
// run score exactly the same positions.
#ifndef DSINFER_ENGINE_SPARSE_EVAL_H_
#define DSINFER_ENGINE_SPARSE_EVAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/attention_options.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

struct EvalOptions {
  // Channels, statistic, sink, recent, dense_layers of the sparse runs (mode, budget,
  // label bits and aggregation are set per run).
  AttentionOptions base;
  std::vector<double> ratios = {1.0 / 2, 1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32};
  std::vector<int> label_bits = {16, 4};
  std::vector<GroupAggregation> aggregations = {GroupAggregation::kSum, GroupAggregation::kMax};
  int64_t prefill = 64;  // dense prefix; scoring starts after it

  absl::Status Validate() const;
};

struct EvalRun {
  std::string mode;  // "dense" or "double_sparse"
  double ratio = 1.0;
  int label_bits = 0;
  std::string aggregation;
  double mean_nll = 0.0;
  double perplexity = 0.0;
  double attended_share = 1.0;  // tokens attended / tokens in context, over all layers
  std::vector<double> recall;   // [layers]; -1 where no row of the layer ran sparse
};

struct EvalReport {
  int64_t tokens = 0;
  int64_t scored = 0;
  std::vector<EvalRun> runs;  // dense first

  nlohmann::json ToJson() const;
  std::string ToTable() const;
};

// INVALID_ARGUMENT for bad options, too few tokens (need prefill + 2) or sequences over the
// model's context; the model's channel config decides the channels (see DoubleSparsity).
absl::StatusOr<EvalReport> EvaluateDoubleSparsity(Model& model, const std::vector<int32_t>& ids,
                                                  const EvalOptions& options);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_EVAL_H_
