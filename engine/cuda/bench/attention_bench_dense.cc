// The dense decode row of dsinfer-attention-bench (attention_bench_dense.h). Beside the engine's
// own split count it times the first body at the --dense_waves counts, so that the row shows
// what the engine's split rule gains or loses against its neighbours.
#include "engine/cuda/bench/attention_bench_dense.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/cuda/bench/attention_bench_common.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

absl::StatusOr<double> RunDenseDecode(const DecodeBenchEnv& env, const DecodeConfig& config,
                                      const std::vector<DecodeAttentionAlgo>& dense_algos,
                                      const std::vector<int>& dense_waves, DevMem& dws,
                                      nlohmann::json& out) {
  // The run and the configuration under the short names the timing code below uses.
  const cudaStream_t stream = env.stream;
  const int sm = env.sm, iters = env.iters;
  const double hbm_bps = env.hbm_bps;
  const L2Flusher& flusher = *env.flusher;
  const std::string& m = config.model;
  const int hq = config.hq, hkv = config.hkv;
  const int64_t batch = config.batch, ctx = config.ctx, kv_bytes = config.kv_bytes;
  const DevMem& dq = *config.dq;
  const DevMem& dout = *config.dout;
  const CudaPagedKv& kv = config.kv;
  const CudaBatchRows& rows = config.rows;
  const float scale = config.scale;
  // Dense: the engine's split count (DecodeAttentionSplits' own rule), and the first body
  // at every count of --dense_waves.
  const int dense_splits = DecodeAttentionSplits(batch, hq, hkv, ctx, sm, /*waves=*/0);
  int most_splits = dense_splits;
  for (int w : dense_waves) {
    most_splits = std::max(most_splits, DecodeAttentionSplits(batch, hq, hkv, ctx, sm, w));
  }
  RETURN_IF_ERROR(dws.Alloc(DecodeAttentionWorkspaceFloats(batch, hq, kHeadDim, most_splits) * 4));
  // Every body of --dense_algos; the first is the dense time (and the row's "us").
  const double dense_floor = kv_bytes / hbm_bps * 1e6;
  nlohmann::json dense_by_algo;
  std::string dense_bodies;
  double dense_us = 0;
  for (size_t i = 0; i < dense_algos.size(); ++i) {
    const DecodeAttentionAlgo a = dense_algos[i];
    ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] {
                       return LaunchDecodeAttention(
                           DType::kF16, dq.ptr, hq * kHeadDim, rows, hq, hkv, kHeadDim, scale, kv,
                           dense_splits, dws.as<float>(), dout.ptr, hq * kHeadDim, stream, a);
                     }));
    if (i == 0) dense_us = t;
    dense_by_algo[AlgoName(a)] = t;
    absl::StrAppend(&dense_bodies, dense_bodies.empty() ? "" : ", ", AlgoName(a), " ",
                    absl::StrFormat("%.1f (%.2fx)", t, t / dense_floor));
  }
  // The engine's body and split count with the L2 emptied before each step.
  ASSIGN_OR_RETURN(const double dense_cold, ColdTimeUs(stream, iters, flusher, [&] {
                     return LaunchDecodeAttention(DType::kF16, dq.ptr, hq * kHeadDim, rows, hq, hkv,
                                                  kHeadDim, scale, kv, dense_splits,
                                                  dws.as<float>(), dout.ptr, hq * kHeadDim, stream,
                                                  dense_algos[0]);
                   }));
  absl::StrAppend(&dense_bodies, absl::StrFormat(", cold L2 %.1f", dense_cold));
  nlohmann::json dense_by_waves;
  for (int w : dense_waves) {
    const int n = DecodeAttentionSplits(batch, hq, hkv, ctx, sm, w);
    ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] {
                       return LaunchDecodeAttention(
                           DType::kF16, dq.ptr, hq * kHeadDim, rows, hq, hkv, kHeadDim, scale, kv,
                           n, dws.as<float>(), dout.ptr, hq * kHeadDim, stream, dense_algos[0]);
                     }));
    dense_by_waves[std::to_string(w)] = {{"splits", n}, {"us", t}};
    absl::StrAppend(&dense_bodies, dense_bodies.empty() ? "" : ", ", "waves ", w, " (", n,
                    " splits) ", absl::StrFormat("%.1f", t));
  }
  std::printf("%-10s %5lld %7lld  %-18s %9.1f %9.1f %8.2f %8.2f %7s  by body: %s\n", m.c_str(),
              static_cast<long long>(batch), static_cast<long long>(ctx), "dense", dense_us,
              dense_floor, dense_us / dense_floor, kv_bytes / dense_us / 1e6, "1.00",
              dense_bodies.c_str());
  out["results"].push_back({{"model", m},
                            {"batch", batch},
                            {"context", ctx},
                            {"op", "dense"},
                            {"us", dense_us},
                            {"algo", AlgoName(dense_algos[0])},
                            {"us_by_algo", dense_by_algo},
                            {"us_by_waves", dense_by_waves},
                            {"bytes", kv_bytes},
                            {"floor_us", dense_floor},
                            {"us_cold_l2", dense_cold},
                            {"splits", dense_splits}});
  return dense_us;
}

}  // namespace dsinfer
