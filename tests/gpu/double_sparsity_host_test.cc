// Double Sparsity's launch rules, host logic only (no GPU needed; in the
// double_sparsity_gpu_test binary for its CUDA headers): the gates of the fixed-row scorers,
// the score heads, kAuto's top-k rule and row bound, the fused select's rule, and the scorer's
// launches per label shape.
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/score_and_select.h"
#include "gtest/gtest.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {
namespace {

// Without a GPU (host logic only): the gate of the fixed-row scorers. A launch takes them only
// when every sequence has r == max_r, the same bits and 16-byte-aligned label data.
TEST(DoubleSparsityHost, UniformLabelBitsGatesTheFixedRowScorers) {
  alignas(16) static uint8_t storage[64];
  std::vector<CudaLabelSeq> labs(3);
  for (CudaLabelSeq& l : labs) {
    l.data = storage;
    l.r = 16;
    l.bits = 4;
  }
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 4);
  EXPECT_EQ(UniformLabelBits(labs.data(), 0, 16), 0);
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 32), 0);  // r below max_r
  labs[1].bits = 16;
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 0);  // mixed bits
  EXPECT_EQ(UniformLabelBits(labs.data(), 1, 16), 4);
  labs[1].bits = 4;
  labs[2].r = 8;
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 0);  // mixed r
  labs[2].r = 16;
  labs[2].data = storage + 8;
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 0);  // misaligned rows
  for (CudaLabelSeq& l : labs) {
    l.data = storage + 16;
    l.bits = 16;
  }
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 16);
}

// Without a GPU: the score heads a launch compiles for. Sum aggregation folds one summed query
// per KV head, max one per query head; sequences that differ take them at run time (0), but
// with MHA both are one.
TEST(DoubleSparsityHost, UniformScoreHeadsFollowsTheAggregation) {
  std::vector<CudaDsSequence> seqs(3);
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 32, 8), 1);  // all sum
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 0, 32, 8), 0);
  seqs[1].aggregation = 1;
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 32, 8), 0);      // mixed
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 32, 32), 1);     // mixed, MHA
  EXPECT_EQ(UniformScoreHeads(seqs.data() + 1, 1, 32, 8), 4);  // max: the group
  for (CudaDsSequence& q : seqs) q.aggregation = 1;
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 16, 2), 8);
}

