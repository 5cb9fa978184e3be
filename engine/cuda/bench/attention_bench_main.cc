// dsinfer-attention-bench: the decode attention operator alone, one layer, dense flash-decoding
// (LaunchDecodeAttention) against the Double Sparsity chain (LaunchLabelScores →
// LaunchTopKSelect → LaunchSparseAttention), at Llama-2-7B heads (32 × 128, MHA) and
// Llama-3-8B heads (32 q / 8 kv), contexts 4K … 256K, batch 1 / 8 / 32, fp16 K/V and labels.
// Double Sparsity variants (--ds_variants picks some): 1/8 (fp16 labels r = 16, k = L/8; 4-bit
// r = 64), 1/16 (fp16 r = 8, k = L/16; 4-bit r = 8, 8 bytes a row with its scale and minimum
// against fp16 r 8's 16, the same channels; 4-bit r = 16, 12 bytes a row; 4-bit r = 32).
// Inputs are random (generated on the GPU); the selection does not depend on the values for
// timing purposes beyond the radix passes, which random scores exercise fully (no early exit
// after the first digit).
//
// Beside each time: the bytes the operator must move — dense: the K/V of the context; Double
// Sparsity: the label cache plus the selected K/V rows — and the floor those bytes take at the
// D2D bandwidth measured in the same process (bytes read + written ÷ time of a 2 GiB copy).
// "moved" also counts the scores the chain writes and re-reads (one write; one read above 8K
// tokens, up to four below), which the floor does not. Configurations whose K/V exceed
// --max_gib are skipped and listed.
// Per-stage times (score, top-k, attention) are reported for Double Sparsity, once per body of
// --ds_score_algos / --ds_topk_algos / --ds_attention_algos (attention at the body's own split
// count and at 8 waves); the chain uses the first of each list. The chain is also timed as a
// CUDA graph, whole and — where CudaBackendOptions::split_sparse_chain would split it
// (SplitChainHalf) — in two halves on two streams (LaunchChainInHalves), whose selection must
// equal the whole chain's. Steps run back to back keep their inputs in L2 where they fit; the
// dense attention and the chain are also timed with the L2 emptied before every step ("cold
// L2", ColdTimeUs), as a decode step meets them. JSON: --json_out.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/cuda/score_and_select.h"
#include "engine/cuda/split_chain.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/list_flag.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/dependent_launch.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/label_layout.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"


ABSL_FLAG(std::string, json_out, "", "write results as JSON to this file");
ABSL_FLAG(std::string, models, "llama2-7b,llama3-8b", "head shapes to run");
ABSL_FLAG(std::string, batches, "1,8,32", "decode batch sizes");
ABSL_FLAG(std::string, contexts, "4096,16384,65536,131072,262144", "contexts (tokens)");
ABSL_FLAG(int32_t, iters, 10, "timed steps per configuration");
ABSL_FLAG(double, max_gib, 56.0, "skip configurations whose K/V exceed this many GiB");
ABSL_FLAG(bool, prefill, true,
          "also time causal prefill attention (the bodies of --prefill_algos, bf16) against the "
          "measured cuBLAS bf16 GEMM rate; --contexts= alone skips the decode part");
ABSL_FLAG(std::string, prefill_lengths, "4096,32768", "prefill prompt lengths (tokens)");
// Every body listed is timed side by side (defaults: all, the engine's default first).
ABSL_FLAG(std::string, prefill_algos, "wgmma,mma,simt",
          "prefill attention bodies to time: wgmma (Hopper warpgroup MMA, the engine's default; "
          "elsewhere it runs mma), mma (tensor cores, mma.sync), simt");
ABSL_FLAG(std::string, dense_algos, "pipelined,tiled",
          "dense flash-decoding block bodies to time: pipelined (the engine's default), tiled, "
          "warp; the first is the dense time the Double Sparsity rows compare against");
ABSL_FLAG(std::string, dense_waves, "4,8,2,1",
          "split counts to time the first dense body at, in waves of the SM count "
          "(DecodeAttentionSplits; the engine's rule picks one or two rounds: 2 or 4 waves)");
ABSL_FLAG(std::string, ds_score_algos, "strided,coalesced,row",
          "Double Sparsity label scoring bodies to time: coalesced (the engine's default), row; "
          "the chain time uses the first");
ABSL_FLAG(std::string, ds_topk_algos, "auto,striped,cluster,multi-block,two-read,one-block",
          "Double Sparsity top-k kernels to time: auto (the engine's default), striped, cluster "
          "(> 8192 tokens only), multi-block, two-read, one-block; the chain time uses the "
          "first");
ABSL_FLAG(std::string, ds_aggregation, "sum",
          "GQA aggregation of the Double Sparsity rows: sum (the engine's default; one summed "
          "query per KV head) or max (a dot per query head)");
ABSL_FLAG(std::string, ds_variants, "",
          "Double Sparsity variants to time, by name as printed, comma-separated (e.g. "
          "\"1/16 fp16 r8,1/16 4bit r8\"; the leading \"ds \" optional); empty: all six");
ABSL_FLAG(double, ds_score_stride_factor, 1.0,
          "Double Sparsity score rows this many times the context long (1 to 2), as a graph "
          "step's block bucket (a power of two of KV blocks) makes them: the top-k's rule and "
          "its kernels see the longer stride and, as a graph step's, the context rounded up "
          "to a sixteenth of it as the row bound (TopKRowBound)");
ABSL_FLAG(bool, ds_dependent_chain, true,
          "Double Sparsity's kernels launched dependent, no early start "
          "(kernels/cuda/dependent_launch.h, DependentSparseChain; on by default)");
ABSL_FLAG(int32_t, ds_other_waves, 8,
          "waves of blocks the Double Sparsity attention's second split count aims at, timed "
          "beside the body's own (SparseAttentionSplits' default)");
ABSL_FLAG(std::string, ds_attention_algos, "pipelined,warp",
          "Double Sparsity attention bodies to time, each at its own split count and at "
          "--ds_other_waves: pipelined (the engine's default), warp; the chain time uses the "
          "first");

