// Double Sparsity decode steps as CUDA graphs (engine/cuda/cuda_backend_sparse_graph.cc) on the
// golden models (fp16, shuffled channel configs), each run once with decode graphs and once
// without:
// - every layer sparse at a fixed budget, so a graph step's selection rows and split count are
//   the eager step's: the same logits bit for bit, with 16- and 4-bit labels, for one sequence
//   and for two with different budgets in one batch, and the steps really replayed;
// - a 300-token prompt decoded to 1100 tokens with its KV reserved a step at a time: the
//   device labels grow twice under one graph (new addresses in its descriptors) and the steps
//   cross the first block bucket (a second capture): bit for bit again;
// - a 53K-token sequence whose rows pass the top-k's row bound within a bucket (captured
//   again): bit for bit;
// - a dense layer in front and a budget above the context: the graph sizes its selection by
//   the bucket, the eager step by the context, so the sums differ in order only (within
//   5e-3 of max|logit|);
// - batches mixing a sparse and a dense sequence, and requests whose dense layers differ,
//   replay too (each layer's own sparse set), within the bucket split counts' rounding;
// - steps no graph may take run eagerly and equal the graph-less run: the test capture
//   (SparseCapture) on;
// the chain launched dependent (DependentSparseChain), or in two halves on two streams
// (split_sparse_chain), gives the same bits; and the graph cache's eviction (least recently
// used first) over more batch shapes than it holds. Skipped without a GPU.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/split_chain.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "tests/engine_test_util.h"
#include "tests/gpu/ds_engine_runs.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {
namespace {

std::mt19937_64& Rng() {
  static std::mt19937_64 rng = MakeSeededRng("double_sparsity_graph_gpu_test");
  return rng;
}

struct Engine {
  std::unique_ptr<CudaBackend> backend;
  std::unique_ptr<Model> model;
};

Engine Load(const char* dir) {
  CudaBackendOptions options;
  options.dtype = DType::kF16;
  auto backend = CudaBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return {};
  Engine e{std::move(*backend), nullptr};
  auto model = Model::Load(dir, *e.backend);
  EXPECT_TRUE(model.ok()) << dir << ": " << model.status();
  if (!model.ok()) return {};
  e.model = std::move(*model);
  const ModelConfig& c = e.model->config();
  EXPECT_TRUE(e.model->double_sparsity()
                  .SetChannelConfig(ShuffledChannelConfig(c, std::mt19937_64(Rng()())))
                  .ok());
  return e;
}

std::vector<int32_t> RandomIds(const ModelConfig& c, size_t n) {
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = static_cast<int32_t>(Rng()() % c.vocab_size);
  return ids;
}

AttentionOptions Sparse(const ModelConfig& c, int bits, int64_t budget = 12) {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = c.head_dim / 4;
  o.label_bits = bits;
  o.token_budget = budget;
  o.sink = 2;
  o.recent = 4;
  o.dense_layers = 0;
  return o;
}

// Runs `check` on each golden model, loaded on a fresh fp16 CUDA backend; then every KV block
// must be back in the pool.
template <typename Check>
void ForEachGoldenModel(Check check) {
  for (const char* dir : kGoldenModels) {
    Engine e = Load(dir);
    ASSERT_NE(e.model, nullptr);
    check(dir, *e.model, *e.backend);
    EXPECT_EQ(e.model->kv_pool().blocks_in_use(), 0) << dir;
  }
}

// `run` once with decode graphs off, then once with them on.
template <typename Result>
struct EagerAndGraphed {
  Result eager, graphed;
  int64_t replays = 0;  // graph replays of the second run
};
template <typename Run>
auto RunEagerThenGraphed(CudaBackend& cuda, Run run) -> EagerAndGraphed<decltype(run())> {
  EagerAndGraphed<decltype(run())> r;
  cuda.set_decode_graphs(false);
  r.eager = run();
  cuda.set_decode_graphs(true);
  const int64_t before = cuda.graph_replays();
  r.graphed = run();
  r.replays = cuda.graph_replays() - before;
  return r;
}

// A pair's graphed run against its eager run where their split counts may differ (a dense
// sequence's, sized by the bucket in graph steps): each sequence's logits within the rounding
// of that (5e-3 of max|logit|), and at least `min_replays` steps replayed. `what` names the
// case in the printout and in failures.
using PairLogits = std::pair<std::vector<float>, std::vector<float>>;
void ExpectPairNearEager(const EagerAndGraphed<PairLogits>& runs, int64_t min_replays,
                         const std::string& what) {
  const double err_a = MaxDiffRatio(runs.graphed.first, runs.eager.first);
  const double err_b = MaxDiffRatio(runs.graphed.second, runs.eager.second);
  std::printf("%s, graph vs eager: %.3g, %.3g of max|logit|\n", what.c_str(), err_a, err_b);
  EXPECT_GE(runs.replays, min_replays) << what;
  EXPECT_LE(err_a, 5e-3) << what;
  EXPECT_LE(err_b, 5e-3) << what;
}

// MixedAttention's split aim (CudaBackendOptions::beside_waves): -1 (the rule), 0 (the count
// alone) or a number of waves; below -1 the options are refused with a clear error (no GPU
// needed: Validate runs before any device call).
TEST(DoubleSparsityGraphHost, BesideWavesBelowTheRuleAreRefused) {
  CudaBackendOptions options;
  for (int waves : {-1, 0, 1, 4}) {
    options.beside_waves = waves;
    EXPECT_TRUE(options.Validate().ok()) << waves;
  }
  options.beside_waves = -2;
  const absl::Status refused = options.Validate();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("beside_waves"), absl::string_view::npos) << refused;
  EXPECT_EQ(CudaBackend::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DoubleSparsityGraphGpu, GraphStepsEqualEagerSteps) {
  SKIP_WITHOUT_GPU();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    const ModelConfig& c = model.config();
    const std::vector<int32_t> ids = RandomIds(c, 44);
    for (int bits : {16, 4}) {
      const AttentionOptions ds = Sparse(c, bits);
      const auto one = RunEagerThenGraphed(cuda, [&] { return RunEngine(model, ids, 20, &ds); });
      // 24 decode steps: the first labels the prompt (eager), the second captures.
      EXPECT_GE(one.replays, 22) << dir << " bits " << bits;
      EXPECT_EQ(one.graphed, one.eager) << dir << " bits " << bits;

      // Two sequences, budgets 12 and 9: one graph for both.
      AttentionOptions other = ds;
      other.token_budget = 9;
      other.recent = 2;
      const auto two =
          RunEagerThenGraphed(cuda, [&] { return RunPair(model, ids, &ds, &other); });
      EXPECT_GE(two.replays, 22) << dir << " bits " << bits << " pair";
      EXPECT_EQ(two.graphed.first, two.eager.first) << dir << " bits " << bits;
      EXPECT_EQ(two.graphed.second, two.eager.second) << dir << " bits " << bits;
    }
  });
}

