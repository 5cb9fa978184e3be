// The Double Sparsity top-k kernels alone against TopKSelectReference (in the
// double_sparsity_gpu_test binary; harness in ds_twin_case.h): every TopKAlgo over lengths
// from 1 to 300K with tie-heavy, signed-zero and NaN scores, and the striped kernel at pair
// counts around the SM count, where its shape changes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "gtest/gtest.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/dtype.h"
#include "kernels/topk_select_reference.h"
#include "tests/gpu/ds_twin_case.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {
namespace {

// A top-k test's device buffers: the fp16 score rows `bits` ((sequence, KV head) pairs in
// order), the sequences of `specs` (tokens, budget, kept tokens), and the selections (rows of
// sel_stride, two past the largest selection) and counts the launches write.
struct TopKBuffers {
  TopKBuffers(const std::vector<SeqSpec>& specs, int hkv, const std::vector<uint16_t>& bits)
      : ns(static_cast<int>(specs.size())),
        sel_stride(LargestSelection(specs) + 2),
        dscores(bits.size() * kScoreBytes),
        dseqs(ns * sizeof(CudaDsSequence)),
        dsel(static_cast<size_t>(ns) * hkv * sel_stride * 4),
        dcounts(ns * hkv * 4) {
    std::vector<CudaDsSequence> seqs(ns);
    for (int s = 0; s < ns; ++s) {
      seqs[s].tokens = specs[s].tokens;
      seqs[s].budget = specs[s].budget;
      seqs[s].sink = specs[s].sink;
      seqs[s].recent = specs[s].recent;
    }
    dscores.Put(bits.data(), bits.size() * kScoreBytes);
    dseqs.Put(seqs.data(), ns * sizeof(CudaDsSequence));
  }
  static int LargestSelection(const std::vector<SeqSpec>& specs) {
    int cap = 1;
    for (const SeqSpec& q : specs) cap = std::max(cap, std::min(q.budget, q.tokens));
    return cap;
  }
  int ns;
  int64_t sel_stride;
  Buf dscores, dseqs, dsel, dcounts;
};

// The selections and counts a launch left in `b` against the twin's over the score rows
// (row_stride apart; (sequence, KV head) pairs in order).
void ExpectSelectionsMatchTwin(const std::vector<float>& scores, const std::vector<SeqSpec>& specs,
                               int hkv, int64_t row_stride, const TopKBuffers& b) {
  const int ns = b.ns;
  const int64_t sel_stride = b.sel_stride;
  const auto got = b.dsel.Get<int32_t>(static_cast<size_t>(ns) * hkv * sel_stride);
  const auto counts = b.dcounts.Get<int32_t>(ns * hkv);
  for (int s = 0; s < ns; ++s) {
    const int n = specs[s].tokens;
    std::vector<int32_t> want(n), scratch(n);
    for (int h = 0; h < hkv; ++h) {
      const float* row = scores.data() + (static_cast<size_t>(s) * hkv + h) * row_stride;
      const int64_t m = TopKSelectReference(row, n, specs[s].budget, specs[s].sink, specs[s].recent,
                                            scratch.data(), want.data());
      ASSERT_EQ(counts[s * hkv + h], m) << "count, sequence " << s << " head " << h;
      const int32_t* g = got.data() + (static_cast<size_t>(s) * hkv + h) * sel_stride;
      int64_t diff = 0;
      for (int64_t j = 0; j < m; ++j) diff += g[j] != want[j];
      EXPECT_EQ(diff, 0) << "selection of sequence " << s << " head " << h << " (of " << m << ")";
    }
  }
}

// The row lengths TopKMatchesTwin sweeps: all of them, or those DSINFER_TOPK_TWIN_LENGTHS (a
// comma list, each 1 to 300000) names — scripts/gpu-check.sh's racecheck step, ~80 times
// slower per launch, takes two.
std::vector<int> TopKTwinLengths() {
  const std::vector<int> all = {1, 7, 97, 4099, 40000, 70000, 190000, 300000};
  const char* env = std::getenv("DSINFER_TOPK_TWIN_LENGTHS");
  if (env == nullptr) return all;
  std::vector<int> named;
  for (absl::string_view p : absl::StrSplit(env, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(p, &v) || v < 1 || v > 300000) {
      ADD_FAILURE() << "DSINFER_TOPK_TWIN_LENGTHS: not a length of 1 to 300000: " << p;
      return {};
    }
    named.push_back(v);
  }
  return named.empty() ? all : named;
}

// Top-k alone against TopKSelectReference, every TopKAlgo: kOneBlock and kTwoRead at every
// stride, and kCluster, whose cluster kernel takes strides over 8192 (also on short segments,
// where some of the cluster's blocks get empty slices) and whose one-block fallback takes the
// rest. Per launch 2 sequences × 3 KV heads with rows at an odd stride (unaligned 8-byte loads)
// or, for kind 3, a multiple of 4 (kTwoRead's 8-byte loads); scores (stored as fp16, as the
// scorers store them, so ties are common at every kind) continuous, coarse (many
// ties at the boundary, incl. ±0), with NaNs, or uniform in [1, 2) (kind 3: sixteen 13-bit
// buckets). kTwoRead's paths: normal scores keep ~1% of a segment in the boundary bucket (its
// shared-memory path); coarse ones at 300000 tokens put ~10K ties there (its fallback to the
// one-block passes); kind 3 at 70000 ~4.4K (two scan tiles of candidates), at 300000 ~19K
// (fallback); kind 4 raises 1/16 of the positions in runs of 8 (two populations, the budget
// past the raised one); kind 5 raises the runs kStriped's sampled band reads (at these 6 pairs
// kStriped runs its two-block clusters past 8192-token strides, which read exactly; the band:
// TopKStripedManyPairsMatchesTwin); kind 6 scales them past fp16's range (stored as ±inf, ~5%
// +inf; its budget L / 32 + 1 puts the boundary among the +inf ties); budgets from 1 (kept
// tokens cut) to above the length. The cluster kernel's sizes: 2 (short strides), 5 (70000),
// 12 (190000: non-portable, not a power of two) and 16 (300000) blocks, where the GPU takes them.
// kResident holds rows up to ~47K tokens in one block's shared memory (every length up to
// 40000 here: odd strides put the rows off the 8-byte grid) and runs kStriped past them; told
// a shorter longest row, it runs its passes in memory for the rows past its shared memory, as
// the cluster kernel does for rows past its row bound (4099: at L 4099 the slices fit, from
// 40000 they do not).
TEST(DoubleSparsityGpu, TopKMatchesTwin) {
  SKIP_WITHOUT_GPU();
  const int hkv = 3;
  // kMultiBlock's workspace, zeroed once and shared by every launch of every shape below (each
  // launch must leave it zeroed: checked at the end).
  Buf dtopk_ws(TopKSelectWorkspaceBytes(2, hkv, 300000 + 9000));
  ASSERT_CUDA(cudaMemset(dtopk_ws.ptr, 0, dtopk_ws.bytes));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int i = 0;
  for (int L : TopKTwinLengths()) {
    for (int64_t stride : {int64_t{L} + 5, int64_t{L} + 9000}) {
      if (L + 5 > 8192 && stride != L + 5) continue;  // both strides: the cluster kernel
      for (int kind = 0; kind < 7; ++kind, ++i) {
        const int64_t row_stride = kind == 3 ? (stride + 3) / 4 * 4 : stride;
        const int L2 = std::max(1, L / 2 - 3);
        const int budget = kind == 3   ? L / 4 + 1
                           : kind == 4 ? L / 8 + 1
                           : kind == 6 ? L / 32 + 1  // within the ~5% of +inf
                                       : BudgetFor(L, i);
        const std::vector<SeqSpec> specs = {{L, budget, 4, 64, 0},
                                            {L2, BudgetFor(L2, i + 3), i % 3, 1 + i % 5, 0}};
        SCOPED_TRACE(absl::StrCat("L ", L, " row_stride ", row_stride, " kind ", kind, " budgets ",
                                  specs[0].budget, " / ", specs[1].budget));
        const int ns = 2;
        std::vector<float> scores(static_cast<size_t>(ns) * hkv * row_stride, 0.0f);
        for (size_t e = 0; e < scores.size(); ++e) {
          float& x = scores[e];
          const float v = normal(Rng());
          x = kind == 0 ? v : kind == 1 ? std::round(v * 4.0f) * 0.25f : v;
          if (kind == 3) x = 1.0f + std::ldexp(static_cast<float>(Rng()() >> 9), -23);
          // Kind 4: every 128th run of 8 positions from sequence 0's first candidate (after its
          // 4 sinks) scores 50 higher (structure a sampled threshold estimate would misread).
          if (kind == 4 && (e % row_stride + 128 - 4) % 128 < 8) x += 50.0f;
          // Kind 5: the runs kStriped's sample reads (512 scores, one in 16) score 3 higher,
          // so the sampled band misses and the exact reads must take over.
          if (kind == 5 && (e % row_stride) / 512 % 16 == 0) x += 3.0f;
          // Kind 6: scores past fp16's range (|x| >= 65520 for |v| > 1.64, ~10%) store as
          // ±inf, so the budget's boundary may fall among equal infinities.
          if (kind == 6) x = v * 40000.0f;
          if (kind == 1 && x == 0.0f && (Rng()() & 1)) x = -0.0f;
          if (kind == 2 && Rng()() % 64 == 0) x = NAN;
        }
        // Stored as the scorers store them (fp16 bits); the twin ranks the same values.
        std::vector<uint16_t> bits(scores.size());
        for (size_t e = 0; e < scores.size(); ++e) {
          bits[e] = F32ToF16(scores[e]);
          scores[e] = F16ToF32(bits[e]);
        }
        TopKBuffers b(specs, hkv, bits);
        // Every kernel, and kResident and kCluster told their rows are at most 4099 tokens (a
        // graph step replayed after its rows grew past its row bound): rows past their shared
        // memory take the passes in memory (the cluster kernel's block 0 alone).
        std::vector<std::pair<TopKAlgo, int64_t>> launches;
        for (TopKAlgo algo : kTopKAlgos) launches.push_back({algo, 0});
        launches.push_back({TopKAlgo::kResident, 4099});
        launches.push_back({TopKAlgo::kCluster, 4099});
        for (auto [algo, longest_row] : launches) {
          SCOPED_TRACE(absl::StrCat(AlgoName(algo), " longest_row ", longest_row));
          ASSERT_CUDA(cudaMemset(b.dsel.ptr, 0xff, b.dsel.bytes));  // poisoned per kernel
          ASSERT_CUDA(cudaMemset(b.dcounts.ptr, 0xff, b.dcounts.bytes));
          ASSERT_OK(LaunchTopKSelect(b.dscores.as<uint16_t>(), row_stride,
                                     b.dseqs.as<CudaDsSequence>(), ns, hkv, b.dsel.as<int32_t>(),
                                     b.sel_stride, b.dcounts.as<int32_t>(), nullptr, algo,
                                     dtopk_ws.ptr, longest_row));
          ExpectSelectionsMatchTwin(scores, specs, hkv, row_stride, b);
        }
      }
    }
  }
  const auto ws = dtopk_ws.Get<uint8_t>(dtopk_ws.bytes);
  EXPECT_EQ(std::count(ws.begin(), ws.end(), uint8_t{0}), static_cast<int64_t>(ws.size()))
      << "the top-k workspace is left zeroed";
}

// TopKStripedManyPairsMatchesTwin's check for ns sequences of hkv KV heads.
void ExpectStripedMatchesTwin(int ns, int hkv) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<SeqSpec> specs(ns);
  int64_t stride = 0;
  for (int s = 0; s < ns; ++s) {
    const int L = s % 2 == 0 ? 70001 + 37 * s : 170003 + 53 * s;
    specs[s] = {L, s % 3 == 0 ? L / 16 + s : BudgetFor(L, s + 2), s % 5, 1 + s % 70, 0};
    stride = std::max<int64_t>(stride, L + s % 4);
  }
  for (int kind = 0; kind < 4; ++kind) {
    SCOPED_TRACE(absl::StrCat("pairs ", ns * hkv, " kind ", kind));
    std::vector<float> scores(static_cast<size_t>(ns) * hkv * stride);
    std::vector<uint16_t> bits(scores.size());
    for (size_t e = 0; e < scores.size(); ++e) {
      const float v = normal(Rng());
      const int64_t t = static_cast<int64_t>(e % stride);
      float x = kind == 1 ? std::round(v * 8.0f) * 0.125f : v;
      if (kind == 2 && t % 128 < 8) x += 50.0f;
      if (kind == 3 && t / 512 % 16 == 0) x += 3.0f;
      bits[e] = F32ToF16(x);
      scores[e] = F16ToF32(bits[e]);
    }
    TopKBuffers b(specs, hkv, bits);
    for (TopKAlgo algo : {TopKAlgo::kStriped, TopKAlgo::kAuto}) {
      SCOPED_TRACE(AlgoName(algo));
      ASSERT_CUDA(cudaMemset(b.dsel.ptr, 0xff, b.dsel.bytes));  // poisoned per kernel
      ASSERT_CUDA(cudaMemset(b.dcounts.ptr, 0xff, b.dcounts.bytes));
      ASSERT_OK(LaunchTopKSelect(b.dscores.as<uint16_t>(), stride, b.dseqs.as<CudaDsSequence>(), ns,
                                 hkv, b.dsel.as<int32_t>(), b.sel_stride, b.dcounts.as<int32_t>(),
                                 nullptr, algo));
      ExpectSelectionsMatchTwin(scores, specs, hkv, stride, b);
    }
  }
}

// kStriped (named, and kAuto's past the resident rows) over more (sequence, KV head) pairs than
// half the GPU's SMs, where TopKMatchesTwin's few pairs run its two-block clusters: up to the
// SMs its one-block kernel with 32 keys a thread a tile, past them with 16. Rows of ~70K (the
// exact reads) and ~170K tokens (the sampled band), varied budgets and kept tokens; scores
// untied (kind 0), heavily tied (1), with 1/16 of the positions raised in runs of 8 (2: two
// populations, as TopKMatchesTwin's kind 4) or the runs the band samples raised (3: the band
// misses, the exact reads take over).
TEST(DoubleSparsityGpu, TopKStripedManyPairsMatchesTwin) {
  SKIP_WITHOUT_GPU();
  int sms = 0;
  ASSERT_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int hkv = 8;
  for (int ns : {sms / (2 * hkv) + 1, sms / hkv + 2}) ExpectStripedMatchesTwin(ns, hkv);
}

}  // namespace
}  // namespace dsinfer
