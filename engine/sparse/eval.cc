// Runs are sequential on one sequence id each; the model's recall counters are reset before
// and read after each sparse run, and measurement is switched off again on every exit path.
// Retrieval items share one prefill per label width (see eval.h); every sequence is released
// by a cleanup, so an error part-way leaves the KV pool and label cache as they were.
#include "engine/sparse/eval.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

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

absl::Status Step(Model& model, KvBlockPool::SequenceId seq, const int32_t* token,
                  int64_t position, const AttentionOptions& attention,
                  std::vector<float>& logits) {
  ForwardBatch step;
  step.Add(seq, token, 1, position, false);
  step.sequences.back().attention = &attention;
  return model.Forward(step, logits);
}

// Per-run sums over windows.
struct RunTotals {
  double nll = 0.0;
  int64_t scored = 0, attended = 0, context = 0, sparse_rows = 0;
  std::vector<double> recall_sum;
  std::vector<int64_t> recall_count;
  std::vector<int64_t> prediction_overlap, prediction_exact;
};

bool MeasuresPrediction(const Model& model) {
  return model.offload_tier() != nullptr && model.offload_tier()->options().measure_prediction_recall;
}

// A run over a prefix an earlier run decoded past rewrites those positions' K/V in place;
// reuse-cache rows of the old values must not be served to it.
void ForgetReusedRows(Model& model, KvBlockPool::SequenceId seq) {
  if (model.offload_tier() != nullptr) model.offload_tier()->Release(seq);
}

// Adds the prediction counters of the run that just ended (since the last ResetPrediction).
void AddPrediction(const DoubleSparsity& ds, std::vector<int64_t>& overlap,
                   std::vector<int64_t>& exact) {
  overlap.resize(ds.prediction_overlap().size(), 0);
  exact.resize(ds.prediction_exact().size(), 0);
  for (size_t l = 0; l < overlap.size(); ++l) {
    overlap[l] += ds.prediction_overlap()[l];
    exact[l] += ds.prediction_exact()[l];
  }
}

std::vector<double> PredictionRecall(const std::vector<int64_t>& overlap,
                                     const std::vector<int64_t>& exact) {
  std::vector<double> out;
  for (size_t l = 0; l < exact.size(); ++l) {
    out.push_back(exact[l] > 0 ? static_cast<double>(overlap[l]) / static_cast<double>(exact[l]) : -1.0);
  }
  return out;
}

std::string FormatPerLayer(const std::vector<double>& v) {
  std::string out;
  for (double x : v) out += x < 0 ? "   -  " : absl::StrFormat(" %.3f", x);
  return out;
}

// Scores positions prefill..n-1 of `ids` on `seq`, whose first `prefill` positions are
// already in the KV cache (and label cache); `first` are the logits after position
// prefill - 1. Attended/context count this pass's rows only (the sequence's counters are
// cumulative, so the pass adds its difference).
absl::Status ScoreWindow(Model& model, KvBlockPool::SequenceId seq,
                         const std::vector<int32_t>& ids, int64_t prefill,
                         const std::vector<float>& first, const AttentionOptions& attention,
                         RunTotals& totals) {
  const int64_t vocab = model.config().vocab_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  const auto counters = [&](int64_t& attended, int64_t& context, int64_t& sparse) {
    const SequenceAttentionStats* st = model.double_sparsity().Stats(seq);
    attended = st != nullptr ? st->tokens_attended : 0;
    context = st != nullptr ? st->tokens_context : 0;
    sparse = st != nullptr ? st->sparse_rows : 0;
  };
  int64_t a0, c0, s0, a1, c1, s1;
  counters(a0, c0, s0);
  std::vector<float> logits = first;
  for (int64_t pos = prefill;; ++pos) {
    totals.nll -= LogProbability(absl::MakeConstSpan(logits.data(), vocab), ids[pos]);
    ++totals.scored;
    if (pos + 1 >= n) break;
    RETURN_IF_ERROR(Step(model, seq, &ids[pos], pos, attention, logits));
  }
  counters(a1, c1, s1);
  totals.attended += a1 - a0;
  totals.context += c1 - c0;
  totals.sparse_rows += s1 - s0;
  return absl::OkStatus();
}

int32_t ArgMax(const std::vector<float>& logits, int64_t vocab) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + vocab) -
                              logits.begin());
}

