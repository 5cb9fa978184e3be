// Probe: cublasGemmEx default vs cuBLASLt heuristic candidates on decode GEMM shapes.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s line %d\n", cudaGetErrorString(e), __LINE__); exit(1);} } while (0)
#define CB(x) do { cublasStatus_t st_ = (x); if (st_ != CUBLAS_STATUS_SUCCESS) { printf("cublas %d line %d\n", (int)st_, __LINE__); exit(1);} } while (0)
struct Shape { const char* name; int n, k; bool f32_acc; };
__global__ void Fill(__nv_bfloat16* p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed; h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    p[i] = __float2bfloat16(((h & 0xffff) / 65536.0f - 0.5f) * 0.05f);
  }
}
int main(int argc, char** argv) {
  const int reps = 40;
  Shape shapes[] = {{"qkv", 6144, 4096, false}, {"o_proj", 4096, 4096, true},
                    {"gate_up", 28672, 4096, false}, {"down", 4096, 14336, true},
                    {"lm_head", 128256, 4096, true}};
  int rows_list[] = {4, 8, 16};
  cudaStream_t st; CK(cudaStreamCreate(&st));
  cublasHandle_t h; CB(cublasCreate(&h)); CB(cublasSetStream(h, st));
  cublasLtHandle_t lt; CB(cublasLtCreate(&lt));
  size_t ws_bytes = 32u << 20; void* ws; CK(cudaMalloc(&ws, ws_bytes));
  CB(cublasSetWorkspace(h, ws, ws_bytes));
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  for (const Shape& s : shapes) {
    const size_t wbytes = (size_t)s.n * s.k * 2;
    int copies = (int)std::max<size_t>(1, std::min<size_t>(16, (600ull << 20) / wbytes + 1));
    std::vector<__nv_bfloat16*> w(copies);
    for (int c = 0; c < copies; ++c) { CK(cudaMalloc(&w[c], wbytes)); Fill<<<1024, 256>>>(w[c], (size_t)s.n * s.k, 7 + c); }
    __nv_bfloat16* x; CK(cudaMalloc(&x, (size_t)16 * s.k * 2)); Fill<<<64, 256>>>(x, (size_t)16 * s.k, 3);
    void* y; CK(cudaMalloc(&y, (size_t)16 * s.n * 4)); CK(cudaMemset(y, 0, (size_t)16 * s.n * 4));
    CK(cudaDeviceSynchronize());
    const cudaDataType_t yt = s.f32_acc ? CUDA_R_32F : CUDA_R_16BF;
    const float alpha = 1.0f, beta = s.f32_acc ? 1.0f : 0.0f;
    for (int m : rows_list) {
      auto time_it = [&](auto&& launch) {
        for (int i = 0; i < 5; ++i) launch(w[i % copies]);
        CK(cudaEventRecord(e0, st));
        for (int i = 0; i < reps; ++i) launch(w[i % copies]);
        CK(cudaEventRecord(e1, st)); CK(cudaEventSynchronize(e1));
        float ms; CK(cudaEventElapsedTime(&ms, e0, e1)); return ms * 1000.0f / reps;
      };
      float t_def = time_it([&](const __nv_bfloat16* wp) {
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.n, m, s.k, &alpha, wp, CUDA_R_16BF, s.k, x,
                        CUDA_R_16BF, s.k, &beta, y, yt, s.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      cublasLtMatmulDesc_t op; CB(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
      CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof(tA)));
      CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof(tB)));
      cublasLtMatrixLayout_t la, lb, lc;
      CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, s.k, s.n, s.k));
      CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, s.k, m, s.k));
      CB(cublasLtMatrixLayoutCreate(&lc, yt, s.n, m, s.n));
      cublasLtMatmulPreference_t pref; CB(cublasLtMatmulPreferenceCreate(&pref));
      CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes)));
      cublasLtMatmulHeuristicResult_t res[64]; int got = 0;
      CB(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 64, res, &got));
      float best = 1e30f; int best_i = -1; float first = 0;
      char best_cfg[160] = "";
      for (int i = 0; i < got; ++i) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        int algo_id = -1, tile = -1, splitk0 = -1, red0 = -1; size_t sz;
        cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &algo_id, sizeof(int), &sz);
        cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(int), &sz);
        cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk0, sizeof(int), &sz);
        cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red0, sizeof(int), &sz);
        const int splits[] = {0, 1, 2, 3, 4, 6, 8, 12, 16};
        for (int sk : splits) {
          for (int red : {0, 1, 2, 4}) {
            if (sk <= 1 && red != 0) continue;
            cublasLtMatmulAlgo_t a = res[i].algo;
            if (sk > 0) {
              uint32_t skv = sk;
              if (cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &skv, sizeof(skv)) != CUBLAS_STATUS_SUCCESS) continue;
              uint32_t rv = sk > 1 ? red : 0;
              if (cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &rv, sizeof(rv)) != CUBLAS_STATUS_SUCCESS) continue;
            } else if (red != 0) continue;
            cublasLtMatmulHeuristicResult_t chk;
            if (cublasLtMatmulAlgoCheck(lt, op, la, lb, lc, lc, &a, &chk) != CUBLAS_STATUS_SUCCESS) continue;
            if (chk.workspaceSize > ws_bytes) continue;
            bool ok = true;
            float t = time_it([&](const __nv_bfloat16* wp) {
              cublasStatus_t r = cublasLtMatmul(lt, op, &alpha, wp, la, x, lb, &beta, y, lc, y, lc,
                                                &a, ws, ws_bytes, st);
              if (r != CUBLAS_STATUS_SUCCESS) ok = false;
            });
            if (!ok) continue;
            if (i == 0 && sk == 0) first = t;
            if (t < best) { best = t; best_i = i; snprintf(best_cfg, sizeof best_cfg, "algo %d tile %d splitk %d->%d red %d->%d", algo_id, tile, splitk0, sk, red0, red); }
          }
        }
      }
      const double floor_us = (double)s.n * s.k * 2 / 4.6e6;  // at 4.6 TB/s read
      printf("%-8s m=%2d  default %8.2f us (%.2f TB/s)  lt#0 %8.2f  best lt#%d of %d %8.2f us (%.2f TB/s)  gain %.1f%%  floor@4.6 %.2f  [%s]\n",
             s.name, m, t_def, wbytes / t_def / 1e6, first, best_i, got, best, wbytes / best / 1e6,
             100.0 * (t_def - best) / t_def, floor_us, best_cfg);
      fflush(stdout);
      cublasLtMatmulPreferenceDestroy(pref); cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb);
      cublasLtMatrixLayoutDestroy(lc); cublasLtMatmulDescDestroy(op);
    }
    for (auto p : w) cudaFree(p); cudaFree(x); cudaFree(y);
  }
  return 0;
}
