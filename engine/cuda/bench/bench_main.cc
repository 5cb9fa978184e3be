// dsinfer-bench: speed of the CUDA dense path at real model shapes (Llama-2-7B, MHA; Llama-3-8B,
// GQA 8) with random weights generated on the GPU (no checkpoint on disk). It runs the same
// sequence of Backend operations as Model::Forward, plus a GPU argmax, and prints a table with
// the physical floor beside each figure, measured in the same run: decode floor = (weights +
// KV bytes read per step) ÷ measured D2D HBM bandwidth; prefill floor = FLOPs ÷ measured cuBLAS
// bf16 matmul rate. Configurations whose weights + KV do not fit are reported as skipped.
// Decode is timed twice per configuration, eagerly and with the step replayed as a CUDA graph
// (the backend's decode_graphs), so the launch overhead shows beside the floor. The residual
// stream and logits are fp32, as in Model::Forward. Writes everything as JSON (--json_out).
//
// --attention dense,double_sparse also times decode with Double Sparsity (the backend's
// StoreLabels / SparseAttention, as Model::Forward calls them) from a channel config of
// random channel orderings of the model's shape — with random weights there is nothing to
// calibrate, and speed does not depend on which channels are chosen. 1/ratio of the K bytes
// as labels: r = head_dim / ratio fp16 channels (--label_bits 16) or 4 × head_dim / ratio
// 4-bit ones, budget k = context / ratio, sink 4, recent 64, the first --ds_dense_layers
// layers dense. Labels are derived from the pool's random K at the first (warm-up) step.
//
// Decode is timed once per linear-layer body of --linear_algos (default auto,cublas: the
// engine's default, AutoPicksGemv, and cuBLAS alone; gemv: the few-row GEMV kernels, with the
// norms and residual adds folded in, wherever they apply, up to 8 rows), side by side. A
// section before the decode table times every weight matrix of the shape alone with each body
// at 1, 2, 4 and 8 rows: GB/s of weights read, and the weights' share of a decode step.
// Each is also timed with and without programmatic dependent launch (--dependent_launch, default
// on,off: kernels/cuda/dependent_launch.cuh), so the overlap it buys shows side by side.
//
// --prefill_algo, --ds_score_algo, --ds_topk_algo pick the kernel bodies (CudaBackendOptions;
// defaults: the GPU-verified ones), so one run per value compares the opt-in bodies end to end.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/layer_ops.h"
#include "engine/sparse/channel_config.h"
#include "engine/sparse/double_sparsity.h"
#include "engine/sparse/label_cache.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/list_flag.h"
#include "kernels/label_layout.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, json_out, "", "write results as JSON to this file");
ABSL_FLAG(std::string, models, "llama2-7b,llama3-8b", "model shapes to run");
ABSL_FLAG(std::string, batches, "1,8,32", "decode batch sizes");
ABSL_FLAG(std::string, contexts, "4096,32768", "decode contexts / prefill lengths");
ABSL_FLAG(int32_t, iters, 10, "timed decode steps per configuration");
ABSL_FLAG(int32_t, decode_waves, 0,
          "flash-decoding split count aim, in waves of the SM count; 0: the engine's rule "
          "(DecodeAttentionSplits, CudaBackendOptions)");
ABSL_FLAG(bool, graphs, true, "also time decode with CUDA graphs");
ABSL_FLAG(std::string, attention, "dense",
          "decode attention modes to time, comma-separated: dense, double_sparse");
ABSL_FLAG(int32_t, ds_ratio, 16, "Double Sparsity: labels and budget are 1/ratio of K and context");
ABSL_FLAG(int32_t, label_bits, 16, "Double Sparsity label bits: 16 | 4");
ABSL_FLAG(bool, ds_mixed_label_bits, false,
          "Double Sparsity: the first half of the batch's sparse sequences take the other "
          "label bits (4 where --label_bits is 16, else 16; channels as --ds_ratio gives "
          "them): a batch of two label shapes, as per-request options make one");
ABSL_FLAG(int32_t, ds_dense_layers, 2, "Double Sparsity: first layers that stay dense");
ABSL_FLAG(int32_t, long_prefill_layers, 4,
          "layers actually run for prefills over 8K tokens (time scaled to the full depth)");