// Decodes the item's prompt from `from` on, then greedily its answer; true when every answer
// token comes out as expected (stops at the first miss).
absl::StatusOr<bool> DecodeAndCheck(Model& model, KvBlockPool::SequenceId seq,
                                    const RetrievalItem& item, int64_t from,
                                    const AttentionOptions& attention) {
  const int64_t vocab = model.config().vocab_size;
  const int64_t n = static_cast<int64_t>(item.prompt.size());
  std::vector<float> logits;
  for (int64_t pos = from; pos < n; ++pos) {
    RETURN_IF_ERROR(Step(model, seq, &item.prompt[pos], pos, attention, logits));
  }
  for (size_t j = 0; j < item.answer.size(); ++j) {
    const int32_t next = ArgMax(logits, vocab);
    if (next != item.answer[j]) return false;
    if (j + 1 == item.answer.size()) break;
    RETURN_IF_ERROR(Step(model, seq, &next, n + static_cast<int64_t>(j), attention, logits));
  }
  return true;
}

AttentionOptions SparseOptions(const EvalOptions& options, double ratio, int bits,
                               GroupAggregation agg) {
  AttentionOptions o = options.base;
  o.mode = AttentionMode::kDoubleSparse;
  o.token_budget = 0;
  o.token_budget_ratio = ratio;
  o.label_bits = bits;
  o.aggregation = agg;
  return o;
}

}  // namespace

absl::StatusOr<EvalReport> EvaluateDoubleSparsity(Model& model, const std::vector<int32_t>& ids,
                                                  const EvalOptions& options) {
  return EvaluateDoubleSparsity(model, std::vector<std::vector<int32_t>>{ids}, options);
}

