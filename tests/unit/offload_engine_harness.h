// What the offload_engine_test files share (one binary): a CPU model loaded in a kv mode, the
// batched run every comparison is made of (several sequences, a prompt chunk then one token a
// step), bit equality of logits, the Double Sparsity options the golden-model tests start from,
// and prediction recall read off Double Sparsity's counters, with the per-layer format the tests
// print it in.
#ifndef DSINFER_TESTS_UNIT_OFFLOAD_ENGINE_HARNESS_H_
#define DSINFER_TESTS_UNIT_OFFLOAD_ENGINE_HARNESS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/attention_options.h"
#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

// A model of `dir` on `backend` in kv mode `mode`; null on failure (reported through EXPECT).
std::unique_ptr<Model> LoadModel(const std::string& dir, CpuBackend& backend, KvMode mode,
                                 const OffloadOptions& offload = {}, int64_t pool_tokens = 0);

struct BatchRun {
  std::vector<float> logits;  // every step's logits, all sequences, in order
  std::vector<KvBlockPool::SequenceId> seqs;
};

// Several sequences decoded together: each first gets its prefix (`prefill[s]` tokens, one
// multi-row chunk; 0 = none), then one token per step while it has tokens left. Sequences
// stay in the pool (the caller releases them).
BatchRun RunBatch(Model& model, const std::vector<std::vector<int32_t>>& ids,
                  const std::vector<int64_t>& prefill, const AttentionOptions& options);

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b);

AttentionOptions SparseOptions(int channels, int bits, double ratio);

// `o` as kv mode offload without resident layers runs it: its dense layers run Double
// Sparsity too (DoubleSparsity::set_dense_layer_limit), so gpu mode equals it with none.
AttentionOptions WithoutDenseLayers(AttentionOptions o);

// Prediction recall: the share of the exact selection's free (non-kept) tokens that the
// predicted selection also holds, per layer.
std::vector<double> PredictionRecall(const DoubleSparsity& ds);

// One column per layer, "-" where a layer has no value (negative).
std::string Format(const std::vector<double>& v);

}  // namespace dsinfer

#endif  // DSINFER_TESTS_UNIT_OFFLOAD_ENGINE_HARNESS_H_