// Kernel bodies (CudaBackendOptions); defaults are the engine's. Run once per value to compare
// (dsinfer-attention-bench times them side by side at the operator level).
ABSL_FLAG(std::string, prefill_algo, "wgmma",
          "prefill attention body: wgmma (default; mma off Hopper) | mma | simt");
ABSL_FLAG(std::string, ds_score_algo, "strided",
          "Double Sparsity label scoring body: strided (default) | coalesced | row");
ABSL_FLAG(std::string, ds_topk_algo, "auto",
          "Double Sparsity top-k kernel: auto (default) | one-block | two-read | striped | "
          "cluster");
ABSL_FLAG(std::string, ds_dependent_chain, "on",
          "Double Sparsity: its chain's kernels launched dependent, no early start "
          "(kernels/cuda/dependent_launch.h; on by default): on | off | off,on (side by side)");
ABSL_FLAG(int64_t, ds_dense_sequences, 0,
          "Double Sparsity: this many of the batch's sequences run dense beside the sparse ones "
          "(a mixed step, as a server's short requests beside long ones)");
ABSL_FLAG(bool, ds_mixed_baseline, false,
          "with --ds_dense_sequences: also time the path before SubsetAttention, for comparison "
          "(the dense sequences' attention on a batch view, Backend's default; mixed steps never "
          "captured)");
ABSL_FLAG(bool, ds_mixed_sequential, false,
          "with --ds_dense_sequences: also time the dense sequences' attention before Double "
          "Sparsity's chain instead of beside it (CudaBackendOptions::dense_beside_sparse off), "
          "eager and with graphs");
ABSL_FLAG(std::string, ds_beside_waves, "",
          "with --ds_dense_sequences: also time the dense sequences beside Double Sparsity with "
          "each of these split aims (CudaBackendOptions::beside_waves: waves of the SM count; "
          "0 their count alone), eager and with graphs");
ABSL_FLAG(bool, ds_split_chain, false,
          "Double Sparsity: also time the steps with CudaBackendOptions::split_sparse_chain "
          "(each sparse layer's chain in two halves on two streams, where its rule splits) "
          "the other way from the table row's, the default (on), eager and with graphs");
ABSL_FLAG(std::string, dependent_launch, "on,off",
          "programmatic dependent launch settings to time decode with, side by side: on | off");
ABSL_FLAG(std::string, linear_algos, "auto,cublas",
          "linear-layer bodies to time decode with, side by side: auto (the engine's default: "
          "the GEMV at one and two rows, AutoPicksGemv) | cublas | gemv (batches of up to 8 "
          "rows)");

