// Hopper bulk copies (cp.async.bulk: the TMA unit moving a contiguous global span into shared
// memory) and the shared-memory barriers (mbarrier) that say when they have landed. One thread
// arms a barrier with the bytes it expects (ExpectBytes) and issues the copies (BulkLoad);
// every thread that reads the data waits for the barrier's phase (WaitBarrier). A ring of S
// stages waits stage s at fill n with parity n & 1.
//
// Measured on an H200 (dsinfer-read-bench, docs/benchmarks.md run 13): a streaming read
// through bulk copies 4.69 TB/s, 16-byte cp.async 4.66, 16-byte loads 4.61 (1.08-1.10× the
// copy rate the floors use); the .L2::256B prefetch qualifier held both per-thread forms to
// 4.27-4.31. What bulk copies add is that one thread keeps a whole stage in flight, with no
// registers or per-thread address arithmetic for the bytes.
// Sources and destinations 16-byte aligned, sizes multiples of 16 (the instruction's rule).
#ifndef DSINFER_KERNELS_CUDA_BULK_COPY_CUH_
#define DSINFER_KERNELS_CUDA_BULK_COPY_CUH_

#include <cstdint>

#include "kernels/cuda/mma_ptx.cuh"  // SmemAddr

namespace dsinfer {
namespace cuda {

// One thread: a barrier completing a phase on `arrivals` arrivals (by default one, ExpectBytes')
// plus the bytes ExpectBytes names; the block must synchronize before any other thread uses it.
__device__ __forceinline__ void InitBarrier(uint64_t* bar, uint32_t arrivals = 1) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(SmemAddr(bar)), "r"(arrivals)
               : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// Arrives on the barrier (release: this thread's earlier memory accesses happen before the
// phase completes for whoever waits on it).
__device__ __forceinline__ void ArriveBarrier(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(SmemAddr(bar)) : "memory");
}

// Arrives on the barrier, expecting `bytes` more to land before its phase completes.
__device__ __forceinline__ void ExpectBytes(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(
                   SmemAddr(bar)),
               "r"(bytes)
               : "memory");
}

// Copies `bytes` from global `src` to shared `dst`, counted against the barrier.
__device__ __forceinline__ void BulkLoad(void* dst, const void* src, uint32_t bytes,
                                         uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
      ::"r"(SmemAddr(dst)), "l"(src), "r"(bytes), "r"(SmemAddr(bar))
      : "memory");
}

// Returns once the barrier's phase of this parity has completed.
__device__ __forceinline__ void WaitBarrier(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      " .reg .pred done;\n"
      "WAIT:\n"  // a label local to the braces' scope
      " mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      " @!done bra WAIT;\n"
      "}" ::"r"(SmemAddr(bar)),
      "r"(parity)
      : "memory");
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_BULK_COPY_CUH_
