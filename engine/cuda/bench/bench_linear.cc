// The linear layers alone (bench_linear.h). It leaves the backend on the last body it timed;
// the main loop sets the body of every decode row itself.
#include "engine/cuda/bench/bench_linear.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/cuda/bench/bench_forward.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

absl::Status TimeLinearBodies(CudaBackend& b, const RandomWeightModel& m, double hbm_bps,
                              DeviceTimer& timer, nlohmann::json& out) {
  using Member = DeviceTensor RandomWeightModel::Layer::*;
  const std::pair<const char*, Member> kinds[] = {
      {"qkv_proj", &RandomWeightModel::Layer::qkv_proj},
      {"o_proj", &RandomWeightModel::Layer::o_proj},
      {"gate_up_proj", &RandomWeightModel::Layer::gate_up_proj},
      {"down_proj", &RandomWeightModel::Layer::down_proj},
      {"lm_head", nullptr}};
  const int64_t max_in = std::max(m.config.hidden_size, m.config.intermediate_size);
  const int64_t max_out = std::max<int64_t>(m.config.vocab_size, 2 * m.config.intermediate_size);
  ASSIGN_OR_RETURN(DeviceTensor x_buf, b.Allocate(kGemvMaxRows, max_in));
  ASSIGN_OR_RETURN(DeviceTensor y_buf, b.Allocate(kGemvMaxRows, max_out));
  RETURN_IF_ERROR(b.FillRandom(x_buf, 11, 1.0f));
  const LinearAlgo bodies[] = {LinearAlgo::kCublas, LinearAlgo::kGemv};
  constexpr int kBodies = sizeof(bodies) / sizeof(bodies[0]);
  std::printf(
      "\nlinear layers alone, all layers in turn (floor: D2D %.0f GB/s); ms, GB/s\n"
      "%-13s %5s",
      hbm_bps / 1e9, "weight", "rows");
  for (LinearAlgo body : bodies) std::printf(" %10s ms %10s GB/s", AlgoName(body), "");
  std::printf("\n");
  for (int rows : {1, 2, 4, 8}) {
    double step_ms[kBodies] = {}, step_bytes = 0;
    for (const auto& [name, member] : kinds) {
      std::vector<const DeviceTensor*> ws;
      if (member == nullptr) {
        ws.push_back(&m.lm_head);
      } else {
        for (const RandomWeightModel::Layer& l : m.layers) ws.push_back(&(l.*member));
      }
      const double bytes = 2.0 * ws[0]->rows * ws[0]->cols * ws.size();
      step_bytes += bytes;
      nlohmann::json row = {{"weight", name},
                            {"rows", rows},
                            {"in", ws[0]->cols},
                            {"out", ws[0]->rows},
                            {"launches", ws.size()}};
      std::printf("%-13s %5d", name, rows);
      for (int body = 0; body < kBodies; ++body) {
        b.set_linear_algo(bodies[body]);
        std::vector<double> t;
        for (int pass = 0; pass < 8; ++pass) {
          RETURN_IF_ERROR(timer.Start());
          for (const DeviceTensor* w : ws) {
            DeviceTensor x = x_buf, y = y_buf;
            x.rows = y.rows = rows;
            x.cols = w->cols;
            y.cols = w->rows;
            RETURN_IF_ERROR(b.Linear(x, *w, y));
          }
          ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
          t.push_back(timed_ms);
        }
        t.erase(t.begin());
        const double ms = Median(t);
        step_ms[body] += ms;
        const std::string key = AlgoName(bodies[body]);
        row[key + "_ms"] = ms;
        row[key + "_GBps"] = bytes / (ms * 1e-3) / 1e9;
        std::printf(" %13.4f %15.0f", ms, bytes / (ms * 1e-3) / 1e9);
      }
      std::printf("\n");
      out["matrices"].push_back(row);
    }
    const double floor_ms = step_bytes / hbm_bps * 1e3;
    nlohmann::json step = {{"rows", rows}, {"floor_ms", floor_ms}};
    std::printf("%-13s %5d", "step", rows);
    for (int body = 0; body < kBodies; ++body) {
      step[std::string(AlgoName(bodies[body])) + "_ms"] = step_ms[body];
      std::printf(" %13.3f %15s", step_ms[body], "");
    }
    std::printf("  weights of one decode step (floor %.3f ms)\n", floor_ms);
    out["step"].push_back(step);
  }
  RETURN_IF_ERROR(b.Synchronize());
  b.Free(x_buf);
  b.Free(y_buf);
  return absl::OkStatus();
}

}  // namespace dsinfer
