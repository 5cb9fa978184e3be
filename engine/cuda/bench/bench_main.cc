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
//
// The sections live in files of their own: bench_floors.cc (the two measured rates the floors
// divide by), bench_linear.cc (the linear layers alone), bench_decode.cc (a decode row, Double
// Sparsity's variants included), bench_prefill.cc (prefill), with the step they time in
// bench_forward.cc and the Double Sparsity options in bench_ds_options.cc. This file holds the
// flags, the only place they are read, and the loop over the model shapes and decode
// configurations that hands each section its values and writes the JSON.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/attention_options.h"
#include "engine/cuda/bench/bench_decode.h"
#include "engine/cuda/bench/bench_ds_options.h"
#include "engine/cuda/bench/bench_floors.h"
#include "engine/cuda/bench/bench_forward.h"
#include "engine/cuda/bench/bench_linear.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/bench_prefill.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/forward_batch.h"
#include "engine/model_config.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/list_flag.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda_check.h"
#include "kernels/label_layout.h"
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

int64_t FreeBytes() {
  size_t f = 0, t = 0;
  cudaMemGetInfo(&f, &t);
  return static_cast<int64_t>(f);
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
  ASSIGN_OR_RETURN(const double hbm_bps, MeasureHbmBandwidth(b, timer));
  // Ceiling 2: cuBLAS bf16 matmul rate, 8192^3 on random data.
  ASSIGN_OR_RETURN(const double mm_flops, MeasureMatmulRate(b, timer));
  out["hbm_d2d_GBps"] = hbm_bps / 1e9;
  out["cublas_bf16_TFLOPs"] = mm_flops / 1e12;
  std::printf("GPU %s: D2D copy %.0f GB/s, cuBLAS bf16 %.0f TFLOP/s\n", prop.name, hbm_bps / 1e9,
              mm_flops / 1e12);

  DecodeOptions decode_options;
  decode_options.iters = absl::GetFlag(FLAGS_iters);
  decode_options.graphs = absl::GetFlag(FLAGS_graphs);
  DsBenchOptions& ds = decode_options.ds;
  ds.ratio = absl::GetFlag(FLAGS_ds_ratio);
  ds.label_bits = absl::GetFlag(FLAGS_label_bits);
  ds.dense_layers = absl::GetFlag(FLAGS_ds_dense_layers);
  ds.mixed_label_bits = absl::GetFlag(FLAGS_ds_mixed_label_bits);
  ds.dense_sequences = absl::GetFlag(FLAGS_ds_dense_sequences);
  ds.mixed_baseline = absl::GetFlag(FLAGS_ds_mixed_baseline);
  ds.mixed_sequential = absl::GetFlag(FLAGS_ds_mixed_sequential);
  ds.beside_waves = absl::GetFlag(FLAGS_ds_beside_waves);
  ds.split_chain = absl::GetFlag(FLAGS_ds_split_chain);
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
      ASSIGN_OR_RETURN(const AttentionOptions ds_opts, DsOptions(c, ds));
      ASSIGN_OR_RETURN(const AttentionOptions other_opts, DsOptions(c, ds, OtherLabelBits(ds)));
      const int64_t row_bytes = ds.mixed_label_bits
                                    ? std::max(LabelRowBytes(ds_opts), LabelRowBytes(other_opts))
                                    : LabelRowBytes(ds_opts);
      label_token_bytes = int64_t{c.num_layers} * c.num_heads_kv * row_bytes;
    }
    nlohmann::json jm;
    jm["weight_bytes"] = m.weight_bytes;
    RETURN_IF_ERROR(TimeLinearBodies(b, m, hbm_bps, timer, jm["linear"]));
    std::printf("\n%s (weights %.2f GB)\n%-14s %-6s %-7s %12s %12s %12s %10s %10s %10s %12s %12s\n",
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
        const int64_t kv_bytes = batch * (ctx + 16 + (any_ds ? kLabelPageTokens : 0)) * token_bytes;
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
                RETURN_IF_ERROR(TimeDecode(b, m, ws, fb, *pool, mode, ctx, batch, hbm_bps, timer,
                                           decode_options, rm));
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
    RETURN_IF_ERROR(
        TimePrefill(b, m, contexts, absl::GetFlag(FLAGS_long_prefill_layers), mm_flops, timer, jm));
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
