// Runs of the engine over the golden models for the Double Sparsity GPU tests: one sequence
// (a prefill, then one decode step a token) or several in one batch with their own attention
// options, returning the decode steps' logits; and the largest logit difference relative to
// the largest logit. Header-only, for tests.
#ifndef DSINFER_TESTS_GPU_DS_ENGINE_RUNS_H_
#define DSINFER_TESTS_GPU_DS_ENGINE_RUNS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/attention_options.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"

namespace dsinfer {

// A prefill of `prefill` rows, then one decode step per remaining id; returns every decode
// step's logits (and the sequence's attention statistics in `stats`). The KV room for all ids
// is reserved up front, or with `reserve_per_step` before each step for just that step (as a
// server does: the label caches then grow during the decode).
inline std::vector<float> RunEngine(Model& model, const std::vector<int32_t>& ids,
                                    int prefill, const AttentionOptions* options,
                                    SequenceAttentionStats* stats = nullptr,
                                    bool reserve_per_step = false) {
  KvBlockPool& pool = model.kv_pool();
  const KvBlockPool::SequenceId seq = pool.AddSequence();
  if (!reserve_per_step) {
    EXPECT_TRUE(pool.Reserve(seq, static_cast<int64_t>(ids.size())).ok());
  }
  std::vector<float> all, logits;
  for (size_t i = 0; i < ids.size();) {
    const int64_t count = i == 0 ? prefill : 1;
    if (reserve_per_step) {
      EXPECT_TRUE(pool.Reserve(seq, static_cast<int64_t>(i) + count).ok());
    }
    ForwardBatch batch;
    batch.Add(seq, &ids[i], count, static_cast<int64_t>(i), false);
    batch.sequences.back().attention = options;
    const absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (i > 0) all.insert(all.end(), logits.begin(), logits.end());
    i += count;
  }
  if (stats != nullptr) {
    const SequenceAttentionStats* st = model.double_sparsity().Stats(seq);
    *stats = st != nullptr ? *st : SequenceAttentionStats{};
  }
  model.ReleaseSequence(seq);
  return all;
}

// max |got − want| / max |want| (infinite where got is not finite).
inline double MaxDiffRatio(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, top = 0;
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff = std::max(diff, std::abs(double(got[i]) - want[i]));
    top = std::max(top, std::abs(double(want[i])));
  }
  return diff / std::max(top, 1e-30);
}

// Sequences in one batch, each with its own options and prefill: a prefill of prefills[i]
// rows of `ids`, then decode steps of all (one more id each) until the longest prefill's
// sequence has used all of `ids`; returns each sequence's decode logits.
inline std::vector<std::vector<float>> RunBatch(Model& model, const std::vector<int32_t>& ids,
                                                const std::vector<const AttentionOptions*>& opts,
                                                const std::vector<int64_t>& prefills) {
  KvBlockPool& pool = model.kv_pool();
  const size_t n = opts.size();
  const int64_t steps = static_cast<int64_t>(ids.size()) -
                        *std::max_element(prefills.begin(), prefills.end());
  std::vector<KvBlockPool::SequenceId> seqs(n);
  for (size_t i = 0; i < n; ++i) {
    seqs[i] = pool.AddSequence();
    EXPECT_TRUE(pool.Reserve(seqs[i], prefills[i] + steps).ok());
  }
  std::vector<std::vector<float>> out(n);
  std::vector<float> logits;
  const size_t vocab = static_cast<size_t>(model.config().vocab_size);
  for (int64_t step = 0; step <= steps; ++step) {
    // Step 0 prefills; step k decodes the id after each sequence's first k - 1 decodes.
    ForwardBatch batch;
    for (size_t i = 0; i < n; ++i) {
      const int64_t at = step == 0 ? 0 : prefills[i] + step - 1;
      batch.Add(seqs[i], &ids[at], step == 0 ? prefills[i] : 1, at, false);
      batch.sequences.back().attention = opts[i];
    }
    const absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (step > 0 && logits.size() == n * vocab) {
      for (size_t i = 0; i < n; ++i) {
        out[i].insert(out[i].end(), logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
      }
    }
  }
  for (KvBlockPool::SequenceId seq : seqs) model.ReleaseSequence(seq);
  return out;
}

// Two sequences in one batch (RunBatch); returns each one's decode logits.
inline std::pair<std::vector<float>, std::vector<float>> RunPair(
    Model& model, const std::vector<int32_t>& ids, const AttentionOptions* a,
    const AttentionOptions* b, int64_t prefill_a = 20, int64_t prefill_b = 20) {
  std::vector<std::vector<float>> r = RunBatch(model, ids, {a, b}, {prefill_a, prefill_b});
  return {std::move(r[0]), std::move(r[1])};
}

}  // namespace dsinfer

#endif  // DSINFER_TESTS_GPU_DS_ENGINE_RUNS_H_
