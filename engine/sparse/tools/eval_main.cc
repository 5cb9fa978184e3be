// dsinfer-eval: the Double Sparsity quality report — perplexity dense vs Double Sparsity at
// budgets 1/2 … 1/32, label bits 16 and 4, GQA aggregation sum and max, and per-layer
// recall. A table on stdout, or one JSON object with --json.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/eval.h"
#include "engine/sparse/tools/ids_file.h"
#include "engine/tools/cli_flags.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(std::string, ids_file, "", "token ids to score, separated by whitespace or commas");
ABSL_FLAG(std::string, channels, "", "channel config (reference JSON); none = all channels only");
ABSL_FLAG(int32_t, r, 16, "label channels per KV head");
ABSL_FLAG(std::string, stat, "qk", "channel statistic: qk, q or k");
ABSL_FLAG(int32_t, sink, 4, "first tokens always kept");
ABSL_FLAG(int32_t, recent, 64, "last tokens always kept");
ABSL_FLAG(int32_t, dense_layers, 2, "first layers kept dense");
ABSL_FLAG(int64_t, prefill, 64, "dense prefix before scoring starts");
ABSL_FLAG(bool, json, false, "print one JSON object");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer-eval: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv,
      "dsinfer-eval --model DIR --ids-file F [--channels F] [--r 16] [--stat qk] [--sink 4] "
      "[--recent 64] [--dense-layers 2] [--prefill 64] [--json]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return Fail("--model is required");
  if (absl::GetFlag(FLAGS_ids_file).empty()) return Fail("--ids-file is required");
  auto ids = dsinfer::ReadIdsFile(absl::GetFlag(FLAGS_ids_file));
  if (!ids.ok()) return Fail(std::string(ids.status().message()));
  dsinfer::EvalOptions options;
  options.base.channels = absl::GetFlag(FLAGS_r);
  auto stat = dsinfer::ParseChannelStatistic(absl::GetFlag(FLAGS_stat));
  if (!stat.ok()) return Fail(std::string(stat.status().message()));
  options.base.statistic = *stat;
  options.base.sink = absl::GetFlag(FLAGS_sink);
  options.base.recent = absl::GetFlag(FLAGS_recent);
  options.base.dense_layers = absl::GetFlag(FLAGS_dense_layers);
  options.prefill = absl::GetFlag(FLAGS_prefill);

  dsinfer::CpuBackend backend;
  dsinfer::ModelOptions model_options;
  model_options.channel_config_path = absl::GetFlag(FLAGS_channels);
  model_options.kv_pool_tokens = static_cast<int64_t>(ids->size()) + 64;
  auto model = dsinfer::Model::Load(model_dir, backend, model_options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  if (options.base.channels > (*model)->config().head_dim) {
    options.base.channels = (*model)->config().head_dim;
  }
  auto report = dsinfer::EvaluateDoubleSparsity(**model, *ids, options);
  if (!report.ok()) return Fail(std::string(report.status().message()));
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json j = report->ToJson();
    j["model"] = model_dir;
    j["channels"] = absl::GetFlag(FLAGS_channels);
    j["r"] = options.base.channels;
    j["sink"] = options.base.sink;
    j["recent"] = options.base.recent;
    j["dense_layers"] = options.base.dense_layers;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("model %s, r=%d, sink %d, recent %d, dense_layers %d\n%s", model_dir.c_str(),
                options.base.channels, options.base.sink, options.base.recent,
                options.base.dense_layers, report->ToTable().c_str());
  }
  return 0;
}
