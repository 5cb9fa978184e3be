// Programmatic dependent launch (sm_90): the decode step's kernels are short (a few µs each at
// batch 1), and between two of them the chip drains the first grid's last blocks and then
// ramps the next one up, idle for most of that time. A kernel launched with LaunchDependent may
// start its blocks while the stream's previous kernel is still running, once every block of
// that kernel has called LetDependentsStart (or exited). Its blocks must call WaitForPrior before
// they read anything an earlier kernel wrote or write anything one reads: the wait returns
// when every grid the kernel depends on has finished and its writes are visible. Work that
// reads only constants (model weights) may come before the wait — that is the point: a GEMV
// streams its weights while the norm before it is still running.
//
// Correctness does not depend on where LetDependentsStart is called, only on every kernel
// launched this way waiting before its dependent accesses (then a kernel's completion implies
// its predecessors' too, so the ordering stays transitive along the stream). Without the
// launch attribute (DependentLaunch() off, or a launch through <<<>>>) both calls are no-ops
// and the stream orders kernels as usual. Kernels launched any other way (cuBLAS) start after
// the previous kernel finishes, as always.
#ifndef DSINFER_KERNELS_CUDA_DEPENDENT_LAUNCH_CUH_
#define DSINFER_KERNELS_CUDA_DEPENDENT_LAUNCH_CUH_

#include <cuda_runtime.h>

#include "kernels/cuda/dependent_launch.h"

namespace dsinfer {
namespace cuda {

// Returns once the grids this one depends on have completed and their memory is visible.
__device__ __forceinline__ void WaitForPrior() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the stream's next kernel (if launched dependent) start once every block of this grid
// has made this call or exited.
__device__ __forceinline__ void LetDependentsStart() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The prologue of a short kernel: let the next kernel start its blocks at once (they wait in
// their own prologue), then wait for the previous one before touching memory.
__device__ __forceinline__ void StartNextThenWaitForPrior() {
  LetDependentsStart();
  WaitForPrior();
}

// The launch attribute that lets a kernel's blocks start before the stream's previous kernel
// ends (programmatic stream serialization; the contract above).
inline cudaLaunchAttribute DependentLaunchAttribute() {
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  return attribute;
}

// kernel<<<grid, block, smem, stream>>>(args...), with the programmatic-serialization attribute
// when DependentLaunch() is on. The kernel must follow the contract above.
template <typename... Params, typename... Args>
cudaError_t LaunchDependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                            cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attribute[1] = {DependentLaunchAttribute()};
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = DependentLaunch() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

// kernel<<<grid, block, smem, stream>>>(args...) as a call returning the launch's error, never
// dependent: for kernels whose successors must not start early (their blocks, waiting, would
// take SM slots from a kernel that fills the GPU).
template <typename... Params, typename... Args>
cudaError_t LaunchOrdered(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, Args... args) {
  kernel<<<grid, block, smem, stream>>>(static_cast<Params>(args)...);
  return cudaGetLastError();
}

// A kernel of Double Sparsity's chain (dependent_launch.h, DependentSparseChain): launched
// dependent where both switches are on, else ordered. The kernel calls WaitForPrior before it
// reads anything and never LetDependentsStart, so the next kernel starts when its blocks exit.
template <typename... Params, typename... Args>
cudaError_t LaunchChained(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, Args... args) {
  return DependentSparseChain() ? LaunchDependent(kernel, grid, block, smem, stream, args...)
                                : LaunchOrdered(kernel, grid, block, smem, stream, args...);
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_DEPENDENT_LAUNCH_CUH_
