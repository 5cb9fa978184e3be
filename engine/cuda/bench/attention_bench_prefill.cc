// The prefill section of dsinfer-attention-bench (attention_bench_prefill.h): its own buffers
// (16-token pages, as the engine's pool, rather than the decode sections' 256-token blocks) and
// its own reference rate, a cuBLAS bf16 GEMM, since prefill is compute-bound where decode is
// bound by the bytes it reads.
#include "engine/cuda/bench/attention_bench_prefill.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/cuda/bench/attention_bench_common.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

absl::Status RunPrefillBench(const std::vector<int64_t>& lengths, const std::string& models,
                             const std::string& algo_names, cudaStream_t stream,
                             nlohmann::json& out) {
  constexpr int kHq = 32, kPrefillBlockTokens = 16;
  ASSIGN_OR_RETURN(const std::vector<PrefillAttentionAlgo> algos,
                   ParseAlgoList<PrefillAttentionAlgo>(algo_names));
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
      us = TimeUs(stream, 10,
                  [&] { return Gemm(handle, DType::kBF16, a.ptr, n, n, b.ptr, n, c.ptr, n); });
    }
    cublasDestroy(handle);
    RETURN_IF_ERROR(us.status());
    gemm_tflops = 2.0 * n * n * n / (*us * 1e-6) / 1e12;
  }
  std::printf(
      "\nprefill attention (causal, bf16, d %d, one prompt); cuBLAS bf16 GEMM 8192^3: "
      "%.0f TFLOP/s\n",
      kHeadDim, gemm_tflops);
  std::printf("%-10s %7s  %-6s %9s %9s %9s\n", "heads", "tokens", "body", "ms", "TFLOP/s",
              "% cuBLAS");
  out["cublas_bf16_tflops"] = gemm_tflops;
  out["prefill"] = nlohmann::json::array();
  for (int64_t len : lengths) {
    for (absl::string_view model : absl::StrSplit(models, ',')) {
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
      CUDA_RETURN_IF_ERROR(cudaMemcpy(dpos.ptr, positions.data(), len * 4, cudaMemcpyHostToDevice));
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

}  // namespace dsinfer
