// dsinfer-sampling-bench: the GPU sampler alone (LaunchSample, the device token path's kernel)
// over batches of logits rows at real vocabularies, for each kind of row the engine issues:
// greedy, temperature only, min-p, top-k, top-p, and top-k + top-p + min-p together. Beside each
// time: the argmax kernel over the same rows (LaunchArgmax, one block a row, as the backend's
// LogitStats runs it) and the byte floor — the logits read once at the D2D copy rate measured
// in the same process. Logits are random (uniform in [-8, 8): fp32 from the host, 16-bit
// generated on the GPU), uniforms random; launches run back to back, so the rows sit in L2 as
// the LM head leaves them in a decode step. JSON: --json_out.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/list_flag.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda_check.h"
#include "kernels/sample_knobs.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, json_out, "", "write results as JSON to this file");
ABSL_FLAG(std::string, rows, "1,8,32", "rows (sequences) per launch");
ABSL_FLAG(std::string, vocabs, "32000,128256", "vocabulary sizes");
ABSL_FLAG(std::string, dtype, "f32", "logits dtype: f32 (the engine's) | bf16 | f16");
ABSL_FLAG(int32_t, iters, 50, "timed launches per configuration");

namespace dsinfer {
namespace {

struct Case {
  const char* name;
  SampleKnobs knobs;
};
constexpr Case kCases[] = {
    {"greedy", {0.0f, 0, 1.0f, 0.0f}}, {"temperature", {0.7f, 0, 1.0f, 0.0f}},
    {"min_p", {0.9f, 0, 1.0f, 0.1f}},  {"top_k", {1.0f, 50, 1.0f, 0.0f}},
    {"top_p", {1.0f, 0, 0.9f, 0.0f}},  {"top_k_p_min_p", {1.3f, 100, 0.8f, 0.05f}},
};

absl::Status Run() {
  ASSIGN_OR_RETURN(const std::vector<int64_t> row_counts,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_rows), "rows"));
  ASSIGN_OR_RETURN(const std::vector<int64_t> vocabs,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_vocabs), "vocabs"));
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  DType dtype;
  if (dtype_name == "f32") {
    dtype = DType::kF32;
  } else if (dtype_name == "bf16") {
    dtype = DType::kBF16;
  } else if (dtype_name == "f16") {
    dtype = DType::kF16;
  } else {
    return absl::InvalidArgumentError("--dtype: f32, bf16 or f16, not " + dtype_name);
  }
  const int iters = absl::GetFlag(FLAGS_iters);
  if (iters <= 0) return absl::InvalidArgumentError("--iters must be positive");
  const int64_t elem = static_cast<int64_t>(DTypeSize(dtype));
  int64_t most_rows = 0, most_vocab = 0;
  for (int64_t r : row_counts) most_rows = std::max(most_rows, r);
  for (int64_t v : vocabs) most_vocab = std::max(most_vocab, v);

  cudaStream_t stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream));
  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
  // The copy rate the floor uses: a 1 GiB device-to-device copy, bytes read + written.
  ASSIGN_OR_RETURN(const double copy_bps, CopyRateBps(stream, size_t{1} << 30));
  std::printf("GPU %s: D2D copy %.0f GB/s; logits %s\n", prop.name, copy_bps / 1e9,
              dtype_name.c_str());

  DevMem logits, knobs, uniforms, ids, chosen;
  RETURN_IF_ERROR(logits.Alloc(static_cast<size_t>(most_rows * most_vocab * elem)));
  RETURN_IF_ERROR(knobs.Alloc(most_rows * sizeof(SampleKnobs)));
  RETURN_IF_ERROR(uniforms.Alloc(most_rows * sizeof(float)));
  RETURN_IF_ERROR(ids.Alloc(most_rows * sizeof(int32_t)));
  RETURN_IF_ERROR(chosen.Alloc(most_rows * sizeof(float)));
  std::mt19937 rng(20261130);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  std::vector<float> host_uniforms(most_rows);
  for (float& u : host_uniforms) u = uni(rng);
  CUDA_RETURN_IF_ERROR(cudaMemcpy(uniforms.ptr, host_uniforms.data(), most_rows * sizeof(float),
                                  cudaMemcpyHostToDevice));

  nlohmann::json out;
  out["gpu"] = prop.name;
  out["d2d_copy_gbps"] = copy_bps / 1e9;
  out["dtype"] = dtype_name;
  std::printf("%6s %8s %-14s %10s %10s %10s\n", "rows", "vocab", "rows' knobs", "sample us",
              "argmax us", "floor us");
  for (int64_t vocab : vocabs) {
    for (int64_t rows : row_counts) {
      if (dtype == DType::kF32) {  // (LaunchFillRandom makes 16-bit values only)
        std::vector<float> host(static_cast<size_t>(rows * vocab));
        std::uniform_real_distribution<float> spread(-8.0f, 8.0f);
        for (float& v : host) v = spread(rng);
        CUDA_RETURN_IF_ERROR(cudaMemcpy(logits.ptr, host.data(), host.size() * sizeof(float),
                                        cudaMemcpyHostToDevice));
      } else {
        RETURN_IF_ERROR(
            LaunchFillRandom(dtype, logits.ptr, rows * vocab, 1000 + rows + vocab, 8.0f, stream));
      }
      const double floor_us = rows * vocab * elem / copy_bps * 1e6;
      ASSIGN_OR_RETURN(const double argmax_us, TimeUs(stream, iters, [&] {
                         return LaunchArgmax(dtype, logits.ptr, rows, vocab, vocab,
                                             ids.as<int32_t>(), stream);
                       }));
      for (const Case& c : kCases) {
        const std::vector<SampleKnobs> host_knobs(rows, c.knobs);
        CUDA_RETURN_IF_ERROR(cudaMemcpy(knobs.ptr, host_knobs.data(), rows * sizeof(SampleKnobs),
                                        cudaMemcpyHostToDevice));
        ASSIGN_OR_RETURN(const double us, TimeUs(stream, iters, [&] {
                           return LaunchSample(dtype, logits.ptr, rows, vocab, vocab,
                                               knobs.as<const SampleKnobs>(),
                                               uniforms.as<const float>(), ids.as<int32_t>(),
                                               chosen.as<float>(), stream);
                         }));
        // Every row must have drawn a token (the logits are finite).
        std::vector<int32_t> got(rows);
        CUDA_RETURN_IF_ERROR(
            cudaMemcpy(got.data(), ids.ptr, rows * sizeof(int32_t), cudaMemcpyDeviceToHost));
        for (int32_t id : got) {
          if (id < 0 || id >= vocab) {
            return absl::InternalError(std::string("LaunchSample drew no token: ") + c.name);
          }
        }
        std::printf("%6lld %8lld %-14s %10.1f %10.1f %10.2f\n", static_cast<long long>(rows),
                    static_cast<long long>(vocab), c.name, us, argmax_us, floor_us);
        out["results"].push_back({{"rows", rows},
                                  {"vocab", vocab},
                                  {"knobs", c.name},
                                  {"sample_us", us},
                                  {"argmax_us", argmax_us},
                                  {"floor_us", floor_us}});
      }
    }
  }
  CUDA_RETURN_IF_ERROR(cudaStreamDestroy(stream));
  const std::string path = absl::GetFlag(FLAGS_json_out);
  if (!path.empty()) std::ofstream(path) << out.dump(1) << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsinfer

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv,
      "dsinfer-sampling-bench [--rows 1,8,32] [--vocabs 32000,128256] [--dtype f32] "
      "[--iters 50] [--json_out FILE]");
  const absl::Status s = dsinfer::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "dsinfer-sampling-bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
