// Runs are sequential on one sequence id each; the model's recall counters are reset before
// and read after each sparse run, and measurement is switched off again on every exit path.
#include "engine/sparse/eval.h"

#include <cmath>
#include <cstdio>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/sampler.h"
#include "kernels/status.h"

namespace dsinfer {

absl::Status EvalOptions::Validate() const {
  RETURN_IF_ERROR(base.Validate());
  if (prefill < 1) return absl::InvalidArgumentError("prefill must be >= 1");
  for (double r : ratios) {
    if (!(r > 0.0 && r <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("budget ratio must be in (0, 1], got ", r));
    }
  }
  for (int b : label_bits) {
    if (b != 16 && b != 4) return absl::InvalidArgumentError("label bits must be 16 or 4");
  }
  return absl::OkStatus();
}

namespace {

absl::Status RunOne(Model& model, const std::vector<int32_t>& ids, int64_t prefill,
                    const AttentionOptions& attention, EvalRun& run) {
  KvBlockPool& pool = model.kv_pool();
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t vocab = model.config().vocab_size;
  const KvBlockPool::SequenceId seq = pool.AddSequence();
  absl::Cleanup release = [&] { model.ReleaseSequence(seq); };
  RETURN_IF_ERROR(pool.Reserve(seq, n));
  std::vector<float> logits;
  ForwardBatch first;
  first.Add(seq, ids.data(), prefill, 0, false);
  first.sequences.back().attention = &attention;
  RETURN_IF_ERROR(model.Forward(first, logits));
  double nll = 0.0;
  int64_t scored = 0;
  for (int64_t pos = prefill;; ++pos) {
    nll -= LogProbability(absl::MakeConstSpan(logits.data(), vocab), ids[pos]);
    ++scored;
    if (pos + 1 >= n) break;
    ForwardBatch step;
    step.Add(seq, &ids[pos], 1, pos, false);
    step.sequences.back().attention = &attention;
    RETURN_IF_ERROR(model.Forward(step, logits));
  }
  run.mean_nll = nll / scored;
  run.perplexity = std::exp(run.mean_nll);
  if (const SequenceAttentionStats* st = model.double_sparsity().Stats(seq)) {
    run.attended_share = st->tokens_context > 0
                             ? static_cast<double>(st->tokens_attended) / st->tokens_context
                             : 1.0;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EvalReport> EvaluateDoubleSparsity(Model& model, const std::vector<int32_t>& ids,
                                                  const EvalOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < options.prefill + 2) {
    return absl::InvalidArgumentError(absl::StrCat("need at least prefill + 2 = ",
                                                   options.prefill + 2, " tokens, got ", n));
  }
  if (n > model.max_context()) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " tokens exceed the model's context of ", model.max_context()));
  }
  EvalReport report;
  report.tokens = n;
  report.scored = n - options.prefill;
  DoubleSparsity& ds = model.double_sparsity();
  absl::Cleanup stop = [&] { ds.set_measure_recall(false); };

  EvalRun dense;
  dense.mode = "dense";
  AttentionOptions dense_options = options.base;
  dense_options.mode = AttentionMode::kDense;
  RETURN_IF_ERROR(RunOne(model, ids, options.prefill, dense_options, dense));
  report.runs.push_back(dense);

  for (GroupAggregation agg : options.aggregations) {
    for (int bits : options.label_bits) {
      for (double ratio : options.ratios) {
        EvalRun run;
        run.mode = "double_sparse";
        run.ratio = ratio;
        run.label_bits = bits;
        run.aggregation = agg == GroupAggregation::kMax ? "max" : "sum";
        AttentionOptions o = options.base;
        o.mode = AttentionMode::kDoubleSparse;
        o.token_budget = 0;
        o.token_budget_ratio = ratio;
        o.label_bits = bits;
        o.aggregation = agg;
        ds.ResetRecall();
        ds.set_measure_recall(true);
        RETURN_IF_ERROR(RunOne(model, ids, options.prefill, o, run));
        ds.set_measure_recall(false);
        for (size_t l = 0; l < ds.recall_sum().size(); ++l) {
          run.recall.push_back(ds.recall_count()[l] > 0
                                   ? ds.recall_sum()[l] / ds.recall_count()[l]
                                   : -1.0);
        }
        report.runs.push_back(run);
      }
    }
  }
  return report;
}

nlohmann::json EvalReport::ToJson() const {
  nlohmann::json out;
  out["tokens"] = tokens;
  out["scored"] = scored;
  out["runs"] = nlohmann::json::array();
  for (const EvalRun& r : runs) {
    nlohmann::json j = {{"mode", r.mode},
                        {"perplexity", r.perplexity},
                        {"mean_nll", r.mean_nll},
                        {"attended_share", r.attended_share}};
    if (r.mode != "dense") {
      j["budget_ratio"] = r.ratio;
      j["label_bits"] = r.label_bits;
      j["aggregation"] = r.aggregation;
      nlohmann::json recall = nlohmann::json::array();
      for (double x : r.recall) recall.push_back(x < 0 ? nlohmann::json() : nlohmann::json(x));
      j["recall_per_layer"] = recall;
    }
    out["runs"].push_back(j);
  }
  return out;
}

std::string EvalReport::ToTable() const {
  std::string out = absl::StrFormat("%d tokens, %d scored\n", tokens, scored);
  out += absl::StrFormat("%-14s %7s %4s %4s %10s %8s %9s  %s\n", "mode", "budget", "bits", "agg",
                         "perplexity", "vs dense", "attended", "recall per layer");
  const double base = runs.empty() ? 1.0 : runs[0].perplexity;
  for (const EvalRun& r : runs) {
    std::string recall;
    for (double x : r.recall) recall += x < 0 ? "   -  " : absl::StrFormat(" %.3f", x);
    out += absl::StrFormat(
        "%-14s %7s %4s %4s %10.3f %+7.2f%% %8.1f%% %s\n", r.mode,
        r.mode == "dense" ? "all" : absl::StrFormat("1/%d", static_cast<int>(std::lround(1 / r.ratio))),
        r.mode == "dense" ? "-" : absl::StrCat(r.label_bits), r.mode == "dense" ? "-" : r.aggregation,
        r.perplexity, 100.0 * (r.perplexity / base - 1.0), 100.0 * r.attended_share, recall);
  }
  return out;
}

}  // namespace dsinfer
