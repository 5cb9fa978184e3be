// The offload engine on CUDA against gpu mode on the golden models (docs/offload.md); skipped
// without a GPU. CUDA offload with exact selection equals CUDA gpu-mode Double Sparsity (also
// with two label shapes in one batch, and on the predicted path with a full budget), and CUDA
// dense-offload equals CUDA gpu-mode dense (logits within the bf16 bound, greedy tokens equal
// but at near-ties); the pool is pinned mapped host memory and the tier's buffers device memory;
// fetch counters are the exact arithmetic of the budget; release returns pool and tier to idle;
// an unpinnable pool is RESOURCE_EXHAUSTED naming the bytes and the flag. The binary's other
// files: the gather's twin (offload_gather_twin_test.cc) and kernels (offload_gather_gpu_test.cc),
// layer-major prefill (offload_layer_major_gpu_test.cc), shared helpers (offload_gpu_harness.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/pinned_host_memory.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "offload/kv_block_pool.h"
#include "offload/offload_tier.h"
#include "tests/engine_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/offload_gpu_harness.h"

namespace dsinfer {
namespace {

// Positions [first, last) of sequence `s`'s decode rows in RunGreedy: sequence 0 prefills its
// prompt in one chunk; sequence 1's fed prompt is decode rows too.
std::pair<int64_t, int64_t> DecodePositions(int s, size_t prompt0, size_t prompt1, int generate) {
  const int64_t first = s == 0 ? static_cast<int64_t>(prompt0) : 1;
  const int64_t last = static_cast<int64_t>(s == 0 ? prompt0 : prompt1) + generate - 1;
  return {first, last};
}

struct GreedyRun {
  std::vector<std::vector<float>> logits;    // per step, all sequences' logits
  std::vector<std::vector<int32_t>> greedy;  // per sequence, generated tokens
  std::vector<KvBlockPool::SequenceId> seqs;
};

int32_t Argmax(const float* x, int64_t n) {
  return static_cast<int32_t>(std::max_element(x, x + n) - x);
}

// Two sequences together: sequence 0 prefills `prompt0` in one chunk, sequence 1 feeds
// `prompt1` one token per step; then both generate `generate` tokens greedily. Sequence 1 runs
// with `o1` where given, else both with `o`. Sequences stay in the pool.
GreedyRun RunGreedy(Model& model, const std::vector<int32_t>& prompt0,
                    const std::vector<int32_t>& prompt1, int generate, const AttentionOptions& o,
                    const AttentionOptions* o1 = nullptr) {
  GreedyRun run;
  KvBlockPool& pool = model.kv_pool();
  const int64_t vocab = model.config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {prompt0, prompt1};
  std::vector<std::vector<int32_t>> ids = prompts;
  std::vector<int64_t> done(2, 0);
  for (int s = 0; s < 2; ++s) {
    run.seqs.push_back(pool.AddSequence());
    EXPECT_TRUE(pool.Reserve(run.seqs[s], static_cast<int64_t>(ids[s].size()) + generate).ok());
  }
  run.greedy.assign(2, {});
  std::vector<float> logits;
  for (int step = 0; step < 200; ++step) {
    ForwardBatch batch;
    std::vector<int> members;
    for (int s = 0; s < 2; ++s) {
      if (static_cast<int>(run.greedy[s].size()) >= generate) continue;
      const int64_t have = static_cast<int64_t>(ids[s].size());
      const int64_t count = s == 0 && done[s] == 0 ? have : 1;
      batch.Add(run.seqs[s], ids[s].data() + done[s], count, done[s], false);
      batch.sequences.back().attention = s == 1 && o1 != nullptr ? o1 : &o;
      members.push_back(s);
    }
    if (members.empty()) break;
    const absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    run.logits.push_back(logits);
    for (size_t i = 0; i < members.size(); ++i) {
      const int s = members[i];
      done[s] += batch.sequences[i].num_rows;
      if (done[s] < static_cast<int64_t>(prompts[s].size())) continue;  // still feeding
      const int32_t next = Argmax(logits.data() + i * vocab, vocab);
      run.greedy[s].push_back(next);
      ids[s].push_back(next);
    }
  }
  return run;
}

// Logits of every step within kTolerance × max|logit| until the greedy paths part; where they
// part, the reference's top-2 margin must be a near-tie.
void ExpectSameRun(const GreedyRun& want, const GreedyRun& got, int64_t vocab,
                   const std::string& what) {
  ASSERT_EQ(want.greedy.size(), got.greedy.size());
  double max_err = 0, max_abs = 0;
  const size_t steps = std::min(want.logits.size(), got.logits.size());
  for (size_t t = 0; t < steps; ++t) {
    if (want.logits[t].size() != got.logits[t].size()) break;
    for (size_t i = 0; i < want.logits[t].size(); ++i) {
      max_abs = std::max(max_abs, std::abs(static_cast<double>(want.logits[t][i])));
    }
  }
  bool parted = false;
  for (size_t t = 0; t < steps && !parted; ++t) {
    const std::vector<float>& a = want.logits[t];
    const std::vector<float>& b = got.logits[t];
    ASSERT_EQ(a.size(), b.size()) << what << " step " << t;
    for (size_t i = 0; i < a.size(); ++i) {
      max_err = std::max(max_err, std::abs(static_cast<double>(a[i]) - b[i]));
    }
    for (size_t r = 0; r < a.size() / vocab; ++r) {
      const float* x = a.data() + r * vocab;
      const float* y = b.data() + r * vocab;
      if (Argmax(x, vocab) == Argmax(y, vocab)) continue;
      std::vector<float> sorted(x, x + vocab);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      EXPECT_LT(sorted[0] - sorted[1], kTolerance * max_abs)
          << what << ": greedy tokens part at step " << t << " without a near-tie";
      std::printf("%s: greedy paths part at step %zu (near-tie margin %.4g)\n", what.c_str(), t,
                  sorted[0] - sorted[1]);
      parted = true;
    }
  }
  std::printf("%s: max|dlogit| %.4g (%.3g of max|logit|) over %zu steps\n", what.c_str(), max_err,
              max_err / std::max(max_abs, 1e-30), steps);
  EXPECT_LE(max_err, kTolerance * max_abs) << what;
  if (!parted) {
    EXPECT_EQ(want.greedy, got.greedy) << what;
  }
}

TEST(OffloadEngineGpu, ExactSelectionEqualsGpuModeAndCountsAreExact) {
  SKIP_WITHOUT_GPU();
  for (const char* dir : kGoldenModels)
  for (int resident : {0, 1}) {
    // reuse -1: previous-step reuse (the device path: hits decided by the gather).
    for (int64_t reuse : {int64_t{0}, int64_t{4096}, int64_t{5}, int64_t{-1}}) {
      const std::string what = std::string(dir) + " reuse " + std::to_string(reuse) +
                               " resident layers " + std::to_string(resident);
      SCOPED_TRACE(what);
      OffloadOptions oo;
      oo.predict = false;
      oo.reuse_rows = std::max<int64_t>(reuse, 0);
      oo.reuse_previous = reuse < 0;
      oo.resident_layers = resident;
      GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kOffload, oo);
      ASSERT_NE(e.gpu, nullptr);
      ASSERT_NE(e.off, nullptr);
      Model& gpu = *e.gpu;
      Model& off = *e.off;
      const ModelConfig& c = gpu.config();
      const ChannelConfig channels = RandomChannelConfig(c, 21);
      ASSERT_TRUE(gpu.double_sparsity().SetChannelConfig(channels).ok());
      ASSERT_TRUE(off.double_sparsity().SetChannelConfig(channels).ok());
      // Every layer sparse: both engines then run the same kernels on the same rows in the
      // same order (only the rows' addresses differ), so selections cannot part on noise.
      AttentionOptions o = SparseOptions(c.head_dim / 4);
      o.dense_layers = 0;
      const int vocab = static_cast<int>(c.vocab_size);
      const std::vector<int32_t> p0 = RandomIds(40, vocab, 5), p1 = RandomIds(12, vocab, 6);
      const int generate = 24;
      const GreedyRun want = RunGreedy(gpu, p0, p1, generate, o);
      const GreedyRun got = RunGreedy(off, p0, p1, generate, o);
      ExpectSameRun(want, got, c.vocab_size, what);

      // The pool is pinned mapped host memory but for its resident layers (device memory);
      // the tier's buffers are device memory.
      cudaPointerAttributes attr{};
      ASSERT_CUDA(cudaPointerGetAttributes(&attr, off.kv_pool().KBase(0)));
      EXPECT_EQ(attr.type, resident > 0 ? cudaMemoryTypeDevice : cudaMemoryTypeHost);
      EXPECT_NE(attr.devicePointer, nullptr);
      EXPECT_TRUE(e.off_backend->pinned_memory().Contains(off.kv_pool().VBase(c.num_layers - 1)));
      ASSERT_CUDA(cudaPointerGetAttributes(&attr, off.offload_tier()->BufferView(0).k));
      EXPECT_EQ(attr.type, cudaMemoryTypeDevice);

      // Exact accounting: every decode row fetches, per (layer, KV head), its selection minus
      // the current token — min(k, T) - 1 rows (T = position + 1). Prefill in one chunk reads
      // nothing from earlier chunks.
      for (int s = 0; s < 2; ++s) {
        const auto [first, last] = DecodePositions(s, p0.size(), p1.size(), generate);
        int64_t rows = 0;
        for (int64_t p = first; p < last; ++p) {  // positions of decode rows
          const int64_t t = p + 1;
          const int64_t k = std::min(std::max<int64_t>(o.BudgetFor(t), 1), t);
          rows += static_cast<int64_t>(c.num_layers) * c.num_heads_kv * (k - 1);
        }
        const SequenceAttentionStats* st = off.double_sparsity().Stats(got.seqs[s]);
        ASSERT_NE(st, nullptr);
        EXPECT_EQ(st->fetch.rows_requested, rows) << "sequence " << s;
        // Both CUDA paths count their sparse rows on the host (CountDeviceRow), alike.
        const SequenceAttentionStats* gst = gpu.double_sparsity().Stats(want.seqs[s]);
        ASSERT_NE(gst, nullptr);
        EXPECT_GT(st->sparse_rows, 0);
        EXPECT_EQ(st->sparse_rows, gst->sparse_rows);
        EXPECT_EQ(st->tokens_attended, gst->tokens_attended);
        EXPECT_LT(st->tokens_attended, st->tokens_context);
        EXPECT_EQ(st->fetch.rows_from_host + st->fetch.rows_reused + st->fetch.rows_resident,
                  st->fetch.rows_requested);
        // Rows of the resident layer are gathered from device memory, not read from the host.
        EXPECT_EQ(st->fetch.rows_resident > 0, resident > 0);
        EXPECT_EQ(st->fetch.bytes_from_host, st->fetch.rows_from_host * 2 * c.head_dim * 2);
        if (reuse == 0) {
          EXPECT_EQ(st->fetch.rows_reused, 0);
        }
        if (reuse == 4096 || reuse < 0) {
          EXPECT_GT(st->fetch.rows_reused, 0);
        }
        if (reuse < 0) {
          // Resident layers gather from device memory anyway: they keep nothing.
          EXPECT_EQ(st->fetch.rows_looked_up, st->fetch.rows_requested - st->fetch.rows_resident);
          std::printf("%s: previous-step reuse hit rate %.3f\n", what.c_str(),
                      static_cast<double>(st->fetch.rows_reused) / st->fetch.rows_looked_up);
        }
      }
      // Release returns pool, tier and (at the next step) device labels to idle.
      for (auto seq : got.seqs) off.ReleaseSequence(seq);
      EXPECT_EQ(off.kv_pool().blocks_in_use(), 0);
      EXPECT_EQ(off.offload_tier()->reuse_slots_in_use(), 0);
      EXPECT_EQ(off.offload_tier()->Counters(got.seqs[0]), nullptr);
    }
  }
}

TEST(OffloadEngineGpu, MixedLabelShapesEqualGpuMode) {
  SKIP_WITHOUT_GPU();
  // Sequence 0 with fp16 labels, sequence 1 with 4-bit labels: the batched selection
  // (SelectAndFetchMany) orders its rows by label shape — sequence 1's first — and each row's
  // selection must still reach its own gather, as in gpu mode.
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    OffloadOptions oo;
    oo.predict = false;
    oo.reuse_rows = 0;  // the selection on the device: SelectAndFetchMany
    GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kOffload, oo);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    const ModelConfig& c = e.gpu->config();
    const ChannelConfig channels = RandomChannelConfig(c, 23);
    ASSERT_TRUE(e.gpu->double_sparsity().SetChannelConfig(channels).ok());
    ASSERT_TRUE(e.off->double_sparsity().SetChannelConfig(channels).ok());
    AttentionOptions fp16 = SparseOptions(c.head_dim / 4);
    fp16.dense_layers = 0;
    AttentionOptions four_bit = fp16;
    four_bit.label_bits = 4;
    const int vocab = static_cast<int>(c.vocab_size);
    const std::vector<int32_t> p0 = RandomIds(40, vocab, 7), p1 = RandomIds(12, vocab, 8);
    const GreedyRun want = RunGreedy(*e.gpu, p0, p1, 24, fp16, &four_bit);
    const GreedyRun got = RunGreedy(*e.off, p0, p1, 24, fp16, &four_bit);
    ExpectSameRun(want, got, c.vocab_size, std::string(dir) + " mixed label shapes");
    for (int s = 0; s < 2; ++s) {
      const SequenceAttentionStats* st = e.off->double_sparsity().Stats(got.seqs[s]);
      ASSERT_NE(st, nullptr);
      EXPECT_GT(st->sparse_rows, 0) << "sequence " << s;
      EXPECT_GT(st->fetch.rows_from_host, 0) << "sequence " << s;
    }
  }
}

TEST(OffloadEngineGpu, PredictedPathWithFullBudgetEqualsGpuMode) {
  SKIP_WITHOUT_GPU();
  // reuse 16: host lists (SelectTokens + the tier's cache plan); reuse 0: the selection stays
  // on the device (SelectAndFetch); reuse -1: that with previous-step reuse.
  for (int64_t reuse : {int64_t{16}, int64_t{0}, int64_t{-1}})
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(testing::Message() << dir << " reuse " << reuse);
    OffloadOptions oo;
    oo.own_query_layers = 1;
    oo.reuse_rows = std::max<int64_t>(reuse, 0);
    oo.reuse_previous = reuse < 0;
    GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kOffload, oo);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    Model& gpu = *e.gpu;
    Model& off = *e.off;
    const ModelConfig& c = gpu.config();
    // Budget over the whole context: any selection is every token, so the predicted path
    // (fetched a layer ahead into the other buffer) must reproduce gpu mode.
    AttentionOptions o = SparseOptions(c.head_dim);
    o.token_budget = 1000;
    o.dense_layers = 0;
    const int vocab = static_cast<int>(c.vocab_size);
    const GreedyRun want = RunGreedy(gpu, RandomIds(30, vocab, 7), RandomIds(9, vocab, 8), 16, o);
    const GreedyRun got = RunGreedy(off, RandomIds(30, vocab, 7), RandomIds(9, vocab, 8), 16, o);
    ExpectSameRun(want, got, c.vocab_size,
                  std::string(dir) + " predicted, reuse " + std::to_string(reuse));
    for (auto seq : got.seqs) {
      const SequenceAttentionStats* st = off.double_sparsity().Stats(seq);
      ASSERT_NE(st, nullptr);
      EXPECT_GT(st->predicted_rows, 0);
      // The whole context every step: all but the newest rows are found again.
      if (reuse < 0) {
        EXPECT_GT(st->fetch.rows_reused, st->fetch.rows_requested / 2);
      }
    }
    if (reuse < 0) {
      EXPECT_LE(off.offload_tier()->kept_buffers(), c.num_layers + 1);
    }
  }
}

