// Model::PrefillLayerMajor on the CPU backend: the prompt prefilled layer by layer through a
// one-layer staging pool must leave the model in exactly the state chunked prefill through
// Forward leaves it — the same last-position logits, the same K/V in every layer of the pool,
// the same Double Sparsity labels and statistics — in gpu and offload kv modes; the decode
// steps after it must then match too. Plus the KvBlockPool pieces it uses
// (AddSequenceWithBlocks, KvBlockCopies) and its refusals.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "tests/engine_test_util.h"
#include "tests/layer_major_check.h"

namespace dsinfer {
namespace {

constexpr const char* kModels[] = {"tests/data/golden/llama-gqa-hd64",
                                   "tests/data/golden/llama3-hd128-tied"};

std::unique_ptr<Model> LoadModel(const std::string& dir, CpuBackend& backend, KvMode mode) {
  ModelOptions options;
  options.kv_mode = mode;
  auto model = Model::Load(dir, backend, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

// Prefills `ids` in chunks through Forward; returns the last position's logits.
std::vector<float> ChunkedPrefill(Model& model, KvBlockPool::SequenceId seq,
                                  const std::vector<int32_t>& ids, int64_t chunk,
                                  const AttentionOptions* options) {
  std::vector<float> logits, last;
  const int64_t n = static_cast<int64_t>(ids.size());
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t m = std::min(chunk, n - r0);
    ForwardBatch batch;
    batch.Add(seq, ids.data() + r0, m, r0, false);
    batch.sequences.back().attention = options;
    const absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) return {};
    last = logits;
  }
  return last;
}

// Double Sparsity on both models from the same random channel config (seed `seed`): every
// layer but the first sparse, r = head_dim / 4, a quarter of the tokens.
AttentionOptions SparseOnBoth(Model& a, Model& b, uint32_t seed) {
  const ModelConfig& c = a.config();
  EXPECT_TRUE(a.double_sparsity().SetChannelConfig(RandomChannelConfig(c, seed)).ok());
  EXPECT_TRUE(b.double_sparsity().SetChannelConfig(RandomChannelConfig(c, seed)).ok());
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = c.head_dim / 4;
  o.token_budget_ratio = 0.25;
  o.sink = 2;
  o.recent = 4;
  o.dense_layers = 1;
  return o;
}

TEST(LayerMajorPrefill, EqualsChunkedPrefillInEveryKvModeAndDecodesTheSame) {
  for (const char* dir : kModels) {
    for (KvMode mode : {KvMode::kGpu, KvMode::kOffload}) {
      for (bool sparse : {false, true}) {
        SCOPED_TRACE(testing::Message() << dir << " mode " << static_cast<int>(mode)
                                        << (sparse ? " double sparse" : " dense"));
        CpuBackend ba, bb;
        std::unique_ptr<Model> a = LoadModel(dir, ba, mode), b = LoadModel(dir, bb, mode);
        ASSERT_NE(a, nullptr);
        ASSERT_NE(b, nullptr);
        const ModelConfig& c = a->config();
        AttentionOptions o;
        if (sparse) o = SparseOnBoth(*a, *b, 3);
        const AttentionOptions* options = sparse ? &o : nullptr;
        const std::vector<int32_t> ids = RandomIds(101, static_cast<int>(c.vocab_size), 9);
        const int decode = 6;
        const int64_t chunk = 37;  // the last chunk is short (101 = 2 × 37 + 27)
        const KvBlockPool::SequenceId sa = a->kv_pool().AddSequence();
        const KvBlockPool::SequenceId sb = b->kv_pool().AddSequence();
        ASSERT_TRUE(a->kv_pool().Reserve(sa, 101 + decode).ok());
        ASSERT_TRUE(b->kv_pool().Reserve(sb, 101 + decode).ok());
        const std::vector<float> want = ChunkedPrefill(*a, sa, ids, chunk, options);
        auto got = b->PrefillLayerMajor(sb, ids, chunk, options);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_LE(MaxRelDiff(want, *got), 1e-6);
        // Every layer's K and V rows of the prompt, in the pool.
        const KvPoolOptions& po = a->kv_pool().options();
        const int64_t row = static_cast<int64_t>(po.kv_heads) * po.head_dim;
        for (int l = 0; l < c.num_layers; ++l) {
          for (int part = 0; part < 2; ++part) {
            const float* pa = static_cast<const float*>(part == 0 ? a->kv_pool().KBase(l)
                                                                  : a->kv_pool().VBase(l));
            const float* pb = static_cast<const float*>(part == 0 ? b->kv_pool().KBase(l)
                                                                  : b->kv_pool().VBase(l));
            double worst = 0;
            for (int64_t t = 0; t < 101; ++t) {
              const int64_t ba_ = a->kv_pool().BlockTable(sa)[t / po.block_tokens];
              const int64_t bb_ = b->kv_pool().BlockTable(sb)[t / po.block_tokens];
              const float* ra = pa + (ba_ * po.block_tokens + t % po.block_tokens) * row;
              const float* rb = pb + (bb_ * po.block_tokens + t % po.block_tokens) * row;
              for (int64_t e = 0; e < row; ++e) {
                worst = std::max(worst, std::abs(static_cast<double>(ra[e]) - rb[e]));
              }
            }
            EXPECT_LE(worst, 1e-5) << "layer " << l << (part == 0 ? " K" : " V");
          }
        }
        // Statistics: the prompt counted as one prefill, as the chunks add up to.
        const SequenceAttentionStats* stats_a = a->double_sparsity().Stats(sa);
        const SequenceAttentionStats* stats_b = b->double_sparsity().Stats(sb);
        ASSERT_NE(stats_a, nullptr);
        ASSERT_NE(stats_b, nullptr);
        EXPECT_EQ(stats_a->dense_rows, stats_b->dense_rows);
        EXPECT_EQ(stats_a->tokens_attended, stats_b->tokens_attended);
        // Decode after it: the same logits step by step (sparse rows use the labels prefill
        // stored).
        const int32_t next = static_cast<int32_t>(
            std::max_element(want.begin(), want.end()) - want.begin());
        const std::vector<float> da = Decode(*a, sa, next, 101, decode, options);
        const std::vector<float> db = Decode(*b, sb, next, 101, decode, options);
        EXPECT_LE(MaxRelDiff(da, db), 1e-5);
        EXPECT_EQ(a->double_sparsity().Stats(sa)->sparse_rows,
                  b->double_sparsity().Stats(sb)->sparse_rows);
        // The staging pool is gone: only the sequence's own blocks are in use.
        EXPECT_EQ(b->kv_pool().blocks_in_use(), a->kv_pool().blocks_in_use());
      }
    }
  }
}

// StartLayerMajor + ContinueLayerMajor one layer at a time, with another sequence decoding a
// token between the layers (as the server's scheduler runs it): the prompt's logits equal the
// one-shot PrefillLayerMajor's, the other sequence's logits equal its run alone, the prompt's
// statistics are counted once, and decode after it matches; a prefill dropped half-way leaves
// nothing behind.
TEST(LayerMajorPrefill, InterleavedWithOtherSequencesEqualsOneShot) {
  for (const char* dir : kModels) {
    for (KvMode mode : {KvMode::kGpu, KvMode::kOffload}) {
      SCOPED_TRACE(testing::Message() << dir << " mode " << static_cast<int>(mode));
      CpuBackend ba, bb;
      std::unique_ptr<Model> a = LoadModel(dir, ba, mode), b = LoadModel(dir, bb, mode);
      ASSERT_NE(a, nullptr);
      ASSERT_NE(b, nullptr);
      const AttentionOptions o = SparseOnBoth(*a, *b, 5);
      ExpectInterleavedLayerMajorEqualsOneShot(*a, *b, o, /*prompt=*/90, /*chunk=*/32,
                                               /*decode=*/4, /*tolerance=*/1e-5);
    }
  }
}

TEST(LayerMajorPrefill, RefusesWhatItCannotDo) {
  CpuBackend backend;
  std::unique_ptr<Model> m = LoadModel(kModels[0], backend, KvMode::kOffload);
  ASSERT_NE(m, nullptr);
  const std::vector<int32_t> ids(40, 3);
  const KvBlockPool::SequenceId seq = m->kv_pool().AddSequence();
  // No room reserved yet; an empty prompt; a zero chunk.
  EXPECT_EQ(m->PrefillLayerMajor(seq, ids, 16).status().code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(m->kv_pool().Reserve(seq, 40).ok());
  EXPECT_EQ(m->PrefillLayerMajor(seq, {}, 16).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->PrefillLayerMajor(seq, ids, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(m->PrefillLayerMajor(seq, ids, 16).ok());
}

TEST(KvBlockPool, AddSequenceWithBlocksAndCopyRuns) {
  PageableHostMemory memory;
  KvPoolOptions o;
  o.layers = 2;
  o.kv_heads = 2;
  o.head_dim = 4;
  o.block_tokens = 4;
  o.num_blocks = 10;
  auto a = KvBlockPool::Create(o, memory);
  ASSERT_TRUE(a.ok());
  auto seq = (*a)->AddSequenceWithBlocks({3, 4, 5, 8});
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ((*a)->BlockTable(*seq), (std::vector<int32_t>{3, 4, 5, 8}));
  EXPECT_EQ((*a)->blocks_in_use(), 4);
  // Taken, repeated or out-of-range blocks are refused and change nothing.
  EXPECT_EQ((*a)->AddSequenceWithBlocks({2, 3}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*a)->AddSequenceWithBlocks({1, 1}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*a)->AddSequenceWithBlocks({10}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*a)->blocks_in_use(), 4);
  // A reserve afterwards never hands out the adopted blocks.
  const auto other = (*a)->AddSequence();
  ASSERT_TRUE((*a)->Reserve(other, 6 * 4).ok());
  for (int32_t b : (*a)->BlockTable(other)) {
    EXPECT_TRUE(b != 3 && b != 4 && b != 5 && b != 8) << b;
  }
  // Copies go by runs of consecutive ids, K then V of each.
  auto copies = KvBlockCopies(**a, 0, **a, 1, {3, 4, 5, 8, 0, 1});
  ASSERT_TRUE(copies.ok()) << copies.status();
  const int64_t block = o.LayerBlockBytes();
  EXPECT_EQ(block, 4 * 2 * 4 * 4);  // tokens x heads x head_dim x fp32
  const char* k0 = static_cast<const char*>((*a)->KBase(0));
  const char* v0 = static_cast<const char*>((*a)->VBase(0));
  char* k1 = static_cast<char*>((*a)->KBase(1));
  char* v1 = static_cast<char*>((*a)->VBase(1));
  const std::vector<std::tuple<const void*, void*, int64_t>> want = {
      {k0 + 3 * block, k1 + 3 * block, 3 * block}, {v0 + 3 * block, v1 + 3 * block, 3 * block},
      {k0 + 8 * block, k1 + 8 * block, block},     {v0 + 8 * block, v1 + 8 * block, block},
      {k0, k1, 2 * block},                         {v0, v1, 2 * block}};
  ASSERT_EQ(copies->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ((*copies)[i].from, std::get<0>(want[i])) << i;
    EXPECT_EQ((*copies)[i].to, std::get<1>(want[i])) << i;
    EXPECT_EQ((*copies)[i].bytes, std::get<2>(want[i])) << i;
  }
  KvPoolOptions other_shape = o;
  other_shape.head_dim = 8;
  auto b = KvBlockPool::Create(other_shape, memory);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(KvBlockCopies(**a, 0, **b, 0, {0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvBlockCopies(**a, 0, **a, 0, {11}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvBlockCopies(**a, 2, **a, 0, {0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinfer
