// The offload tier wired into the forward pass on the CPU backend (docs/offload.md). In the
// offload modes attention reads only rows the tier gathered into its fetch buffers, so:
// offload with exact (own-query) selection must equal gpu-mode Double Sparsity bit for bit,
// with or without the reuse cache, even one so small it evicts constantly, and with resident
// layers read from device memory instead of the host; dense-offload must equal dense bit for
// bit; bytes fetched are counted exactly, a chunked prefill's earlier chunks included; kv mode
// names parse. The binary's other files: the helpers (offload_engine_harness.h), the predicted
// path on the golden models (offload_engine_prediction.cc), prediction on the trained demo
// model (offload_engine_demo_model.cc), and release and pool exhaustion
// (offload_engine_lifecycle.cc).
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/cpu_backend.h"
#include "engine/forward_batch.h"
#include "engine/model.h"
#include "engine/sparse/channel_config.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "offload/kv_block_pool.h"
#include "offload/offload_tier.h"
#include "tests/engine_test_util.h"
#include "tests/unit/offload_engine_harness.h"

namespace dsinfer {
namespace {

TEST(OffloadEngine, ExactSelectionEqualsGpuModeBitForBit) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    CpuBackend gpu_backend;
    std::unique_ptr<Model> gpu = LoadModel(dir, gpu_backend, KvMode::kGpu);
    ASSERT_NE(gpu, nullptr);
    const ModelConfig& c = gpu->config();
    const ChannelConfig channels = RandomChannelConfig(c, 21);
    ASSERT_TRUE(gpu->double_sparsity().SetChannelConfig(channels).ok());
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(61, static_cast<int>(c.vocab_size), 5),
        RandomIds(43, static_cast<int>(c.vocab_size), 6)};
    const std::vector<int64_t> prefill = {17, 0};  // one prompt chunk, one all-decode
    std::vector<float> previous;
    for (int bits : {16, 4}) {
      // The offload runs below take o with its dense layer, which offload mode without
      // resident layers runs sparse (on its own query): gpu mode with no dense layer.
      const AttentionOptions o = SparseOptions(c.head_dim / 8, bits, 0.25);
      const BatchRun want = RunBatch(*gpu, ids, prefill, WithoutDenseLayers(o));
      EXPECT_FALSE(BitEqual(previous, want.logits)) << "4-bit labels select differently";
      previous = want.logits;
      std::vector<SequenceAttentionStats> want_stats;
      for (auto seq : want.seqs) want_stats.push_back(*gpu->double_sparsity().Stats(seq));
      for (auto seq : want.seqs) gpu->ReleaseSequence(seq);
      // Reuse off, a cache large enough for every row, one so small it evicts all the time,
      // and previous-step reuse (-1).
      for (int64_t reuse : {int64_t{0}, int64_t{4096}, int64_t{5}, int64_t{-1}}) {
        SCOPED_TRACE(testing::Message() << "bits " << bits << " reuse " << reuse);
        OffloadOptions oo;
        oo.predict = false;
        oo.reuse_rows = std::max<int64_t>(reuse, 0);
        oo.reuse_previous = reuse < 0;
        oo.resident_layers = 0;  // every layer from the host (ResidentLayersReadNothingFromTheHost)
        CpuBackend backend;
        std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo);
        ASSERT_NE(off, nullptr);
        ASSERT_TRUE(off->double_sparsity().SetChannelConfig(channels).ok());
        const BatchRun got = RunBatch(*off, ids, prefill, o);
        EXPECT_TRUE(BitEqual(want.logits, got.logits));
        int64_t looked_up = 0, reused = 0;
        for (size_t s = 0; s < got.seqs.size(); ++s) {
          const SequenceAttentionStats& st = *off->double_sparsity().Stats(got.seqs[s]);
          EXPECT_EQ(st.tokens_attended, want_stats[s].tokens_attended);
          EXPECT_EQ(st.sparse_rows, want_stats[s].sparse_rows);
          EXPECT_EQ(st.predicted_rows, 0);
          // Exact accounting: every decode (layer, row, KV head) attended its set, of which
          // all but the current token came through the buffer; prefill chunks read nothing
          // from the host here (they have no earlier chunk).
          const int64_t decode_rows = static_cast<int64_t>(ids[s].size()) - prefill[s];
          int64_t prefill_attended = 0;
          for (int64_t r = 0; r < prefill[s]; ++r) prefill_attended += r + 1;
          const int64_t attended_decode =
              st.tokens_attended - prefill_attended * c.num_heads_kv * c.num_layers;
          EXPECT_EQ(st.fetch.rows_requested,
                    attended_decode - decode_rows * c.num_layers * c.num_heads_kv);
          EXPECT_EQ(st.fetch.rows_from_host + st.fetch.rows_reused, st.fetch.rows_requested);
          EXPECT_EQ(st.fetch.bytes_from_host,
                    st.fetch.rows_from_host * 2 * c.head_dim * static_cast<int64_t>(sizeof(float)));
          if (reuse == 0) {
            EXPECT_EQ(st.fetch.rows_reused, 0);
          }
          looked_up += st.fetch.rows_looked_up;
          reused += st.fetch.rows_reused;
        }
        if (reuse == 4096 || reuse < 0) {
          // Random-weight models select nearly at random, so only "some" is certain here;
          // the trained demo model's rate is measured below.
          EXPECT_GT(reused, 0);
          std::cout << dir << " bits " << bits << ": reuse " << reuse << " hit rate "
                    << static_cast<double>(reused) / looked_up << "\n";
        }
        for (auto seq : got.seqs) off->ReleaseSequence(seq);
        EXPECT_EQ(off->offload_tier()->reuse_slots_in_use(), 0);
      }
    }
  }
}

