// dsinfer-eval: the Double Sparsity quality report — perplexity dense vs Double Sparsity at
// budgets 1/2 … 1/32, label bits 16 and 4, GQA aggregation sum and max, and per-layer
// recall; and key-value retrieval accuracy (greedy exact match) over the same grid. A table
// on stdout, or one JSON object with --json.
//
// Perplexity input: token ids (--ids-file, one sequence), or text (--text-file) that the
// model's tokenizer turns into --windows windows of --window tokens, each BOS + the next
// window - 1 tokens of the text, scored from --prefill on. Retrieval input: a
// retrieval.jsonl (--retrieval-file), optionally only some length classes (--lengths) and
// the first --per-length items of each. The grid is narrowed with --ratios, --bits, --aggs.
// --device picks the engine (cpu, or cuda / cuda:N in CUDA builds); the CUDA backend does not
// count tokens attended nor measure recall (its sparse path runs on the device), so those
// fields are null in its reports.
// --kv-mode offload runs the same grid through the offload tier (docs/offload.md) and reports
// cross-layer prediction's recall of the exact selection per layer; the layers that use their
// own query (--own-query-layers, then --own-query-extra, else the channel config's calibrated
// list unless --nocalibrated-own-query) are printed and go into the JSON.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/backend_factory.h"
#include "engine/model.h"
#include "engine/sparse/eval.h"
#include "engine/sparse/tools/ids_file.h"
#include "engine/sparse/tools/text_windows.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tools/cli_flags.h"
#include "kernels/status.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(std::string, ids_file, "", "token ids to score, separated by whitespace or commas");
ABSL_FLAG(std::string, text_file, "", "text to score, tokenized with the model's tokenizer");
ABSL_FLAG(int64_t, window, 1024, "with --text-file: tokens per window (BOS included)");
ABSL_FLAG(int32_t, windows, 1, "with --text-file: consecutive windows to score");
ABSL_FLAG(std::string, retrieval_file, "", "retrieval prompts (retrieval.jsonl) to answer");
ABSL_FLAG(std::string, lengths, "", "with --retrieval-file: length classes to use (all if empty)");
ABSL_FLAG(int32_t, per_length, 0, "with --retrieval-file: first N items per length (0 = all)");
ABSL_FLAG(std::string, channels, "", "channel config (reference JSON); none = all channels only");
ABSL_FLAG(int32_t, r, 16, "label channels per KV head");
ABSL_FLAG(std::string, stat, "qk", "channel statistic: qk, q or k");
ABSL_FLAG(std::string, ratios, "0.5,0.25,0.125,0.0625,0.03125", "token budget ratios");
ABSL_FLAG(std::string, bits, "16,4", "label bits to run (16 and/or 4)");
ABSL_FLAG(std::string, aggs, "sum,max", "GQA aggregations to run (sum and/or max)");
ABSL_FLAG(int32_t, sink, 4, "first tokens always kept");
ABSL_FLAG(int32_t, recent, 64, "last tokens always kept");
ABSL_FLAG(int32_t, dense_layers, 2, "first layers kept dense");
ABSL_FLAG(int64_t, prefill, 64, "dense prefix before scoring starts");
ABSL_FLAG(bool, json, false, "print one JSON object");
ABSL_FLAG(std::string, device, "cpu", "engine: cpu, cuda or cuda:N (CUDA builds)");
ABSL_FLAG(std::string, kv_mode, "gpu", "where decode attention reads K/V: gpu, offload, dense-offload");
ABSL_FLAG(bool, measure_prediction, true, "with --kv-mode offload: measure prediction recall per layer");
ABSL_FLAG(int32_t, own_query_layers, 2, "with --kv-mode offload: first layers using their own query");
ABSL_FLAG(std::string, own_query_extra, "",
          "with --kv-mode offload: further layers using their own query (comma list); empty = "
          "the channel config's calibrated list");
ABSL_FLAG(bool, calibrated_own_query, true,
          "with --kv-mode offload: use the channel config's calibrated own-query layers when "
          "--own-query-extra is empty");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer-eval: error: %s\n", message.c_str());
  return 1;
}

