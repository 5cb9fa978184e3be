// The offload tier's CUDA kernels (docs/offload.md); declarations only, so g++-compiled code
// includes this header too. Job descriptions and twins: kernels/cuda/offload_gather_reference.h.
//
// LaunchFetchRows executes one fetch plan: each selected row comes from the layer's reuse
// slab (HBM) or straight from the host pool through its mapped device address (zero-copy over
// PCIe: no staging copy, no host involvement), into the plan's fetch-buffer segment; rows read
// from the host are also stored into their reuse slots from the same registers. Each thread
// moves 16-byte pieces, adjacent threads the pieces of one row (a warp covers K and V of one
// 128-dim bf16 row), and each thread issues several independent loads before its stores, so
// thousands of PCIe reads are in flight per SM — what zero-copy needs to approach the link's
// bandwidth for scattered 128–256-byte rows.
//
// LaunchWriteCurrentKv places the step's current K/V behind the fetched rows of each head.
//
// Both only move bytes (any 16-bit or 32-bit element type), allocate nothing and check the
// launch. On failure nothing was launched.
#ifndef DSINFER_KERNELS_CUDA_OFFLOAD_GATHER_CUH_
#define DSINFER_KERNELS_CUDA_OFFLOAD_GATHER_CUH_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "kernels/cuda/offload_gather_reference.h"

namespace dsinfer {

// `job`'s pointers are device addresses (the pool's: mapped host memory; rows: device).
// The grid is at most `max_blocks` blocks of 256 threads, each looping over its share. Twin:
// FetchRowsReference. The gather runs on the copy stream beside the layer's compute, and a
// zero-copy read waits microseconds on PCIe while it holds its SM's memory-request slots: with
// the grid over every SM (2 blocks each, run 7's default) the layer's kernels ran ~3x slower
// while a gather was in flight (docs/benchmarks.md run 9, --timeline), so the step was the
// gathers plus the compute. 64 blocks still keep the link busy (each thread has 4 16-byte
// reads in flight: 1 MiB) and leave most SMs to the compute: 128K batch 1 without reuse
// 28.7 -> 22.4 ms (264 blocks -> 64; 32: 23.5, 16: 34.8). A gather that also looks every row
// up among the previous step's (previous-step reuse: a binary search in HBM per row) is
// latency-bound on those searches and wants the wide grid: 14.7 ms at 264 blocks, 15.6 at 64,
// 23.7 at 32 — kFetchRowsReuseMaxBlocks.
constexpr int kFetchRowsMaxBlocks = 64;
constexpr int kFetchRowsReuseMaxBlocks = 264;
absl::Status LaunchFetchRows(const CudaFetchJob& job, cudaStream_t stream,
                             int max_blocks = kFetchRowsMaxBlocks);

// LaunchFetchRows of `count` jobs (one layer's sequences) in one grid of at most `max_blocks`
// blocks per kFetchRowsMaxJobs jobs: one launch where a batch's sequences took one each, with
// the link idle through every launch's tail and the next one's start (H200, docs/benchmarks.md
// run 10: 32K batch 4 26.59 -> 25.78 ms a step, the gathers of the GPU timeline's step 22.3 ->
// 20.4 ms). Jobs with
// `hits` (previous-step reuse) are counted per job: such a job must be the only one. Every job
// is checked before anything is launched. Twin: FetchRowsReference of each job.
constexpr int kFetchRowsMaxJobs = 8;
absl::Status LaunchFetchRowsMany(const CudaFetchJob* jobs, int count, cudaStream_t stream,
                                 int max_blocks = kFetchRowsMaxBlocks);

// `job`'s pointers are device addresses. Twin: WriteCurrentKvReference.
absl::Status LaunchWriteCurrentKv(const CudaCurrentKv& job, cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_OFFLOAD_GATHER_CUH_
