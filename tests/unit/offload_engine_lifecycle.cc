// What a sequence leaves behind in the offload modes (offload_engine_test's binary): finishing
// or cancelling one must return pool blocks, labels and reuse-cache slots to idle, as one engine
// serves request after request from the same pool; and a sequence the exhausted pool refuses
// must change nothing for one already running, which decodes on bit for bit.
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/cpu_backend.h"
#include "engine/forward_batch.h"
#include "engine/model.h"
#include "engine/sparse/channel_config.h"
#include "gtest/gtest.h"
#include "offload/kv_block_pool.h"
#include "tests/engine_test_util.h"
#include "tests/unit/offload_engine_harness.h"

namespace dsinfer {
namespace {

TEST(OffloadEngine, ReleaseReturnsEverythingToIdle) {
  CpuBackend backend;
  std::unique_ptr<Model> off = LoadModel(kGoldenModels[1], backend, KvMode::kOffload);
  ASSERT_NE(off, nullptr);
  const ModelConfig& c = off->config();
  ASSERT_TRUE(off->double_sparsity().SetChannelConfig(RandomChannelConfig(c, 1)).ok());
  const AttentionOptions o = SparseOptions(16, 4, 0.25);
  const std::vector<std::vector<int32_t>> ids = {RandomIds(40, static_cast<int>(c.vocab_size), 1),
                                                 RandomIds(30, static_cast<int>(c.vocab_size), 2)};
  BatchRun run = RunBatch(*off, ids, {10, 10}, o);
  EXPECT_GT(off->offload_tier()->reuse_slots_in_use(), 0);
  EXPECT_GT(off->double_sparsity().labels().bytes_in_use(), 0);
  // Finish: the model releases sequence 0; cancel: only the pool drops sequence 1 (as a
  // scheduler would), and the next step frees the rest.
  off->ReleaseSequence(run.seqs[0]);
  EXPECT_EQ(off->offload_tier()->Counters(run.seqs[0]), nullptr);
  off->kv_pool().Release(run.seqs[1]);
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  BatchRun other = RunBatch(*off, {{1, 2, 3}}, {0}, dense);
  off->ReleaseSequence(other.seqs[0]);
  EXPECT_EQ(off->offload_tier()->reuse_slots_in_use(), 0);
  EXPECT_EQ(off->double_sparsity().labels().bytes_in_use(), 0);
  EXPECT_EQ(off->kv_pool().bytes_in_use(), 0);
  EXPECT_EQ(off->offload_tier()->Counters(run.seqs[1]), nullptr);
}

TEST(OffloadEngine, PoolExhaustionRefusesOneSequenceAndTheOtherRunsOn) {
  const char* dir = kGoldenModels[0];
  CpuBackend gpu_backend, backend;
  std::unique_ptr<Model> gpu = LoadModel(dir, gpu_backend, KvMode::kGpu);
  OffloadOptions oo;
  oo.predict = false;
  std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo, /*pool_tokens=*/64);
  ASSERT_NE(gpu, nullptr);
  ASSERT_NE(off, nullptr);
  const ModelConfig& c = gpu->config();
  const ChannelConfig channels = RandomChannelConfig(c, 2);
  ASSERT_TRUE(gpu->double_sparsity().SetChannelConfig(channels).ok());
  ASSERT_TRUE(off->double_sparsity().SetChannelConfig(channels).ok());
  const AttentionOptions o = SparseOptions(8, 16, 0.25);
  const std::vector<int32_t> ids = RandomIds(48, static_cast<int>(c.vocab_size), 7);
  const BatchRun want = RunBatch(*gpu, {ids}, {8}, WithoutDenseLayers(o));
  // Sequence A takes 48 of the 64 tokens; B asks for 32 and is refused, changing nothing.
  KvBlockPool& pool = off->kv_pool();
  const KvBlockPool::SequenceId a = pool.AddSequence();
  ASSERT_TRUE(pool.Reserve(a, 48).ok());
  const KvBlockPool::SequenceId b = pool.AddSequence();
  const int64_t free_before = pool.free_blocks();
  const absl::Status refused = pool.Reserve(b, 32);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_EQ(pool.free_blocks(), free_before);
  pool.Release(b);
  std::vector<float> all, logits;
  for (int64_t i = 0; i < 48;) {
    ForwardBatch batch;
    const int64_t n = i == 0 ? 8 : 1;
    batch.Add(a, ids.data() + i, n, i, false);
    batch.sequences.back().attention = &o;
    ASSERT_TRUE(off->Forward(batch, logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
    i += n;
  }
  EXPECT_TRUE(BitEqual(want.logits, all));
  off->ReleaseSequence(a);
  EXPECT_EQ(pool.bytes_in_use(), 0);
}

}  // namespace
}  // namespace dsinfer