TEST(OffloadEngineGpu, DenseOffloadEqualsGpuModeDense) {
  SKIP_WITHOUT_GPU();
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kDenseOffload);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    Model& gpu = *e.gpu;
    Model& off = *e.off;
    const ModelConfig& c = gpu.config();
    AttentionOptions o;
    o.mode = AttentionMode::kDense;
    const int vocab = static_cast<int>(c.vocab_size);
    const std::vector<int32_t> p0 = RandomIds(33, vocab, 9), p1 = RandomIds(7, vocab, 10);
    const int generate = 20;
    const GreedyRun want = RunGreedy(gpu, p0, p1, generate, o);
    const GreedyRun got = RunGreedy(off, p0, p1, generate, o);
    ExpectSameRun(want, got, c.vocab_size, std::string(dir) + " dense-offload");
    // Dense streaming: Σ over decode positions p of p rows per (layer, KV head).
    for (int s = 0; s < 2; ++s) {
      const auto [first, last] = DecodePositions(s, p0.size(), p1.size(), generate);
      int64_t rows = 0;
      for (int64_t p = first; p < last; ++p) rows += p * c.num_layers * c.num_heads_kv;
      const SequenceAttentionStats* st = off.double_sparsity().Stats(got.seqs[s]);
      ASSERT_NE(st, nullptr);
      EXPECT_EQ(st->fetch.rows_requested, rows);
      EXPECT_EQ(st->fetch.rows_from_host, rows);
      EXPECT_EQ(st->fetch.bytes_from_host, rows * 2 * c.head_dim * 2);
    }
  }
}