namespace dsinfer {
namespace {

struct Shape {
  std::string name;
  ModelConfig config;
};

Shape MakeShape(const std::string& name) { return {name, BenchModelShape(name)}; }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Workspace {
  explicit Workspace(CudaBackend* b) : backend(b) {}
  CudaBackend* backend;
  DeviceTensor residual, normed, qkv, attn, delta, gate_up, mlp, last, logits;
  DeviceTensor* all[9] = {&residual, &normed, &qkv, &attn, &delta, &gate_up, &mlp, &last, &logits};
  int32_t* ids = nullptr;
  absl::Status Init(const ModelConfig& c, int64_t n, int64_t m) {
    ASSIGN_OR_RETURN(residual, backend->AllocateF32(n, c.hidden_size));
    ASSIGN_OR_RETURN(normed, backend->Allocate(n, c.hidden_size));
    ASSIGN_OR_RETURN(qkv, backend->Allocate(n, c.q_size() + 2 * c.kv_size()));
    ASSIGN_OR_RETURN(attn, backend->Allocate(n, c.q_size()));
    ASSIGN_OR_RETURN(delta, backend->Allocate(n, c.hidden_size));
    ASSIGN_OR_RETURN(gate_up, backend->Allocate(n, 2 * c.intermediate_size));
    ASSIGN_OR_RETURN(mlp, backend->Allocate(n, c.intermediate_size));
    ASSIGN_OR_RETURN(last, backend->Allocate(m, c.hidden_size));
    ASSIGN_OR_RETURN(logits, backend->AllocateF32(m, c.vocab_size));
    CUDA_RETURN_IF_ERROR(cudaMalloc(&ids, m * sizeof(int32_t)));
    return absl::OkStatus();
  }
  ~Workspace() {
    for (DeviceTensor* t : all) backend->Free(*t);
    cudaFree(ids);
  }
};

// A sparse layer as it ran before SubsetAttention (`--ds_mixed_baseline`, timed eagerly
// only): Backend's default batch view for the dense sequences, then Double Sparsity.
absl::Status BatchViewMixedAttention(CudaBackend& b, RandomWeightModel& m, int layer,
                                     const ForwardBatch& batch, KvBlockPool& pool,
                                     DoubleSparsity& ds, const DeviceTensor& qkv,
                                     DeviceTensor& attn) {
  const std::vector<size_t> dense = ds.DenseSequences(layer);
  if (!dense.empty()) {
    RETURN_IF_ERROR(b.Backend::SubsetAttention(layer, m.attention, batch, dense, pool, qkv, attn));
  }
  return b.SparseAttention(layer, batch, ds.SparseSequences(layer), pool, ds, qkv, attn);
}

// Model::Forward's sequence of operations over `layers` layers, then the LM head and a GPU
// argmax over batch.logit_rows (no logits to the host).
// With `ds`, sequences run as Model::Forward runs them under Double Sparsity (labels stored,
// sparse sequences through SparseAttention), captured as graphs by the same rule.
absl::Status Forward(RandomWeightModel& m, Workspace& ws, const ForwardBatch& batch,
                     KvBlockPool& pool, int layers, DoubleSparsity* ds = nullptr,
                     bool baseline = false) {
  CudaBackend& b = *m.backend;
  auto rows = [&](DeviceTensor t) {
    t.rows = batch.rows();
    return t;
  };
  DeviceTensor residual = rows(ws.residual), normed = rows(ws.normed), qkv = rows(ws.qkv),
               attn = rows(ws.attn), delta = rows(ws.delta), gate_up = rows(ws.gate_up),
               mlp = rows(ws.mlp);
  const float eps = m.config.rms_norm_eps;
  if (ds != nullptr) {
    // Every timed step repeats one position: its labels are written again, as a real decode
    // step writes its new token's.
    b.ForgetDeviceLabelsOf(batch);
    RETURN_IF_ERROR(ds->BeginStep(batch, pool));
  }
  RETURN_IF_ERROR(b.BeginStep(batch, pool, layers == m.config.num_layers, ds));
  RETURN_IF_ERROR(b.Embedding(m.embed, batch.token_ids, residual));
  for (int i = 0; i < layers; ++i) {
    const RandomWeightModel::Layer& l = m.layers[i];
    RETURN_IF_ERROR(b.NormLinear(residual, l.input_norm, eps, l.qkv_proj, normed, qkv));
    RETURN_IF_ERROR(b.RopeAndStoreKv(i, m.attention, batch, pool, qkv));
    if (ds != nullptr && ds->StoresLabels()) RETURN_IF_ERROR(b.StoreLabels(i, batch, *ds, qkv));
    if (ds == nullptr) {
      RETURN_IF_ERROR(b.Attention(i, m.attention, batch, pool, qkv, attn));
    } else if (baseline && ds->AnySparse(i)) {
      RETURN_IF_ERROR(BatchViewMixedAttention(b, m, i, batch, pool, *ds, qkv, attn));
    } else {
      RETURN_IF_ERROR(LayerAttention(b, i, m.attention, batch, pool, *ds, qkv, attn));
    }
    RETURN_IF_ERROR(FinishLayer(b, l, eps, attn, delta, residual, normed, gate_up, mlp));
  }
  RETURN_IF_ERROR(b.RmsNorm(residual, m.final_norm, eps, normed));
  RETURN_IF_ERROR(b.EndStep());
  DeviceTensor last = ws.last, logits = ws.logits;
  last.rows = logits.rows = static_cast<int64_t>(batch.logit_rows.size());
  RETURN_IF_ERROR(b.GatherRows(normed, batch.logit_rows, last));
  RETURN_IF_ERROR(b.Linear(last, m.lm_head, logits));
  return LaunchArgmax(logits.dtype, logits.data, logits.rows, logits.cols, logits.cols, ws.ids,
                      b.stream());
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> MakePool(CudaBackend& b, const ModelConfig& c,
                                                      int64_t tokens) {
  KvPoolOptions o;
  o.layers = c.num_layers;
  o.kv_heads = c.num_heads_kv;
  o.head_dim = c.head_dim;
  o.block_tokens = 16;
  o.num_blocks = (tokens + 15) / 16 + 1;
  o.dtype = DType::kBF16;
  ASSIGN_OR_RETURN(auto pool, KvBlockPool::Create(o, b.kv_memory()));
  const int64_t elems = o.num_blocks * o.block_tokens * o.kv_heads * o.head_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, pool->KBase(l), elems, 100 + l, 1.0f,
                                     b.stream()));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, pool->VBase(l), elems, 200 + l, 1.0f,
                                     b.stream()));
  }
  return pool;
}