// Without a GPU: which top-k kernel kAuto runs (ResolveTopKAlgo), at the H200's 132 SMs where
// runs 9, 11, 14, 15 and 20 measured the crossovers. Past 8192 tokens: the resident kernel
// where the longest row fits its shared memory (run 20); past that the cluster kernel where
// TopKClusterBlocks finds it faster (run 29: up to 24 (sequence, KV head) pairs at any length
// to 256K, up to 66 at 64K), in as many blocks as run 29 measured best; the striped one-block
// kernel otherwise. Named bodies pass.
TEST(DoubleSparsityHost, AutoTopKRule) {
  constexpr int kSms = 132;
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 8192, 8, kSms), TopKAlgo::kStriped);  // short
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kCluster, 8192, 8, kSms), TopKAlgo::kOneBlock);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kCluster, 262144, 256, kSms), TopKAlgo::kCluster);
  for (TopKAlgo named :
       {TopKAlgo::kOneBlock, TopKAlgo::kTwoRead, TopKAlgo::kStriped, TopKAlgo::kMultiBlock}) {
    EXPECT_EQ(ResolveTopKAlgo(named, 262144, 8, kSms), named);
  }
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 262144, 8, kSms), TopKAlgo::kCluster);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 16, kSms), TopKAlgo::kCluster);
  // Rows that fit one block's shared memory (past 8192 tokens): the resident kernel, at any
  // number of pairs — also a graph step's bucket stride whose rows are shorter.
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 16384, 8, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 8193, 16, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 32768 + 64, 64, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 32768, 256, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, kSms, 32768 + 64), TopKAlgo::kResident);
  // A row bound of 8K or fewer in a longer stride: the short rows' kernel (a named kCluster
  // still runs the cluster kernel, its slices for the bound).
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, kSms, 8192), TopKAlgo::kStriped);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 131072, 8, kSms, 8192), TopKAlgo::kStriped);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kCluster, 131072, 8, kSms, 4099), TopKAlgo::kCluster);
  // The cluster rule follows the row bound, not the stride: 16 pairs of rows bound at 64K in a
  // 128K stride take four-block clusters as the 64K stride's would; at 66 pairs two-block ones.
  EXPECT_EQ(TopKClusterBlocks(65536, 66, kSms), 2);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 131072, 66, kSms, 65536), TopKAlgo::kCluster);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 131072, 66, kSms), TopKAlgo::kStriped);
  // The cluster kernel: 16K keys a block while the launch fits a block an SM, clusters of up
  // to 8 blocks while it fits 1.5 blocks an SM, two-block clusters at up to 64K keys and half
  // the SMs in pairs; past that kStriped (its two-block clusters up to half the SMs).
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 16, kSms, 60000), TopKAlgo::kCluster);
  struct Blocks {
    int64_t stride, pairs, blocks;  // blocks 0: kStriped
  };
  const Blocks rule[] = {
      {65536, 16, 4},  {65536, 24, 4},  {65536, 33, 4},  {65536, 48, 4},  {65536, 49, 4},
      {65536, 50, 2},  {65536, 64, 2},  {65536, 66, 2},  {65536, 67, 0},  {65536, 256, 0},
      {98304, 18, 6},  {131072, 16, 8}, {131072, 24, 8}, {131072, 25, 0}, {131072, 32, 0},
      {262144, 8, 16}, {262144, 9, 8},  {262144, 16, 8}, {262144, 24, 8}, {262144, 25, 0},
      {262144, 32, 0},
  };
  for (const Blocks& b : rule) {
    SCOPED_TRACE(absl::StrCat(b.stride, " keys, ", b.pairs, " pairs"));
    EXPECT_EQ(TopKClusterBlocks(b.stride, b.pairs, kSms), b.blocks);
    EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, b.stride, b.pairs, kSms, 1 << 20),
              b.blocks > 0 ? TopKAlgo::kCluster : TopKAlgo::kStriped);
  }
  // Named kResident where the longest row fits one block's shared memory, else the striped
  // kernel.
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kResident, 32768 + 64, 64, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kResident, 65536, 64, kSms), TopKAlgo::kStriped);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kResident, 65536, 64, kSms, 4099), TopKAlgo::kResident);
}

// Without a GPU: the row bound a graph step plans its top-k for (TopKRowBound): the longest row
// rounded up to a sixteenth of the bucket's stride (a multiple of 8), the stride itself where
// the resident kernel holds any row up to it, where the row is unknown (0) or not shorter.
TEST(DoubleSparsityHost, TopKRowBoundRoundsTheLongestRow) {
  EXPECT_EQ(TopKRowBound(32768, 20000), 32768);  // the resident kernel's stride
  EXPECT_EQ(TopKRowBound(524288, 262145), 294912);
  EXPECT_EQ(TopKRowBound(524288, 262144), 262144);
  EXPECT_EQ(TopKRowBound(524288, 491521), 524288);
  EXPECT_EQ(TopKRowBound(131072, 65537), 73728);
  EXPECT_EQ(TopKRowBound(131072, 0), 131072);
  EXPECT_EQ(TopKRowBound(131072, 200000), 131072);
  EXPECT_EQ(TopKRowBound(65600, 40000), 41040);  // steps of 4104 (4100 up to a multiple of 8)
  EXPECT_EQ(TopKRowBound(65536, 40000), 40960);
  // A bucket of 64K tokens whose rows are 40000 now: the resident kernel (its rows fit), where
  // the stride alone would take two-block clusters; at 16 pairs of 256K + 1 in a 512K bucket the
  // cluster kernel in 8-block clusters, as at 256K.
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, 132, TopKRowBound(65536, 40000)),
            TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, 132), TopKAlgo::kCluster);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 524288, 16, 132, TopKRowBound(524288, 262145)),
            TopKAlgo::kCluster);
  EXPECT_EQ(TopKClusterBlocks(TopKRowBound(524288, 262145), 16, 132), 8);
}