absl::StatusOr<EvalReport> EvaluateDoubleSparsity(
    Model& model, const std::vector<std::vector<int32_t>>& ids, const EvalOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  if (ids.empty()) return absl::InvalidArgumentError("no windows to score");
  EvalReport report;
  for (const std::vector<int32_t>& window : ids) {
    const int64_t n = static_cast<int64_t>(window.size());
    if (n < options.prefill + 2) {
      return absl::InvalidArgumentError(absl::StrCat("need at least prefill + 2 = ",
                                                     options.prefill + 2, " tokens, got ", n));
    }
    if (n > model.max_context()) {
      return absl::InvalidArgumentError(
          absl::StrCat(n, " tokens exceed the model's context of ", model.max_context()));
    }
    report.tokens += n;
    report.scored += n - options.prefill;
  }
  DoubleSparsity& ds = model.double_sparsity();
  absl::Cleanup stop = [&] { ds.set_measure_recall(false); };

  // Runs: dense, then aggregation x bits x ratio. Each window is prefilled once per label
  // width and every run of that width decodes over the same prefix (see eval.h).
  EvalRun dense;
  dense.mode = "dense";
  report.runs.push_back(dense);
  for (GroupAggregation agg : options.aggregations) {
    for (int bits : options.label_bits) {
      for (double ratio : options.ratios) {
        EvalRun run;
        run.mode = "double_sparse";
        run.ratio = ratio;
        run.label_bits = bits;
        run.aggregation = agg == GroupAggregation::kMax ? "max" : "sum";
        report.runs.push_back(run);
      }
    }
  }
  const size_t layers = ds.recall_sum().size();
  std::vector<RunTotals> totals(report.runs.size());
  for (RunTotals& t : totals) {
    t.recall_sum.assign(layers, 0.0);
    t.recall_count.assign(layers, 0);
  }
  const size_t nb = options.label_bits.size(), nr = options.ratios.size();
  AttentionOptions dense_options = options.base;
  dense_options.mode = AttentionMode::kDense;
  KvBlockPool& pool = model.kv_pool();
  for (const std::vector<int32_t>& window : ids) {
    for (size_t bi = 0; bi < std::max<size_t>(nb, 1); ++bi) {
      const KvBlockPool::SequenceId seq = pool.AddSequence();
      absl::Cleanup release = [&] { model.ReleaseSequence(seq); };
      RETURN_IF_ERROR(pool.Reserve(seq, static_cast<int64_t>(window.size())));
      AttentionOptions prefill_options = dense_options;
      if (nb > 0 && nr > 0) {  // store labels of this width for the sparse runs
        prefill_options = SparseOptions(options, 1.0, options.label_bits[bi], GroupAggregation::kSum);
      }
      std::vector<float> first;
      ForwardBatch batch;
      batch.Add(seq, window.data(), options.prefill, 0, false);
      batch.sequences.back().attention = &prefill_options;
      RETURN_IF_ERROR(model.Forward(batch, first));
      if (bi == 0) {
        ForgetReusedRows(model, seq);
        RETURN_IF_ERROR(
            ScoreWindow(model, seq, window, options.prefill, first, dense_options, totals[0]));
      }
      for (size_t ai = 0; ai < options.aggregations.size() && nb > 0; ++ai) {
        for (size_t ri = 0; ri < nr; ++ri) {
          const size_t index = 1 + (ai * nb + bi) * nr + ri;
          const AttentionOptions o = SparseOptions(options, options.ratios[ri],
                                                   options.label_bits[bi],
                                                   options.aggregations[ai]);
          ds.ResetRecall();
          ds.ResetPrediction();
          ds.set_measure_recall(true);
          ForgetReusedRows(model, seq);
          RETURN_IF_ERROR(ScoreWindow(model, seq, window, options.prefill, first, o, totals[index]));
          ds.set_measure_recall(false);
          AddPrediction(ds, totals[index].prediction_overlap, totals[index].prediction_exact);
          for (size_t l = 0; l < layers; ++l) {
            totals[index].recall_sum[l] += ds.recall_sum()[l];
            totals[index].recall_count[l] += ds.recall_count()[l];
          }
        }
      }
    }
  }
  for (size_t i = 0; i < report.runs.size(); ++i) {
    EvalRun& run = report.runs[i];
    const RunTotals& t = totals[i];
    run.mean_nll = t.nll / std::max<int64_t>(t.scored, 1);
    run.perplexity = std::exp(run.mean_nll);
    run.attended_share = t.context > 0 ? static_cast<double>(t.attended) / t.context : 1.0;
    // A sparse run whose sparse layers counted nothing ran on a backend that does not count
    // them (only its dense layers did): the share would read 100%, so it is unknown instead.
    if (i > 0 && t.sparse_rows == 0 && options.base.dense_layers < model.config().num_layers) {
      run.attended_share = -1.0;
    }
    if (i > 0) {
      for (size_t l = 0; l < layers; ++l) {
        run.recall.push_back(t.recall_count[l] > 0 ? t.recall_sum[l] / t.recall_count[l] : -1.0);
      }
      if (MeasuresPrediction(model)) {
        run.prediction_recall = PredictionRecall(t.prediction_overlap, t.prediction_exact);
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
                        {"attended_share", r.attended_share < 0 ? nlohmann::json()
                                                                : nlohmann::json(r.attended_share)}};
    if (r.mode != "dense") {
      j["budget_ratio"] = r.ratio;
      j["label_bits"] = r.label_bits;
      j["aggregation"] = r.aggregation;
      nlohmann::json recall = nlohmann::json::array();
      for (double x : r.recall) recall.push_back(x < 0 ? nlohmann::json() : nlohmann::json(x));
      j["recall_per_layer"] = recall;
      if (!r.prediction_recall.empty()) {
        nlohmann::json pred = nlohmann::json::array();
        for (double x : r.prediction_recall) pred.push_back(x < 0 ? nlohmann::json() : nlohmann::json(x));
        j["prediction_recall_per_layer"] = pred;
      }
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
    const std::string recall = FormatPerLayer(r.recall);
    out += absl::StrFormat(
        "%-14s %7s %4s %4s %10.3f %+7.2f%% %9s %s\n", r.mode,
        r.mode == "dense" ? "all" : absl::StrFormat("1/%d", static_cast<int>(std::lround(1 / r.ratio))),
        r.mode == "dense" ? "-" : absl::StrCat(r.label_bits), r.mode == "dense" ? "-" : r.aggregation,
        r.perplexity, 100.0 * (r.perplexity / base - 1.0),
        r.attended_share < 0 ? std::string("-") : absl::StrFormat("%.1f%%", 100.0 * r.attended_share),
        recall);
    if (!r.prediction_recall.empty()) {
      out += absl::StrFormat("%-62s %s\n", "  cross-layer prediction recall per layer",
                             FormatPerLayer(r.prediction_recall));
    }
  }
  return out;
}

absl::StatusOr<std::vector<RetrievalItem>> LoadRetrievalItems(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<RetrievalItem> items;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": ", why));
    };
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
    for (const char* key : {"prompt_ids", "answer_ids", "question_tokens", "target_len"}) {
      if (!j.contains(key)) return bad(absl::StrCat("missing ", key));
    }
    // Type checks instead of nlohmann's exceptions: no exception crosses a library boundary.
    const auto ints = [](const nlohmann::json& v, std::vector<int32_t>& out) {
      if (!v.is_array()) return false;
      for (const nlohmann::json& x : v) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX) {
          return false;
        }
        out.push_back(static_cast<int32_t>(x.get<int64_t>()));
      }
      return true;
    };
    RetrievalItem item;
    if (!ints(j["prompt_ids"], item.prompt)) return bad("prompt_ids must be token ids");
    if (!ints(j["answer_ids"], item.answer)) return bad("answer_ids must be token ids");
    if (!j["question_tokens"].is_number_integer() || !j["target_len"].is_number_integer()) {
      return bad("question_tokens and target_len must be integers");
    }
    item.question_tokens = j["question_tokens"].get<int64_t>();
    item.target_len = j["target_len"].get<int64_t>();
    if (j.contains("depth") && j["depth"].is_number()) item.depth = j["depth"].get<double>();
    const int64_t n = static_cast<int64_t>(item.prompt.size());
    if (item.answer.empty()) return bad("empty answer_ids");
    if (item.question_tokens < 1 || item.question_tokens >= n) {
      return bad("question_tokens must be in [1, prompt length)");
    }
    items.push_back(std::move(item));
  }
  return items;
}

