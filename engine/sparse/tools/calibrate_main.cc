// dsinfer-calibrate: finds Double Sparsity's label channels for a model from calibration
// data (text through the model's tokenizer, or token ids) and writes them in the reference
// channel-config format, with the statistic values under "dsinfer.metadata".
// --device picks the engine (cpu, or cuda / cuda:N in CUDA builds): the statistics read
// pre- and post-RoPE q/k through Model's ForwardObserver, which copies them to the host on
// any backend (on the GPU they are the bf16 engine's activations, so an ordering can differ
// from the CPU's where two channels' statistics are within rounding).
//
// --prediction also measures the offload tier's cross-layer prediction per layer on the same
// data (kv mode offload, engine/sparse/calibration.h) and writes "dsinfer.prediction": the
// recall per layer and the layers below --prediction-threshold, which the engine then lets
// select with their own query. --channel-config IN --prediction-only keeps IN's channels as
// they are (every key of IN is written back unchanged) and only adds that field.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/backend_factory.h"
#include "engine/model.h"
#include "engine/sparse/calibration.h"
#include "engine/sparse/tools/ids_file.h"
#include "engine/sparse/tools/text_windows.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tools/cli_flags.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(std::string, text_file, "", "calibration text (UTF-8), tokenized with the model's tokenizer");
ABSL_FLAG(std::string, ids_file, "", "calibration token ids, separated by whitespace or commas");
ABSL_FLAG(std::string, out, "", "channel config to write (JSON)");
ABSL_FLAG(std::string, stat, "qk,q,k", "statistics to compute: any of qk, q, k");
ABSL_FLAG(int64_t, block, 512, "tokens per calibration sequence");
ABSL_FLAG(int64_t, max_blocks, 0, "most blocks to use; 0 = all");
ABSL_FLAG(std::string, device, "cpu", "engine: cpu, cuda or cuda:N (CUDA builds)");
ABSL_FLAG(bool, prediction, false,
          "also measure cross-layer prediction per layer (kv mode offload) and write "
          "\"dsinfer.prediction\" with the layers to exempt");
ABSL_FLAG(bool, prediction_only, false,
          "with --channel-config: keep its channels, only add \"dsinfer.prediction\"");
ABSL_FLAG(std::string, channel_config, "", "existing channel config (for --prediction-only)");
ABSL_FLAG(double, prediction_budget_ratio, 1.0 / 16, "token budget ratio of the measurement");
ABSL_FLAG(int32_t, prediction_r, 16, "label channels per KV head of the measurement");
ABSL_FLAG(std::string, prediction_stat, "qk", "channel statistic of the measurement");
ABSL_FLAG(int32_t, prediction_sink, 4, "first tokens always kept during the measurement");
ABSL_FLAG(int32_t, prediction_recent, 8, "last tokens always kept during the measurement");
ABSL_FLAG(int64_t, prediction_prefill, 1024, "dense prefix of each measurement window");
ABSL_FLAG(int64_t, prediction_steps, 64, "decode rows per window after the prefix");
ABSL_FLAG(int32_t, prediction_windows, 4, "windows of prefill + steps tokens (fewer if the data runs out)");
ABSL_FLAG(double, prediction_threshold, 0.9, "recall bar of the exemption rule");
ABSL_FLAG(std::string, prediction_rule, "mean",
          "mean: exempt the weakest layers until the predicted layers' mean recall reaches the "
          "threshold; layer: exempt every layer below it");
ABSL_FLAG(int32_t, own_query_layers, 2, "first layers that always use their own query");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer-calibrate: error: %s\n", message.c_str());
  return 1;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Consecutive slices of `ids`, `window` tokens each, at most `windows` (at least one, even
// if short).
std::vector<std::vector<int32_t>> IdWindows(const std::vector<int32_t>& ids, int64_t window,
                                            int windows) {
  std::vector<std::vector<int32_t>> out;
  for (int64_t begin = 0; begin < static_cast<int64_t>(ids.size()) &&
                          static_cast<int>(out.size()) < windows;
       begin += window) {
    const int64_t end = std::min<int64_t>(begin + window, static_cast<int64_t>(ids.size()));
    if (!out.empty() && end - begin < window) break;
    out.emplace_back(ids.begin() + begin, ids.begin() + end);
  }
  return out;
}

// Measures prediction on `channels` with a model loaded in kv mode offload (every layer from
// --own-query-layers on predicted: the calibrated list of any shipped config is ignored).
absl::StatusOr<dsinfer::PredictionCalibration> MeasurePrediction(
    const std::string& model_dir, dsinfer::Backend& backend, const dsinfer::ChannelConfig& channels,
    const std::vector<std::vector<int32_t>>& windows, const std::string& data_source) {
  dsinfer::PredictionCalibrationOptions po;
  po.budget_ratio = absl::GetFlag(FLAGS_prediction_budget_ratio);
  po.channels = absl::GetFlag(FLAGS_prediction_r);
  auto stat = dsinfer::ParseChannelStatistic(absl::GetFlag(FLAGS_prediction_stat));
  if (!stat.ok()) return stat.status();
  po.statistic = *stat;
  po.sink = absl::GetFlag(FLAGS_prediction_sink);
  po.recent = absl::GetFlag(FLAGS_prediction_recent);
  po.prefill = absl::GetFlag(FLAGS_prediction_prefill);
  po.steps = absl::GetFlag(FLAGS_prediction_steps);
  po.threshold = absl::GetFlag(FLAGS_prediction_threshold);
  const std::string rule = absl::GetFlag(FLAGS_prediction_rule);
  if (rule != "mean" && rule != "layer") {
    return absl::InvalidArgumentError("--prediction-rule must be mean or layer");
  }
  po.rule = rule == "mean" ? dsinfer::PredictionCalibrationOptions::Rule::kMean
                           : dsinfer::PredictionCalibrationOptions::Rule::kEachLayer;
  po.data_source = data_source;
  dsinfer::ModelOptions mo;
  mo.kv_mode = dsinfer::KvMode::kOffload;
  mo.offload.measure_prediction_recall = true;
  mo.offload.use_calibrated_own_query = false;
  mo.offload.own_query_layers = absl::GetFlag(FLAGS_own_query_layers);
  mo.kv_pool_tokens = po.prefill + po.steps + 64;
  auto model = dsinfer::Model::Load(model_dir, backend, mo);
  if (!model.ok()) return model.status();
  absl::Status st = (*model)->double_sparsity().SetChannelConfig(channels);
  if (!st.ok()) return st;
  return dsinfer::CalibratePrediction(**model, windows, po);
}

void PrintPrediction(const dsinfer::PredictionCalibration& p) {
  std::string line;
  for (size_t l = 0; l < p.recall.size(); ++l) {
    line += p.recall[l] < 0 ? absl::StrFormat(" L%d -", l) : absl::StrFormat(" L%d %.3f", l, p.recall[l]);
  }
  std::string exempt;
  for (int l : p.own_query_extra) exempt += absl::StrFormat(" %d", l);
  std::fprintf(stderr,
               "dsinfer-calibrate: prediction recall over %lld decode rows (budget %.4g):%s\n"
               "dsinfer-calibrate: layers to use their own query (bar %.3g):%s\n",
               static_cast<long long>(p.tokens), p.budget_ratio, line.c_str(), p.threshold,
               exempt.empty() ? " none" : exempt.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv,
      "dsinfer-calibrate --model DIR (--text-file F | --ids-file F) --out channels.json "
      "[--stat qk,q,k] [--block 512] [--max-blocks N] [--device cpu|cuda|cuda:N] "
      "[--prediction | --channel-config IN --prediction-only] [--prediction-budget-ratio "
      "0.0625] [--prediction-prefill 1024] [--prediction-steps 64] [--prediction-windows 4] "
      "[--prediction-threshold 0.9] [--prediction-rule mean|layer] [--own-query-layers 2]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const std::string text_file = absl::GetFlag(FLAGS_text_file);
  const std::string ids_file = absl::GetFlag(FLAGS_ids_file);
  const std::string out = absl::GetFlag(FLAGS_out);
  const bool prediction_only = absl::GetFlag(FLAGS_prediction_only);
  const bool prediction = prediction_only || absl::GetFlag(FLAGS_prediction);
  const std::string channel_config = absl::GetFlag(FLAGS_channel_config);
  if (model_dir.empty()) return Fail("--model is required");
  if (out.empty()) return Fail("--out is required");
  if (text_file.empty() == ids_file.empty()) return Fail("give exactly one of --text-file, --ids-file");
  if (prediction_only != !channel_config.empty()) {
    return Fail("--prediction-only and --channel-config go together");
  }
  // The backend first: a build without CUDA or a host without a GPU fails before any work.
  const std::string device = absl::GetFlag(FLAGS_device);
  auto backend = dsinfer::CreateBackend(device);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));
  dsinfer::CalibrationOptions options;
  options.block = absl::GetFlag(FLAGS_block);
  options.max_blocks = absl::GetFlag(FLAGS_max_blocks);
  options.statistics.clear();
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_stat), ',', absl::SkipEmpty())) {
    auto stat = dsinfer::ParseChannelStatistic(name);
    if (!stat.ok()) return Fail("--stat: " + std::string(stat.status().message()));
    options.statistics.push_back(*stat);
  }
  options.model_name = model_dir;
  std::vector<int32_t> ids;
  if (!ids_file.empty()) {
    auto read = dsinfer::ReadIdsFile(ids_file);
    if (!read.ok()) return Fail(std::string(read.status().message()));
    ids = *std::move(read);
    options.data_source = "ids:" + ids_file;
  } else if (!prediction_only) {
    auto tokenizer = dsinfer::Tokenizer::LoadFromDir(model_dir);
    if (!tokenizer.ok()) return Fail("--text-file needs the model's tokenizer: " +
                                     std::string(tokenizer.status().message()));
    auto text = ReadFile(text_file);
    if (!text.ok()) return Fail(std::string(text.status().message()));
    auto encoded = (*tokenizer)->Encode(*text);
    if (!encoded.ok()) return Fail(std::string(encoded.status().message()));
    ids = *std::move(encoded);
    options.data_source = "text:" + text_file;
  } else {
    options.data_source = "text:" + text_file;
  }
  std::vector<std::vector<int32_t>> windows;
  if (prediction) {
    const int64_t window = absl::GetFlag(FLAGS_prediction_prefill) + absl::GetFlag(FLAGS_prediction_steps);
    const int count = absl::GetFlag(FLAGS_prediction_windows);
    if (ids_file.empty()) {
      auto w = dsinfer::TextWindows(model_dir, text_file, window, count, 1);
      if (!w.ok()) return Fail(std::string(w.status().message()));
      windows = *std::move(w);
    } else {
      windows = IdWindows(ids, window, count);
    }
  }

  if (prediction_only) {
    auto text = ReadFile(channel_config);
    if (!text.ok()) return Fail(std::string(text.status().message()));
    auto channels = dsinfer::ParseChannelConfig(*text, channel_config);
    if (!channels.ok()) return Fail(std::string(channels.status().message()));
    auto p = MeasurePrediction(model_dir, **backend, *channels, windows, options.data_source);
    if (!p.ok()) return Fail(std::string(p.status().message()));
    p->measured["device"] = device;
    p->measured["channel_config"] = channel_config;
    auto updated = dsinfer::SetPredictionCalibration(*text, *p);
    if (!updated.ok()) return Fail(std::string(updated.status().message()));
    std::ofstream o(out, std::ios::binary | std::ios::trunc);
    o << *updated << "\n";
    o.close();
    if (!o) return Fail("writing " + out + " failed");
    PrintPrediction(*p);
    std::fprintf(stderr, "dsinfer-calibrate: %s with dsinfer.prediction -> %s\n",
                 channel_config.c_str(), out.c_str());
    return 0;
  }

  dsinfer::ModelOptions model_options;
  model_options.kv_pool_tokens = options.block + 64;
  auto model = dsinfer::Model::Load(model_dir, **backend, model_options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  auto config = dsinfer::Calibrate(**model, ids, options);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  config->metadata["device"] = device;
  model->reset();  // one model at a time on the device
  if (prediction) {
    auto p = MeasurePrediction(model_dir, **backend, *config, windows, options.data_source);
    if (!p.ok()) return Fail(std::string(p.status().message()));
    p->measured["device"] = device;
    config->prediction = *std::move(p);
    PrintPrediction(*config->prediction);
  }
  absl::Status st = dsinfer::WriteChannelConfig(*config, out);
  if (!st.ok()) return Fail(std::string(st.message()));
  std::fprintf(stderr, "dsinfer-calibrate: %s tokens in %s blocks -> %s\n",
               config->metadata["tokens"].dump().c_str(),
               config->metadata["blocks"].dump().c_str(), out.c_str());
  return 0;
}
