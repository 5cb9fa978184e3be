// The two rates dsinfer-bench's floors divide by, measured in the same run as the figures they
// bound: the GPU's HBM bandwidth (a device-to-device copy) for decode, and cuBLAS's bf16 matmul
// rate for prefill. Measured, not taken from a data sheet, so that a figure's distance from its
// floor reflects the engine and not the board's clocks.
#ifndef DSINFER_ENGINE_CUDA_BENCH_BENCH_FLOORS_H_
#define DSINFER_ENGINE_CUDA_BENCH_BENCH_FLOORS_H_

#include "absl/status/statusor.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/cuda_backend.h"

namespace dsinfer {

// Ceiling 1: HBM bandwidth in bytes per second, a 2 GiB device-to-device copy (bytes read +
// bytes written), the median of 10 timed copies after 2 warm-up ones.
absl::StatusOr<double> MeasureHbmBandwidth(CudaBackend& b, DeviceTimer& timer);

// Ceiling 2: cuBLAS bf16 matmul rate in FLOP/s, 8192^3 on random data, the median of 10 timed
// products after 2 warm-up ones.
absl::StatusOr<double> MeasureMatmulRate(CudaBackend& b, DeviceTimer& timer);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_BENCH_FLOORS_H_
