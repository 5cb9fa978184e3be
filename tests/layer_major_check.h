// The layer-major prefill checks shared by the CPU unit test (tests/unit/
// layer_major_prefill_test.cc) and the CUDA engine test
// (tests/gpu/offload_layer_major_gpu_test.cc): greedy decode, relative difference of logits, and
// the interleaved-prefill check itself.
// Header-only, for tests.
#ifndef DSINFER_TESTS_LAYER_MAJOR_CHECK_H_
#define DSINFER_TESTS_LAYER_MAJOR_CHECK_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <tuple>
#include <vector>

#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "tests/engine_test_util.h"

namespace dsinfer {

// Greedy decode of `steps` tokens after position `start`; returns every step's logits.
inline std::vector<float> Decode(Model& model, KvBlockPool::SequenceId seq, int32_t token,
                                 int64_t start, int steps, const AttentionOptions* options) {
  std::vector<float> all, logits;
  const int64_t vocab = model.config().vocab_size;
  for (int i = 0; i < steps; ++i) {
    ForwardBatch batch;
    batch.Add(seq, &token, 1, start + i, false);
    batch.sequences.back().attention = options;
    const absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    all.insert(all.end(), logits.begin(), logits.end());
    token = static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + vocab) -
                                 logits.begin());
  }
  return all;
}

// Largest |a - b| over max|a|.
inline double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double max_abs = 1e-30, max_err = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    max_abs = std::max(max_abs, std::abs(static_cast<double>(a[i])));
    max_err = std::max(max_err, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return max_err / max_abs;
}

// Two fresh engines of one model and kv mode: `a` prefills a `prompt`-token prompt one shot
// (PrefillLayerMajor, chunks of `chunk`), `b` a layer per ContinueLayerMajor with another
// sequence decoding a token between the layers (as the server's scheduler runs it), both with
// attention `o`. Expects, within `tolerance` of max|logit|: the prompt's logits equal, the other
// sequence's logits equal its steps without the prefill beside them, `decode` greedy steps
// after the prompt equal; the prompt's statistics counted once; and a prefill dropped half-way
// (a cancel) leaves only the caller's pool blocks in use.
inline void ExpectInterleavedLayerMajorEqualsOneShot(Model& a, Model& b, const AttentionOptions& o,
                                                     int prompt, int64_t chunk, int decode,
                                                     double tolerance) {
  const ModelConfig& c = a.config();
  ASSERT_GE(c.num_layers, 2);
  const int vocab = static_cast<int>(c.vocab_size);
  const std::vector<int32_t> ids = RandomIds(prompt, vocab, 4);
  const std::vector<int32_t> other = RandomIds(20 + c.num_layers + 8, vocab, 6);
  const auto oa = a.kv_pool().AddSequence(), pa = a.kv_pool().AddSequence();
  const auto ob = b.kv_pool().AddSequence(), pb = b.kv_pool().AddSequence();
  const int64_t other_len = static_cast<int64_t>(other.size());
  for (auto [m, sq, n] :
       {std::tuple<Model*, KvBlockPool::SequenceId, int64_t>{&a, oa, other_len},
        {&a, pa, prompt + decode}, {&b, ob, other_len}, {&b, pb, prompt + decode}}) {
    ASSERT_TRUE(m->kv_pool().Reserve(sq, n).ok());
  }
  std::vector<float> logits;
  for (auto [m, sq] : {std::pair<Model*, KvBlockPool::SequenceId>{&a, oa}, {&b, ob}}) {
    ForwardBatch pre;
    pre.Add(sq, other.data(), 20, 0, false);
    pre.sequences.back().attention = &o;
    ASSERT_TRUE(m->Forward(pre, logits).ok());
  }
  std::vector<float> other_alone, other_beside;
  auto step_other = [&](Model& m, KvBlockPool::SequenceId sq, int64_t pos,
                        std::vector<float>& out) {
    ForwardBatch batch;
    batch.Add(sq, &other[pos], 1, pos, false);
    batch.sequences.back().attention = &o;
    const absl::Status st = m.Forward(batch, logits);
    ASSERT_TRUE(st.ok()) << st;
    out.insert(out.end(), logits.begin(), logits.end());
  };
  for (int64_t pos = 20; pos < 20 + c.num_layers - 1; ++pos) step_other(a, oa, pos, other_alone);
  auto one_shot = a.PrefillLayerMajor(pa, ids, chunk, &o);
  ASSERT_TRUE(one_shot.ok()) << one_shot.status();
  auto p = b.StartLayerMajor(pb, ids, chunk, &o);
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<float> got;
  int64_t pos = 20;
  for (int layer = 0; layer < c.num_layers; ++layer) {
    auto done = b.ContinueLayerMajor(**p, 1, got);
    ASSERT_TRUE(done.ok()) << done.status();
    EXPECT_EQ(*done, layer + 1 == c.num_layers);
    if (!*done) step_other(b, ob, pos++, other_beside);
  }
  EXPECT_EQ(b.ContinueLayerMajor(**p, 1, got).status().code(),
            absl::StatusCode::kFailedPrecondition);
  p->reset();
  const double prompt_diff = MaxRelDiff(*one_shot, got);
  const double other_diff = MaxRelDiff(other_alone, other_beside);
  std::printf("interleaved layer-major vs one shot: prompt %.3g, other sequence %.3g\n",
              prompt_diff, other_diff);
  EXPECT_LE(prompt_diff, tolerance);
  EXPECT_LE(other_diff, tolerance);
  EXPECT_EQ(a.double_sparsity().Stats(pa)->dense_rows, b.double_sparsity().Stats(pb)->dense_rows);
  EXPECT_EQ(a.double_sparsity().Stats(pa)->tokens_attended,
            b.double_sparsity().Stats(pb)->tokens_attended);
  const int32_t next =
      static_cast<int32_t>(std::max_element(got.begin(), got.end()) - got.begin());
  EXPECT_LE(MaxRelDiff(Decode(a, pa, next, prompt, decode, &o),
                       Decode(b, pb, next, prompt, decode, &o)),
            tolerance);
  // Dropped half-way: the staging pools go, the sequence's blocks stay the caller's.
  const auto pc = b.kv_pool().AddSequence();
  ASSERT_TRUE(b.kv_pool().Reserve(pc, prompt).ok());
  const int64_t in_use = b.kv_pool().blocks_in_use();
  {
    auto half = b.StartLayerMajor(pc, ids, chunk, &o);
    ASSERT_TRUE(half.ok()) << half.status();
    ASSERT_TRUE(b.ContinueLayerMajor(**half, 1, got).ok());
  }
  EXPECT_EQ(b.kv_pool().blocks_in_use(), in_use);
  b.ReleaseSequence(pc);
  EXPECT_EQ(b.kv_pool().blocks_in_use(), in_use - b.kv_pool().BlocksFor(prompt));
  // The engine still serves: the other sequence decodes on.
  step_other(b, ob, pos, other_beside);
}

}  // namespace dsinfer

#endif  // DSINFER_TESTS_LAYER_MAJOR_CHECK_H_
