// How dsinfer-bench builds a Double Sparsity decode configuration from its --ds_* flags and
// --label_bits: the per-request attention options, the label bytes a token costs, and the mixed
// steps (dense sequences beside sparse ones, two label formats in one batch) a row may time.
// The main loop sizes memory by these options and the decode section runs them, so both read
// them from here; the flags themselves are read in bench_main.cc alone.
#ifndef DSINFER_ENGINE_CUDA_BENCH_BENCH_DS_OPTIONS_H_
#define DSINFER_ENGINE_CUDA_BENCH_BENCH_DS_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/attention_options.h"
#include "engine/model_config.h"

namespace dsinfer {

// The Double Sparsity flags, as values.
struct DsBenchOptions {
  int ratio = 0;                  // --ds_ratio
  int label_bits = 0;             // --label_bits
  int dense_layers = 0;           // --ds_dense_layers
  bool mixed_label_bits = false;  // --ds_mixed_label_bits
  int64_t dense_sequences = 0;    // --ds_dense_sequences
  bool mixed_baseline = false;    // --ds_mixed_baseline
  bool mixed_sequential = false;  // --ds_mixed_sequential
  std::string beside_waves;       // --ds_beside_waves
  bool split_chain = false;       // --ds_split_chain
};

// The Double Sparsity options of --ds_ratio / --ds_dense_layers with `label_bits` (by default
// --label_bits').
absl::StatusOr<AttentionOptions> DsOptions(const ModelConfig& c, const DsBenchOptions& ds,
                                           int label_bits = 0);

// Bytes of one (token, KV head) label row under `o` (LabelFormat::RowBytes).
int64_t LabelRowBytes(const AttentionOptions& o);

// --ds_mixed_label_bits' other label bits.
int OtherLabelBits(const DsBenchOptions& ds);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_BENCH_DS_OPTIONS_H_