TEST(DoubleSparsityGraphGpu, LongDecodeCrossesABucketAndGrowsLabels) {
  SKIP_WITHOUT_GPU();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    const ModelConfig& c = model.config();
    // Labels of 384 tokens at the first sparse step (whole pages for the reserved blocks),
    // grown to 768 at token 385 and to 1536 at 769; the first bucket holds 64 blocks of 16
    // tokens, so token 1025 starts the next.
    const std::vector<int32_t> ids = RandomIds(c, 1100);
    const AttentionOptions ds = Sparse(c, 16);
    const auto runs = RunEagerThenGraphed(
        cuda, [&] { return RunEngine(model, ids, 300, &ds, nullptr, true); });
    std::printf("%s: %lld replays, %zu graphs cached\n", dir,
                static_cast<long long>(runs.replays), cuda.graphs_cached());
    // 800 decode steps: eager labelling, a capture in each bucket, the rest replays.
    EXPECT_GE(runs.replays, 796) << dir;
    EXPECT_EQ(runs.graphed, runs.eager) << dir;
  });
}

// A sequence past the resident top-k's rows (~47K tokens) in a bucket of 64K tokens: its graph
// steps plan the top-k for the longest row rounded up to a sixteenth of the bucket
// (TopKRowBound: 4096 tokens), so the step whose rows pass 53248 tokens is captured again —
// two graphs in one bucket — and every step equals the eager one bit for bit (a fixed budget:
// the same selection and split counts).
TEST(DoubleSparsityGraphGpu, StepsPastTheRowBoundAreCapturedAgain) {
  SKIP_WITHOUT_GPU();
  const char* dir = kGoldenModels[1];
  CudaBackendOptions options;
  options.dtype = DType::kF16;
  auto backend = CudaBackend::Create(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  CudaBackend& cuda = **backend;
  ModelOptions model_options;
  model_options.max_context = 60000;
  model_options.kv_pool_tokens = 60000;
  auto loaded = Model::Load(dir, cuda, model_options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Model& model = **loaded;
  const ModelConfig& c = model.config();
  ASSERT_TRUE(model.double_sparsity()
                  .SetChannelConfig(ShuffledChannelConfig(c, std::mt19937_64(Rng()())))
                  .ok());
  // Decode steps of 53246 .. 53251 tokens: the first labels the prompt (eager), the second
  // captures (bound 53248), the fourth captures again (57344).
  constexpr int kPrompt = 53245;
  const std::vector<int32_t> ids = RandomIds(c, kPrompt + 6);
  const AttentionOptions ds = Sparse(c, 16);
  const auto runs =
      RunEagerThenGraphed(cuda, [&] { return RunEngine(model, ids, kPrompt, &ds); });
  std::printf("%s: %lld replays, %zu graphs cached\n", dir,
              static_cast<long long>(runs.replays), cuda.graphs_cached());
  EXPECT_EQ(cuda.graphs_cached(), 2u);
  EXPECT_GE(runs.replays, 3);
  EXPECT_EQ(runs.graphed, runs.eager);
  EXPECT_EQ(model.kv_pool().blocks_in_use(), 0);
}

TEST(DoubleSparsityGraphGpu, BucketSizedSelectionMatchesEager) {
  SKIP_WITHOUT_GPU();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    const ModelConfig& c = model.config();
    const std::vector<int32_t> ids = RandomIds(c, 44);
    AttentionOptions wide = Sparse(c, 16);
    wide.dense_layers = 1;
    wide.token_budget = 1000;
    const auto runs =
        RunEagerThenGraphed(cuda, [&] { return RunEngine(model, ids, 20, &wide); });
    const double err = MaxDiffRatio(runs.graphed, runs.eager);
    std::printf("%s: graph vs eager, budget above the context: %.3g of max|logit|\n", dir, err);
    EXPECT_GE(runs.replays, 22) << dir;
    EXPECT_LE(err, 5e-3) << dir;
  });
}

// A batch of a sparse and a dense sequence replays as graphs (SubsetAttention), agreeing with
// its eager steps within the rounding of the graphs' bucket-sized split counts; the test
// capture never replays.
TEST(DoubleSparsityGraphGpu, MixedPairReplaysAndTheTestCaptureRunsEagerly) {
  SKIP_WITHOUT_GPU();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    const ModelConfig& c = model.config();
    const std::vector<int32_t> ids = RandomIds(c, 44);
    const AttentionOptions ds = Sparse(c, 4);
    AttentionOptions dense;
    dense.mode = AttentionMode::kDense;
    ExpectPairNearEager(
        RunEagerThenGraphed(cuda, [&] { return RunPair(model, ids, &ds, &dense); }), 22,
        std::string(dir) + " mixed batch (sparse, dense)");
    cuda.set_decode_graphs(false);
    const std::vector<float> eager = RunEngine(model, ids, 20, &ds);
    cuda.set_decode_graphs(true);
    const int64_t replays = cuda.graph_replays();
    cuda.clear_sparse_captures();
    cuda.set_capture_sparse(true);
    const std::vector<float> captured = RunEngine(model, ids, 20, &ds);
    cuda.set_capture_sparse(false);
    EXPECT_EQ(cuda.graph_replays(), replays) << dir;
    EXPECT_EQ(cuda.sparse_captures().size(), static_cast<size_t>(24 * c.num_layers)) << dir;
    EXPECT_EQ(captured, eager) << dir;
    cuda.clear_sparse_captures();
  });
}

