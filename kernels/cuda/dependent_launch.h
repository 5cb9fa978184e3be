// The process-wide switch for programmatic dependent launch (dependent_launch.cuh): on by
// default; the benchmark turns it off to time the same step side by side. A host-only header,
// so that the backend and the benchmarks (compiled by g++) can flip it.
#ifndef DSINFER_KERNELS_CUDA_DEPENDENT_LAUNCH_H_
#define DSINFER_KERNELS_CUDA_DEPENDENT_LAUNCH_H_

namespace dsinfer {
namespace cuda {

bool DependentLaunch();
// Affects launches made after the call; CUDA graphs captured before keep what they captured.
void SetDependentLaunch(bool on);

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_DEPENDENT_LAUNCH_H_