namespace dsinfer {
namespace {

constexpr int kBlockTokens = 256;
constexpr int kHeadDim = 128;

struct Variant {
  const char* name;
  int denominator;  // k = L / denominator
  int r;
  int bits;
};
const Variant kVariants[] = {
    {"ds 1/8 fp16 r16", 8, 16, 16},
    {"ds 1/8 4bit r64", 8, 64, 4},
    {"ds 1/16 fp16 r8", 16, 8, 16},
    {"ds 1/16 4bit r8", 16, 8, 4},
    {"ds 1/16 4bit r16", 16, 16, 4},
    {"ds 1/16 4bit r32", 16, 32, 4},
};

// The variants --ds_variants names (all where it is empty); an unknown name is an error.
absl::StatusOr<std::vector<Variant>> ChosenVariants(const std::string& names) {
  std::vector<Variant> out;
  for (absl::string_view n : absl::StrSplit(names, ',', absl::SkipEmpty())) {
    n = absl::StripAsciiWhitespace(n);
    const std::string full = absl::StartsWith(n, "ds ") ? std::string(n) : absl::StrCat("ds ", n);
    const auto it = std::find_if(std::begin(kVariants), std::end(kVariants),
                                 [&](const Variant& v) { return full == v.name; });
    if (it == std::end(kVariants)) {
      return absl::InvalidArgumentError(absl::StrCat("--ds_variants: no variant \"", n, "\""));
    }
    out.push_back(*it);
  }
  if (out.empty()) out.assign(std::begin(kVariants), std::end(kVariants));
  return out;
}

// The launches of fn captured once into a CUDA graph (as the engine's graph steps issue them),
// then timed over iters replays.
template <typename Fn>
absl::StatusOr<double> GraphTimeUs(cudaStream_t stream, int iters, Fn fn) {
  CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status issued = fn();
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  RETURN_IF_ERROR(issued);
  CUDA_RETURN_IF_ERROR(ended);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_RETURN_IF_ERROR(made);
  const absl::StatusOr<double> us = TimeUs(stream, iters, [&]() -> absl::Status {
    CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, stream));
    return absl::OkStatus();
  });
  cudaGraphExecDestroy(exec);
  return us;
}

// Empties the L2 cache of what a timed step left there: a GEMV streaming a bf16 weight matrix
// several times the L2's size (read only, so the lines it leaves are clean and nothing is
// written back while the next step runs).
struct L2Flusher {
  static constexpr int64_t kIn = 8192;
  DevMem w, x, y;
  int64_t out = 0;
  absl::Status Init(const cudaDeviceProp& prop, cudaStream_t stream) {
    const int64_t bytes = std::max<int64_t>(int64_t{256} << 20, int64_t{4} * prop.l2CacheSize);
    out = bytes / (2 * kIn);
    RETURN_IF_ERROR(w.Alloc(out * kIn * 2));
    RETURN_IF_ERROR(x.Alloc(kIn * 2));
    RETURN_IF_ERROR(y.Alloc(out * 2));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, w.ptr, out * kIn, 31, 1.0f, stream));
    return LaunchFillRandom(DType::kBF16, x.ptr, kIn, 32, 1.0f, stream);
  }
  absl::Status Flush(cudaStream_t stream) const {
    return LaunchGemv(DType::kBF16, DType::kBF16, x.ptr, 1, kIn, w.ptr, out, y.ptr, out, stream);
  }
};

// TimeUs with the L2 emptied before every step (outside the step's events): what the operator
// meets inside a decode step, where the layers before it streamed other data through the L2,
// while TimeUs's back-to-back steps keep their inputs in L2 where they fit. Run 26 (H200,
// batch 8): within 1-3% of the warm loop from 64K, 4% slower at 32K with Llama-3 heads (the
// chain's 33.5 MB of labels fit the L2 there).
template <typename Fn>
absl::StatusOr<double> ColdTimeUs(cudaStream_t stream, int iters, const L2Flusher& flusher,
                                  Fn fn) {
  RETURN_IF_ERROR(fn());
  DeviceTimer timer(stream);
  double total_ms = 0;
  for (int i = 0; i < iters; ++i) {
    RETURN_IF_ERROR(flusher.Flush(stream));
    RETURN_IF_ERROR(timer.Start());
    RETURN_IF_ERROR(fn());
    ASSIGN_OR_RETURN(const double ms, timer.StopMs());
    total_ms += ms;
  }
  return 1000.0 * total_ms / iters;
}

// A selection copied to the host: `rows` (sequence, KV head) rows of up to `stride` indices,
// and their counts.
struct SelectionCopy {
  std::vector<int32_t> selected, counts;
};
absl::StatusOr<SelectionCopy> CopySelection(const DevMem& sel, const DevMem& counts,
                                            int64_t rows, int64_t stride, cudaStream_t stream) {
  SelectionCopy c;
  c.selected.resize(static_cast<size_t>(rows * stride));
  c.counts.resize(static_cast<size_t>(rows));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(c.selected.data(), sel.ptr, c.selected.size() * 4,
                                  cudaMemcpyDeviceToHost));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpy(c.counts.data(), counts.ptr, c.counts.size() * 4, cudaMemcpyDeviceToHost));
  return c;
}

// Rows whose count or selected indices differ.
int64_t SelectionMismatches(const SelectionCopy& a, const SelectionCopy& b, int64_t stride) {
  int64_t bad = 0;
  for (size_t r = 0; r < a.counts.size(); ++r) {
    const int32_t n = a.counts[r];
    bool same = n == b.counts[r];
    for (int32_t i = 0; same && i < n; ++i) {
      same = a.selected[r * stride + i] == b.selected[r * stride + i];
    }
    bad += !same;
  }
  return bad;
}

// Prefill section: causal attention of one prompt of L tokens over its own K/V (paged, 16-token
// blocks as the engine's pool), bf16, head_dim 128, Llama-2-7B (32 q / 32 kv) and Llama-3-8B
// (32 q / 8 kv) heads; the bodies of --prefill_algos (CUDA-core kSimt, tensor-core kMma and
// kWgmma) side by side, each over tiles of its own size.
// FLOPs = 4·L²·d·Hq / 2 (QKᵀ and PV, half the square under the causal mask). The reference
// rate is an 8192³ cuBLAS bf16 GEMM (fp32 accumulate) timed in the same run. Results go to
// out["prefill"] (and out["cublas_bf16_tflops"]).
absl::Status RunPrefillBench(const std::vector<int64_t>& lengths, cudaStream_t stream,
                             nlohmann::json& out) {
  constexpr int kHq = 32, kPrefillBlockTokens = 16;
  ASSIGN_OR_RETURN(const std::vector<PrefillAttentionAlgo> algos,
                   ParseAlgoList<PrefillAttentionAlgo>(absl::GetFlag(FLAGS_prefill_algos)));
  double gemm_tflops = 0;
  {
    constexpr int64_t n = 8192;
    DevMem a, b, c;
    RETURN_IF_ERROR(a.Alloc(n * n * 2));
    RETURN_IF_ERROR(b.Alloc(n * n * 2));
    RETURN_IF_ERROR(c.Alloc(n * n * 2));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, a.ptr, n * n, 11, 1.0f, stream));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, b.ptr, n * n, 12, 1.0f, stream));
    cublasHandle_t handle;
    if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
      return absl::InternalError("cublasCreate failed");
    }
    absl::StatusOr<double> us = absl::InternalError("cublasSetStream failed");
    if (cublasSetStream(handle, stream) == CUBLAS_STATUS_SUCCESS) {
      us = TimeUs(stream, 10, [&] {
        return Gemm(handle, DType::kBF16, a.ptr, n, n, b.ptr, n, c.ptr, n);
      });
    }
    cublasDestroy(handle);
    RETURN_IF_ERROR(us.status());
    gemm_tflops = 2.0 * n * n * n / (*us * 1e-6) / 1e12;
  }
  std::printf("\nprefill attention (causal, bf16, d %d, one prompt); cuBLAS bf16 GEMM 8192^3: "
              "%.0f TFLOP/s\n",
              kHeadDim, gemm_tflops);
  std::printf("%-10s %7s  %-6s %9s %9s %9s\n", "heads", "tokens", "body", "ms", "TFLOP/s",
              "% cuBLAS");
  out["cublas_bf16_tflops"] = gemm_tflops;
  out["prefill"] = nlohmann::json::array();
  for (int64_t len : lengths) {
    for (absl::string_view model : absl::StrSplit(absl::GetFlag(FLAGS_models), ',')) {
      const int hkv = model == "llama2-7b" ? 32 : 8;
      const int blocks = static_cast<int>((len + kPrefillBlockTokens - 1) / kPrefillBlockTokens);
      const int64_t kv_elems = int64_t{blocks} * kPrefillBlockTokens * hkv * kHeadDim;
      DevMem k, v, q, o, dtables, dpos, drs;
      RETURN_IF_ERROR(k.Alloc(kv_elems * 2));
      RETURN_IF_ERROR(v.Alloc(kv_elems * 2));
      RETURN_IF_ERROR(q.Alloc(len * kHq * kHeadDim * 2));
      RETURN_IF_ERROR(o.Alloc(len * kHq * kHeadDim * 2));
      RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, k.ptr, kv_elems, 21, 1.0f, stream));
      RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, v.ptr, kv_elems, 22, 1.0f, stream));
      RETURN_IF_ERROR(
          LaunchFillRandom(DType::kBF16, q.ptr, len * kHq * kHeadDim, 23, 1.0f, stream));
      // Blocks in reverse order: pages are not contiguous in the pool.
      std::vector<int32_t> tables(blocks), positions(len), row_seq(len, 0);
      for (int i = 0; i < blocks; ++i) tables[i] = blocks - 1 - i;
      for (int64_t i = 0; i < len; ++i) positions[i] = static_cast<int32_t>(i);
      RETURN_IF_ERROR(dtables.Alloc(tables.size() * 4));
      RETURN_IF_ERROR(dpos.Alloc(len * 4));
      RETURN_IF_ERROR(drs.Alloc(len * 4));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(dtables.ptr, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(dpos.ptr, positions.data(), len * 4, cudaMemcpyHostToDevice));
      CUDA_RETURN_IF_ERROR(cudaMemcpy(drs.ptr, row_seq.data(), len * 4, cudaMemcpyHostToDevice));
      CudaPagedKv kv;
      kv.k = k.ptr;
      kv.v = v.ptr;
      kv.block_tables = dtables.as<int32_t>();
      kv.max_blocks = blocks;
      kv.block_tokens = kPrefillBlockTokens;
      kv.kv_heads = hkv;
      kv.head_dim = kHeadDim;
      const CudaBatchRows rows{dpos.as<int32_t>(), drs.as<int32_t>(), len};
      const float scale = 1.0f / std::sqrt(float(kHeadDim));
      const double flops = 4.0 * double(len) * double(len) * kHeadDim * kHq / 2.0;
      const std::string m(model);
      for (PrefillAttentionAlgo algo : algos) {
        const bool mma = algo != PrefillAttentionAlgo::kSimt;  // a tensor-core body
        // Tiles of the body's size, as the CUDA backend builds them.
        const int64_t tile_rows = PrefillTileRows(algo);
        std::vector<int32_t> tiles;
        for (int64_t r = 0; r < len; r += tile_rows) {
          tiles.push_back(static_cast<int32_t>(r));
          tiles.push_back(static_cast<int32_t>(std::min<int64_t>(tile_rows, len - r)));
        }
        DevMem dtiles;
        RETURN_IF_ERROR(dtiles.Alloc(tiles.size() * 4));
        CUDA_RETURN_IF_ERROR(
            cudaMemcpy(dtiles.ptr, tiles.data(), tiles.size() * 4, cudaMemcpyHostToDevice));
        // The CUDA-core body takes ~0.3 s per 32K prompt: fewer repeats keep the section short.
        const int iters = mma ? 5 : (len > 8192 ? 1 : 3);
        ASSIGN_OR_RETURN(const double us, TimeUs(stream, iters, [&] {
                           return LaunchPrefillAttention(
                               DType::kBF16, q.ptr, kHq * kHeadDim, rows, dtiles.as<int32_t>(),
                               static_cast<int64_t>(tiles.size() / 2), kHq, hkv, kHeadDim, scale,
                               kv, o.ptr, kHq * kHeadDim, stream, algo);
                         }));
        const double tflops = flops / (us * 1e-6) / 1e12;
        std::printf("%-10s %7lld  %-6s %9.2f %9.1f %8.1f%%\n", m.c_str(),
                    static_cast<long long>(len), AlgoName(algo), us / 1000.0, tflops,
                    100.0 * tflops / gemm_tflops);
        out["prefill"].push_back({{"model", m},
                                  {"tokens", len},
                                  {"body", AlgoName(algo)},
                                  {"ms", us / 1000.0},
                                  {"tflops", tflops},
                                  {"fraction_of_cublas", tflops / gemm_tflops}});
      }
      std::fflush(stdout);
    }
  }
  return absl::OkStatus();
}

absl::Status Run() {
  // The list flags first, so that a mistyped item fails before any GPU work.
  // Either empty: no decode section (the prefill section alone).
  ASSIGN_OR_RETURN(const std::vector<int64_t> batches,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_batches), "batches",
                                        /*allow_empty=*/true));
  ASSIGN_OR_RETURN(const std::vector<int64_t> contexts,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_contexts), "contexts",
                                        /*allow_empty=*/true));
  // Empty: the dense decode at the engine's own split count only.
  ASSIGN_OR_RETURN(const std::vector<int64_t> wave_counts,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_dense_waves), "dense_waves",
                                        /*allow_empty=*/true));
  const std::vector<int> dense_waves(wave_counts.begin(), wave_counts.end());
  ASSIGN_OR_RETURN(const std::vector<int64_t> prefill_lengths,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_prefill_lengths), "prefill_lengths",
                                        /*allow_empty=*/!absl::GetFlag(FLAGS_prefill)));
  cudaStream_t stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream));
  // The split chain's second stream and its fork and join events (LaunchChainInHalves).
  cudaStream_t side_stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&side_stream, cudaStreamNonBlocking));
  cudaEvent_t fork, join;
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
  const int sm = prop.multiProcessorCount;
  // HBM ceiling: a 2 GiB device-to-device copy, bytes read + written.
  ASSIGN_OR_RETURN(const double hbm_bps, CopyRateBps(stream, size_t{2} << 30));
  std::printf("GPU %s: D2D copy %.0f GB/s\n", prop.name, hbm_bps / 1e9);
  L2Flusher flusher;
  RETURN_IF_ERROR(flusher.Init(prop, stream));
  nlohmann::json out;
  out["gpu"] = prop.name;
  out["hbm_gbps"] = hbm_bps / 1e9;
  out["dtype"] = "fp16";
  cuda::SetDependentSparseChain(absl::GetFlag(FLAGS_ds_dependent_chain));
  out["ds_dependent_chain"] = absl::GetFlag(FLAGS_ds_dependent_chain);
  out["results"] = nlohmann::json::array();
  out["skipped"] = nlohmann::json::array();
  if (absl::GetFlag(FLAGS_prefill)) RETURN_IF_ERROR(RunPrefillBench(prefill_lengths, stream, out));

  ASSIGN_OR_RETURN(const std::vector<LabelScoreAlgo> score_algos,
                   ParseAlgoList<LabelScoreAlgo>(absl::GetFlag(FLAGS_ds_score_algos)));
  ASSIGN_OR_RETURN(const std::vector<TopKAlgo> topk_algos,
                   ParseAlgoList<TopKAlgo>(absl::GetFlag(FLAGS_ds_topk_algos)));
  ASSIGN_OR_RETURN(const std::vector<SparseAttentionAlgo> attn_algos,
                   ParseAlgoList<SparseAttentionAlgo>(absl::GetFlag(FLAGS_ds_attention_algos)));
  ASSIGN_OR_RETURN(const std::vector<DecodeAttentionAlgo> dense_algos,
                   ParseAlgoList<DecodeAttentionAlgo>(absl::GetFlag(FLAGS_dense_algos)));
  ASSIGN_OR_RETURN(const std::vector<Variant> variants,
                   ChosenVariants(absl::GetFlag(FLAGS_ds_variants)));
  const double stride_factor = absl::GetFlag(FLAGS_ds_score_stride_factor);
  if (!(stride_factor >= 1.0 && stride_factor <= 2.0)) {
    return absl::InvalidArgumentError("--ds_score_stride_factor: from 1 to 2");
  }
  const std::string aggregation = absl::GetFlag(FLAGS_ds_aggregation);
  if (aggregation != "sum" && aggregation != "max") {
    return absl::InvalidArgumentError("--ds_aggregation: sum or max");
  }
  const bool max_aggregation = aggregation == "max";
  const int iters = absl::GetFlag(FLAGS_iters);
  const double max_bytes = absl::GetFlag(FLAGS_max_gib) * (1ull << 30);
  // K and V bytes of `b` sequences of `l` tokens with `heads` KV heads as the paged layout
  // holds them: whole blocks of kBlockTokens a sequence (the block tables below are the
  // identity, so a sequence's last block is whole in memory even where its context ends
  // inside it).
  auto paged_kv_bytes = [](int64_t b, int64_t l, int64_t heads) {
    return 2 * b * ((l + kBlockTokens - 1) / kBlockTokens * kBlockTokens) * heads * kHeadDim * 2;
  };
  int64_t max_kv = 0, max_seq_tokens = 0;
  for (int64_t b : batches) {
    for (int64_t l : contexts) {
      for (int64_t heads : {32, 8}) {
        if (2 * b * l * heads * kHeadDim * 2 > max_bytes) continue;  // skipped below
        max_kv = std::max(max_kv, paged_kv_bytes(b, l, heads));
        max_seq_tokens = std::max(max_seq_tokens, b * l);
      }
    }
  }
  // One K and one V region sized for the largest configuration that fits, reused by all.
  DevMem k, v;
  RETURN_IF_ERROR(k.Alloc(max_kv / 2));
  RETURN_IF_ERROR(v.Alloc(max_kv / 2));
  std::printf(
      "Double Sparsity chain: scoring %s, top-k %s, attention %s; stage times per body listed "
      "(attention: us at the body's split count, then at %d waves)\n",
      AlgoName(score_algos[0]), AlgoName(topk_algos[0]), AlgoName(attn_algos[0]),
      absl::GetFlag(FLAGS_ds_other_waves));
  std::printf("%-10s %5s %7s  %-18s %9s %9s %8s %8s %7s  %s\n", "heads", "batch", "ctx", "op",
              "us", "floor us", "x floor", "TB/s", "speedup",
              "stages us (score by body | top-k by body | attn by body)");
  for (absl::string_view model : absl::StrSplit(absl::GetFlag(FLAGS_models), ',')) {
    const int hq = 32, hkv = model == "llama2-7b" ? 32 : 8;
    for (int64_t batch : batches) {
      for (int64_t ctx : contexts) {
        const int64_t kv_bytes = 2 * batch * ctx * hkv * kHeadDim * 2;
        if (kv_bytes > max_bytes) {
          std::printf("%-10s %5lld %7lld  skipped: K/V %.0f GiB > --max_gib\n",
                      std::string(model).c_str(), static_cast<long long>(batch),
                      static_cast<long long>(ctx), kv_bytes / double(1ull << 30));
          out["skipped"].push_back({{"model", model},
                                    {"batch", batch},
                                    {"context", ctx},
                                    {"kv_gib", kv_bytes / double(1ull << 30)}});
          continue;
        }
        const int64_t elems = paged_kv_bytes(batch, ctx, hkv) / 4;  // K (or V) halves
        RETURN_IF_ERROR(LaunchFillRandom(DType::kF16, k.ptr, elems, 1 + ctx + batch, 1.0f, stream));
        RETURN_IF_ERROR(LaunchFillRandom(DType::kF16, v.ptr, elems, 7 + ctx + batch, 1.0f, stream));
        const int blocks = static_cast<int>((ctx + kBlockTokens - 1) / kBlockTokens);
        std::vector<int32_t> tables(batch * blocks), positions(batch, ctx - 1), row_seq(batch);
        for (int64_t i = 0; i < batch * blocks; ++i) tables[i] = static_cast<int32_t>(i);
        for (int64_t s = 0; s < batch; ++s) row_seq[s] = static_cast<int32_t>(s);
        DevMem dtables, dpos, drs, dq, dout, dws;
        RETURN_IF_ERROR(dtables.Alloc(tables.size() * 4));
        RETURN_IF_ERROR(dpos.Alloc(batch * 4));
        RETURN_IF_ERROR(drs.Alloc(batch * 4));
        RETURN_IF_ERROR(dq.Alloc(batch * hq * kHeadDim * 2));
        RETURN_IF_ERROR(dout.Alloc(batch * hq * kHeadDim * 2));
        CUDA_RETURN_IF_ERROR(
            cudaMemcpy(dtables.ptr, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
        CUDA_RETURN_IF_ERROR(
            cudaMemcpy(dpos.ptr, positions.data(), batch * 4, cudaMemcpyHostToDevice));
        CUDA_RETURN_IF_ERROR(
            cudaMemcpy(drs.ptr, row_seq.data(), batch * 4, cudaMemcpyHostToDevice));
        RETURN_IF_ERROR(
            LaunchFillRandom(DType::kF16, dq.ptr, batch * hq * kHeadDim, 99, 1.0f, stream));
        CudaPagedKv kv;
        kv.k = k.ptr;
        kv.v = v.ptr;
        kv.block_tables = dtables.as<int32_t>();
        kv.max_blocks = blocks;
        kv.block_tokens = kBlockTokens;
        kv.kv_heads = hkv;
        kv.head_dim = kHeadDim;
        CudaBatchRows rows{dpos.as<int32_t>(), drs.as<int32_t>(), batch};
        const float scale = 1.0f / std::sqrt(float(kHeadDim));
        // Dense: the engine's split count (DecodeAttentionSplits' own rule), and the first body
        // at every count of --dense_waves.
        const int dense_splits = DecodeAttentionSplits(batch, hq, hkv, ctx, sm, /*waves=*/0);
        int most_splits = dense_splits;
        for (int w : dense_waves) {
          most_splits = std::max(most_splits, DecodeAttentionSplits(batch, hq, hkv, ctx, sm, w));
        }
        RETURN_IF_ERROR(
            dws.Alloc(DecodeAttentionWorkspaceFloats(batch, hq, kHeadDim, most_splits) * 4));
        // Every body of --dense_algos; the first is the dense time (and the row's "us").
        const double dense_floor = kv_bytes / hbm_bps * 1e6;
        nlohmann::json dense_by_algo;
        std::string dense_bodies;
        double dense_us = 0;
        for (size_t i = 0; i < dense_algos.size(); ++i) {
          const DecodeAttentionAlgo a = dense_algos[i];
          ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] {
                             return LaunchDecodeAttention(
                                 DType::kF16, dq.ptr, hq * kHeadDim, rows, hq, hkv, kHeadDim,
                                 scale, kv, dense_splits, dws.as<float>(), dout.ptr,
                                 hq * kHeadDim, stream, a);
                           }));
          if (i == 0) dense_us = t;
          dense_by_algo[AlgoName(a)] = t;
          absl::StrAppend(&dense_bodies, dense_bodies.empty() ? "" : ", ", AlgoName(a), " ",
                          absl::StrFormat("%.1f (%.2fx)", t, t / dense_floor));
        }
        // The engine's body and split count with the L2 emptied before each step.
        ASSIGN_OR_RETURN(const double dense_cold, ColdTimeUs(stream, iters, flusher, [&] {
                           return LaunchDecodeAttention(
                               DType::kF16, dq.ptr, hq * kHeadDim, rows, hq, hkv, kHeadDim,
                               scale, kv, dense_splits, dws.as<float>(), dout.ptr,
                               hq * kHeadDim, stream, dense_algos[0]);
                         }));
        absl::StrAppend(&dense_bodies, absl::StrFormat(", cold L2 %.1f", dense_cold));
        nlohmann::json dense_by_waves;
        for (int w : dense_waves) {
          const int n = DecodeAttentionSplits(batch, hq, hkv, ctx, sm, w);
          ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] {
                             return LaunchDecodeAttention(
                                 DType::kF16, dq.ptr, hq * kHeadDim, rows, hq, hkv, kHeadDim,
                                 scale, kv, n, dws.as<float>(), dout.ptr, hq * kHeadDim, stream,
                                 dense_algos[0]);
                           }));
          dense_by_waves[std::to_string(w)] = {{"splits", n}, {"us", t}};
          absl::StrAppend(&dense_bodies, dense_bodies.empty() ? "" : ", ", "waves ", w, " (", n,
                          " splits) ", absl::StrFormat("%.1f", t));
        }
        const std::string m(model);
        std::printf("%-10s %5lld %7lld  %-18s %9.1f %9.1f %8.2f %8.2f %7s  by body: %s\n",
                    m.c_str(), static_cast<long long>(batch), static_cast<long long>(ctx),
                    "dense", dense_us, dense_floor, dense_us / dense_floor,
                    kv_bytes / dense_us / 1e6, "1.00", dense_bodies.c_str());
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
        for (const Variant& var : variants) {
          const int64_t budget = std::max<int64_t>(1, ctx / var.denominator);
          // Score rows as the engine's (--ds_score_stride_factor: a graph step's bucket).
          const int64_t stride =
              ScoreRowStride(static_cast<int64_t>(std::ceil(ctx * stride_factor)));
          const int64_t row_bound = TopKRowBound(stride, ctx);  // as a graph step's
          const int row_bytes = var.bits == 16 ? 2 * var.r : (var.r + 1) / 2;
          const int64_t label_bytes = batch * ctx * hkv * (row_bytes + (var.bits == 4 ? 4 : 0));
          // A sequence's label rows: whole pages of every KV head (LabelCapacity), as the
          // engine's label storage holds them and the scorers read them.
          const int64_t seq_rows = LabelCapacity(ctx) * hkv;
          const int64_t rows_all = batch * seq_rows;
          DevMem labels, scales, mins, channels, dlabs, dseqs, scores, sel, counts, sws, topk_ws;
          RETURN_IF_ERROR(labels.Alloc(rows_all * row_bytes));
          RETURN_IF_ERROR(scales.Alloc(rows_all * 2));
          RETURN_IF_ERROR(mins.Alloc(rows_all * 2));
          RETURN_IF_ERROR(channels.Alloc(hkv * var.r * 4));
          RETURN_IF_ERROR(
              LaunchFillRandom(DType::kF16, labels.ptr, rows_all * row_bytes / 2, 3, 1.0f, stream));
          RETURN_IF_ERROR(LaunchFillRandom(DType::kF16, scales.ptr, rows_all, 4, 0.1f, stream));
          RETURN_IF_ERROR(LaunchFillRandom(DType::kF16, mins.ptr, rows_all, 5, 1.0f, stream));
          std::vector<int32_t> ch(hkv * var.r);
          for (int h = 0; h < hkv; ++h) {
            for (int j = 0; j < var.r; ++j) ch[h * var.r + j] = (j * 5 + h) % kHeadDim;
          }
          CUDA_RETURN_IF_ERROR(
              cudaMemcpy(channels.ptr, ch.data(), ch.size() * 4, cudaMemcpyHostToDevice));
          std::vector<CudaLabelSeq> labs(batch);
          std::vector<CudaDsSequence> seqs(batch);
          for (int64_t s = 0; s < batch; ++s) {
            const int64_t off = s * seq_rows;
            labs[s].data = labels.as<uint8_t>() + off * row_bytes;
            labs[s].scales = scales.as<uint16_t>() + off;
            labs[s].minimums = mins.as<uint16_t>() + off;
            labs[s].channels = channels.as<int32_t>();
            labs[s].r = var.r;
            labs[s].bits = var.bits;
            seqs[s].tokens = static_cast<int32_t>(ctx);
            seqs[s].budget = static_cast<int32_t>(budget);
            seqs[s].sink = 4;
            seqs[s].recent = 64;
            seqs[s].aggregation = max_aggregation ? 1 : 0;
            seqs[s].q_row = static_cast<int32_t>(s);
            seqs[s].kv_seq = static_cast<int32_t>(s);
          }
          RETURN_IF_ERROR(dlabs.Alloc(labs.size() * sizeof(CudaLabelSeq)));
          RETURN_IF_ERROR(dseqs.Alloc(seqs.size() * sizeof(CudaDsSequence)));
          CUDA_RETURN_IF_ERROR(cudaMemcpy(dlabs.ptr, labs.data(), labs.size() * sizeof(labs[0]),
                                          cudaMemcpyHostToDevice));
          CUDA_RETURN_IF_ERROR(cudaMemcpy(dseqs.ptr, seqs.data(), seqs.size() * sizeof(seqs[0]),
                                          cudaMemcpyHostToDevice));
          RETURN_IF_ERROR(scores.Alloc(batch * hkv * stride * kScoreBytes));
          RETURN_IF_ERROR(sel.Alloc(batch * hkv * budget * 4));
          RETURN_IF_ERROR(counts.Alloc(batch * hkv * 4));
          // Per attention body: the engine's split count for it, and more splits beside it
          // (--ds_other_waves, by default more blocks resident), timed side by side below.
          const int nseq = static_cast<int>(batch);
          std::vector<int> attn_splits, attn_splits_more;
          int most_attn_splits = 1;
          for (SparseAttentionAlgo a : attn_algos) {
            attn_splits.push_back(SparseAttentionSplits(nseq, hkv, budget, sm, a));
            attn_splits_more.push_back(SparseAttentionSplits(nseq, hkv, budget, sm, a,
                                                             absl::GetFlag(FLAGS_ds_other_waves)));
            most_attn_splits =
                std::max({most_attn_splits, attn_splits.back(), attn_splits_more.back()});
          }
          const int splits = attn_splits[0];
          // Room for the split chain's halves too (SplitChainHalf splits at nseq / 2), each at
          // its own split count.
          RETURN_IF_ERROR(sws.Alloc(
              std::max(SparseAttentionWorkspaceFloats(nseq, hq, kHeadDim, most_attn_splits),
                       SplitChainWorkspaceFloats(nseq, nseq / 2, hq, hkv, kHeadDim, budget, sm,
                                                 attn_algos[0])) *
              4));
          const int64_t topk_ws_bytes = TopKSelectWorkspaceBytes(nseq, hkv, stride);
          RETURN_IF_ERROR(topk_ws.Alloc(topk_ws_bytes));
          CUDA_RETURN_IF_ERROR(cudaMemset(topk_ws.ptr, 0, topk_ws_bytes));
          const auto* dseq = dseqs.as<CudaDsSequence>();
          const int label_bits = UniformLabelBits(labs.data(), static_cast<int>(batch), var.r);
          const int score_heads =
              UniformScoreHeads(seqs.data(), static_cast<int>(batch), hq, hkv);
          // Each stage over sequences [first, first + count) (the whole batch, or a half of
          // the split chain): their scores, selection and attention rows.
          auto score_rows = [&](LabelScoreAlgo algo, int first, int count, cudaStream_t s) {
            return LaunchLabelScores(DType::kF16, dq.ptr, hq * kHeadDim, dseq + first, count,
                                     dlabs.as<CudaLabelSeq>() + first, hq, hkv, kHeadDim, var.r,
                                     label_bits, score_heads, ctx,
                                     scores.as<uint16_t>() + first * hkv * stride, stride, s,
                                     algo);
          };
          auto topk_rows = [&](TopKAlgo algo, int first, int count, cudaStream_t s, void* ws) {
            return LaunchTopKSelect(scores.as<uint16_t>() + first * hkv * stride, stride,
                                    dseq + first, count, hkv,
                                    sel.as<int32_t>() + first * hkv * budget, budget,
                                    counts.as<int32_t>() + first * hkv, s, algo, ws,
                                    row_bound);
          };
          auto attend_rows = [&](SparseAttentionAlgo algo, int n_splits, int first, int count,
                                 float* ws, cudaStream_t s) {
            return LaunchSparseAttention(
                DType::kF16, dq.ptr, hq * kHeadDim, dseq + first, count, hq, hkv, kHeadDim, scale,
                kv, sel.as<int32_t>() + first * hkv * budget, budget,
                counts.as<int32_t>() + first * hkv, n_splits, ws, dout.ptr, hq * kHeadDim, s,
                algo);
          };
          auto score = [&](LabelScoreAlgo algo) { return score_rows(algo, 0, nseq, stream); };
          auto topk = [&](TopKAlgo algo) {
            return topk_rows(algo, 0, nseq, stream, topk_ws.ptr);
          };
          auto attend_with = [&](SparseAttentionAlgo algo, int n_splits) {
            return attend_rows(algo, n_splits, 0, nseq, sws.as<float>(), stream);
          };
          auto attend = [&] { return attend_with(attn_algos[0], splits); };
          // Scoring and top-k fused (LaunchScoreSelectCluster); false where it declines.
          auto fused = [&]() -> absl::StatusOr<bool> {
            return LaunchScoreSelectCluster(DType::kF16, dq.ptr, hq * kHeadDim, dseq, batch,
                                            dlabs.as<CudaLabelSeq>(), hq, hkv, kHeadDim, var.r,
                                            label_bits, score_heads, ctx, sel.as<int32_t>(),
                                            budget, counts.as<int32_t>(), stream);
          };
          // The chain with the first body of each list; then each stage alone, per body.
          auto chain = [&]() -> absl::Status {
            RETURN_IF_ERROR(score(score_algos[0]));
            RETURN_IF_ERROR(topk(topk_algos[0]));
            return attend();
          };
          ASSIGN_OR_RETURN(const double us_separate, TimeUs(stream, iters, chain));
          // The chain with the L2 emptied before each step (labels and K/V from HBM, as in a
          // decode step; the scores it writes stay warm for its top-k, as in a step).
          ASSIGN_OR_RETURN(const double us_chain_cold, ColdTimeUs(stream, iters, flusher, chain));
          ASSIGN_OR_RETURN(const SelectionCopy separate_sel,
                           CopySelection(sel, counts, batch * hkv, budget, stream));
          // The chain as the engine's graph steps run it: captured whole, and where the engine
          // splits it (SplitChainHalf, the engine's fusing rule for these kernels) in two halves
          // on two streams, whose selection must equal the whole chain's.
          ASSIGN_OR_RETURN(const double us_chain_graph, GraphTimeUs(stream, iters, chain));
          const int half =
              SplitChainHalf(nseq, hkv, stride, row_bound, sm, topk_algos[0],
                             FusingFor(score_algos[0], topk_algos[0], FusedSelectMode::kAuto));
          double us_chain_split = 0;
          int64_t split_mismatches = -1;
          if (half > 0) {
            // As the engine's halves: the top-k without a workspace (SplitChainHalf never
            // splits kMultiBlock's), each half's attention at its own split count.
            auto score_part = [&](int first, int count, cudaStream_t s) {
              return score_rows(score_algos[0], first, count, s);
            };
            float* const second_ws =
                sws.as<float>() + HalfChainWorkspaceFloats(half, hq, hkv, kHeadDim, budget, sm,
                                                           attn_algos[0]);
            auto select_part = [&](int first, int count, cudaStream_t s) -> absl::Status {
              RETURN_IF_ERROR(topk_rows(topk_algos[0], first, count, s, nullptr));
              return attend_rows(attn_algos[0],
                                 SparseAttentionSplits(count, hkv, budget, sm, attn_algos[0]),
                                 first, count, first == 0 ? sws.as<float>() : second_ws, s);
            };
            auto split_chain = [&] {
              return LaunchChainInHalves(nseq, half, stream, side_stream, fork, join, score_part,
                                         select_part);
            };
            // Poisoned first, so that a half left unselected shows.
            CUDA_RETURN_IF_ERROR(cudaMemsetAsync(counts.ptr, 0, batch * hkv * 4, stream));
            CUDA_RETURN_IF_ERROR(cudaMemsetAsync(sel.ptr, 0xff, batch * hkv * budget * 4, stream));
            RETURN_IF_ERROR(split_chain());
            ASSIGN_OR_RETURN(const SelectionCopy split_sel,
                             CopySelection(sel, counts, batch * hkv, budget, stream));
            split_mismatches = SelectionMismatches(separate_sel, split_sel, budget);
            if (split_mismatches != 0) {
              return absl::InternalError(absl::StrCat(
                  "the split chain selected differently from the whole chain at ", m, " batch ",
                  batch, " context ", ctx, " ", var.name, ": ", split_mismatches,
                  " mismatches"));
            }
            ASSIGN_OR_RETURN(us_chain_split, GraphTimeUs(stream, iters, split_chain));
          }
          // The fused kernel's selection against the two launches' (identical sets), then its
          // time alone and in the chain.
          ASSIGN_OR_RETURN(const bool fused_ran, fused());
          double us_fused = 0, us_chain_fused = 0;
          int64_t fused_mismatches = -1;
          if (fused_ran) {
            ASSIGN_OR_RETURN(const SelectionCopy fused_sel,
                             CopySelection(sel, counts, batch * hkv, budget, stream));
            fused_mismatches = SelectionMismatches(separate_sel, fused_sel, budget);
            auto run_fused = [&]() -> absl::Status { return fused().status(); };
            ASSIGN_OR_RETURN(us_fused, TimeUs(stream, iters, run_fused));
            ASSIGN_OR_RETURN(us_chain_fused, TimeUs(stream, iters, [&]() -> absl::Status {
                               RETURN_IF_ERROR(run_fused());
                               return attend();
                             }));
          }
          // The chain as the engine runs it (ScoreAndSelect under kAuto).
          const bool engine_fuses =
              fused_ran && ScoreSelectClusterPays(ctx, batch * hkv);
          const double us = engine_fuses ? us_chain_fused : us_separate;
          nlohmann::json score_by_algo, topk_by_algo;
          std::string stages;
          for (LabelScoreAlgo a : score_algos) {
            ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] { return score(a); }));
            score_by_algo[AlgoName(a)] = t;
            absl::StrAppend(&stages, AlgoName(a), " ", absl::StrFormat("%.1f", t), " ");
          }
          absl::StrAppend(&stages, "| ");
          for (TopKAlgo a : topk_algos) {
            ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] { return topk(a); }));
            topk_by_algo[AlgoName(a)] = t;
            absl::StrAppend(&stages, AlgoName(a), " ", absl::StrFormat("%.1f", t), " ");
          }
          // e.g. "| pipelined 131.0 (9 splits), 140.2 (17); warp 269.3 (4), 250.1 (16)"
          nlohmann::json attn_by_algo;
          absl::StrAppend(&stages, "|");
          for (size_t i = 0; i < attn_algos.size(); ++i) {
            const SparseAttentionAlgo a = attn_algos[i];
            ASSIGN_OR_RETURN(const double t,
                             TimeUs(stream, iters, [&] { return attend_with(a, attn_splits[i]); }));
            ASSIGN_OR_RETURN(const double t_more, TimeUs(stream, iters, [&] {
                               return attend_with(a, attn_splits_more[i]);
                             }));
            attn_by_algo[AlgoName(a)] = {{"splits", attn_splits[i]},
                                         {"us", t},
                                         {"splits_more", attn_splits_more[i]},
                                         {"us_more_splits", t_more}};
            absl::StrAppend(&stages, i == 0 ? " " : "; ", AlgoName(a), " ",
                            absl::StrFormat("%.1f (%d%s), %.1f (%d)", t, attn_splits[i],
                                            i == 0 ? " splits" : "", t_more, attn_splits_more[i]));
          }
          const double us_attn = attn_by_algo[AlgoName(attn_algos[0])]["us"].get<double>();
          const double us_attn_more =
              attn_by_algo[AlgoName(attn_algos[0])]["us_more_splits"].get<double>();
          const int splits_more = attn_splits_more[0];
          const double us_score = score_by_algo[AlgoName(score_algos[0])].get<double>();
          // Scoring as a batch of two label shapes takes it (the engine's LaunchScoresByShape:
          // a fixed-row launch per shape, here the two halves of the batch), beside the general
          // kernel that one launch over mixed shapes would run.
          double us_score_halves = 0, us_score_general = 0;
          if (nseq >= 2) {
            const int h = nseq / 2;
            ASSIGN_OR_RETURN(us_score_halves, TimeUs(stream, iters, [&]() -> absl::Status {
                               RETURN_IF_ERROR(score_rows(score_algos[0], 0, h, stream));
                               return score_rows(score_algos[0], h, nseq - h, stream);
                             }));
            ASSIGN_OR_RETURN(us_score_general, TimeUs(stream, iters, [&] {
                               return LaunchLabelScores(
                                   DType::kF16, dq.ptr, hq * kHeadDim, dseq, nseq,
                                   dlabs.as<CudaLabelSeq>(), hq, hkv, kHeadDim, var.r, 0, 0, ctx,
                                   scores.as<uint16_t>(), stride, stream, score_algos[0]);
                             }));
          }
          const double us_topk = topk_by_algo[AlgoName(topk_algos[0])].get<double>();
          const int64_t kv_sel = 2 * batch * hkv * budget * kHeadDim * 2;
          const int64_t floor_bytes = label_bytes + kv_sel;
          // Scores: one write, then one read by the cluster top-k (> 8K tokens, keys kept in
          // shared memory), two by the two-read, striped and multi-block kernels (the
          // multi-block's third, of each slice again, from L2), up to four by the one-block
          // kernel.
          const TopKAlgo ran =
              ResolveTopKAlgo(topk_algos[0], stride, batch * hkv, sm, row_bound);
          const bool two_reads = ran == TopKAlgo::kTwoRead || ran == TopKAlgo::kStriped ||
                                 ran == TopKAlgo::kMultiBlock;
          const int score_passes =
              engine_fuses ? 0 : (ran == TopKAlgo::kCluster ? 2 : (two_reads ? 3 : 5));
          const int64_t moved = floor_bytes + batch * hkv * ctx * kScoreBytes * score_passes;
          absl::StrAppend(&stages, absl::StrFormat(" | fused %.1f, chain %.1f (two launches %.1f)",
                                                   us_fused, us_chain_fused, us_separate));
          absl::StrAppend(&stages, absl::StrFormat(" | graph %.1f", us_chain_graph));
          absl::StrAppend(&stages, absl::StrFormat(" | cold L2 %.1f", us_chain_cold));
          if (half > 0) absl::StrAppend(&stages, absl::StrFormat(", split %.1f", us_chain_split));
          if (nseq >= 2) {
            absl::StrAppend(&stages, absl::StrFormat(" | scoring in halves %.1f, general %.1f",
                                                     us_score_halves, us_score_general));
          }
          const double floor_us = floor_bytes / hbm_bps * 1e6;
          std::printf("%-10s %5lld %7lld  %-18s %9.1f %9.1f %8.2f %8.2f %6.2fx  %s\n", m.c_str(),
                      static_cast<long long>(batch), static_cast<long long>(ctx), var.name, us,
                      floor_us, us / floor_us, floor_bytes / us / 1e6, dense_us / us,
                      stages.c_str());
          out["results"].push_back({{"model", m},
                                    {"batch", batch},
                                    {"context", ctx},
                                    {"op", var.name},
                                    {"us", us},
                                    {"bytes", floor_bytes},
                                    {"bytes_moved", moved},
                                    {"floor_us", floor_us},
                                    {"speedup_vs_dense", dense_us / us},
                                    {"budget", budget},
                                    {"r", var.r},
                                    {"label_bits", var.bits},
                                    {"aggregation", max_aggregation ? "max" : "sum"},
                                    {"splits", splits},
                                    {"score_algo", AlgoName(score_algos[0])},
                                    {"topk_algo", AlgoName(topk_algos[0])},
                                    {"attention_algo", AlgoName(attn_algos[0])},
                                    {"us_score", us_score},
                                    {"us_topk", us_topk},
                                    {"us_score_by_algo", score_by_algo},
                                    {"us_topk_by_algo", topk_by_algo},
                                    {"us_attention", us_attn},
                                    {"us_score_two_shapes", us_score_halves},
                                    {"us_score_general_kernel", us_score_general},
                                    {"splits_more", splits_more},
                                    {"us_attention_more_splits", us_attn_more},
                                    {"us_attention_by_algo", attn_by_algo},
                                    {"fused", engine_fuses},
                                    {"us_chain_two_launches", us_separate},
                                    {"us_chain_cold_l2", us_chain_cold},
                                    {"us_score_topk_fused", us_fused},
                                    {"us_chain_fused", us_chain_fused},
                                    {"fused_selection_mismatches", fused_mismatches},
                                    {"us_chain_graph", us_chain_graph},
                                    {"split_half", half},
                                    {"us_chain_split_graph", us_chain_split},
                                    {"split_selection_mismatches", split_mismatches}});
          if (fused_mismatches != 0 && fused_ran) {
            return absl::InternalError(absl::StrCat(
                "fused scorer and top-k selected differently from the two launches at ", m,
                " batch ", batch, " context ", ctx, " ", var.name, ": ", fused_mismatches,
                " mismatches"));
          }
        }
        std::fflush(stdout);
      }
    }
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  const std::string path = absl::GetFlag(FLAGS_json_out);
  if (!path.empty()) {
    std::ofstream f(path);
    f << out.dump(1) << "\n";
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsinfer

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(argc, argv, "dsinfer-attention-bench [--json_out FILE]");
  const absl::Status s = dsinfer::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "dsinfer-attention-bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