// A pool beyond the address space fails at the virtual-address reservation, before any page
// is touched (a merely too-large request could push a shared host into its OOM killer).
TEST(OffloadEngineGpu, UnpinnablePoolIsResourceExhausted) {
  SKIP_WITHOUT_GPU();
  PinnedHostMemory pinned;
  auto ok = pinned.Allocate(1000);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(pinned.Contains(static_cast<char*>(*ok) + 999));
  EXPECT_NE(pinned.DevicePointer(static_cast<char*>(*ok) + 10), nullptr);
  EXPECT_EQ(pinned.bytes_pinned(), 1024u);
  pinned.Free(*ok);
  EXPECT_EQ(pinned.bytes_pinned(), 0u);
  auto huge = pinned.Allocate(size_t{1} << 52);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);

  auto b = CudaBackend::Create(CudaBackendOptions{});
  ASSERT_TRUE(b.ok());
  ModelOptions options;
  options.kv_mode = KvMode::kOffload;
  options.offload.resident_layers = 0;  // the whole pool pinned
  options.kv_block_tokens = 4096;
  options.kv_pool_tokens = int64_t{1} << 42;  // 2^30 blocks of >= 1 MiB: petabytes
  auto model = Model::Load(kGoldenModels[0], **b, options);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kResourceExhausted) << model.status();
  EXPECT_NE(model.status().message().find("kv_pool_tokens"), std::string::npos) << model.status();
  EXPECT_NE(model.status().message().find("bytes"), std::string::npos) << model.status();
  // The device is still usable afterwards.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace dsinfer
