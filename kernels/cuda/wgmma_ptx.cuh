// Inline-PTX wrappers for Hopper's warpgroup MMA (wgmma.mma_async; sm_90a only, so only files
// built for compute_90a may include this): the shared-memory matrix descriptor of 128-byte
// swizzled tiles, the fences and commit groups that order the asynchronous products, and the
// two product forms the prefill attention uses (prefill_attention_wgmma.cu):
//   WgmmaSS        D(64×N) (+)= A(64×16) · B(N×16)ᵀ, A and B K-major tiles in shared memory
//                  (S = Q·Kᵀ: Q rows and K rows both run along the head dimension);
//   WgmmaRSTransB  D(64×N) += A(64×16) · B(16×N), A in registers, B an MN-major tile in shared
//                  memory (O += P·V: P from the registers S came out in, V rows as stored).
// A warpgroup (4 consecutive warps, 128 threads) issues each product together. Fragments, per
// warp w of the warpgroup and lane (g = lane / 4, q = lane % 4), as mma.m16n8k16 lays them out
// for rows 16w..16w+15: D[4j + e] holds row g + 8·(e / 2), column 8j + 2q + e % 2; the four
// A registers hold (g, 2q..2q+1), (g + 8, 2q..), (g, 2q + 8..), (g + 8, 2q + 8..).
#ifndef DSINFER_KERNELS_CUDA_WGMMA_PTX_CUH_
#define DSINFER_KERNELS_CUDA_WGMMA_PTX_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace dsinfer {
namespace cuda {

// The tile layout the descriptors describe (the 128-byte swizzle): a tile of R rows × C 16-bit
// columns is C / 64 sub-tiles of R rows × 128 bytes, each row's eight 16-byte chunks permuted
// as chunk ^ (row & 7); the tile 1024-byte aligned. Byte offset of element (r, c).
template <int R>
__device__ __forceinline__ uint32_t SwizzledOffset(int r, int c) {
  return (c / 64) * (R * 128) + r * 128 + ((((c % 64) / 8) ^ (r & 7)) * 16) + (c % 8) * 2;
}

// A shared-memory matrix descriptor with the 128-byte swizzle: start address, leading and
// stride byte offsets (PTX ISA, "Matrix Descriptor Format"). K-major tiles: sbo = 1024 (the
// step between 8-row groups), lbo unused. MN-major tiles: lbo = the step between 64-column
// sub-tiles, sbo = 1024 (between 8-row groups along K). Advancing K by 16 elements of a K-major
// tile adds 32 bytes to the start; of an MN-major tile, 16 rows (2048 bytes).
__device__ __forceinline__ uint64_t SwizzledDescriptor(uint32_t smem_addr, uint32_t lbo,
                                                       uint32_t sbo) {
  return static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4) |
         (static_cast<uint64_t>((lbo & 0x3FFFF) >> 4) << 16) |
         (static_cast<uint64_t>((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

// Before the first product of a batch whose accumulator or A registers other instructions
// wrote.
__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
// Closes the warpgroup's batch of issued products.
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until at most kPending committed batches are in flight.
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Pins the registers in place around the asynchronous window: the compiler may not move a read
// or write of them across this point (the products write them after their asm statement).
template <int N>
__device__ __forceinline__ void FenceRegisters(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N>
__device__ __forceinline__ void FenceRegisters(uint32_t (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}
// Makes this thread's generic-proxy writes to shared memory (stores, cp.async) visible to the
// async proxy that the products read shared memory through; then a barrier.
__device__ __forceinline__ void FenceProxyAsyncShared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Sets this warpgroup's registers per thread to kRegs (a multiple of 8 in 24..256), giving
// registers back to the block's pool (kInc false) or taking them from it (kInc true): a
// warp-specialized block's producers shrink so that its consumers can grow past the launch's
// even share. Every thread of the warpgroup executes it.
template <int kRegs, bool kInc>
__device__ __forceinline__ void SetMaxRegisters() {
  static_assert(kRegs % 8 == 0 && kRegs >= 24 && kRegs <= 256, "setmaxnreg's range");
  if constexpr (kInc) {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
  } else {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
  }
}

// d (+)= a · bᵀ, m64nNk16, fp32 accumulators; a, b descriptors of K-major tiles; d is
// overwritten when accumulate == 0.
template <typename T, int N>
__device__ __forceinline__ void WgmmaSS(float (&d)[N / 2], uint64_t a, uint64_t b, int accumulate);
// d += a · b, m64nNk16, a in registers, b the descriptor of an MN-major tile.
template <typename T, int N>
__device__ __forceinline__ void WgmmaRSTransB(float (&d)[N / 2], const uint32_t (&a)[4],
                                              uint64_t b);

// The accumulator operands of the two shapes: m64n64 (32 fp32 registers a thread) and m64n128
// (64), as the instruction's list and as asm outputs bound to d[0..].
#define DSINFER_WGMMA_D32                                                                  \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, " \
  "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define DSINFER_WGMMA_D64                                                                  \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, " \
  "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "  \
  "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "  \
  "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define DSINFER_WGMMA_OUT32(d)                                                                    \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),             \
  "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),         \
  "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),      \
  "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),      \
  "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define DSINFER_WGMMA_OUT64(d)                                                                    \
  DSINFER_WGMMA_OUT32(d), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),        \
  "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),      \
  "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]),      \
  "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]),      \
  "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// WgmmaSS for one element type: PTX names it (bf16, f16).
#define DSINFER_WGMMA_SS128(T, PTX)                                                         \
  template <>                                                                               \
  __device__ __forceinline__ void WgmmaSS<T, 128>(float(&d)[64], uint64_t a, uint64_t b,    \
                                                  int accumulate) {                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                               \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX "." PTX " "             \
                 DSINFER_WGMMA_D64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"                        \
                 : DSINFER_WGMMA_OUT64(d)                                                   \
                 : "l"(a), "l"(b), "r"(accumulate));                                        \
  }
DSINFER_WGMMA_SS128(__nv_bfloat16, "bf16")
DSINFER_WGMMA_SS128(__half, "f16")

// WgmmaRSTransB for one element type and N: D and OUT the accumulator lists of N / 2
// registers, AB the operand numbers of the four A registers and B's descriptor after them.
#define DSINFER_WGMMA_RS(T, PTX, N, D, OUT, AB)                                             \
  template <>                                                                               \
  __device__ __forceinline__ void WgmmaRSTransB<T, N>(float(&d)[N / 2],                     \
                                                      const uint32_t(&a)[4], uint64_t b) {  \
    asm volatile("{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"                                 \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX "." PTX " " D        \
                 ", " AB ", p, 1, 1, 1;\n}\n"                                               \
                 : OUT(d)                                                                   \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));                     \
  }
DSINFER_WGMMA_RS(__nv_bfloat16, "bf16", 128, DSINFER_WGMMA_D64, DSINFER_WGMMA_OUT64,
                 "{%64, %65, %66, %67}, %68")
DSINFER_WGMMA_RS(__nv_bfloat16, "bf16", 64, DSINFER_WGMMA_D32, DSINFER_WGMMA_OUT32,
                 "{%32, %33, %34, %35}, %36")
DSINFER_WGMMA_RS(__half, "f16", 128, DSINFER_WGMMA_D64, DSINFER_WGMMA_OUT64,
                 "{%64, %65, %66, %67}, %68")
DSINFER_WGMMA_RS(__half, "f16", 64, DSINFER_WGMMA_D32, DSINFER_WGMMA_OUT32,
                 "{%32, %33, %34, %35}, %36")

#undef DSINFER_WGMMA_RS
#undef DSINFER_WGMMA_SS128
#undef DSINFER_WGMMA_OUT64
#undef DSINFER_WGMMA_OUT32
#undef DSINFER_WGMMA_D64
#undef DSINFER_WGMMA_D32

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_WGMMA_PTX_CUH_