// The Double Sparsity options of --ds_ratio / --ds_dense_layers with `label_bits` (by default
// --label_bits').
absl::StatusOr<AttentionOptions> DsOptions(const ModelConfig& c, int label_bits = 0) {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  const int ratio = absl::GetFlag(FLAGS_ds_ratio);
  o.label_bits = label_bits > 0 ? label_bits : absl::GetFlag(FLAGS_label_bits);
  if (ratio < 1) return absl::InvalidArgumentError("--ds_ratio must be >= 1");
  o.channels = (o.label_bits == 4 ? 4 : 1) * c.head_dim / ratio;
  o.token_budget_ratio = 1.0 / ratio;
  o.token_budget = 0;
  o.sink = 4;
  o.recent = 64;
  o.dense_layers = absl::GetFlag(FLAGS_ds_dense_layers);
  RETURN_IF_ERROR(o.Validate(c.head_dim));
  return o;
}

int64_t FreeBytes() {
  size_t f = 0, t = 0;
  cudaMemGetInfo(&f, &t);
  return static_cast<int64_t>(f);
}

// Bytes of one (token, KV head) label row under `o` (LabelFormat::RowBytes).
int64_t LabelRowBytes(const AttentionOptions& o) {
  return LabelFormat{o.channels, o.label_bits}.RowBytes();
}

// --ds_mixed_label_bits' other label bits.
int OtherLabelBits() { return absl::GetFlag(FLAGS_label_bits) == 16 ? 4 : 16; }