// Resident layers (OffloadOptions::resident_layers; none by default): the first layers' K/V
// in the backend's device memory. Three runs of one sequence, exact selection:
//   host:  no resident layer; the dense layer runs sparse, every row comes from the host;
//   one:   layer 0 resident and sparse (no dense layer): its rows are gathered from the device
//          and count as rows_resident; logits bit-equal to `host`, host rows fewer by exactly
//          those;
//   two:   layers 0 and 1 resident with one dense layer: layer 0 runs dense in place (fetches
//          nothing), layer 1 sparse from the device; logits bit-equal to gpu mode.
TEST(OffloadEngine, ResidentLayersReadNothingFromTheHost) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    CpuBackend b0, b1, b2, bg;
    OffloadOptions host, one, two;
    host.predict = one.predict = two.predict = false;
    host.reuse_rows = one.reuse_rows = two.reuse_rows = 0;
    host.resident_layers = -1;  // the default: none
    one.resident_layers = 1;
    two.resident_layers = 2;
    std::unique_ptr<Model> h = LoadModel(dir, b0, KvMode::kOffload, host);
    std::unique_ptr<Model> r1 = LoadModel(dir, b1, KvMode::kOffload, one);
    std::unique_ptr<Model> r2 = LoadModel(dir, b2, KvMode::kOffload, two);
    std::unique_ptr<Model> gpu = LoadModel(dir, bg, KvMode::kGpu);
    for (const auto* m : {&h, &r1, &r2, &gpu}) ASSERT_NE(*m, nullptr);
    EXPECT_EQ(h->kv_pool().options().resident_layers, 0);
    EXPECT_EQ(r2->kv_pool().options().resident_layers, 2);
    const ModelConfig& c = h->config();
    const ChannelConfig channels = RandomChannelConfig(c, 23);
    for (const auto* m : {&h, &r1, &r2, &gpu}) {
      ASSERT_TRUE((*m)->double_sparsity().SetChannelConfig(channels).ok());
    }
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(40, static_cast<int>(c.vocab_size), 8)};
    const AttentionOptions o = SparseOptions(c.head_dim / 8, 16, 0.25);
    const BatchRun a = RunBatch(*h, ids, {12}, o);
    const BatchRun b = RunBatch(*r1, ids, {12}, WithoutDenseLayers(o));
    const BatchRun d = RunBatch(*r2, ids, {12}, o);
    const BatchRun want = RunBatch(*gpu, ids, {12}, o);
    EXPECT_TRUE(BitEqual(a.logits, b.logits));
    EXPECT_TRUE(BitEqual(d.logits, want.logits));
    EXPECT_FALSE(BitEqual(a.logits, d.logits)) << "the dense layer changes the logits";
    const FetchCounters& fa = h->double_sparsity().Stats(a.seqs[0])->fetch;
    const FetchCounters& fb = r1->double_sparsity().Stats(b.seqs[0])->fetch;
    const FetchCounters& fd = r2->double_sparsity().Stats(d.seqs[0])->fetch;
    EXPECT_EQ(fa.rows_resident, 0);
    EXPECT_EQ(fa.rows_from_host, fa.rows_requested);
    // Layer 0's sparse rows: from the device in `one`, not fetched at all in `two`.
    EXPECT_GT(fb.rows_resident, 0);
    EXPECT_EQ(fb.rows_requested, fa.rows_requested);
    EXPECT_EQ(fb.rows_from_host, fa.rows_from_host - fb.rows_resident);
    EXPECT_GT(fd.rows_resident, 0);
    EXPECT_EQ(fd.rows_requested, fa.rows_requested - fb.rows_resident);
    EXPECT_EQ(fd.rows_from_host + fd.rows_resident, fd.rows_requested);
    EXPECT_EQ(fd.rows_from_host, fa.rows_from_host - fb.rows_resident - fd.rows_resident);
    for (const FetchCounters* f : {&fa, &fb, &fd}) {
      EXPECT_EQ(f->bytes_from_host,
                f->rows_from_host * 2 * c.head_dim * static_cast<int64_t>(sizeof(float)));
    }
    h->ReleaseSequence(a.seqs[0]);
    r1->ReleaseSequence(b.seqs[0]);
    r2->ReleaseSequence(d.seqs[0]);
    EXPECT_EQ(r2->kv_pool().blocks_in_use(), 0);
  }
  // -1 resolves to 0 in every mode: the GPU holds no K/V unless asked to.
  ModelOptions mo;
  mo.kv_mode = KvMode::kOffload;
  mo.attention.dense_layers = 3;
  EXPECT_EQ(ResidentLayers(mo, 32), 0);
  mo.kv_mode = KvMode::kDenseOffload;
  EXPECT_EQ(ResidentLayers(mo, 32), 0);
  mo.offload.resident_layers = 5;
  EXPECT_EQ(ResidentLayers(mo, 32), 5);
  EXPECT_EQ(ResidentLayers(mo, 2), 2);
  mo.kv_mode = KvMode::kGpu;
  EXPECT_EQ(ResidentLayers(mo, 32), 0);
  mo.offload.resident_layers = -2;
  EXPECT_FALSE(mo.Validate().ok());
}