// Without a GPU: the engine's fused-select rule (ScoreSelectClusterPays) — up to 2^18 rows of
// at most 8K tokens.
TEST(DoubleSparsityHost, FusedSelectRule) {
  EXPECT_TRUE(ScoreSelectClusterPays(4096, 32));    // Llama-2 heads, batch 1, 4K
  EXPECT_TRUE(ScoreSelectClusterPays(8192, 8));     // Llama-3 heads, batch 1, 8K
  EXPECT_FALSE(ScoreSelectClusterPays(16384, 8));   // past 8K: the resident top-k (run 20)
  EXPECT_TRUE(ScoreSelectClusterPays(4096, 64));    // Llama-3 heads, batch 8, 4K
  EXPECT_FALSE(ScoreSelectClusterPays(16384, 32));  // Llama-2 heads, batch 1, 16K
  EXPECT_FALSE(ScoreSelectClusterPays(262144, 256));
}

// Without a GPU: a selection's sequences as runs of one label shape (SetJobSequences) and the
// scorer launches they make (ScoreLaunches): a launch per run, with the run's r, label bits and
// score heads, cut to the sequences asked for (a split chain's halves); one launch with the
// job's own arguments where every label has one shape.
TEST(DoubleSparsityHost, ScoreLaunchesFollowTheLabelShapes) {
  auto label = [](int bits, int r) {
    CudaLabelSeq l;
    l.bits = bits;
    l.r = r;
    l.data = reinterpret_cast<void*>(uintptr_t{4096});  // 16-byte aligned, never read
    return l;
  };
  auto fields = [](const LabelShapeRun& l) {
    return std::make_tuple(l.first, l.count, l.r, l.label_bits, l.score_heads);
  };
  std::vector<CudaDsSequence> seqs(5);
  for (CudaDsSequence& s : seqs) s.tokens = 1000;
  seqs[4].aggregation = 1;  // max beside sum: score heads at run time in that run
  const std::vector<CudaLabelSeq> labels = {label(4, 8), label(4, 8), label(16, 16), label(16, 16),
                                            label(16, 16)};
  ScoreSelectJob job;
  job.heads_q = 32;
  job.heads_kv = 8;
  SetJobSequences(labels, seqs, DeviceLabelDescriptors{}, job);
  EXPECT_EQ(job.label_bits, 0);  // no one fixed-row kernel takes them all
  ASSERT_EQ(job.shape_runs.size(), 2u);
  const std::vector<LabelShapeRun> all = ScoreLaunches(job, 0, 5);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(fields(all[0]), std::make_tuple(0, 2, 8, 4, 1));
  EXPECT_EQ(fields(all[1]), std::make_tuple(2, 3, 16, 16, 0));
  const std::vector<LabelShapeRun> middle = ScoreLaunches(job, 1, 3);  // sequences 1..3
  ASSERT_EQ(middle.size(), 2u);
  EXPECT_EQ(std::make_pair(middle[0].first, middle[0].count), std::make_pair(1, 1));
  EXPECT_EQ(std::make_pair(middle[1].first, middle[1].count), std::make_pair(2, 2));
  EXPECT_EQ(ScoreLaunches(job, 3, 2).size(), 1u);

  const std::vector<CudaLabelSeq> alike(3, label(16, 8));
  seqs.resize(3);
  SetJobSequences(alike, seqs, DeviceLabelDescriptors{}, job);
  ASSERT_EQ(job.shape_runs.size(), 1u);
  const std::vector<LabelShapeRun> one = ScoreLaunches(job, 0, 3);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(fields(one[0]), std::make_tuple(0, 3, 8, 16, 1));
}

}  // namespace
}  // namespace dsinfer
