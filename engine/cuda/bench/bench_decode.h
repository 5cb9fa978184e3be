// dsinfer-bench's decode row: one (batch, context) configuration in one attention mode, timed
// eagerly and with the step replayed as a CUDA graph, beside its floor (weights plus the bytes
// attention must read ÷ the measured HBM rate), with one layer's attention timed alone. The
// Double Sparsity variants of the step (mixed batches, split chains, the path before
// SubsetAttention) are timed here too, since they reuse the row's batch, pool and timing.
#ifndef DSINFER_ENGINE_CUDA_BENCH_BENCH_DECODE_H_
#define DSINFER_ENGINE_CUDA_BENCH_BENCH_DECODE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/cuda/bench/bench_ds_options.h"
#include "engine/cuda/bench/bench_forward.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/forward_batch.h"
#include "nlohmann/json.hpp"
#include "offload/kv_block_pool.h"

namespace dsinfer {

// The flags a decode row reads, as values (bench_main.cc reads the flags).
struct DecodeOptions {
  int iters = 0;        // --iters: timed steps per configuration
  bool graphs = false;  // --graphs
  DsBenchOptions ds;
};

// One decode configuration in one attention mode: ms per step (eager; and replayed as a
// CUDA graph), one layer's attention alone, and the floor: weights plus the bytes
// attention must read — the context's K/V per dense layer; labels plus the selected K/V rows
// per sparse layer. Fills r and prints one table row.
absl::Status TimeDecode(CudaBackend& b, RandomWeightModel& m, Workspace& ws, ForwardBatch& fb,
                        KvBlockPool& pool, const std::string& mode, int64_t ctx, int64_t batch,
                        double hbm_bps, DeviceTimer& timer, const DecodeOptions& options,
                        nlohmann::json& r);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_BENCH_DECODE_H_
