// The decode row of dsinfer-bench (bench_decode.h). Its timing helpers are lambdas over the
// row's state rather than functions of their own, so that every variant of the step is timed by
// the same code under the same batch.
#include "engine/cuda/bench/bench_decode.h"

#include <cuda_profiler_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/attention_options.h"
#include "engine/cuda/bench/bench_ds_options.h"
#include "engine/cuda/bench/bench_forward.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/forward_batch.h"
#include "engine/layer_ops.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"
#include "offload/kv_block_pool.h"

namespace dsinfer {

absl::Status TimeDecode(CudaBackend& b, RandomWeightModel& m, Workspace& ws, ForwardBatch& fb,
                        KvBlockPool& pool, const std::string& mode, int64_t ctx, int64_t batch,
                        double hbm_bps, DeviceTimer& timer, const DecodeOptions& options,
                        nlohmann::json& r) {
  const ModelConfig& c = m.config;
  std::unique_ptr<DoubleSparsity> ds;
  AttentionOptions opts, other_opts;
  int sparse_layers = 0;
  double sparse_token_bytes = 0;  // per sparse layer and context token: labels + selected K/V
  // --ds_dense_sequences: the batch's last sequences run dense beside the sparse ones;
  // --ds_mixed_label_bits: the first half of the sparse ones take the other label bits.
  int64_t dense_seqs = 0, other_seqs = 0;
  if (mode == "double_sparse") {
    ASSIGN_OR_RETURN(opts, DsOptions(c, options.ds));
    ASSIGN_OR_RETURN(other_opts, DsOptions(c, options.ds, OtherLabelBits(options.ds)));
    ds = std::make_unique<DoubleSparsity>(c.num_layers, c.num_heads_q, c.num_heads_kv, c.head_dim);
    RETURN_IF_ERROR(ds->SetChannelConfig(RandomChannelConfig(c, 1234)));
    sparse_layers = std::max(0, c.num_layers - opts.dense_layers);
    dense_seqs = std::clamp<int64_t>(options.ds.dense_sequences, 0, batch);
    if (options.ds.mixed_label_bits) other_seqs = (batch - dense_seqs) / 2;
    // Labels averaged over the sparse sequences' formats.
    const int64_t sparse_seqs = std::max<int64_t>(1, batch - dense_seqs);
    const double label_bytes =
        (static_cast<double>(sparse_seqs - other_seqs) * LabelRowBytes(opts) +
         static_cast<double>(other_seqs) * LabelRowBytes(other_opts)) /
        static_cast<double>(sparse_seqs);
    sparse_token_bytes =
        c.num_heads_kv * label_bytes + 2.0 * c.kv_size() * 2 * opts.token_budget_ratio;
    r["ds_channels"] = opts.channels;
    r["ds_label_bits"] = opts.label_bits;
    r["ds_budget"] = opts.BudgetFor(ctx + 1);
    r["ds_dense_layers"] = opts.dense_layers;
    r["ds_dense_sequences"] = dense_seqs;
    r["ds_other_label_bits_sequences"] = other_seqs;
  } else if (mode != "dense") {
    return absl::InvalidArgumentError(absl::StrCat("--attention: unknown mode ", mode));
  }
  AttentionOptions dense_opts;
  dense_opts.mode = AttentionMode::kDense;
  for (size_t j = 0; j < fb.sequences.size(); ++j) {
    const int64_t i = static_cast<int64_t>(j);
    fb.sequences[j].attention =
        ds == nullptr
            ? nullptr
            : (i >= batch - dense_seqs ? &dense_opts : (i < other_seqs ? &other_opts : &opts));
  }
  // The median step (GPU events around it) and the median host time to issue it (the call's
  // wall time before the events are waited for: where it comes near the step, the host bounds
  // the step).
  // With graphs, capture_ms is the first warm-up step's wall time, the GPU idle before and
  // synchronized after: the step that captures and instantiates its graph, then launches it.
  struct StepTimes {
    double ms = 0, host_ms = 0, capture_ms = 0;
  };
  auto time_steps = [&](bool graphs, bool baseline = false) -> absl::StatusOr<StepTimes> {
    b.set_decode_graphs(graphs);  // (on) starts with no graph cached: off dropped them
    double capture_ms = 0;
    for (int i = 0; i < 3; ++i) {
      const bool capture = graphs && i == 0;
      if (capture) RETURN_IF_ERROR(b.Synchronize());
      const auto start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(Forward(m, ws, fb, pool, c.num_layers, ds.get(), baseline));
      if (!capture) continue;
      RETURN_IF_ERROR(b.Synchronize());
      capture_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
    }
    std::vector<double> ms, host_ms;
    for (int i = 0; i < options.iters; ++i) {
      // `ncu --profile-from-start off` sees the last eager step only (gpu-check.sh ncu-decode).
      const bool profiled = !graphs && i == options.iters - 1;
      if (profiled) CUDA_RETURN_IF_ERROR(cudaProfilerStart());
      RETURN_IF_ERROR(timer.Start());
      const auto issue_start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(Forward(m, ws, fb, pool, c.num_layers, ds.get(), baseline));
      host_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - issue_start)
              .count());
      ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
      ms.push_back(timed_ms);
      if (profiled) CUDA_RETURN_IF_ERROR(cudaProfilerStop());
    }
    RETURN_IF_ERROR(b.Synchronize());
    return StepTimes{Median(ms), Median(host_ms), capture_ms};
  };
  ASSIGN_OR_RETURN(const StepTimes eager, time_steps(false));
  const double eager_ms = eager.ms;
  r["eager_host_ms_per_step"] = eager.host_ms;
  double graph_ms = 0;
  if (options.graphs) {
    const int64_t replays = b.graph_replays();
    ASSIGN_OR_RETURN(const StepTimes graphed, time_steps(true));
    graph_ms = graphed.ms;
    r["graph_host_ms_per_step"] = graphed.host_ms;
    r["graph_capture_step_ms"] = graphed.capture_ms;
    const int64_t replayed = b.graph_replays() - replays;
    r["graph_replays"] = replayed;
    b.set_decode_graphs(false);
    // Every timed step should have replayed (the warm-up captures): fewer means some ran
    // eagerly, and the graph column is not what it says.
    if (replayed < options.iters) {
      std::printf("%-14s   graphs: only %lld of the %d timed steps replayed\n", "",
                  static_cast<long long>(replayed), options.iters);
    }
  }
  struct EagerAndGraph {
    StepTimes eager, graph;
  };
  // A step's times, eager and with graphs, under a setting `apply` puts in place and `restore`
  // takes back.
  auto time_under = [&](auto apply, auto restore) -> absl::StatusOr<EagerAndGraph> {
    apply();
    const absl::StatusOr<StepTimes> eager = time_steps(false);
    absl::StatusOr<StepTimes> graph = StepTimes{};
    if (eager.ok() && options.graphs) graph = time_steps(true);
    b.set_decode_graphs(false);
    restore();
    RETURN_IF_ERROR(eager.status());
    RETURN_IF_ERROR(graph.status());
    return EagerAndGraph{*eager, *graph};
  };
  // A mixed step's, with the dense sequences beside Double Sparsity or not and their split aim
  // (CudaBackendOptions); the defaults restored after.
  auto time_mixed = [&](bool beside, int waves) {
    return time_under([&] { b.set_dense_beside_sparse(beside, waves); },
                      [&] { b.set_dense_beside_sparse(true); });
  };
  if (dense_seqs > 0 && options.ds.mixed_sequential) {
    ASSIGN_OR_RETURN(const EagerAndGraph seq, time_mixed(false, -1));
    r["sequential_eager_ms_per_step"] = seq.eager.ms;
    r["sequential_graph_ms_per_step"] = seq.graph.ms;
    std::printf(
        "%-14s   dense sequences before Double Sparsity, not beside: %.3f ms eager, "
        "%.3f with graphs\n",
        "", seq.eager.ms, seq.graph.ms);
  }
  if (dense_seqs > 0 && !options.ds.beside_waves.empty()) {
    nlohmann::json by_waves;
    for (absl::string_view w : absl::StrSplit(options.ds.beside_waves, ',')) {
      int waves = 0;
      if (!absl::SimpleAtoi(w, &waves) || waves < 0) {
        return absl::InvalidArgumentError("--ds_beside_waves: counts must be >= 0");
      }
      ASSIGN_OR_RETURN(const EagerAndGraph t, time_mixed(true, waves));
      by_waves[std::string(w)] = {{"eager_ms_per_step", t.eager.ms},
                                  {"graph_ms_per_step", t.graph.ms}};
      std::printf(
          "%-14s   dense sequences beside, split aim %d waves: %.3f ms eager, %.3f with "
          "graphs\n",
          "", waves, t.eager.ms, t.graph.ms);
    }
    r["beside_by_waves"] = by_waves;
  }
  if (ds != nullptr && options.ds.split_chain) {
    const bool split = b.split_sparse_chain();
    ASSIGN_OR_RETURN(const EagerAndGraph t, time_under([&] { b.set_split_sparse_chain(!split); },
                                                       [&] { b.set_split_sparse_chain(split); }));
    const std::string key = split ? "whole_chain" : "split_chain";
    r[key + "_eager_ms_per_step"] = t.eager.ms;
    r[key + "_graph_ms_per_step"] = t.graph.ms;
    std::printf("%-14s   split sparse chain %s: %.3f ms eager, %.3f with graphs\n", "",
                split ? "off" : "on", t.eager.ms, t.graph.ms);
  }
  if (dense_seqs > 0 && options.ds.mixed_baseline) {
    ASSIGN_OR_RETURN(const StepTimes baseline, time_steps(false, true));
    r["baseline_eager_ms_per_step"] = baseline.ms;
    std::printf("%-14s   before SubsetAttention (batch view, eager): %.3f ms a step\n", "",
                baseline.ms);
  }
  const double step_ms = graph_ms > 0 ? std::min(eager_ms, graph_ms) : eager_ms;
  r["eager_ms_per_step"] = eager_ms;
  r["graph_ms_per_step"] = graph_ms;
  // Attention of one layer alone: the last layer (sparse under Double Sparsity; the plan of
  // the last Forward still holds, and its labels exist).
  DeviceTensor qkv = ws.qkv, attn = ws.attn;
  qkv.rows = attn.rows = batch;
  const int layer = c.num_layers - 1;
  auto attend = [&]() -> absl::Status {
    if (ds != nullptr && ds->AnySparse(layer)) {
      b.ForgetDeviceLabelsOf(fb);  // the op as in a decode step: its token's label written
      return LayerAttention(b, layer, m.attention, fb, pool, *ds, qkv, attn);
    }
    return b.Attention(layer, m.attention, fb, pool, qkv, attn);
  };
  std::vector<double> ams;
  for (int i = 0; i < 20; ++i) {
    RETURN_IF_ERROR(timer.Start());
    RETURN_IF_ERROR(attend());
    ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
    ams.push_back(timed_ms);
  }
  const double attn_ms = Median(ams);
  // The host's time to issue that op (20 calls back to back, no wait between them): where it
  // exceeds the GPU time above, the host bounds the step.
  RETURN_IF_ERROR(b.Synchronize());
  const auto issue_start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) RETURN_IF_ERROR(attend());
  const double issue_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - issue_start)
          .count() /
      20;
  RETURN_IF_ERROR(b.Synchronize());
  r["attention_layer_host_issue_ms"] = issue_ms;
  const double kv_token_bytes = 2.0 * c.kv_size() * 2;  // per layer
  const double ctx_tokens = double(batch) * (ctx + 1);
  // The sparse sequences' tokens; the dense ones read all their K/V at every layer.
  const double sparse_tokens = double(batch - dense_seqs) * (ctx + 1);
  const double dense_tokens = ctx_tokens - sparse_tokens;
  const double attn_bytes = ds != nullptr && ds->AnySparse(layer)
                                ? sparse_tokens * sparse_token_bytes + dense_tokens * kv_token_bytes
                                : ctx_tokens * kv_token_bytes;
  const double bytes = double(m.weight_bytes - c.vocab_size * c.hidden_size * 2) +
                       dense_tokens * c.num_layers * kv_token_bytes +
                       sparse_tokens * ((c.num_layers - sparse_layers) * kv_token_bytes +
                                        sparse_layers * sparse_token_bytes);
  const double floor_ms = bytes / hbm_bps * 1e3;
  r["ms_per_step"] = step_ms;
  r["tokens_per_s"] = batch / (step_ms * 1e-3);
  r["floor_ms"] = floor_ms;
  r["x_floor"] = step_ms / floor_ms;
  r["attention_layer_ms"] = attn_ms;
  r["attention_layer_bytes"] = attn_bytes;
  r["attention_TBps"] = attn_bytes / (attn_ms * 1e-3) / 1e12;
  double warp_tbps = 0;
  if (ds == nullptr) {
    // The first (warp-per-token) decode kernel at the same shape, for comparison.
    const DecodeAttentionAlgo engine_algo = b.decode_algo();
    b.set_decode_algo(DecodeAttentionAlgo::kWarp);
    std::vector<double> wms;
    for (int i = 0; i < 20; ++i) {
      RETURN_IF_ERROR(timer.Start());
      RETURN_IF_ERROR(b.Attention(layer, m.attention, fb, pool, qkv, attn));
      ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
      wms.push_back(timed_ms);
    }
    b.set_decode_algo(engine_algo);
    warp_tbps = attn_bytes / (Median(wms) * 1e-3) / 1e12;
    r["attention_warp_kernel_TBps"] = warp_tbps;
  }
  for (BatchSequence& s : fb.sequences) s.attention = nullptr;
  const std::string label = absl::StrCat(
      mode, "/", r.value("linear_algo", "cublas"), r.value("dependent_launch", true) ? "+pdl" : "",
      r.value("ds_dependent_chain", false) ? "+chain" : "",
      r.value("ds_dense_sequences", 0) > 0
          ? absl::StrCat("+", r.value("ds_dense_sequences", 0), "dense")
          : "",
      r.value("ds_other_label_bits_sequences", 0) > 0
          ? absl::StrCat("+", OtherLabelBits(options.ds), "bit")
          : "");
  std::printf("%-14s %-6lld %-7lld %12.3f %12.3f %12.1f %10.3f %10.2f %10.3f %12.2f %12.2f\n",
              label.c_str(), static_cast<long long>(batch), static_cast<long long>(ctx), eager_ms,
              graph_ms, batch / (step_ms * 1e-3), floor_ms, step_ms / floor_ms, attn_ms,
              attn_bytes / (attn_ms * 1e-3) / 1e12, warp_tbps);
  std::printf(
      "%-14s   host issue: step %.3f ms eager, %.3f with graphs; attention op %.3f ms "
      "per layer; the capturing step %.3f ms (synchronized)\n",
      "", eager.host_ms, r.value("graph_host_ms_per_step", 0.0), issue_ms,
      r.value("graph_capture_step_ms", 0.0));
  return absl::OkStatus();
}

}  // namespace dsinfer
