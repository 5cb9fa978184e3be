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

// Double Sparsity's chain (scoring, the top-k kernels but the multi-block ones, the fused
// scorer + top-k, sparse attention and its combine) launched dependent with no early start
// (LaunchChained; the cluster kernels through LaunchSegmentClusters): a kernel's blocks start
// when every block of the one before has exited, then wait for its memory, so its launch
// overlaps the previous kernel's tail instead of following its completion. Needs
// DependentLaunch() too. On by default: the operator chain at Llama-3 heads, batch 8, 16K-64K
// took 5-7 us less (6-10%), at batch 1 10-20% less, at Llama-2 heads batch 8, 256K 0.3-0.8%
// less (H200, docs/benchmarks.md run 16). Run 9 had found the chain slower with an early
// start (blocks waiting on the SMs beside a stage that fills them); this variant starts
// nothing early.
bool DependentSparseChain();
void SetDependentSparseChain(bool on);

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_DEPENDENT_LAUNCH_H_