// One decode configuration in one attention mode: ms per step (eager; and replayed as a
// CUDA graph), one layer's attention alone, and the floor: weights plus the bytes
// attention must read — the context's K/V per dense layer; labels plus the selected K/V rows
// per sparse layer. Fills r and prints one table row.
absl::Status TimeDecode(CudaBackend& b, RandomWeightModel& m, Workspace& ws, ForwardBatch& fb,
                        KvBlockPool& pool, const std::string& mode, int64_t ctx, int64_t batch,
                        double hbm_bps, DeviceTimer& timer, int iters, nlohmann::json& r) {
  const ModelConfig& c = m.config;
  std::unique_ptr<DoubleSparsity> ds;
  AttentionOptions opts, other_opts;
  int sparse_layers = 0;
  double sparse_token_bytes = 0;  // per sparse layer and context token: labels + selected K/V
  // --ds_dense_sequences: the batch's last sequences run dense beside the sparse ones;
  // --ds_mixed_label_bits: the first half of the sparse ones take the other label bits.
  int64_t dense_seqs = 0, other_seqs = 0;
  if (mode == "double_sparse") {
    ASSIGN_OR_RETURN(opts, DsOptions(c));
    ASSIGN_OR_RETURN(other_opts, DsOptions(c, OtherLabelBits()));
    ds = std::make_unique<DoubleSparsity>(c.num_layers, c.num_heads_q, c.num_heads_kv,
                                          c.head_dim);
    RETURN_IF_ERROR(ds->SetChannelConfig(RandomChannelConfig(c, 1234)));
    sparse_layers = std::max(0, c.num_layers - opts.dense_layers);
    dense_seqs = std::clamp<int64_t>(absl::GetFlag(FLAGS_ds_dense_sequences), 0, batch);
    if (absl::GetFlag(FLAGS_ds_mixed_label_bits)) other_seqs = (batch - dense_seqs) / 2;
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
    for (int i = 0; i < iters; ++i) {
      // `ncu --profile-from-start off` sees the last eager step only (gpu-check.sh ncu-decode).
      const bool profiled = !graphs && i == iters - 1;
      if (profiled) CUDA_RETURN_IF_ERROR(cudaProfilerStart());
      RETURN_IF_ERROR(timer.Start());
      const auto issue_start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(Forward(m, ws, fb, pool, c.num_layers, ds.get(), baseline));
      host_ms.push_back(std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - issue_start)
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
  if (absl::GetFlag(FLAGS_graphs)) {
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
    if (replayed < iters) {
      std::printf("%-14s   graphs: only %lld of the %d timed steps replayed\n", "",
                  static_cast<long long>(replayed), iters);
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
    if (eager.ok() && absl::GetFlag(FLAGS_graphs)) graph = time_steps(true);
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
  if (dense_seqs > 0 && absl::GetFlag(FLAGS_ds_mixed_sequential)) {
    ASSIGN_OR_RETURN(const EagerAndGraph seq, time_mixed(false, -1));
    r["sequential_eager_ms_per_step"] = seq.eager.ms;
    r["sequential_graph_ms_per_step"] = seq.graph.ms;
    std::printf("%-14s   dense sequences before Double Sparsity, not beside: %.3f ms eager, "
                "%.3f with graphs\n", "", seq.eager.ms, seq.graph.ms);
  }
  if (dense_seqs > 0 && !absl::GetFlag(FLAGS_ds_beside_waves).empty()) {
    nlohmann::json by_waves;
    for (absl::string_view w : absl::StrSplit(absl::GetFlag(FLAGS_ds_beside_waves), ',')) {
      int waves = 0;
      if (!absl::SimpleAtoi(w, &waves) || waves < 0) {
        return absl::InvalidArgumentError("--ds_beside_waves: counts must be >= 0");
      }
      ASSIGN_OR_RETURN(const EagerAndGraph t, time_mixed(true, waves));
      by_waves[std::string(w)] = {{"eager_ms_per_step", t.eager.ms},
                                  {"graph_ms_per_step", t.graph.ms}};
      std::printf("%-14s   dense sequences beside, split aim %d waves: %.3f ms eager, %.3f with "
                  "graphs\n", "", waves, t.eager.ms, t.graph.ms);
    }
    r["beside_by_waves"] = by_waves;
  }
  if (ds != nullptr && absl::GetFlag(FLAGS_ds_split_chain)) {
    const bool split = b.split_sparse_chain();
    ASSIGN_OR_RETURN(const EagerAndGraph t,
                     time_under([&] { b.set_split_sparse_chain(!split); },
                                [&] { b.set_split_sparse_chain(split); }));
    const std::string key = split ? "whole_chain" : "split_chain";
    r[key + "_eager_ms_per_step"] = t.eager.ms;
    r[key + "_graph_ms_per_step"] = t.graph.ms;
    std::printf("%-14s   split sparse chain %s: %.3f ms eager, %.3f with graphs\n", "",
                split ? "off" : "on", t.eager.ms, t.graph.ms);
  }
  if (dense_seqs > 0 && absl::GetFlag(FLAGS_ds_mixed_baseline)) {
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
          .count() / 20;
  RETURN_IF_ERROR(b.Synchronize());
  r["attention_layer_host_issue_ms"] = issue_ms;
  const double kv_token_bytes = 2.0 * c.kv_size() * 2;  // per layer
  const double ctx_tokens = double(batch) * (ctx + 1);
  // The sparse sequences' tokens; the dense ones read all their K/V at every layer.
  const double sparse_tokens = double(batch - dense_seqs) * (ctx + 1);
  const double dense_tokens = ctx_tokens - sparse_tokens;
  const double attn_bytes =
      ds != nullptr && ds->AnySparse(layer)
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
      r.value("ds_other_label_bits_sequences", 0) > 0 ? absl::StrCat("+", OtherLabelBits(), "bit")
                                                      : "");
  std::printf("%-14s %-6lld %-7lld %12.3f %12.3f %12.1f %10.3f %10.2f %10.3f %12.2f %12.2f\n",
              label.c_str(), static_cast<long long>(batch), static_cast<long long>(ctx), eager_ms,
              graph_ms, batch / (step_ms * 1e-3), floor_ms, step_ms / floor_ms, attn_ms,
              attn_bytes / (attn_ms * 1e-3) / 1e12, warp_tbps);
  std::printf("%-14s   host issue: step %.3f ms eager, %.3f with graphs; attention op %.3f ms "
              "per layer; the capturing step %.3f ms (synchronized)\n",
              "", eager.host_ms, r.value("graph_host_ms_per_step", 0.0), issue_ms,
              r.value("graph_capture_step_ms", 0.0));
  return absl::OkStatus();
}

// Every weight matrix kind and the LM head, alone, through cuBLAS and the GEMV kernel at 1, 2,
// 4 and 8 rows: one launch per layer over all layers' matrices in turn (so no matrix is still
// in L2 from the launch before), median of 7 passes; GB/s of weights read (the floor is the
// weights ÷ the D2D rate; a read-only stream may beat that read + write rate), and the
// weights' time of one decode step (every layer + the LM head) per body.
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
  std::printf("\nlinear layers alone, all layers in turn (floor: D2D %.0f GB/s); ms, GB/s\n"
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
      nlohmann::json row = {{"weight", name}, {"rows", rows},       {"in", ws[0]->cols},
                            {"out", ws[0]->rows}, {"launches", ws.size()}};
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

absl::Status Run() {
  // The list flags first, so that a mistyped item fails before any GPU work.
  ASSIGN_OR_RETURN(const std::vector<int64_t> batches,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_batches), "batches"));
  ASSIGN_OR_RETURN(const std::vector<int64_t> contexts,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_contexts), "contexts"));
  CudaBackendOptions options;
  RETURN_IF_ERROR(ParseAlgo(absl::GetFlag(FLAGS_prefill_algo), &options.prefill_algo));
  RETURN_IF_ERROR(ParseAlgo(absl::GetFlag(FLAGS_ds_score_algo), &options.ds_score_algo));
  RETURN_IF_ERROR(ParseAlgo(absl::GetFlag(FLAGS_ds_topk_algo), &options.ds_topk_algo));
  options.decode_waves = absl::GetFlag(FLAGS_decode_waves);
  if (options.decode_waves < 0) return absl::InvalidArgumentError("--decode_waves must be >= 0");
  ASSIGN_OR_RETURN(auto backend, CudaBackend::Create(options));
  CudaBackend& b = *backend;
  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
  nlohmann::json out;
  out["gpu"] = prop.name;
  out["prefill_algo"] = AlgoName(options.prefill_algo);
  out["ds_score_algo"] = AlgoName(options.ds_score_algo);
  out["ds_topk_algo"] = AlgoName(options.ds_topk_algo);
  out["decode_waves"] = options.decode_waves;
  std::printf("kernel bodies: prefill %s, DS scoring %s, DS top-k %s\n",
              AlgoName(options.prefill_algo), AlgoName(options.ds_score_algo),
              AlgoName(options.ds_topk_algo));
  DeviceTimer timer(b.stream());

  // Ceiling 1: HBM bandwidth, a 2 GiB device-to-device copy (bytes read + bytes written).
  double hbm_bps = 0;
  {
    const size_t bytes = 2ull << 30;
    void *src = nullptr, *dst = nullptr;
    CUDA_RETURN_IF_ERROR(cudaMalloc(&src, bytes));
    CUDA_RETURN_IF_ERROR(cudaMalloc(&dst, bytes));
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(src, 1, bytes, b.stream()));
    std::vector<double> ms;
    for (int i = 0; i < 12; ++i) {
      RETURN_IF_ERROR(timer.Start());
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, b.stream()));
      ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
      ms.push_back(timed_ms);
    }
    ms.erase(ms.begin(), ms.begin() + 2);
    hbm_bps = 2.0 * bytes / (Median(ms) * 1e-3);
    cudaFree(src);
    cudaFree(dst);
  }
  // Ceiling 2: cuBLAS bf16 matmul rate, 8192^3 on random data.
  double mm_flops = 0;
  {
    const int64_t n = 8192;
    ASSIGN_OR_RETURN(DeviceTensor x, b.Allocate(n, n));
    ASSIGN_OR_RETURN(DeviceTensor w, b.Allocate(n, n));
    ASSIGN_OR_RETURN(DeviceTensor y, b.Allocate(n, n));
    RETURN_IF_ERROR(b.FillRandom(x, 7, 1.0f));
    RETURN_IF_ERROR(b.FillRandom(w, 8, 1.0f));
    std::vector<double> ms;
    for (int i = 0; i < 12; ++i) {
      RETURN_IF_ERROR(timer.Start());
      RETURN_IF_ERROR(b.Linear(x, w, y));
      ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
      ms.push_back(timed_ms);
    }
    ms.erase(ms.begin(), ms.begin() + 2);
    mm_flops = 2.0 * n * n * n / (Median(ms) * 1e-3);
    b.Free(x);
    b.Free(w);
    b.Free(y);
  }
  out["hbm_d2d_GBps"] = hbm_bps / 1e9;
  out["cublas_bf16_TFLOPs"] = mm_flops / 1e12;
  std::printf("GPU %s: D2D copy %.0f GB/s, cuBLAS bf16 %.0f TFLOP/s\n", prop.name, hbm_bps / 1e9,
              mm_flops / 1e12);

  const int iters = absl::GetFlag(FLAGS_iters);
  std::vector<std::string> modes = absl::StrSplit(absl::GetFlag(FLAGS_attention), ',');
  ASSIGN_OR_RETURN(const std::vector<LinearAlgo> linear_algos,
                   ParseAlgoList<LinearAlgo>(absl::GetFlag(FLAGS_linear_algos)));
  b.set_linear_algo(linear_algos.front());
  auto on_off_list = [](const char* flag,
                        const std::string& text) -> absl::StatusOr<std::vector<bool>> {
    std::vector<bool> out;
    for (absl::string_view s : absl::StrSplit(text, ',')) {
      if (s != "on" && s != "off") {
        return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", s, "' is not on|off"));
      }
      out.push_back(s == "on");
    }
    return out;
  };
  ASSIGN_OR_RETURN(const std::vector<bool> dependent_launch,
                   on_off_list("dependent_launch", absl::GetFlag(FLAGS_dependent_launch)));
  ASSIGN_OR_RETURN(const std::vector<bool> ds_chain,
                   on_off_list("ds_dependent_chain", absl::GetFlag(FLAGS_ds_dependent_chain)));
  const bool any_ds = std::find(modes.begin(), modes.end(), "double_sparse") != modes.end();

  for (absl::string_view model_name : absl::StrSplit(absl::GetFlag(FLAGS_models), ',')) {
    Shape shape = MakeShape(std::string(model_name));
    const ModelConfig& c = shape.config;
    RandomWeightModel m(&b, c);
    RETURN_IF_ERROR(m.Init());
    const int64_t kv_token_bytes = 2ll * c.num_layers * c.kv_size() * 2;
    int64_t label_token_bytes = 0;
    if (any_ds) {
      ASSIGN_OR_RETURN(const AttentionOptions ds_opts, DsOptions(c));
      ASSIGN_OR_RETURN(const AttentionOptions other_opts, DsOptions(c, OtherLabelBits()));
      const int64_t row_bytes = absl::GetFlag(FLAGS_ds_mixed_label_bits)
                                    ? std::max(LabelRowBytes(ds_opts), LabelRowBytes(other_opts))
                                    : LabelRowBytes(ds_opts);
      label_token_bytes = int64_t{c.num_layers} * c.num_heads_kv * row_bytes;
    }
    nlohmann::json jm;
    jm["weight_bytes"] = m.weight_bytes;
    RETURN_IF_ERROR(TimeLinearBodies(b, m, hbm_bps, timer, jm["linear"]));
    std::printf(
        "\n%s (weights %.2f GB)\n%-14s %-6s %-7s %12s %12s %12s %10s %10s %10s %12s %12s\n",
        shape.name.c_str(), m.weight_bytes / 1e9, "attention", "batch", "ctx", "eager ms",
        "graph ms", "tok/s", "floor ms", "x floor", "attn ms", "attn TB/s", "(warp TB/s)");
    for (int64_t ctx : contexts) {
      for (int64_t batch : batches) {
        nlohmann::json r;
        r["batch"] = batch;
        r["context"] = ctx;
        // Double Sparsity adds labels: a row per (token, layer, KV head), a label page more a
        // sequence.
        const int64_t token_bytes = kv_token_bytes + label_token_bytes;
        const int64_t kv_bytes =
            batch * (ctx + 16 + (any_ds ? kLabelPageTokens : 0)) * token_bytes;
        const int64_t act = batch * (c.vocab_size * 6 + 200000ll) + (512ll << 20);
        if (kv_bytes + act > FreeBytes()) {
          r["skipped"] = absl::StrCat("weights + KV (", kv_bytes >> 30, " GiB) exceed free memory");
          std::printf("%-8lld %-7lld skipped: KV %.1f GiB does not fit beside the weights\n",
                      static_cast<long long>(batch), static_cast<long long>(ctx),
                      kv_bytes / double(1ll << 30));
          jm["decode"].push_back(r);
          continue;
        }
        ASSIGN_OR_RETURN(auto pool, MakePool(b, c, batch * (ctx + 1) + 16 * batch));
        Workspace ws(&b);
        RETURN_IF_ERROR(ws.Init(c, batch, batch));
        ForwardBatch fb;
        for (int64_t i = 0; i < batch; ++i) {
          const auto seq = pool->AddSequence();
          RETURN_IF_ERROR(pool->Reserve(seq, ctx + 1));
          const int32_t tok = static_cast<int32_t>((i * 7919) % c.vocab_size);
          fb.Add(seq, &tok, 1, ctx, false);
        }
        for (const std::string& mode : modes) {
          for (LinearAlgo linear : linear_algos) {
            if (linear == LinearAlgo::kGemv && batch > kGemvMaxRows) continue;
            for (bool dependent : dependent_launch) {
              for (size_t ci = 0; ci < (mode == "double_sparse" ? ds_chain.size() : 1); ++ci) {
                b.set_linear_algo(linear);
                b.set_dependent_launch(dependent);
                b.set_dependent_sparse_chain(mode == "double_sparse" && ds_chain[ci]);
                nlohmann::json rm = r;
                rm["attention"] = mode;
                rm["linear_algo"] = AlgoName(linear);
                rm["dependent_launch"] = dependent;
                rm["ds_dependent_chain"] = mode == "double_sparse" && ds_chain[ci];
                RETURN_IF_ERROR(TimeDecode(b, m, ws, fb, *pool, mode, ctx, batch, hbm_bps,
                                           timer, iters, rm));
                jm["decode"].push_back(rm);
              }
            }
          }
        }
        b.set_linear_algo(linear_algos.front());
        b.set_dependent_launch(dependent_launch.front());
        RETURN_IF_ERROR(b.ReleaseDeviceLabels());  // the next pool numbers its sequences again
      }
    }
    // Prefill, batch 1.
    std::printf("%-8s %-7s %12s %12s %10s %14s\n", "prefill", "tokens", "ms", "tok/s", "floor ms",
                "matmul frac");
    for (int64_t len : contexts) {
      nlohmann::json r;
      r["tokens"] = len;
      const int layers = len > 8192 ? std::min(absl::GetFlag(FLAGS_long_prefill_layers),
                                               c.num_layers)
                                    : c.num_layers;
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
          double(c.num_layers) * (double(c.q_size() + 2 * c.kv_size()) * c.hidden_size +
                                  double(c.q_size()) * c.hidden_size +
                                  3.0 * c.intermediate_size * c.hidden_size);
      const double attn_flops =
          double(c.num_layers) * 4.0 * c.num_heads_q * c.head_dim * (double(len) * (len + 1) / 2);
      const double flops = 2.0 * linear_params * len + attn_flops +
                           2.0 * double(c.vocab_size) * c.hidden_size;
      const double floor_ms = flops / mm_flops * 1e3;
      r["layers_run"] = layers;
      r["extrapolated"] = layers != c.num_layers;
      r["ms"] = total_ms;
      r["tokens_per_s"] = len / (total_ms * 1e-3);
      r["flops"] = flops;
      r["floor_ms"] = floor_ms;
      r["fraction_of_matmul_rate"] = floor_ms / total_ms;
      std::printf("%-8s %-7lld %12.1f %12.0f %10.1f %14.2f%s\n", "", static_cast<long long>(len),
                  total_ms, len / (total_ms * 1e-3), floor_ms, floor_ms / total_ms,
                  layers != c.num_layers
                      ? absl::StrCat("  (", layers, " of ", c.num_layers, " layers run, scaled)")
                            .c_str()
                      : "");
      jm["prefill"].push_back(r);
    }
    out["models"][shape.name] = jm;
  }
  const std::string path = absl::GetFlag(FLAGS_json_out);
  if (!path.empty()) std::ofstream(path) << out.dump(2) << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsinfer

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(argc, argv, "dsinfer-bench [--json_out FILE]");
  const absl::Status s = dsinfer::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "dsinfer-bench: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
