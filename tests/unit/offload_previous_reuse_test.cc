// Previous-step reuse in the offload tier (OffloadOptions::reuse_previous): every layer's
// sparse fetch goes to a kept buffer of its own; at the next step rows selected again are
// copied from there. Fetched rows must equal the pool's, hits must be exactly the overlap
// with the layer's previous selection of the same sequence, kept buffers must rotate (never
// more than the fetching layers + 1), and release, growth and counted plans must behave.
#include <algorithm>
#include <cstring>
#include <iterator>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cpu_backend.h"
#include "gtest/gtest.h"
#include "offload/kv_block_pool.h"
#include "offload/offload_tier.h"
#include "tests/offload_test_pool.h"

namespace dsinfer {
namespace {

constexpr int kLayers = 3;
constexpr int kHeads = 2;
constexpr int kDim = 8;
using Lists = std::vector<std::vector<int32_t>>;

struct Fixture {
  PageableHostMemory memory;
  std::unique_ptr<KvBlockPool> pool;
  std::unique_ptr<OffloadTier> tier;

  explicit Fixture(uint32_t seed, int64_t max_kept_rows = 0) {
    std::mt19937 rng(seed);
    pool = RandomF32Pool(kLayers, kHeads, kDim, memory, rng);
    EXPECT_NE(pool, nullptr);
    OffloadOptions oo;
    oo.reuse_rows = 0;
    oo.reuse_previous = true;
    oo.max_kept_rows = max_kept_rows;
    auto t = OffloadTier::Create(kLayers, kHeads, kDim, DType::kF32, oo, memory);
    EXPECT_TRUE(t.ok()) << t.status();
    tier = std::move(*t);
  }

  PagedKvView<const float> View(KvBlockPool::SequenceId seq, int layer) const {
    return CpuKvView(*pool, layer, seq);
  }

  // Plans, executes and checks the segment row by row against the pool.
  FetchPlan FetchAndCheck(int layer, size_t segment, KvBlockPool::SequenceId seq,
                          const Lists& tokens) {
    auto plan = tier->Plan(layer, segment, seq, tokens, /*use_cache=*/true);
    EXPECT_TRUE(plan.ok()) << plan.status();
    if (!plan.ok()) return FetchPlan();
    ExecuteFetchPlanReference(*plan, View(seq, layer), *tier);
    const PagedKvView<float> seg = tier->SegmentView(layer, segment);
    const PagedKvView<const float> src = View(seq, layer);
    const SegmentRows rows = tier->Destination(layer, segment);
    for (int h = 0; h < kHeads; ++h) {
      for (size_t i = 0; i < tokens[h].size(); ++i) {
        EXPECT_EQ(0, std::memcmp(seg.KRow(i, h), src.KRow(tokens[h][i], h), kDim * 4))
            << "layer " << layer << " head " << h << " row " << i;
        EXPECT_EQ(0, std::memcmp(seg.VRow(i, h), src.VRow(tokens[h][i], h), kDim * 4));
        EXPECT_EQ(rows.tokens[i * kHeads + h], tokens[h][i]);
      }
    }
    return *plan;
  }
};

// n ascending tokens below `tokens` per head, about `keep` of them taken from `previous`.
Lists Reselect(std::mt19937& rng, const Lists& previous, int tokens, int n, double keep) {
  Lists out(kHeads);
  for (int h = 0; h < kHeads; ++h) {
    std::vector<int32_t> pick;
    std::bernoulli_distribution take(keep);
    if (!previous.empty()) {
      for (int32_t t : previous[h]) {
        if (static_cast<int>(pick.size()) < n && take(rng)) pick.push_back(t);
      }
    }
    std::uniform_int_distribution<int32_t> any(0, tokens - 1);
    while (static_cast<int>(pick.size()) < n) {
      const int32_t t = any(rng);
      if (std::find(pick.begin(), pick.end(), t) == pick.end()) pick.push_back(t);
    }
    std::sort(pick.begin(), pick.end());
    out[h] = pick;
  }
  return out;
}

int64_t Overlap(const Lists& a, const Lists& b) {
  int64_t n = 0;
  for (size_t h = 0; h < a.size() && h < b.size(); ++h) {
    std::vector<int32_t> both;
    std::set_intersection(a[h].begin(), a[h].end(), b[h].begin(), b[h].end(),
                          std::back_inserter(both));
    n += static_cast<int64_t>(both.size());
  }
  return n;
}

TEST(OffloadPreviousReuse, HitsAreTheOverlapWithThePreviousStepAndRowsArePoolRows) {
  Fixture f(11);
  const auto a = f.pool->AddSequence();
  const auto b = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 100).ok());
  ASSERT_TRUE(f.pool->Reserve(b, 60).ok());
  std::mt19937 rng(12);
  std::vector<Lists> last_a(kLayers), last_b(kLayers);
  int64_t expected_hits = 0, hits = 0, looked_up = 0;
  for (int step = 0; step < 10; ++step) {
    // Dense rows may need more of the ping-pong buffers than the sparse (kept) segments.
    ASSERT_TRUE(f.tier->BeginStep({40, 30}, {21, 13}).ok());
    for (int layer = 0; layer < kLayers; ++layer) {
      const Lists sa = Reselect(rng, last_a[layer], 90, 20, 0.7);
      const Lists sb = Reselect(rng, last_b[layer], 50, 12, 0.5);
      const FetchPlan pa = f.FetchAndCheck(layer, 0, a, sa);
      const FetchPlan pb = f.FetchAndCheck(layer, 1, b, sb);
      expected_hits += Overlap(sa, last_a[layer]) + Overlap(sb, last_b[layer]);
      for (const FetchPlan* p : {&pa, &pb}) {
        hits += p->counts.rows_reused;
        looked_up += p->counts.rows_looked_up;
        EXPECT_EQ(p->counts.rows_reused + p->counts.rows_from_host, p->counts.rows_requested);
        EXPECT_EQ(p->counts.bytes_from_host, 2 * p->counts.rows_from_host * kDim * 4);
      }
      // A different sequence's same token numbers never hit: b's hits are b's overlap only.
      last_a[layer] = sa;
      last_b[layer] = sb;
    }
    // Every layer fetched: its kept buffer and at most one free buffer.
    EXPECT_LE(f.tier->kept_buffers(), kLayers + 1);
  }
  EXPECT_GT(expected_hits, 0);
  EXPECT_EQ(hits, expected_hits);
  EXPECT_EQ(looked_up, 10 * kLayers * kHeads * (20 + 12));
  EXPECT_EQ(f.tier->totals().rows_reused, expected_hits);