// Requests whose dense layers differ (one sparse from layer 0, the other from layer 1): layer
// 0 runs the first sparse and the second dense beside it, the later layers both sparse — a
// step of two sparse sets, planned layer by layer (SubsetAttention's positions in a slot per
// distinct subset), captured and replayed like any other, within the rounding of the graphs'
// bucket-sized split counts of the eager steps. The second keeps every token (a budget above
// the context): its layer-0 attention differs from the eager step's by that rounding, which
// at a budget under the context could move a later layer's top-k boundary — a different
// selection, not an error (run 19 call 12 saw 0.025 of max|logit| on one random prompt).
TEST(DoubleSparsityGraphGpu, DifferentDenseLayersReplay) {
  SKIP_WITHOUT_GPU();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    const ModelConfig& c = model.config();
    const std::vector<int32_t> ids = RandomIds(c, 44);
    const AttentionOptions from_0 = Sparse(c, 16);
    AttentionOptions from_1 = Sparse(c, 4, 1000);
    from_1.dense_layers = 1;
    ExpectPairNearEager(
        RunEagerThenGraphed(cuda, [&] { return RunPair(model, ids, &from_0, &from_1); }), 22,
        std::string(dir) + " dense layers 0 and 1");
  });
}

// Runs one sequence, two (fp16 and 4-bit labels, budgets 12 and 30) and three (the two, and
// the first again on a longer prompt) with `set(false)`, then with `set(true)`, eager and in
// graphs (which must replay): a switch that changes only the launches leaves every logit
// the same bits.
template <typename Set>
void ExpectSwitchChangesNothing(const char* dir, Model& model, CudaBackend& cuda, Set set) {
  const ModelConfig& c = model.config();
  const std::vector<int32_t> ids = RandomIds(c, 44);
  const AttentionOptions ds = Sparse(c, 16);
  const AttentionOptions other = Sparse(c, 4, 30);
  for (bool graphs : {false, true}) {
    cuda.set_decode_graphs(graphs);
    std::vector<std::vector<float>> runs[2];
    int64_t replays = 0;
    for (bool on : {false, true}) {
      set(on);
      const int64_t before = cuda.graph_replays();
      runs[on].push_back(RunEngine(model, ids, 20, &ds));
      const auto pair = RunPair(model, ids, &ds, &other);
      runs[on].push_back(pair.first);
      runs[on].push_back(pair.second);
      for (auto& logits : RunBatch(model, ids, {&ds, &other, &ds}, {20, 20, 24})) {
        runs[on].push_back(std::move(logits));
      }
      replays = cuda.graph_replays() - before;
    }
    for (size_t i = 0; i < runs[0].size(); ++i) {
      EXPECT_EQ(runs[1][i], runs[0][i]) << dir << (graphs ? " graphs" : " eager") << " run " << i;
    }
    if (graphs) {
      EXPECT_GT(replays, 0) << dir;
    }
  }
  cuda.set_decode_graphs(false);
}

// Double Sparsity's chain launched dependent with no early start (DependentSparseChain):
// only the launches change.
TEST(DoubleSparsityGraphGpu, DependentChainChangesNothing) {
  SKIP_WITHOUT_GPU();
  const bool by_default = cuda::DependentSparseChain();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    ExpectSwitchChangesNothing(dir, model, cuda,
                               [&](bool on) { cuda.set_dependent_sparse_chain(on); });
  });
  cuda::SetDependentSparseChain(by_default);
}

// A sparse layer's chain in two halves on two streams (split_sparse_chain, on by default;
// cuda_backend_split_chain.cc): each sequence's scores, selection and attention pieces are its
// own, so nothing changes (the halves of two and three sequences: one and one, one and two;
// one sequence never splits). Scoring and top-k unfused, the top-k the two-read kernel (the
// split's rule leaves fused selections whole, and at these lengths kAuto's kStriped); the
// chains must have split.
TEST(DoubleSparsityGraphGpu, SplitChainChangesNothing) {
  SKIP_WITHOUT_GPU();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    const bool by_default = cuda.split_sparse_chain();
    cuda.set_fused_select(FusedSelectMode::kOff);
    cuda.set_topk_algo(TopKAlgo::kTwoRead);
    const int64_t splits_before = cuda.split_sparse_chains();
    ExpectSwitchChangesNothing(dir, model, cuda,
                               [&](bool on) { cuda.set_split_sparse_chain(on); });
    EXPECT_GT(cuda.split_sparse_chains(), splits_before) << dir;
    cuda.set_split_sparse_chain(by_default);
    cuda.set_topk_algo(TopKAlgo::kAuto);
    cuda.set_fused_select(FusedSelectMode::kAuto);
  });
}

