// dsinfer-bench's section on the linear layers alone: every weight matrix of a model shape timed
// through each linear-layer body at the row counts of a decode step, so that the decode table's
// differences between bodies can be traced to the matrices that cause them.
#ifndef DSINFER_ENGINE_CUDA_BENCH_BENCH_LINEAR_H_
#define DSINFER_ENGINE_CUDA_BENCH_BENCH_LINEAR_H_

#include "absl/status/status.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/cuda_backend.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

// Every weight matrix kind and the LM head, alone, through cuBLAS and the GEMV kernel at 1, 2,
// 4 and 8 rows: one launch per layer over all layers' matrices in turn (so no matrix is still
// in L2 from the launch before), median of 7 passes; GB/s of weights read (the floor is the
// weights ÷ the D2D rate; a read-only stream may beat that read + write rate), and the
// weights' time of one decode step (every layer + the LM head) per body.
absl::Status TimeLinearBodies(CudaBackend& b, const RandomWeightModel& m, double hbm_bps,
                              DeviceTimer& timer, nlohmann::json& out);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_BENCH_LINEAR_H_
