// The Double Sparsity quality report (dsinfer-eval): perplexity of a token sequence under
// dense attention and under Double Sparsity at several budgets, label widths and GQA
// aggregations, plus per-layer recall — the share of the true softmax mass of each query
// head that the selected tokens hold. Every later change to selection is judged by it.
//
// Procedure, identical for every run: the first `prefill` tokens go in one dense prefill
// step; every later token is fed alone as a decode row (the rows Double Sparsity applies
// to) and the log-probability of its successor is scored. So the dense run and each sparse
// run score exactly the same positions. Several windows can be scored in one report (their
// log-probabilities are pooled), so a perplexity rests on more than one passage. Each window
// is prefilled once per label width and every run of that width decodes over the same
// prefix: the CPU engine's dense prefill costs far more than the scored decode rows, and
// later runs overwrite the decoded positions' K/V and labels in place (both are written by
// position and a row reads only positions up to its own).
//
// In kv mode offload the same runs go through the offload tier; with
// OffloadOptions::measure_prediction_recall each sparse run also reports cross-layer
// prediction's recall per layer. Each run starts with the sequence's reuse-cache rows
// forgotten, since an earlier run over the same prefix left rows of positions it rewrote.
//
// Retrieval (EvaluateRetrieval): key-value prompts (tests/data/eval/retrieval.jsonl) whose
// answer must come out by greedy decoding, exactly. The list of pairs goes in as one dense
// prefill; the trailing question and the answer run as decode rows, so the lookup itself
// goes through Double Sparsity's selection. As above, the prefill is done once per label
// width and shared by every run of that width.
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
  // Tokens attended / tokens in context, all layers, scored rows; -1 (JSON null) for a sparse
  // run whose backend does not count its sparse rows (the CUDA backend's device path).
  double attended_share = 1.0;
  std::vector<double> recall;  // [layers]; -1 where no row of the layer was measured sparse
  // Kv mode offload with OffloadOptions::measure_prediction_recall: per layer, the share of
  // the exact selection's free tokens that cross-layer prediction chose (-1 where the layer
  // was not predicted: own query, exempt or dense). Empty otherwise.
  std::vector<double> prediction_recall;
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
// The model's KV pool is left as it was (every run's sequence is released).
absl::StatusOr<EvalReport> EvaluateDoubleSparsity(Model& model, const std::vector<int32_t>& ids,
                                                  const EvalOptions& options);
// The same over several windows, each scored from `options.prefill` on; perplexities are of
// the pooled log-probabilities. `tokens` and `scored` of the report are totals.
absl::StatusOr<EvalReport> EvaluateDoubleSparsity(
    Model& model, const std::vector<std::vector<int32_t>>& windows, const EvalOptions& options);

// One key-value retrieval prompt: BOS + pairs + question, then the expected answer ids.
struct RetrievalItem {
  std::vector<int32_t> prompt;
  std::vector<int32_t> answer;
  int64_t question_tokens = 0;  // trailing prompt tokens decoded one by one (>= 1)
  int64_t target_len = 0;       // the length class (1024, 2048, ...)
  double depth = 0.0;           // position of the asked pair in the list, 0..1
};

// Reads a retrieval.jsonl (fields prompt_ids, answer_ids, question_tokens, target_len,
// depth). NOT_FOUND / INVALID_ARGUMENT naming the line on a bad file.
absl::StatusOr<std::vector<RetrievalItem>> LoadRetrievalItems(const std::string& path);

struct RetrievalRun {
  std::string mode;  // "dense" or "double_sparse"
  double ratio = 1.0;
  int label_bits = 0;
  std::string aggregation;
  std::vector<int64_t> target_lens;  // per length class, ascending
  std::vector<int64_t> correct;      // [length classes]
  std::vector<int64_t> total;        // [length classes]
  std::vector<double> prediction_recall;  // as EvalRun's, over the decoded rows
};

struct RetrievalReport {
  std::vector<RetrievalRun> runs;  // dense first, then the EvalOptions grid

  nlohmann::json ToJson() const;
  std::string ToTable() const;
};

// Greedy exact-match accuracy of every item under dense attention and the grid of
// `options` (ratios x label bits x aggregations; prefill is unused: each item prefills
// everything but its question). INVALID_ARGUMENT for bad options or an item over the
// model's context. The KV pool is left as it was.
absl::StatusOr<RetrievalReport> EvaluateRetrieval(Model& model,
                                                  const std::vector<RetrievalItem>& items,
                                                  const EvalOptions& options);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_EVAL_H_