absl::StatusOr<RetrievalReport> EvaluateRetrieval(Model& model,
                                                  const std::vector<RetrievalItem>& items,
                                                  const EvalOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  if (items.empty()) return absl::InvalidArgumentError("no retrieval items");
  const int32_t vocab = static_cast<int32_t>(model.config().vocab_size);
  std::vector<int64_t> lens;
  for (const RetrievalItem& it : items) {
    const int64_t need = static_cast<int64_t>(it.prompt.size() + it.answer.size());
    if (need > model.max_context()) {
      return absl::InvalidArgumentError(
          absl::StrCat(need, " tokens exceed the model's context of ", model.max_context()));
    }
    for (int32_t t : it.prompt) {
      if (t < 0 || t >= vocab) return absl::InvalidArgumentError("token id out of vocabulary");
    }
    lens.push_back(it.target_len);
  }
  std::sort(lens.begin(), lens.end());
  lens.erase(std::unique(lens.begin(), lens.end()), lens.end());
  std::map<int64_t, size_t> len_index;
  for (size_t i = 0; i < lens.size(); ++i) len_index[lens[i]] = i;

  // Runs: dense, then aggregation x bits x ratio (the order of EvaluateDoubleSparsity).
  RetrievalReport report;
  const auto add_run = [&](const std::string& mode, double ratio, int bits, GroupAggregation agg) {
    RetrievalRun r;
    r.mode = mode;
    r.ratio = ratio;
    r.label_bits = bits;
    r.aggregation = mode == "dense" ? "" : (agg == GroupAggregation::kMax ? "max" : "sum");
    r.target_lens = lens;
    r.correct.assign(lens.size(), 0);
    r.total.assign(lens.size(), 0);
    report.runs.push_back(r);
  };
  add_run("dense", 1.0, 0, GroupAggregation::kSum);
  for (GroupAggregation agg : options.aggregations) {
    for (int bits : options.label_bits) {
      for (double ratio : options.ratios) add_run("double_sparse", ratio, bits, agg);
    }
  }
  const size_t nb = options.label_bits.size(), nr = options.ratios.size();
  std::vector<std::vector<int64_t>> overlap(report.runs.size()), exact(report.runs.size());
  KvBlockPool& pool = model.kv_pool();
  for (const RetrievalItem& it : items) {
    const size_t li = len_index[it.target_len];
    const int64_t n = static_cast<int64_t>(it.prompt.size());
    const int64_t from = n - it.question_tokens;
    for (size_t bi = 0; bi < std::max<size_t>(nb, 1); ++bi) {
      const int bits = nb > 0 ? options.label_bits[bi] : 16;
      const KvBlockPool::SequenceId seq = pool.AddSequence();
      absl::Cleanup release = [&] { model.ReleaseSequence(seq); };
      RETURN_IF_ERROR(pool.Reserve(seq, n + static_cast<int64_t>(it.answer.size())));
      // The prefill runs dense either way; double_sparse options make it store the labels
      // (in this label width) that the sparse runs below select with.
      AttentionOptions prefill_options = SparseOptions(options, 1.0, bits, GroupAggregation::kSum);
      if (nr == 0) prefill_options.mode = AttentionMode::kDense;  // no sparse run needs labels
      std::vector<float> logits;
      ForwardBatch first;
      first.Add(seq, it.prompt.data(), from, 0, false);
      first.sequences.back().attention = &prefill_options;
      RETURN_IF_ERROR(model.Forward(first, logits));
      if (bi == 0) {
        AttentionOptions dense = options.base;
        dense.mode = AttentionMode::kDense;
        ForgetReusedRows(model, seq);
        ASSIGN_OR_RETURN(const bool ok, DecodeAndCheck(model, seq, it, from, dense));
        report.runs[0].correct[li] += ok;
        report.runs[0].total[li] += 1;
      }
      for (size_t ai = 0; ai < options.aggregations.size(); ++ai) {
        for (size_t ri = 0; ri < nr && nb > 0; ++ri) {
          const AttentionOptions o =
              SparseOptions(options, options.ratios[ri], bits, options.aggregations[ai]);
          const size_t index = 1 + (ai * nb + bi) * nr + ri;
          model.double_sparsity().ResetPrediction();
          ForgetReusedRows(model, seq);
          ASSIGN_OR_RETURN(const bool ok, DecodeAndCheck(model, seq, it, from, o));
          RetrievalRun& run = report.runs[index];
          run.correct[li] += ok;
          run.total[li] += 1;
          AddPrediction(model.double_sparsity(), overlap[index], exact[index]);
        }
      }
    }
  }
  if (MeasuresPrediction(model)) {
    for (size_t i = 1; i < report.runs.size(); ++i) {
      report.runs[i].prediction_recall = PredictionRecall(overlap[i], exact[i]);
    }
  }
  return report;
}

