// dsinfer-calibrate: finds Double Sparsity's label channels for a model from calibration
// data (text through the model's tokenizer, or token ids) and writes them in the reference
// channel-config format, with the statistic values under "dsinfer.metadata".
// --device picks the engine (cpu, or cuda / cuda:N in CUDA builds): the statistics read
// pre- and post-RoPE q/k through Model's ForwardObserver, which copies them to the host on
// any backend (on the GPU they are the bf16 engine's activations, so an ordering can differ
// from the CPU's where two channels' statistics are within rounding).
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "engine/backend_factory.h"
#include "engine/model.h"
#include "engine/sparse/calibration.h"
#include "engine/sparse/tools/ids_file.h"
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

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer-calibrate: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv,
      "dsinfer-calibrate --model DIR (--text-file F | --ids-file F) --out channels.json "
      "[--stat qk,q,k] [--block 512] [--max-blocks N] [--device cpu|cuda|cuda:N]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const std::string text_file = absl::GetFlag(FLAGS_text_file);
  const std::string ids_file = absl::GetFlag(FLAGS_ids_file);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (model_dir.empty()) return Fail("--model is required");
  if (out.empty()) return Fail("--out is required");
  if (text_file.empty() == ids_file.empty()) return Fail("give exactly one of --text-file, --ids-file");
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
  } else {
    auto tokenizer = dsinfer::Tokenizer::LoadFromDir(model_dir);
    if (!tokenizer.ok()) return Fail("--text-file needs the model's tokenizer: " +
                                     std::string(tokenizer.status().message()));
    std::ifstream in(text_file, std::ios::binary);
    if (!in) return Fail("cannot read " + text_file);
    std::stringstream buffer;
    buffer << in.rdbuf();
    auto encoded = (*tokenizer)->Encode(buffer.str());
    if (!encoded.ok()) return Fail(std::string(encoded.status().message()));
    ids = *std::move(encoded);
    options.data_source = "text:" + text_file;
  }
  dsinfer::ModelOptions model_options;
  model_options.kv_pool_tokens = options.block + 64;
  auto model = dsinfer::Model::Load(model_dir, **backend, model_options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  auto config = dsinfer::Calibrate(**model, ids, options);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  config->metadata["device"] = device;
  absl::Status st = dsinfer::WriteChannelConfig(*config, out);
  if (!st.ok()) return Fail(std::string(st.message()));
  std::fprintf(stderr, "dsinfer-calibrate: %s tokens in %s blocks -> %s\n",
               config->metadata["tokens"].dump().c_str(),
               config->metadata["blocks"].dump().c_str(), out.c_str());
  return 0;
}