absl::Status ParseLists(dsinfer::EvalOptions& options) {
  options.ratios.clear();
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_ratios), ',', absl::SkipEmpty())) {
    double v;
    if (!absl::SimpleAtod(p, &v)) return absl::InvalidArgumentError("--ratios: not a number");
    options.ratios.push_back(v);
  }
  options.label_bits.clear();
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_bits), ',', absl::SkipEmpty())) {
    int v;
    if (!absl::SimpleAtoi(p, &v)) return absl::InvalidArgumentError("--bits: not a number");
    options.label_bits.push_back(v);
  }
  options.aggregations.clear();
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_aggs), ',', absl::SkipEmpty())) {
    auto agg = dsinfer::ParseGroupAggregation(p);
    if (!agg.ok()) return agg.status();
    options.aggregations.push_back(*agg);
  }
  return options.Validate();
}

// The offload options from the flags.
absl::StatusOr<dsinfer::OffloadOptions> OffloadFlags() {
  dsinfer::OffloadOptions o;
  o.measure_prediction_recall = absl::GetFlag(FLAGS_measure_prediction);
  o.own_query_layers = absl::GetFlag(FLAGS_own_query_layers);
  o.use_calibrated_own_query = absl::GetFlag(FLAGS_calibrated_own_query);
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_own_query_extra), ',', absl::SkipEmpty())) {
    int v;
    if (!absl::SimpleAtoi(p, &v)) return absl::InvalidArgumentError("--own-query-extra: not a layer");
    o.own_query_extra.push_back(v);
  }
  RETURN_IF_ERROR(o.Validate());
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv,
      "dsinfer-eval --model DIR (--ids-file F | --text-file F [--window 1024] [--windows 1] | "
      "--retrieval-file F [--lengths 1024,2048] [--per-length N]) [--channels F] [--r 16] "
      "[--stat qk] [--ratios ...] [--bits 16,4] [--aggs sum,max] [--sink 4] [--recent 64] "
      "[--dense-layers 2] [--prefill 64] [--device cpu|cuda|cuda:N] [--kv-mode gpu|offload|"
      "dense-offload] [--own-query-layers 2] [--own-query-extra L,..] "
      "[--nocalibrated-own-query] [--json]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return Fail("--model is required");
  const std::string ids_file = absl::GetFlag(FLAGS_ids_file);
  const std::string text_file = absl::GetFlag(FLAGS_text_file);
  const std::string retrieval_file = absl::GetFlag(FLAGS_retrieval_file);
  if (!ids_file.empty() && !text_file.empty()) return Fail("give at most one of --ids-file, --text-file");
  if (ids_file.empty() && text_file.empty() && retrieval_file.empty()) {
    return Fail("one of --ids-file, --text-file, --retrieval-file is required");
  }
  dsinfer::EvalOptions options;
  options.base.channels = absl::GetFlag(FLAGS_r);
  auto stat = dsinfer::ParseChannelStatistic(absl::GetFlag(FLAGS_stat));
  if (!stat.ok()) return Fail(std::string(stat.status().message()));
  options.base.statistic = *stat;
  options.base.sink = absl::GetFlag(FLAGS_sink);
  options.base.recent = absl::GetFlag(FLAGS_recent);
  options.base.dense_layers = absl::GetFlag(FLAGS_dense_layers);
  options.prefill = absl::GetFlag(FLAGS_prefill);
  if (absl::Status s = ParseLists(options); !s.ok()) return Fail(std::string(s.message()));

  std::vector<std::vector<int32_t>> windows;
  if (!ids_file.empty()) {
    auto ids = dsinfer::ReadIdsFile(ids_file);
    if (!ids.ok()) return Fail(std::string(ids.status().message()));
    windows.push_back(*std::move(ids));
  } else if (!text_file.empty()) {
    auto w = dsinfer::TextWindows(model_dir, text_file, absl::GetFlag(FLAGS_window),
                                  absl::GetFlag(FLAGS_windows), absl::GetFlag(FLAGS_windows));
    if (!w.ok()) return Fail(std::string(w.status().message()));
    windows = *std::move(w);
  }
  std::vector<dsinfer::RetrievalItem> items;
  if (!retrieval_file.empty()) {
    auto all = dsinfer::LoadRetrievalItems(retrieval_file);
    if (!all.ok()) return Fail(std::string(all.status().message()));
    std::vector<int64_t> lengths;
    for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',', absl::SkipEmpty())) {
      int64_t v;
      if (!absl::SimpleAtoi(p, &v)) return Fail("--lengths: not a number");
      lengths.push_back(v);
    }
    std::map<int64_t, int> taken;
    const int per_length = absl::GetFlag(FLAGS_per_length);
    for (dsinfer::RetrievalItem& it : *all) {
      if (!lengths.empty() && std::find(lengths.begin(), lengths.end(), it.target_len) == lengths.end()) {
        continue;
      }
      if (per_length > 0 && taken[it.target_len] >= per_length) continue;
      ++taken[it.target_len];
      items.push_back(std::move(it));
    }
    if (items.empty()) return Fail("no retrieval items left after --lengths / --per-length");
  }

  int64_t longest = 0;
  for (const auto& w : windows) longest = std::max<int64_t>(longest, w.size());
  for (const auto& it : items) {
    longest = std::max<int64_t>(longest, it.prompt.size() + it.answer.size());
  }
  const std::string device = absl::GetFlag(FLAGS_device);
  auto backend = dsinfer::CreateBackend(device);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));
  dsinfer::ModelOptions model_options;
  model_options.channel_config_path = absl::GetFlag(FLAGS_channels);
  model_options.kv_pool_tokens = longest + 64;
  auto kv_mode = dsinfer::ParseKvMode(absl::GetFlag(FLAGS_kv_mode));
  if (!kv_mode.ok()) return Fail("--kv-mode: " + std::string(kv_mode.status().message()));
  model_options.kv_mode = *kv_mode;
  auto offload = OffloadFlags();
  if (!offload.ok()) return Fail(std::string(offload.status().message()));
  model_options.offload = *offload;
  auto model = dsinfer::Model::Load(model_dir, **backend, model_options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  if (options.base.channels > (*model)->config().head_dim) {
    options.base.channels = (*model)->config().head_dim;
  }
  nlohmann::json j;
  std::string table;
  // Which layers predict (kv mode offload): the tier's options after the Model applied any
  // calibrated list from the channel config.
  std::string own_query = "-";
  nlohmann::json own_query_json;
  if (const dsinfer::OffloadTier* tier = (*model)->offload_tier();
      tier != nullptr && *kv_mode == dsinfer::KvMode::kOffload) {
    std::vector<int> own;
    for (int l = 0; l < (*model)->config().num_layers; ++l) {
      if (tier->options().OwnQuery(l)) own.push_back(l);
    }
    own_query = absl::StrJoin(own, ",");
    own_query_json = own;
    table += absl::StrCat("kv mode offload: layers using their own query (not predicted): ",
                          own.empty() ? "none" : own_query, "\n");
  }
  if (!windows.empty()) {
    auto report = dsinfer::EvaluateDoubleSparsity(**model, windows, options);
    if (!report.ok()) return Fail(std::string(report.status().message()));
    j = report->ToJson();
    j["windows"] = windows.size();
    table += absl::StrCat(windows.size(), " window(s); ", report->ToTable());
  }
  if (!items.empty()) {
    auto report = dsinfer::EvaluateRetrieval(**model, items, options);
    if (!report.ok()) return Fail(std::string(report.status().message()));
    j["retrieval"] = report->ToJson();
    table += "retrieval (greedy exact match, correct/total per length class)\n" + report->ToTable();
  }
  if (absl::GetFlag(FLAGS_json)) {
    j["model"] = model_dir;
    j["channels"] = absl::GetFlag(FLAGS_channels);
    j["stat"] = absl::GetFlag(FLAGS_stat);
    j["r"] = options.base.channels;
    j["sink"] = options.base.sink;
    j["recent"] = options.base.recent;
    j["dense_layers"] = options.base.dense_layers;
    j["prefill"] = options.prefill;
    j["device"] = device;
    j["kv_mode"] = absl::GetFlag(FLAGS_kv_mode);
    if (!own_query_json.is_null()) j["own_query_layers"] = own_query_json;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("model %s on %s, stat %s, r=%d, sink %d, recent %d, dense_layers %d\n%s",
                model_dir.c_str(), device.c_str(), absl::GetFlag(FLAGS_stat).c_str(), options.base.channels,
                options.base.sink, options.base.recent, options.base.dense_layers,
                table.c_str());
  }
  return 0;
}