TEST(OffloadEngine, DenseOffloadEqualsDenseAndStreamsEveryRow) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    CpuBackend gpu_backend, backend;
    std::unique_ptr<Model> gpu = LoadModel(dir, gpu_backend, KvMode::kGpu);
    std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kDenseOffload);
    ASSERT_NE(gpu, nullptr);
    ASSERT_NE(off, nullptr);
    const ModelConfig& c = gpu->config();
    // Dense-offload ignores Double Sparsity even when a request asks for it.
    ASSERT_TRUE(off->double_sparsity().SetChannelConfig(RandomChannelConfig(c, 4)).ok());
    AttentionOptions dense;
    dense.mode = AttentionMode::kDense;
    const AttentionOptions sparse = SparseOptions(c.head_dim / 8, 16, 0.25);
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(37, static_cast<int>(c.vocab_size), 8),
        RandomIds(29, static_cast<int>(c.vocab_size), 9)};
    const std::vector<int64_t> prefill = {9, 0};
    const BatchRun want = RunBatch(*gpu, ids, prefill, dense);
    const BatchRun got = RunBatch(*off, ids, prefill, sparse);
    EXPECT_TRUE(BitEqual(want.logits, got.logits));
    for (size_t s = 0; s < ids.size(); ++s) {
      const SequenceAttentionStats& st = *off->double_sparsity().Stats(got.seqs[s]);
      EXPECT_EQ(st.sparse_rows, 0);
      EXPECT_EQ(off->double_sparsity().labels().SequenceBytes(got.seqs[s]), 0);
      // A decode row at position p streams p rows per layer and KV head.
      int64_t rows = 0;
      for (int64_t p = prefill[s]; p < static_cast<int64_t>(ids[s].size()); ++p) rows += p;
      rows *= c.num_layers * c.num_heads_kv;
      EXPECT_EQ(st.fetch.rows_from_host, rows);
      EXPECT_EQ(st.fetch.rows_reused, 0);
      EXPECT_EQ(st.fetch.bytes_from_host, rows * 2 * c.head_dim * 4);
    }
  }
}