  // Released: nothing of a is reused; b still is.
  f.tier->Release(a);
  ASSERT_TRUE(f.tier->BeginStep({40, 30}, {21, 13}).ok());
  EXPECT_EQ(f.FetchAndCheck(0, 0, a, last_a[0]).counts.rows_reused, 0);
  EXPECT_EQ(f.FetchAndCheck(0, 1, b, last_b[0]).counts.rows_reused, 12 * kHeads);

  // Larger kept segments drop what was kept (the buffers are reallocated).
  ASSERT_TRUE(f.tier->BeginStep({80, 60}, {70, 13}).ok());
  EXPECT_EQ(f.FetchAndCheck(0, 1, b, last_b[0]).counts.rows_reused, 0);
}

// Dense streaming (use_cache = false) stays in the ping-pong buffers and neither hits nor
// disturbs what a layer kept.
TEST(OffloadPreviousReuse, DenseFetchesBypassTheKeptBuffers) {
  Fixture f(13);
  const auto a = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 40).ok());
  const Lists sparse(kHeads, {1, 4, 9, 20});
  Lists dense(kHeads, std::vector<int32_t>(30));
  for (auto& d : dense) std::iota(d.begin(), d.end(), 0);
  ASSERT_TRUE(f.tier->BeginStep({31}, {5}).ok());
  f.FetchAndCheck(1, 0, a, sparse);
  ASSERT_TRUE(f.tier->BeginStep({31}, {5}).ok());
  auto d = f.tier->Plan(0, 0, a, dense, /*use_cache=*/false);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->counts.rows_looked_up, 0);
  EXPECT_EQ(d->destination.tokens, nullptr);
  EXPECT_EQ(f.FetchAndCheck(1, 0, a, sparse).counts.rows_reused, 4 * kHeads);
  // A sparse list longer than its kept segment is refused.
  const Lists long_list(kHeads, {1, 2, 3, 4, 5});
  EXPECT_EQ(f.tier->Plan(2, 0, a, long_list, true).status().code(), absl::StatusCode::kInternal);
}

// PlanCounted (the device path) leaves hits to the device: the plan names the previous rows
// and their count, counts every row as a host read and a lookup, and CountReusedOnDevice
// moves the hits the device reports.
TEST(OffloadPreviousReuse, CountedPlansNameThePreviousRowsForTheDevice) {
  Fixture f(14);
  const auto a = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 40).ok());
  ASSERT_TRUE(f.tier->BeginStep({9}, {9}).ok());
  auto first = f.tier->PlanCounted(1, 0, a, std::vector<int64_t>(kHeads, 6));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->previous.k, nullptr);
  ASSERT_NE(first->destination.tokens, nullptr);
  ASSERT_TRUE(f.tier->BeginStep({9}, {9}).ok());
  auto second = f.tier->PlanCounted(1, 0, a, std::vector<int64_t>(kHeads, 7));
  ASSERT_TRUE(second.ok()) << second.status();
  // The previous rows are what the first plan's destination held.
  EXPECT_EQ(second->previous.k, first->destination.k);
  EXPECT_EQ(second->previous.v, first->destination.v);
  EXPECT_EQ(second->previous.tokens, first->destination.tokens);
  EXPECT_EQ(second->previous_per_head, 6);
  EXPECT_NE(second->destination.k, first->destination.k);
  EXPECT_EQ(second->counts.rows_looked_up, 7 * kHeads);
  EXPECT_EQ(second->counts.rows_from_host, 7 * kHeads);
  const FetchCounters delta = f.tier->CountReusedOnDevice(a, 5);
  EXPECT_EQ(delta.rows_reused, 5);
  EXPECT_EQ(delta.rows_from_host, -5);
  EXPECT_EQ(delta.bytes_from_host, -2 * 5 * kDim * 4);
  const FetchCounters* c = f.tier->Counters(a);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->rows_reused, 5);
  EXPECT_EQ(c->rows_from_host, 6 * kHeads + 7 * kHeads - 5);
  EXPECT_EQ(f.tier->step_totals().rows_reused, 5);
}

// Kept buffers never grow past max_kept_rows (what the memory plan counted): a step whose
// sparse budgets sum to more keeps the segments that fit; the others fetch without reuse.
TEST(OffloadPreviousReuse, SegmentsBeyondTheKeptCapFetchWithoutReuse) {
  Fixture f(15, /*max_kept_rows=*/25);
  const auto a = f.pool->AddSequence();
  const auto b = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 100).ok());
  ASSERT_TRUE(f.pool->Reserve(b, 60).ok());
  std::mt19937 rng(16);
  const Lists sa = Reselect(rng, {}, 90, 20, 0), sb = Reselect(rng, {}, 50, 12, 0);
  for (int step = 0; step < 2; ++step) {
    ASSERT_TRUE(f.tier->BeginStep({40, 30}, {21, 13}).ok());
    const FetchPlan pa = f.FetchAndCheck(0, 0, a, sa);
    auto pb = f.tier->Plan(0, 1, b, sb, /*use_cache=*/true);
    ASSERT_TRUE(pb.ok()) << pb.status();
    ExecuteFetchPlanReference(*pb, f.View(b, 0), *f.tier);
    EXPECT_EQ(pb->destination.tokens, nullptr);  // a ping-pong segment
    EXPECT_EQ(pb->counts.rows_looked_up, 0);
    EXPECT_EQ(f.tier->segment_capacity(0, 1), 30);
    EXPECT_EQ(f.tier->segment_capacity(0, 0), 21);
    EXPECT_EQ(pa.counts.rows_reused, step == 0 ? 0 : 20 * kHeads);
  }
  // Only the 21 rows that fit were ever allocated, per buffer.
  EXPECT_EQ(f.tier->kept_buffers(), 2);
  EXPECT_LE(f.tier->reuse_bytes(), 2 * (2 * 25 * kHeads * kDim * 4 + 256));
}

TEST(OffloadPreviousReuse, ExcludesTheLruCacheAndMatchesAscendingLists) {
  OffloadOptions both;
  both.reuse_rows = 16;
  both.reuse_previous = true;
  EXPECT_EQ(both.Validate().code(), absl::StatusCode::kInvalidArgument);
  OffloadOptions negative_cap;
  negative_cap.reuse_rows = 0;
  negative_cap.reuse_previous = true;
  negative_cap.max_kept_rows = -1;
  EXPECT_EQ(negative_cap.Validate().code(), absl::StatusCode::kInvalidArgument);
  negative_cap.max_kept_rows = 0;
  EXPECT_TRUE(negative_cap.Validate().ok());
  std::vector<int32_t> from(5, -1);
  EXPECT_EQ(MatchPrevious({2, 3, 7, 8, 11}, {1, 3, 4, 8, 9, 11}, from), 3);
  EXPECT_EQ(from, (std::vector<int32_t>{-1, 1, -1, 3, 5}));
}

}  // namespace
}  // namespace dsinfer
