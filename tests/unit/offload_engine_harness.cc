// The helpers the offload_engine_test files share (offload_engine_harness.h).
#include "tests/unit/offload_engine_harness.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/attention_options.h"
#include "engine/cpu_backend.h"
#include "engine/forward_batch.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

std::unique_ptr<Model> LoadModel(const std::string& dir, CpuBackend& backend, KvMode mode,
                                 const OffloadOptions& offload, int64_t pool_tokens) {
  ModelOptions options;
  options.kv_mode = mode;
  options.offload = offload;
  options.kv_pool_tokens = pool_tokens;
  auto model = Model::Load(dir, backend, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

BatchRun RunBatch(Model& model, const std::vector<std::vector<int32_t>>& ids,
                  const std::vector<int64_t>& prefill, const AttentionOptions& options) {
  BatchRun run;
  KvBlockPool& pool = model.kv_pool();
  std::vector<int64_t> done(ids.size(), 0);
  for (size_t s = 0; s < ids.size(); ++s) {
    run.seqs.push_back(pool.AddSequence());
    EXPECT_TRUE(pool.Reserve(run.seqs[s], static_cast<int64_t>(ids[s].size())).ok());
  }
  std::vector<float> logits;
  for (bool any = true; any;) {
    any = false;
    ForwardBatch batch;
    for (size_t s = 0; s < ids.size(); ++s) {
      if (done[s] >= static_cast<int64_t>(ids[s].size())) continue;
      const int64_t count = done[s] == 0 && prefill[s] > 0 ? prefill[s] : 1;
      batch.Add(run.seqs[s], ids[s].data() + done[s], count, done[s], false);
      batch.sequences.back().attention = &options;
      done[s] += count;
      any = true;
    }
    if (!any) break;
    absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    run.logits.insert(run.logits.end(), logits.begin(), logits.end());
  }
  return run;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

AttentionOptions SparseOptions(int channels, int bits, double ratio) {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = channels;
  o.label_bits = bits;
  o.token_budget_ratio = ratio;
  o.sink = 2;
  o.recent = 4;
  o.dense_layers = 1;
  return o;
}

AttentionOptions WithoutDenseLayers(AttentionOptions o) {
  o.dense_layers = 0;
  return o;
}

std::vector<double> PredictionRecall(const DoubleSparsity& ds) {
  std::vector<double> recall;
  for (size_t l = 0; l < ds.prediction_exact().size(); ++l) {
    recall.push_back(ds.prediction_exact()[l] > 0
                         ? static_cast<double>(ds.prediction_overlap()[l]) /
                               ds.prediction_exact()[l]
                         : -1.0);
  }
  return recall;
}

std::string Format(const std::vector<double>& v) {
  std::string s;
  for (double x : v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), x < 0 ? "   -  " : " %.3f", x);
    s += buf;
  }
  return s;
}

}  // namespace dsinfer
