// Layer-major prefill on CUDA (docs/offload.md); skipped without a GPU. In gpu mode and both
// offload modes, with and without a resident layer: Model::PrefillLayerMajor equals chunked
// prefill through Forward in gpu mode, logits and the decode steps after; a layer per call with
// another sequence decoding between equals the one-shot run, as the server interleaves them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "offload/kv_block_pool.h"
#include "tests/engine_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/offload_gpu_harness.h"
#include "tests/layer_major_check.h"

namespace dsinfer {
namespace {

// Model::PrefillLayerMajor on CUDA (staging pool in HBM, layers copied into the pool with
// CopyKvBlocks): the last prompt position's logits and the decode steps after it equal chunked
// prefill through Forward in gpu mode, in every kv mode.
TEST(OffloadEngineGpu, LayerMajorPrefillEqualsChunkedPrefill) {
  SKIP_WITHOUT_GPU();
  for (KvMode mode : {KvMode::kGpu, KvMode::kOffload, KvMode::kDenseOffload})
  for (int resident : {0, 1})
  for (const char* dir : kGoldenModels) {
    if (mode == KvMode::kGpu && resident > 0) continue;
    SCOPED_TRACE(testing::Message() << dir << " mode " << static_cast<int>(mode)
                                    << " resident layers " << resident);
    OffloadOptions oo;
    oo.resident_layers = resident;
    GpuAndOffload e = LoadGpuAndOffload(dir, mode, oo);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    Model& want_model = *e.gpu;
    Model& got_model = *e.off;
    const ModelConfig& c = want_model.config();
    const int vocab = static_cast<int>(c.vocab_size);
    const std::vector<int32_t> ids = RandomIds(150, vocab, 11);
    const int64_t chunk = 64;  // 150 = 2 × 64 + 22
    const auto sw = want_model.kv_pool().AddSequence();
    const auto sg = got_model.kv_pool().AddSequence();
    ASSERT_TRUE(want_model.kv_pool().Reserve(sw, 160).ok());
    ASSERT_TRUE(got_model.kv_pool().Reserve(sg, 160).ok());
    std::vector<float> want, logits;
    for (int64_t r0 = 0; r0 < 150; r0 += chunk) {
      ForwardBatch batch;
      batch.Add(sw, ids.data() + r0, std::min<int64_t>(chunk, 150 - r0), r0, false);
      ASSERT_TRUE(want_model.Forward(batch, want).ok());
    }
    auto got = got_model.PrefillLayerMajor(sg, ids, chunk);
    ASSERT_TRUE(got.ok()) << got.status();
    double max_abs = 0, max_err = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      max_abs = std::max(max_abs, std::abs(static_cast<double>(want[i])));
      max_err = std::max(max_err, std::abs(static_cast<double>(want[i]) - (*got)[i]));
    }
    std::printf("%s layer-major prefill: max|dlogit| %.3g of max|logit|\n", dir,
                max_err / std::max(max_abs, 1e-30));
    EXPECT_LE(max_err, kTolerance * max_abs);
    // Decode 8 greedy steps from the same token on both.
    int32_t token = static_cast<int32_t>(std::max_element(want.begin(), want.end()) - want.begin());
    for (int step = 0; step < 8; ++step) {
      ForwardBatch a, b;
      a.Add(sw, &token, 1, 150 + step, false);
      b.Add(sg, &token, 1, 150 + step, false);
      std::vector<float> la, lb;
      ASSERT_TRUE(want_model.Forward(a, la).ok());
      ASSERT_TRUE(got_model.Forward(b, lb).ok());
      double abs_a = 0, err = 0;
      for (size_t i = 0; i < la.size(); ++i) {
        abs_a = std::max(abs_a, std::abs(static_cast<double>(la[i])));
        err = std::max(err, std::abs(static_cast<double>(la[i]) - lb[i]));
      }
      EXPECT_LE(err, kTolerance * abs_a) << "decode step " << step;
      token = static_cast<int32_t>(std::max_element(la.begin(), la.end()) - la.begin());
    }
  }
}

// Model::StartLayerMajor + ContinueLayerMajor on CUDA, a layer per call, with another sequence
// decoding a token (Double Sparsity; dense in dense-offload) between the layers, as the server
// runs it with --layer-major-layers-per-step 1: ExpectInterleavedLayerMajorEqualsOneShot
// (tests/layer_major_check.h) in the offload modes, with and without a resident layer.
TEST(OffloadEngineGpu, LayerMajorPrefillInterleavedEqualsOneShot) {
  SKIP_WITHOUT_GPU();
  for (KvMode mode : {KvMode::kOffload, KvMode::kDenseOffload})
  for (int resident : {0, 1})
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(testing::Message() << dir << " mode " << static_cast<int>(mode)
                                    << " resident layers " << resident);
    OffloadOptions oo;
    oo.resident_layers = resident;
    auto ba = CudaBackend::Create(CudaBackendOptions{});
    auto bb = CudaBackend::Create(CudaBackendOptions{});
    ASSERT_TRUE(ba.ok() && bb.ok());
    std::unique_ptr<Model> a = LoadCuda(dir, **ba, mode, oo), b = LoadCuda(dir, **bb, mode, oo);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    const ChannelConfig channels = RandomChannelConfig(a->config(), 31);
    ASSERT_TRUE(a->double_sparsity().SetChannelConfig(channels).ok());
    ASSERT_TRUE(b->double_sparsity().SetChannelConfig(channels).ok());
    AttentionOptions o = SparseOptions(a->config().head_dim / 4);
    if (mode == KvMode::kDenseOffload) o.mode = AttentionMode::kDense;
    ExpectInterleavedLayerMajorEqualsOneShot(*a, *b, o, /*prompt=*/150, /*chunk=*/64,
                                             /*decode=*/6, /*tolerance=*/1e-3);
  }
}

}  // namespace
}  // namespace dsinfer