nlohmann::json RetrievalReport::ToJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const RetrievalRun& r : runs) {
    nlohmann::json j = {{"mode", r.mode}};
    if (r.mode != "dense") {
      j["budget_ratio"] = r.ratio;
      j["label_bits"] = r.label_bits;
      j["aggregation"] = r.aggregation;
    }
    nlohmann::json per = nlohmann::json::object();
    for (size_t i = 0; i < r.target_lens.size(); ++i) {
      per[absl::StrCat(r.target_lens[i])] = {
          {"correct", r.correct[i]},
          {"total", r.total[i]},
          {"accuracy", r.total[i] > 0 ? static_cast<double>(r.correct[i]) / r.total[i] : 0.0}};
    }
    j["by_length"] = per;
    if (!r.prediction_recall.empty()) {
      nlohmann::json pred = nlohmann::json::array();
      for (double x : r.prediction_recall) pred.push_back(x < 0 ? nlohmann::json() : nlohmann::json(x));
      j["prediction_recall_per_layer"] = pred;
    }
    out.push_back(j);
  }
  return out;
}

std::string RetrievalReport::ToTable() const {
  std::string out = absl::StrFormat("%-14s %7s %4s %4s", "mode", "budget", "bits", "agg");
  if (!runs.empty()) {
    for (int64_t len : runs[0].target_lens) out += absl::StrFormat(" %9s", absl::StrCat(len));
  }
  out += "\n";
  for (const RetrievalRun& r : runs) {
    const bool dense = r.mode == "dense";
    out += absl::StrFormat(
        "%-14s %7s %4s %4s", r.mode,
        dense ? "all" : absl::StrFormat("1/%d", static_cast<int>(std::lround(1 / r.ratio))),
        dense ? "-" : absl::StrCat(r.label_bits), dense ? "-" : r.aggregation);
    for (size_t i = 0; i < r.target_lens.size(); ++i) {
      out += absl::StrFormat(" %4d/%-4d", r.correct[i], r.total[i]);
    }
    if (!r.prediction_recall.empty()) {
      out += "  prediction recall per layer:" + FormatPerLayer(r.prediction_recall);
    }
    out += "\n";
  }
  return out;
}

}  // namespace dsinfer