// Where a chain splits (SplitChainHalf, on 132 SMs): beside the cluster top-k and the
// one-block kernels, up to half the SMs in pairs; never beside kStriped's two-block clusters,
// the resident or the multi-block kernel, with one sequence, or where the selection runs fused.
TEST(DoubleSparsityHost, SplitChainRule) {
  constexpr int kSms = 132;
  constexpr auto kAuto = TopKAlgo::kAuto;
  constexpr auto kOff = FusedSelectMode::kOff;
  // Llama-3-8B heads (8 KV heads): batch 2 (16 pairs, the cluster kernel past the resident
  // kernel's rows) splits one and one; batch 3-8 (24-64 pairs: the cluster kernel past an
  // eighth of the SMs, or kStriped) stays whole.
  EXPECT_EQ(SplitChainHalf(2, 8, 262144, 262144, kSms, kAuto, kOff), 1);
  EXPECT_EQ(SplitChainHalf(2, 8, 65536, 60000, kSms, kAuto, kOff), 1);
  EXPECT_EQ(SplitChainHalf(2, 8, 65536, 32768, kSms, kAuto, kOff), 0);  // resident
  EXPECT_EQ(SplitChainHalf(2, 8, 4096, 4096, kSms, kAuto, kOff), 0);    // short: kStriped
  for (int seqs : {3, 4, 8}) {
    EXPECT_EQ(SplitChainHalf(seqs, 8, 262144, 262144, kSms, kAuto, kOff), 0) << seqs;
    EXPECT_EQ(SplitChainHalf(seqs, 8, 65536, 65536, kSms, kAuto, kOff), 0) << seqs;
  }
  EXPECT_EQ(SplitChainHalf(1, 8, 262144, 262144, kSms, kAuto, kOff), 0);
  // Named one-block kernels up to half the SMs in pairs (8 sequences × 8 heads: 64 of 132).
  for (TopKAlgo named : {TopKAlgo::kOneBlock, TopKAlgo::kTwoRead}) {
    EXPECT_EQ(SplitChainHalf(8, 8, 4096, 4096, kSms, named, kOff), 4);
    EXPECT_EQ(SplitChainHalf(3, 8, 65536, 65536, kSms, named, kOff), 1);
    EXPECT_EQ(SplitChainHalf(9, 8, 4096, 4096, kSms, named, kOff), 0);  // 72 pairs
  }
  EXPECT_EQ(SplitChainHalf(2, 8, 262144, 262144, kSms, TopKAlgo::kMultiBlock, kOff), 0);
  EXPECT_EQ(SplitChainHalf(2, 8, 262144, 262144, kSms, TopKAlgo::kStriped, kOff), 0);
  EXPECT_EQ(SplitChainHalf(2, 8, 4096, 4096, kSms, TopKAlgo::kTwoRead, FusedSelectMode::kAlways),
            0);
}

// A long sequence running sparse beside a short one running dense below the length threshold
// (kAuto, dense_below 24: 31-44 tokens against 5-18), every step: the short one's attention
// runs on the whole batch's rows with the long one's left out (SubsetAttention; beside Double
// Sparsity on a side stream, which changes no bit), so the step is captured and replayed as a
// graph. The graph steps agree with the eager ones within
// the rounding of their bucket-sized split counts, and with a budget above the context each
// sequence's logits agree with its own dense run (another batch shape: within 2e-2 of
// max|logit|).
TEST(DoubleSparsityGraphGpu, MixedDenseAndSparseStepsReplay) {
  SKIP_WITHOUT_GPU();
  ForEachGoldenModel([](const char* dir, Model& model, CudaBackend& cuda) {
    const ModelConfig& c = model.config();
    const std::vector<int32_t> ids = RandomIds(c, 44);
    for (int budget : {12, 1000}) {
      AttentionOptions o = Sparse(c, 16);
      o.mode = AttentionMode::kAuto;
      o.dense_below = 24;
      o.token_budget = budget;
      // A 30-token and a 4-token prompt, then 14 decode steps of both.
      const auto runs =
          RunEagerThenGraphed(cuda, [&] { return RunPair(model, ids, &o, &o, 30, 4); });
      ExpectPairNearEager(runs, 12, absl::StrCat(dir, " budget ", budget, " (long, short)"));
      // The short one's attention ran beside Double Sparsity (MixedAttention's side stream);
      // one after the other the launches are the same (one piece a row either way, under 64
      // tokens): the same bits, eager and in graphs.
      cuda.set_dense_beside_sparse(false);
      const auto in_turn =
          RunEagerThenGraphed(cuda, [&] { return RunPair(model, ids, &o, &o, 30, 4); });
      cuda.set_dense_beside_sparse(true);
      EXPECT_EQ(in_turn.eager, runs.eager) << dir << " budget " << budget;
      EXPECT_EQ(in_turn.graphed, runs.graphed) << dir << " budget " << budget;
      if (budget < 1000) continue;
      AttentionOptions dense;
      dense.mode = AttentionMode::kDense;
      const std::vector<int32_t> short_ids(ids.begin(), ids.begin() + 18);
      const double alone_long =
          MaxDiffRatio(runs.graphed.first, RunEngine(model, ids, 30, &dense));
      const double alone_short =
          MaxDiffRatio(runs.graphed.second, RunEngine(model, short_ids, 4, &dense));
      std::printf("%s: mixed step vs alone, long %.3g short %.3g of max|logit|\n", dir,
                  alone_long, alone_short);
      EXPECT_LE(alone_long, 2e-2) << dir;
      EXPECT_LE(alone_short, 2e-2) << dir;
    }
  });
}

// Decode steps of a batch of n fresh sequences (a 4-token prefill each, then `steps` steps of
// all n, dense attention); returns the graph replays among those steps.
int64_t DecodeBatch(Model& model, CudaBackend& cuda, int n, int steps,
                    const std::vector<int32_t>& ids) {
  KvBlockPool& pool = model.kv_pool();
  std::vector<KvBlockPool::SequenceId> seqs(n);
  for (KvBlockPool::SequenceId& s : seqs) {
    s = pool.AddSequence();
    EXPECT_TRUE(pool.Reserve(s, 4 + steps).ok());
  }
  std::vector<float> logits;
  int64_t replays = 0;
  for (int step = 0; step <= steps; ++step) {
    ForwardBatch batch;
    for (KvBlockPool::SequenceId s : seqs) {
      batch.Add(s, step == 0 ? ids.data() : &ids[3 + step], step == 0 ? 4 : 1,
                step == 0 ? 0 : 3 + step, false);
    }
    const int64_t before = cuda.graph_replays();
    const absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (step > 0) replays += cuda.graph_replays() - before;
  }
  for (KvBlockPool::SequenceId s : seqs) model.ReleaseSequence(s);
  return replays;
}

// More batch shapes than the graph cache holds (64): it keeps the most recently used graphs
// and gives up the least recently used one, so a recent shape still replays at once and an
// evicted one is captured again.
TEST(DoubleSparsityGraphGpu, GraphCacheDropsItsLeastRecentlyUsedGraph) {
  SKIP_WITHOUT_GPU();
  Engine e = Load(kGoldenModels[0]);
  ASSERT_NE(e.model, nullptr);
  CudaBackend& cuda = *e.backend;
  cuda.set_decode_graphs(true);
  const std::vector<int32_t> ids = RandomIds(e.model->config(), 16);
  // Twice over 66 batch sizes: the first pass also grows every buffer to its largest (a
  // growth drops all graphs, whose pointers it invalidates), the second sees no growth.
  for (int pass = 0; pass < 2; ++pass) {
    for (int n = 1; n <= 66; ++n) DecodeBatch(*e.model, cuda, n, 3, ids);
  }
  EXPECT_EQ(cuda.graphs_cached(), size_t{64});
  // n = 60 is among the 64 most recent: its three steps replay (dropping the whole cache when
  // full would have lost it). n = 1 was evicted (with n = 2): its first step captures again,
  // the next two replay.
  EXPECT_EQ(DecodeBatch(*e.model, cuda, 60, 3, ids), 3);
  EXPECT_EQ(DecodeBatch(*e.model, cuda, 1, 3, ids), 2);
  EXPECT_EQ(cuda.graphs_cached(), size_t{64});
  EXPECT_EQ(e.model->kv_pool().blocks_in_use(), 0);
}

}  // namespace
}  // namespace dsinfer
