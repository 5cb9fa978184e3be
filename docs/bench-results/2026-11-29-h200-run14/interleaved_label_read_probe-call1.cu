// Scratch probe: per-head blocks reading 16-byte label rows interleaved over 32 heads.
#include <cstdio>
#include <cstdint>
#include <vector>
#include <algorithm>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s line %d\n", cudaGetErrorString(e), __LINE__); return 1; } } while (0)
template <int HPB>
__global__ void __launch_bounds__(512) Probe(const uint4* lab, int heads, int tokens, int slice, unsigned* out) {
  extern __shared__ unsigned sm[];
  const int q = blockIdx.x, hg = blockIdx.y, s = blockIdx.z;
  const int t0 = q * slice;
  const int n = min(slice, tokens - t0);
  unsigned acc = 0;
  constexpr int U = 8;
  for (int base = 0; base < n * HPB; base += 512 * U) {
    uint4 x[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = base + u * 512 + threadIdx.x;
      if (i < n * HPB) {
        const int t = i / HPB, hh = i % HPB;
        x[u] = lab[(static_cast<int64_t>(s) * tokens + t0 + t) * heads + hg * HPB + hh];
      } else x[u] = make_uint4(0,0,0,0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) acc ^= x[u].x ^ x[u].y ^ x[u].z ^ x[u].w;
  }
  if (threadIdx.x == 0) sm[0] = 0;
  __syncthreads();
  atomicXor(&sm[0], acc);
  __syncthreads();
  if (threadIdx.x == 0) out[(blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x] = sm[0];
}
template <int HPB>
int Run(const uint4* lab, int seqs, int heads, int tokens, int slices, size_t smem, unsigned* out, const char* name) {
  auto k = Probe<HPB>;
  CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  dim3 grid(slices, heads / HPB, seqs);
  int slice = (tokens + slices - 1) / slices;
  cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  std::vector<float> ts;
  for (int r = 0; r < 7; ++r) {
    CK(cudaEventRecord(a));
    k<<<grid, 512, smem>>>(lab, heads, tokens, slice, out);
    CK(cudaGetLastError());
    CK(cudaEventRecord(b)); CK(cudaEventSynchronize(b));
    float ms; CK(cudaEventElapsedTime(&ms, a, b)); ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  double bytes = (double)seqs * tokens * heads * 16;
  printf("%-40s smem %6zu KB  grid %4d x %2d x %d  median %8.1f us  %7.1f GB/s\n", name, smem / 1024, grid.x, grid.y, grid.z, ts[3] * 1e3, bytes / (ts[3] * 1e-3) / 1e9);
  return 0;
}
int main() {
  const int seqs = 8, heads = 32, tokens = 262144;
  size_t bytes = (size_t)seqs * tokens * heads * 16;
  uint4* lab; unsigned* out;
  CK(cudaMalloc(&lab, bytes)); CK(cudaMemset(lab, 1, bytes));
  CK(cudaMalloc(&out, 1 << 24));
  for (size_t smem : {size_t(128 * 1024), size_t(64 * 1024), size_t(1024)}) {
    Run<1>(lab, seqs, heads, tokens, 8, smem, out, "per-head 1 of 32, 8 slices");
    Run<1>(lab, seqs, heads, tokens, 16, smem, out, "per-head 1 of 32, 16 slices");
    Run<2>(lab, seqs, heads, tokens, 8, smem, out, "2 heads of 32, 8 slices");
    Run<2>(lab, seqs, heads, tokens, 16, smem, out, "2 heads of 32, 16 slices");
    Run<4>(lab, seqs, heads, tokens, 16, smem, out, "4 heads of 32, 16 slices");
    Run<32>(lab, seqs, heads, tokens, 256, smem, out, "all 32 heads (contiguous), 256 slices");
  }
  // Llama-3 heads: 8 kv heads.
  const int h8 = 8;
  for (size_t smem : {size_t(128 * 1024), size_t(1024)}) {
    Run<1>(lab, seqs, h8, tokens, 8, smem, out, "L3: per-head 1 of 8, 8 slices");
    Run<8>(lab, seqs, h8, tokens, 64, smem, out, "L3: all 8 heads, 64 slices");
  }
  return 0;
}
