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
// The grid is at most `blocks_per_sm` blocks of each of `sm_count` SMs. Twin:
// FetchRowsReference. Default 2 (H200, docs/benchmarks.md run 7): the gather runs beside the
// layer's compute on the copy stream, and 2 blocks of 256 threads per SM still keep ~4 MB of
// reads in flight; 256K offload steps were 3% (no reuse) to 13% (previous-step reuse) faster
// than at 8, 1 block was slower.
constexpr int kFetchRowsBlocksPerSm = 2;
absl::Status LaunchFetchRows(const CudaFetchJob& job, int sm_count, cudaStream_t stream,
                             int blocks_per_sm = kFetchRowsBlocksPerSm);

// `job`'s pointers are device addresses. Twin: WriteCurrentKvReference.
absl::Status LaunchWriteCurrentKv(const CudaCurrentKv& job, cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_OFFLOAD_GATHER_CUH_
