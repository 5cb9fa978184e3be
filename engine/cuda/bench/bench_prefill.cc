// The prefill section of dsinfer-bench (bench_prefill.h).
#include "engine/cuda/bench/bench_prefill.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/cuda/bench/bench_forward.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/forward_batch.h"
#include "engine/model_config.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

absl::Status TimePrefill(CudaBackend& b, RandomWeightModel& m, const std::vector<int64_t>& contexts,
                         int long_prefill_layers, double mm_flops, DeviceTimer& timer,
                         nlohmann::json& jm) {
  const ModelConfig& c = m.config;
  std::printf("%-8s %-7s %12s %12s %10s %14s\n", "prefill", "tokens", "ms", "tok/s", "floor ms",
              "matmul frac");
  for (int64_t len : contexts) {
    nlohmann::json r;
    r["tokens"] = len;
    const int layers = len > 8192 ? std::min(long_prefill_layers, c.num_layers) : c.num_layers;
    ASSIGN_OR_RETURN(auto pool, MakePool(b, c, len + 16));
    Workspace ws(&b);
    RETURN_IF_ERROR(ws.Init(c, len, 1));
    std::vector<int32_t> ids(len);
    for (int64_t i = 0; i < len; ++i) ids[i] = static_cast<int32_t>((i * 31) % c.vocab_size);
    const auto seq = pool->AddSequence();
    RETURN_IF_ERROR(pool->Reserve(seq, len));
    ForwardBatch fb;
    fb.Add(seq, ids.data(), len, 0, false);
    RETURN_IF_ERROR(Forward(m, ws, fb, *pool, layers));
    std::vector<double> ms;
    for (int i = 0; i < 3; ++i) {
      RETURN_IF_ERROR(timer.Start());
      RETURN_IF_ERROR(Forward(m, ws, fb, *pool, layers));
      ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
      ms.push_back(timed_ms);
    }
    RETURN_IF_ERROR(b.Synchronize());
    const double measured = Median(ms);
    const double total_ms = measured * c.num_layers / layers;
    const double linear_params =
        double(c.num_layers) *
        (double(c.q_size() + 2 * c.kv_size()) * c.hidden_size + double(c.q_size()) * c.hidden_size +
         3.0 * c.intermediate_size * c.hidden_size);
    const double attn_flops =
        double(c.num_layers) * 4.0 * c.num_heads_q * c.head_dim * (double(len) * (len + 1) / 2);
    const double flops =
        2.0 * linear_params * len + attn_flops + 2.0 * double(c.vocab_size) * c.hidden_size;
    const double floor_ms = flops / mm_flops * 1e3;
    r["layers_run"] = layers;
    r["extrapolated"] = layers != c.num_layers;
    r["ms"] = total_ms;
    r["tokens_per_s"] = len / (total_ms * 1e-3);
    r["flops"] = flops;
    r["floor_ms"] = floor_ms;
    r["fraction_of_matmul_rate"] = floor_ms / total_ms;
    std::printf(
        "%-8s %-7lld %12.1f %12.0f %10.1f %14.2f%s\n", "", static_cast<long long>(len), total_ms,
        len / (total_ms * 1e-3), floor_ms, floor_ms / total_ms,
        layers != c.num_layers
            ? absl::StrCat("  (", layers, " of ", c.num_layers, " layers run, scaled)").c_str()
            : "");
    jm["prefill"].push_back(r);
  }
  return absl::OkStatus();
}

}  // namespace dsinfer
