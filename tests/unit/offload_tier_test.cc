// The offload tier alone (offload/offload_tier.h): fetch plans over a pool of random rows
// must place exactly the planned tokens' K/V in the segment, whether a row came from the
// host pool or the reuse cache; the LRU cache must hit on repeats, evict least recently used
// rows, never evict a row the same plan reads, and free a sequence's slots on release;
// counters must be exact; segments must not overflow.
#include "offload/offload_tier.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "engine/cpu_backend.h"
#include "gtest/gtest.h"
#include "offload/kv_block_pool.h"
#include "tests/offload_test_pool.h"

namespace dsinfer {
namespace {

constexpr int kHeads = 3;
constexpr int kDim = 8;

struct Fixture {
  PageableHostMemory memory;
  std::unique_ptr<KvBlockPool> pool;
  std::unique_ptr<OffloadTier> tier;

  Fixture(int64_t reuse_rows, int64_t tokens, uint32_t seed) {
    std::mt19937 rng(seed);
    pool = RandomF32Pool(2, kHeads, kDim, memory, rng);
    EXPECT_NE(pool, nullptr);
    OffloadOptions oo;
    oo.reuse_rows = reuse_rows;
    auto t = OffloadTier::Create(2, kHeads, kDim, DType::kF32, oo, memory);
    EXPECT_TRUE(t.ok()) << t.status();
    tier = std::move(*t);
    (void)tokens;
  }

  PagedKvView<const float> View(KvBlockPool::SequenceId seq, int layer) const {
    return CpuKvView(*pool, layer, seq);
  }

  // Plans and executes, then checks the segment against the pool row by row.
  FetchPlan FetchAndCheck(int layer, size_t segment, KvBlockPool::SequenceId seq,
                          const std::vector<std::vector<int32_t>>& tokens) {
    auto plan = tier->Plan(layer, segment, seq, tokens, /*use_cache=*/true);
    EXPECT_TRUE(plan.ok()) << plan.status();
    ExecuteFetchPlanReference(*plan, View(seq, layer), *tier);
    const PagedKvView<float> seg = tier->SegmentView(layer, segment);
    const PagedKvView<const float> src = View(seq, layer);
    for (int h = 0; h < kHeads; ++h) {
      for (size_t i = 0; i < tokens[h].size(); ++i) {
        EXPECT_EQ(0, std::memcmp(seg.KRow(i, h), src.KRow(tokens[h][i], h), kDim * 4))
            << "layer " << layer << " head " << h << " row " << i;
        EXPECT_EQ(0, std::memcmp(seg.VRow(i, h), src.VRow(tokens[h][i], h), kDim * 4));
      }
    }
    return *plan;
  }
};

std::vector<std::vector<int32_t>> RandomSets(std::mt19937& rng, int tokens, int n) {
  std::vector<std::vector<int32_t>> sets(kHeads);
  for (auto& s : sets) {
    std::vector<int32_t> all(tokens);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    s.assign(all.begin(), all.begin() + n);
    std::sort(s.begin(), s.end());
  }
  return sets;
}

TEST(OffloadTier, FetchedRowsEqualPoolRowsWithAndWithoutReuse) {
  for (int64_t reuse : {int64_t{0}, int64_t{7}, int64_t{64}}) {
    SCOPED_TRACE(reuse);
    Fixture f(reuse, 100, 1);
    const auto a = f.pool->AddSequence();
    const auto b = f.pool->AddSequence();
    ASSERT_TRUE(f.pool->Reserve(a, 100).ok());
    ASSERT_TRUE(f.pool->Reserve(b, 60).ok());
    std::mt19937 rng(2);
    FetchCounters sum;
    for (int step = 0; step < 12; ++step) {
      ASSERT_TRUE(f.tier->BeginStep({21, 13}).ok());
      for (int layer = 0; layer < 2; ++layer) {
        sum.Add(f.FetchAndCheck(layer, 0, a, RandomSets(rng, 90, 20)).counts);
        sum.Add(f.FetchAndCheck(layer, 1, b, RandomSets(rng, 50, 12)).counts);
        // The second sequence's fetch did not disturb the first one's segment.
        ASSERT_NE(f.tier->Pending(layer, 0), nullptr);
      }
    }
    EXPECT_EQ(sum.rows_requested, 12 * 2 * kHeads * (20 + 12));
    EXPECT_EQ(sum.rows_from_host + sum.rows_reused, sum.rows_requested);
    EXPECT_EQ(sum.bytes_from_host, sum.rows_from_host * 2 * kDim * 4);
    EXPECT_EQ(f.tier->totals().rows_requested, sum.rows_requested);
    if (reuse == 0) {
      EXPECT_EQ(sum.rows_reused, 0);
    }
    if (reuse == 64) {
      EXPECT_GT(sum.rows_reused, 0);
    }
    EXPECT_EQ(f.tier->Counters(a)->rows_requested + f.tier->Counters(b)->rows_requested,
              sum.rows_requested);
  }
}

TEST(OffloadTier, LruHitsRepeatsEvictsOldestAndNeverEvictsRowsInUse) {
  Fixture f(/*reuse_rows=*/6, 40, 3);
  const auto a = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 40).ok());
  ASSERT_TRUE(f.tier->BeginStep({12}).ok());
  auto same = [](std::vector<int32_t> t) { return std::vector<std::vector<int32_t>>(kHeads, t); };
  FetchPlan p = f.FetchAndCheck(0, 0, a, same({1, 2, 3, 4}));
  EXPECT_EQ(p.counts.rows_from_host, 4 * kHeads);
  p = f.FetchAndCheck(0, 0, a, same({1, 2, 3, 4}));
  EXPECT_EQ(p.counts.rows_reused, 4 * kHeads);
  // 5 and 6 fill the cache; 1..4 are used again, so 5 and 6 are now the oldest.
  f.FetchAndCheck(0, 0, a, same({1, 2, 3, 4, 5, 6}));
  f.FetchAndCheck(0, 0, a, same({1, 2, 3, 4}));
  p = f.FetchAndCheck(0, 0, a, same({1, 2, 7, 8}));  // 7, 8 evict 5, 6
  EXPECT_EQ(p.counts.rows_reused, 2 * kHeads);
  p = f.FetchAndCheck(0, 0, a, same({3, 4, 7, 8}));
  EXPECT_EQ(p.counts.rows_reused, 4 * kHeads);
  p = f.FetchAndCheck(0, 0, a, same({5, 6}));
  EXPECT_EQ(p.counts.rows_reused, 0);
  // More rows than slots in one plan: all fetched correctly, the plan's own cached rows are
  // never evicted by its later misses, and at most 6 rows per head end up cached.
  p = f.FetchAndCheck(0, 0, a, same({1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13}));
  for (int h = 0; h < kHeads; ++h) {
    std::set<int32_t> slots;
    for (size_t i = 0; i < p.tokens[h].size(); ++i) {
      if (p.from_slot[h][i] >= 0) {
        EXPECT_TRUE(slots.insert(p.from_slot[h][i]).second);
      }
    }
    for (size_t i = 0; i < p.tokens[h].size(); ++i) {
      if (p.to_slot[h][i] >= 0) {
        EXPECT_TRUE(slots.insert(p.to_slot[h][i]).second);
      }
    }
    EXPECT_LE(slots.size(), 6u);
  }
  // Layer 1's cache is separate.
  p = f.FetchAndCheck(1, 0, a, same({1, 2}));
  EXPECT_EQ(p.counts.rows_reused, 0);
  EXPECT_EQ(f.tier->reuse_slots_in_use(), 6 * kHeads + 2 * kHeads);
  f.tier->Release(a);
  EXPECT_EQ(f.tier->reuse_slots_in_use(), 0);
  EXPECT_EQ(f.tier->Counters(a), nullptr);
}

TEST(OffloadTier, SequencesDoNotShareRowsAndReleaseMissingFollowsThePool) {
  Fixture f(16, 40, 4);
  const auto a = f.pool->AddSequence();
  const auto b = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 20).ok());
  ASSERT_TRUE(f.pool->Reserve(b, 20).ok());
  ASSERT_TRUE(f.tier->BeginStep({8, 8}).ok());
  const std::vector<std::vector<int32_t>> rows(kHeads, {0, 5, 6});
  f.FetchAndCheck(0, 0, a, rows);
  // Same token numbers of another sequence are different rows: no hit, and b's data.
  FetchPlan p = f.FetchAndCheck(0, 1, b, rows);
  EXPECT_EQ(p.counts.rows_reused, 0);
  f.pool->Release(a);
  f.tier->ReleaseMissing(*f.pool);
  EXPECT_EQ(f.tier->Counters(a), nullptr);
  EXPECT_NE(f.tier->Counters(b), nullptr);
  EXPECT_EQ(f.tier->reuse_slots_in_use(), 3 * kHeads);
}

TEST(OffloadTier, RefusesRowsBeyondTheSegmentAndBadOptions) {
  Fixture f(4, 40, 5);
  const auto a = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 20).ok());
  ASSERT_TRUE(f.tier->BeginStep({4}).ok());
  // A segment of 4 rows holds 3 fetched rows plus the current token.
  const std::vector<std::vector<int32_t>> four(kHeads, {0, 1, 2, 3});
  EXPECT_EQ(f.tier->Plan(0, 0, a, four, true).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(f.tier->Plan(0, 1, a, four, true).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(f.tier->Pending(0, 0), nullptr);
  // Buffers grow with the step and stay grown.
  ASSERT_TRUE(f.tier->BeginStep({100, 50}).ok());
  EXPECT_GE(f.tier->buffer_bytes(), 2 * 150 * kHeads * kDim * 4 * 2);
  OffloadOptions bad;
  bad.own_query_layers = -1;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
  bad = OffloadOptions();
  bad.max_buffer_rows = -1;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
  PageableHostMemory memory;
  EXPECT_FALSE(OffloadTier::Create(0, 1, 8, DType::kF32, {}, memory).ok());
}

// Doubling stops at max_buffer_rows; a step that needs more still gets exactly its rows.
TEST(OffloadTier, BufferGrowthStopsAtTheCap) {
  PageableHostMemory memory;
  OffloadOptions options;
  options.max_buffer_rows = 120;
  auto tier = OffloadTier::Create(2, kHeads, kDim, DType::kF32, options, memory);
  ASSERT_TRUE(tier.ok()) << tier.status();
  const int64_t per_row = 2 * 2 * kHeads * kDim * 4;  // two buffers, K and V, fp32
  ASSERT_TRUE((*tier)->BeginStep({100}).ok());
  EXPECT_EQ((*tier)->buffer_bytes(), 100 * per_row);
  ASSERT_TRUE((*tier)->BeginStep({110}).ok());  // doubling would give 200 rows
  EXPECT_EQ((*tier)->buffer_bytes(), 120 * per_row);
  ASSERT_TRUE((*tier)->BeginStep({150}).ok());  // beyond the cap: exactly what it needs
  EXPECT_EQ((*tier)->buffer_bytes(), 150 * per_row);
  options.max_buffer_rows = 0;  // uncapped: doubles
  auto doubling = OffloadTier::Create(2, kHeads, kDim, DType::kF32, options, memory);
  ASSERT_TRUE(doubling.ok());
  ASSERT_TRUE((*doubling)->BeginStep({100}).ok());
  ASSERT_TRUE((*doubling)->BeginStep({110}).ok());
  EXPECT_EQ((*doubling)->buffer_bytes(), 200 * per_row);
}

// A plan whose lists stay on the device: counted like Plan's, pending by count only, and
// refused when a count leaves no room for the current token.
TEST(OffloadTier, CountedPlansAccountLikeListedOnes) {
  Fixture f(0, 40, 6);
  const auto a = f.pool->AddSequence();
  ASSERT_TRUE(f.pool->Reserve(a, 20).ok());
  ASSERT_TRUE(f.tier->BeginStep({8, 8}).ok());
  EXPECT_FALSE(f.tier->HasPending(1, 0));
  EXPECT_TRUE(f.tier->PendingCounts(1, 0).empty());
  auto counted = f.tier->PlanCounted(1, 0, a, std::vector<int64_t>(kHeads, 5));
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ(counted->layer, 1);
  EXPECT_EQ(counted->buffer, 1);
  EXPECT_EQ(counted->segment_row, 0);
  EXPECT_TRUE(counted->tokens.empty());
  EXPECT_EQ(counted->counts.rows_requested, 5 * kHeads);
  EXPECT_EQ(counted->counts.rows_from_host, 5 * kHeads);
  EXPECT_EQ(counted->counts.bytes_from_host, 2 * 5 * kHeads * kDim * 4);
  EXPECT_TRUE(f.tier->HasPending(1, 0));
  EXPECT_EQ(f.tier->Pending(1, 0), nullptr);
  EXPECT_EQ(f.tier->PendingCounts(1, 0), std::vector<int64_t>(kHeads, 5));
  // The same rows planned as lists count the same, into the other segment.
  const std::vector<std::vector<int32_t>> lists(kHeads, {1, 3, 5, 7, 9});
  auto listed = f.tier->Plan(1, 1, a, lists, /*use_cache=*/true);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->counts.rows_requested, counted->counts.rows_requested);
  EXPECT_EQ(listed->counts.bytes_from_host, counted->counts.bytes_from_host);
  EXPECT_EQ(f.tier->PendingCounts(1, 1), std::vector<int64_t>(kHeads, 5));
  ASSERT_NE(f.tier->Pending(1, 1), nullptr);
  EXPECT_EQ(f.tier->Counters(a)->rows_requested, 10 * kHeads);
  // 8 rows leave no room for the current token; a wrong head count is refused too.
  EXPECT_EQ(f.tier->PlanCounted(0, 0, a, std::vector<int64_t>(kHeads, 8)).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(f.tier->PlanCounted(0, 0, a, std::vector<int64_t>(kHeads + 1, 1)).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_FALSE(f.tier->HasPending(0, 0));
  // A new step forgets both kinds.
  ASSERT_TRUE(f.tier->BeginStep({8, 8}).ok());
  EXPECT_FALSE(f.tier->HasPending(1, 0));
  EXPECT_FALSE(f.tier->HasPending(1, 1));
}

}  // namespace
}  // namespace dsinfer
