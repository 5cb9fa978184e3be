// Throwaway probe (not committed): checks the wgmma descriptor layouts against a CPU product.
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <vector>
#include "kernels/cuda/wgmma_ptx.cuh"
#include "kernels/cuda/mma_ptx.cuh"
using namespace dsinfer::cuda;
typedef __nv_bfloat16 T;

template <int HD>
__global__ void QK(const float* q, const float* k, float* s_out) {
  extern __shared__ __align__(1024) unsigned char sm[];
  unsigned char* base = (unsigned char*)(((uintptr_t)sm + 1023) & ~(uintptr_t)1023);
  unsigned char* qs = base;
  unsigned char* ks = base + 64 * HD * 2;
  for (int i = threadIdx.x; i < 64 * HD; i += 128) {
    int r = i / HD, c = i % HD;
    *(T*)(qs + SwizzledOffset<64>(r, c)) = __float2bfloat16(q[i]);
  }
  for (int i = threadIdx.x; i < 128 * HD; i += 128) {
    int r = i / HD, c = i % HD;
    *(T*)(ks + SwizzledOffset<128>(r, c)) = __float2bfloat16(k[i]);
  }
  FenceProxyAsyncShared();
  __syncthreads();
  float s[64];
  for (int i = 0; i < 64; ++i) s[i] = 0;
  FenceRegisters(s);
  WgmmaFence();
  for (int kk = 0; kk < HD / 16; ++kk) {
    uint64_t a = SwizzledDescriptor(SmemAddr(qs) + (kk / 4) * 64 * 128 + (kk % 4) * 32, 16, 1024);
    uint64_t b = SwizzledDescriptor(SmemAddr(ks) + (kk / 4) * 128 * 128 + (kk % 4) * 32, 16, 1024);
    WgmmaSS<T, 128>(s, a, b, kk > 0);
  }
  WgmmaCommit();
  WgmmaWait<0>();
  FenceRegisters(s);
  int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qq = lane % 4;
  for (int j = 0; j < 16; ++j)
    for (int e = 0; e < 4; ++e) {
      int r = 16 * w + g + 8 * (e / 2), c = 8 * j + 2 * qq + e % 2;
      s_out[r * 128 + c] = s[4 * j + e];
    }
}

template <int HD>
__global__ void PV(const float* p, const float* v, float* o_out, int swap) {
  extern __shared__ __align__(1024) unsigned char sm[];
  unsigned char* vs = (unsigned char*)(((uintptr_t)sm + 1023) & ~(uintptr_t)1023);
  for (int i = threadIdx.x; i < 128 * HD; i += 128) {
    int r = i / HD, c = i % HD;
    *(T*)(vs + SwizzledOffset<128>(r, c)) = __float2bfloat16(v[i]);
  }
  FenceProxyAsyncShared();
  __syncthreads();
  int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, qq = lane % 4;
  float o[HD / 2];
  for (int i = 0; i < HD / 2; ++i) o[i] = 0;
  uint32_t a[8][4];
  for (int kk = 0; kk < 8; ++kk) {
    int r0 = 16 * w + g, c0 = 16 * kk + 2 * qq;
    a[kk][0] = PackF<T>(p[r0 * 128 + c0], p[r0 * 128 + c0 + 1]);
    a[kk][1] = PackF<T>(p[(r0 + 8) * 128 + c0], p[(r0 + 8) * 128 + c0 + 1]);
    a[kk][2] = PackF<T>(p[r0 * 128 + c0 + 8], p[r0 * 128 + c0 + 9]);
    a[kk][3] = PackF<T>(p[(r0 + 8) * 128 + c0 + 8], p[(r0 + 8) * 128 + c0 + 9]);
  }
  FenceRegisters(o);
  WgmmaFence();
  for (int kk = 0; kk < 8; ++kk) {
    uint32_t lbo = swap ? 1024 : 128 * 128, sbo = swap ? 128 * 128 : 1024;
    uint64_t b = SwizzledDescriptor(SmemAddr(vs) + kk * 16 * 128, lbo, sbo);
    WgmmaRSTransB<T, HD>(o, a[kk], b);
  }
  WgmmaCommit();
  WgmmaWait<0>();
  FenceRegisters(o);
  for (int j = 0; j < HD / 8; ++j)
    for (int e = 0; e < 4; ++e) {
      int r = 16 * w + g + 8 * (e / 2), c = 8 * j + 2 * qq + e % 2;
      o_out[r * HD + c] = o[4 * j + e];
    }
}

float rnd() { return (rand() / (float)RAND_MAX) * 2 - 1; }
float bf(float x) { return __bfloat162float(__float2bfloat16(x)); }

template <int HD>
void Run() {
  std::vector<float> q(64 * HD), k(128 * HD), p(64 * 128), v(128 * HD);
  for (auto& x : q) x = bf(rnd());
  for (auto& x : k) x = bf(rnd());
  for (auto& x : p) x = bf(rnd());
  for (auto& x : v) x = bf(rnd());
  float *dq, *dk, *dp, *dv, *ds, *dout;
  cudaMalloc(&dq, q.size() * 4); cudaMalloc(&dk, k.size() * 4); cudaMalloc(&dp, p.size() * 4);
  cudaMalloc(&dv, v.size() * 4); cudaMalloc(&ds, 64 * 128 * 4); cudaMalloc(&dout, 64 * HD * 4);
  cudaMemcpy(dq, q.data(), q.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dk, k.data(), k.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dp, p.data(), p.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dv, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
  int smem = 1024 + 192 * HD * 2;
  cudaFuncSetAttribute(QK<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaMemset(ds, 0xff, 64 * 128 * 4);
  QK<HD><<<1, 128, smem>>>(dq, dk, ds);
  printf("HD %d QK launch: %s\n", HD, cudaGetErrorString(cudaDeviceSynchronize()));
  std::vector<float> s(64 * 128);
  cudaMemcpy(s.data(), ds, s.size() * 4, cudaMemcpyDeviceToHost);
  double err = 0;
  for (int r = 0; r < 64; ++r) for (int c = 0; c < 128; ++c) {
    double ref = 0; for (int d = 0; d < HD; ++d) ref += q[r * HD + d] * k[c * HD + d];
    err = fmax(err, fabs(ref - s[r * 128 + c]));
  }
  printf("HD %d QK max err %g (s[0]=%g)\n", HD, err, s[0]);
  cudaFuncSetAttribute(PV<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  for (int swap = 0; swap < 2; ++swap) {
    cudaMemset(dout, 0xff, 64 * HD * 4);
    PV<HD><<<1, 128, smem>>>(dp, dv, dout, swap);
    printf("HD %d PV swap %d launch: %s\n", HD, swap, cudaGetErrorString(cudaDeviceSynchronize()));
    std::vector<float> o(64 * HD);
    cudaMemcpy(o.data(), dout, o.size() * 4, cudaMemcpyDeviceToHost);
    double e2 = 0;
    for (int r = 0; r < 64; ++r) for (int c = 0; c < HD; ++c) {
      double ref = 0; for (int t = 0; t < 128; ++t) ref += p[r * 128 + t] * v[t * HD + c];
      e2 = fmax(e2, fabs(ref - o[r * HD + c]));
    }
    printf("HD %d PV swap %d max err %g\n", HD, swap, e2);
  }
}

int main() {
  Run<128>();
  Run<64>();
  return 0;
}