TEST(OffloadEngine, ChunkedPrefillCountsEarlierChunksAsHostReads) {
  CpuBackend backend;
  OffloadOptions all_on_host;
  all_on_host.resident_layers = 0;
  std::unique_ptr<Model> off = LoadModel(kGoldenModels[0], backend, KvMode::kOffload, all_on_host);
  ASSERT_NE(off, nullptr);
  const ModelConfig& c = off->config();
  const std::vector<int32_t> ids = RandomIds(30, static_cast<int>(c.vocab_size), 3);
  KvBlockPool::SequenceId seq = off->kv_pool().AddSequence();
  ASSERT_TRUE(off->kv_pool().Reserve(seq, 30).ok());
  std::vector<float> logits;
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  for (int64_t start : {0, 12}) {
    ForwardBatch batch;
    batch.Add(seq, ids.data() + start, start == 0 ? 12 : 18, start, false);
    batch.sequences.back().attention = &dense;
    ASSERT_TRUE(off->Forward(batch, logits).ok());
  }
  const SequenceAttentionStats& st = *off->double_sparsity().Stats(seq);
  EXPECT_EQ(st.fetch.rows_from_host, 12 * c.num_layers * c.num_heads_kv);
  EXPECT_EQ(off->offload_tier()->step_totals().rows_from_host, st.fetch.rows_from_host);
  // One decode step after it: dense streams the 30 cached rows of every layer and KV head.
  ForwardBatch step;
  const int32_t next = 5;
  step.Add(seq, &next, 1, 30, false);
  step.sequences.back().attention = &dense;
  ASSERT_TRUE(off->kv_pool().Reserve(seq, 31).ok());
  ASSERT_TRUE(off->Forward(step, logits).ok());
  EXPECT_EQ(off->offload_tier()->step_totals().rows_from_host, 30 * c.num_layers * c.num_heads_kv);
  EXPECT_EQ(off->offload_tier()->step_totals().bytes_from_host,
            30 * c.num_layers * c.num_heads_kv * 2 * c.head_dim * 4);
  off->ReleaseSequence(seq);
}

TEST(OffloadEngine, ParsesKvModes) {
  EXPECT_EQ(*ParseKvMode("gpu"), KvMode::kGpu);
  EXPECT_EQ(*ParseKvMode("offload"), KvMode::kOffload);
  EXPECT_EQ(*ParseKvMode("dense-offload"), KvMode::kDenseOffload);
  EXPECT_EQ(ParseKvMode("host").status().code(), absl::StatusCode::kInvalidArgument);
  for (KvMode m : {KvMode::kGpu, KvMode::kOffload, KvMode::kDenseOffload}) {
    EXPECT_EQ(*ParseKvMode(KvModeName(m)), m);
  }
  ModelOptions bad;
  bad.offload.reuse_rows = -1;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinfer
