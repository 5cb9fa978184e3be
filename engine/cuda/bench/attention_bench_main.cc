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
//
// The sections live in files of their own: attention_bench_dense.cc (the dense row),
// attention_bench_ds.cc (the Double Sparsity variants and their chain), attention_bench_prefill.cc
// (prefill), with what they share in attention_bench_common.h. This file holds the flags, the
// only place they are read, and the loop over the configurations that hands each section its
// buffers.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/cuda/bench/attention_bench_common.h"
#include "engine/cuda/bench/attention_bench_dense.h"
#include "engine/cuda/bench/attention_bench_ds.h"
#include "engine/cuda/bench/attention_bench_prefill.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/list_flag.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/dependent_launch.h"
#include "kernels/cuda_check.h"
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
  if (absl::GetFlag(FLAGS_prefill)) {
    RETURN_IF_ERROR(RunPrefillBench(prefill_lengths, absl::GetFlag(FLAGS_models),
                                    absl::GetFlag(FLAGS_prefill_algos), stream, out));
  }

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
  // What every configuration's dense and Double Sparsity sections share.
  DecodeBenchEnv env;
  env.stream = stream;
  env.side_stream = side_stream;
  env.fork = fork;
  env.join = join;
  env.sm = sm;
  env.hbm_bps = hbm_bps;
  env.iters = iters;
  env.flusher = &flusher;
  DsChainOptions ds_options;
  ds_options.score_algos = score_algos;
  ds_options.topk_algos = topk_algos;
  ds_options.attn_algos = attn_algos;
  ds_options.stride_factor = stride_factor;
  ds_options.max_aggregation = max_aggregation;
  ds_options.other_waves = absl::GetFlag(FLAGS_ds_other_waves);
  std::printf(
      "Double Sparsity chain: scoring %s, top-k %s, attention %s; stage times per body listed "
      "(attention: us at the body's split count, then at %d waves)\n",
      AlgoName(score_algos[0]), AlgoName(topk_algos[0]), AlgoName(attn_algos[0]),
      absl::GetFlag(FLAGS_ds_other_waves));
  std::printf("%-10s %5s %7s  %-18s %9s %9s %8s %8s %7s  %s\n", "heads", "batch", "ctx", "op", "us",
              "floor us", "x floor", "TB/s", "speedup",
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
        DecodeConfig config;
        config.model = std::string(model);
        config.hq = hq;
        config.hkv = hkv;
        config.batch = batch;
        config.ctx = ctx;
        config.kv_bytes = kv_bytes;
        config.dq = &dq;
        config.dout = &dout;
        config.kv = kv;
        config.rows = rows;
        config.scale = scale;
        ASSIGN_OR_RETURN(const double dense_us,
                         RunDenseDecode(env, config, dense_algos, dense_waves, dws, out));
        RETURN_IF_ERROR(RunDsVariants(env, config, ds_options, variants, dense_us, out));
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
