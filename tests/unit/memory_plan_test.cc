// Start-up memory planning (engine/cuda/memory_plan.h), the arithmetic only: no GPU needed.
// Each kv mode puts the pool where the engine puts it (GPU in gpu mode, pinned host memory in
// the offload modes), counts labels, fetch buffers and reuse slabs on the GPU where they live,
// and the terms agree with what the engine's own allocators report for the same shapes.
// Llama-3-8B numbers are worked out by hand in the comments.
#include "engine/cuda/memory_plan.h"

#include <cstdio>
#include <string>

#include "engine/model.h"
#include "engine/sparse/label_cache.h"
#include "gtest/gtest.h"
#include "offload/host_memory.h"
#include "offload/offload_tier.h"

namespace dsinfer {
namespace {

constexpr int64_t kGiB = 1ll << 30;

ModelConfig Llama3_8B() {
  ModelConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads_q = 32;
  c.num_heads_kv = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 8192;
  c.tie_word_embeddings = false;
  return c;
}

MemoryPlanRequest At256K(KvMode mode) {
  MemoryPlanRequest r;
  r.kv_mode = mode;
  r.kv_pool_tokens = 262144;
  r.max_context = 262144;
  r.max_batch = 1;
  r.max_rows = 512;
  r.max_logit_rows = 1;
  r.labels = LabelFormat{16, 16};
  return r;
}

// 8,030,261,248 parameters (Llama-3-8B) × 2 bytes.
constexpr int64_t kLlama3Weights = 16060522496;
// 262144 tokens × 32 layers × K,V × 8 heads × 128 × 2 B = 32 GiB.
constexpr int64_t kPool256K = 32 * kGiB;

TEST(MemoryPlan, GpuModeCountsThePoolOnTheGpu) {
  auto plan = ComputeMemoryPlan(Llama3_8B(), At256K(KvMode::kGpu));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->pool_tokens, 262144);
  EXPECT_EQ(plan->weight_bytes, kLlama3Weights);
  EXPECT_EQ(plan->gpu_kv_bytes, kPool256K);
  EXPECT_EQ(plan->host_kv_bytes, 0);
  EXPECT_EQ(plan->host_needed(), 0);
  // 32 layers × 8 heads × 16 ch × 2 B × 262144 tokens = 2 GiB, on the GPU in gpu mode too.
  EXPECT_EQ(plan->label_bytes, 2 * kGiB);
  EXPECT_EQ(plan->fetch_buffer_bytes, 0);
  EXPECT_EQ(plan->reuse_bytes, 0);
  EXPECT_GT(plan->workspace_bytes, 256ll << 20);
  EXPECT_EQ(plan->device_needed(), plan->weight_bytes + plan->gpu_kv_bytes + plan->label_bytes +
                                       plan->workspace_bytes);
}

TEST(MemoryPlan, OffloadCountsThePoolOnTheHostAndTierBuffersOnTheGpu) {
  auto plan = ComputeMemoryPlan(Llama3_8B(), At256K(KvMode::kOffload));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->gpu_kv_bytes, 0);
  EXPECT_EQ(plan->host_kv_bytes, kPool256K);
  EXPECT_EQ(plan->host_reserve_bytes, 2 * kGiB);
  EXPECT_EQ(plan->label_bytes, 2 * kGiB);
  // Two ping-pong buffers × K,V × 262144 rows × 8 heads × 256 B = 2 GiB.
  EXPECT_EQ(plan->fetch_buffer_bytes, 2 * kGiB);
  // 32 layers × K,V × 4096 slots × 8 heads × 256 B = 0.5 GiB.
  EXPECT_EQ(plan->reuse_bytes, kGiB / 2);
  EXPECT_EQ(plan->device_needed(), plan->weight_bytes + plan->label_bytes +
                                       plan->fetch_buffer_bytes + plan->reuse_bytes +
                                       plan->workspace_bytes);
  // The case: about 20 GiB on the GPU, not 47+.
  EXPECT_LT(plan->device_needed(), 21 * kGiB);

  // Two resident layers (the default dense layers): 2/32 of the pool moves to the GPU.
  MemoryPlanRequest resident = At256K(KvMode::kOffload);
  resident.resident_layers = 2;
  auto plan_r = ComputeMemoryPlan(Llama3_8B(), resident);
  ASSERT_TRUE(plan_r.ok());
  EXPECT_EQ(plan_r->gpu_kv_bytes, kPool256K / 16);
  EXPECT_EQ(plan_r->host_kv_bytes, kPool256K - kPool256K / 16);
  EXPECT_EQ(plan_r->device_needed(), plan->device_needed() + kPool256K / 16);
  EXPECT_NE(plan_r->DeviceSummary().find("--offload-resident-layers"), std::string::npos);

  // 4-bit labels: 8 code bytes + fp16 scale + fp16 minimum = 12 B per row: 0.75 GiB.
  MemoryPlanRequest four = At256K(KvMode::kOffload);
  four.labels = LabelFormat{16, 4};
  auto plan4 = ComputeMemoryPlan(Llama3_8B(), four);
  ASSERT_TRUE(plan4.ok());
  EXPECT_EQ(plan4->label_bytes, 3 * kGiB / 4);
}

// Layer-major prefill (--layer-major-from): two staging layers of the pool (each 262144 tokens
// × K,V × 8 heads × 256 B = 1 GiB) and a 256K prompt's fp32 residual (262144 × 4096 × 4 B =
// 4 GiB).
TEST(MemoryPlan, LayerMajorPrefillCountsItsStagingLayerAndHiddenStates) {
  MemoryPlanRequest r = At256K(KvMode::kOffload);
  auto without = ComputeMemoryPlan(Llama3_8B(), r);
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(without->layer_major_bytes, 0);
  r.layer_major_from = 8192;
  auto with = ComputeMemoryPlan(Llama3_8B(), r);
  ASSERT_TRUE(with.ok()) << with.status();
  // Two staging layers (1 GiB each at 256K) and the fp32 hidden states (4 GiB).
  EXPECT_EQ(with->layer_major_bytes, 2 * kGiB + 4 * kGiB);
  EXPECT_EQ(with->device_needed(), without->device_needed() + 6 * kGiB);
  EXPECT_NE(with->DeviceSummary().find("--layer-major-from 8192"), std::string::npos)
      << with->DeviceSummary();
  r.layer_major_from = -1;
  EXPECT_EQ(ComputeMemoryPlan(Llama3_8B(), r).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MemoryPlan, DenseOffloadKeepsNoLabels) {
  auto plan = ComputeMemoryPlan(Llama3_8B(), At256K(KvMode::kDenseOffload));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->gpu_kv_bytes, 0);
  EXPECT_EQ(plan->host_kv_bytes, kPool256K);
  EXPECT_EQ(plan->label_bytes, 0);  // Double Sparsity is forced off in dense-offload
  EXPECT_EQ(plan->fetch_buffer_bytes, 2 * kGiB);
  EXPECT_EQ(plan->reuse_bytes, kGiB / 2);
}

TEST(MemoryPlan, PoolRoundsToBlocksAndBuffersToTheBatchContexts) {
  MemoryPlanRequest r = At256K(KvMode::kOffload);
  r.kv_pool_tokens = 1000;  // 63 blocks of 16
  r.max_context = 4096;
  auto plan = ComputeMemoryPlan(Llama3_8B(), r);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->pool_tokens, 1008);
  EXPECT_EQ(plan->host_kv_bytes, 1008ll * 2 * 32 * 1024 * 2);
  EXPECT_EQ(plan->fetch_buffer_bytes, 2ll * 2 * 1008 * 8 * 256);  // the pool bounds the rows
  r.kv_pool_tokens = 0;  // 4 × max_context
  r.max_batch = 3;
  plan = ComputeMemoryPlan(Llama3_8B(), r);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->pool_tokens, 4 * 4096);
  EXPECT_EQ(plan->fetch_buffer_bytes, 2ll * 2 * (3 * 4096) * 8 * 256);  // batch × context
  r.labels = LabelFormat{0, 16};  // no sequence keeps labels by default
  plan = ComputeMemoryPlan(Llama3_8B(), r);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->label_bytes, 0);
}

TEST(MemoryPlan, TermsMatchTheEngineAllocators) {
  // Label cache: what LabelCache accounts for a sequence of n tokens is the plan's per-token
  // share × n (accounting-only storage: no bytes are allocated for this check).
  const ModelConfig c = Llama3_8B();
  for (const LabelFormat format : {LabelFormat{16, 16}, LabelFormat{16, 4}, LabelFormat{7, 4}}) {
    LabelCache labels(c.num_layers, c.num_heads_kv, LabelStorage::kAccountingOnly);
    MemoryPlanRequest r = At256K(KvMode::kOffload);
    r.kv_pool_tokens = 4096;
    r.labels = format;
    auto plan = ComputeMemoryPlan(c, r);
    ASSERT_TRUE(plan.ok());
    ASSERT_TRUE(labels.Reserve(1, format, 4096).ok());
    EXPECT_EQ(labels.bytes_in_use(), plan->label_bytes) << format.r << " " << format.bits;
    EXPECT_EQ(labels.host_bytes(), 0);
  }
  // Offload tier: reuse slabs and fetch buffers of a small shape, from real allocations.
  ModelConfig small = c;
  small.num_layers = 3;
  small.num_heads_kv = 2;
  small.head_dim = 64;
  MemoryPlanRequest r = At256K(KvMode::kOffload);
  r.kv_pool_tokens = 96;
  r.max_context = 40;
  r.max_batch = 2;
  r.reuse_rows = 24;
  auto plan = ComputeMemoryPlan(small, r);
  ASSERT_TRUE(plan.ok());
  PageableHostMemory memory;
  OffloadOptions options;
  options.reuse_rows = r.reuse_rows;
  auto tier = OffloadTier::Create(small.num_layers, small.num_heads_kv, small.head_dim,
                                  DType::kBF16, options, memory);
  ASSERT_TRUE(tier.ok()) << tier.status();
  EXPECT_EQ((*tier)->reuse_bytes(), plan->reuse_bytes);
  // Two dense decode rows with full 40-token contexts: the most one step of this batch asks.
  ASSERT_TRUE((*tier)->BeginStep({40, 40}).ok());
  EXPECT_EQ((*tier)->buffer_bytes(), plan->fetch_buffer_bytes);

  // Previous-step reuse: kept buffers of every non-resident layer (+1 free), grown by
  // doubling from a small step to the largest: never more than the plan counts.
  r.reuse_rows = 0;
  r.kept_rows = 2 * 10;  // 2 sequences × a 10-token budget
  r.resident_layers = 1;
  plan = ComputeMemoryPlan(small, r);
  ASSERT_TRUE(plan.ok());
  options.reuse_rows = 0;
  options.reuse_previous = true;
  options.resident_layers = 1;
  options.max_buffer_rows = r.PoolTokens();
  options.max_kept_rows = plan->request.kept_rows;  // as dsinfer-server and dsinfer-run pass it
  auto kept = OffloadTier::Create(small.num_layers, small.num_heads_kv, small.head_dim,
                                  DType::kBF16, options, memory);
  ASSERT_TRUE(kept.ok()) << kept.status();
  PageableHostMemory pool_memory;
  KvPoolOptions po;
  po.layers = small.num_layers;
  po.kv_heads = small.num_heads_kv;
  po.head_dim = small.head_dim;
  po.block_tokens = 16;
  po.num_blocks = 4;
  po.dtype = DType::kBF16;
  auto pool = KvBlockPool::Create(po, pool_memory);
  ASSERT_TRUE(pool.ok());
  const auto seq = (*pool)->AddSequence();
  for (int64_t budget : {3, 6, 9, 10}) {
    ASSERT_TRUE((*kept)->BeginStep({budget, budget}, {budget, budget}).ok());
    for (int layer = 0; layer < small.num_layers; ++layer) {
      ASSERT_TRUE((*kept)->PlanCounted(layer, 0, seq, {budget - 1, budget - 1}).ok());
    }
  }
  EXPECT_EQ((*kept)->kept_buffers(), small.num_layers - 1 + 1);
  EXPECT_GT((*kept)->reuse_bytes(), 0);
  EXPECT_LE((*kept)->reuse_bytes(), plan->reuse_bytes);
}

TEST(MemoryPlan, GpuModeThatDoesNotFitNamesEveryTermAndTheFlags) {
  MemoryPlanRequest r = At256K(KvMode::kGpu);
  r.kv_pool_tokens = 524288;  // 64 GiB of KV: 4 × Llama-3.1's 128K context
  MemoryAvailable h100{79 * kGiB, 80 * kGiB, 500 * kGiB};
  auto plan = PlanMemory(Llama3_8B(), r, h100, "GPU 0");
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted) << plan.status();
  const std::string m(plan.status().message());
  std::printf("gpu mode, 512K pool on an 80 GB GPU:\n  %s\n", m.c_str());
  for (const char* term : {"GPU 0", "weights", "KV pool", "label cache", "workspace",
                           "--kv-pool-tokens", "--max-context", "--kv-mode offload",
                           "--channels 16", "--label-bits 16", "64.00 GiB", "79.00 GiB free"}) {
    EXPECT_NE(m.find(term), std::string::npos) << "missing '" << term << "' in: " << m;
  }
  // The same pool in offload mode fits that GPU and a host with enough memory.
  r.kv_mode = KvMode::kOffload;
  r.max_context = 131072;
  plan = PlanMemory(Llama3_8B(), r, h100, "GPU 0");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->device_fits());
  EXPECT_TRUE(plan->host_fits());
}

TEST(MemoryPlan, OffloadThatDoesNotFitTheHostNamesThePoolAndTheFlag) {
  MemoryAvailable small_host{79 * kGiB, 80 * kGiB, 33 * kGiB};  // 32 GiB pool + 2 GiB reserve
  auto plan = PlanMemory(Llama3_8B(), At256K(KvMode::kOffload), small_host);
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted) << plan.status();
  const std::string m(plan.status().message());
  std::printf("offload, 256K pool, 33 GiB host:\n  %s\n", m.c_str());
  for (const char* term : {"host memory", "KV pool", "32.00 GiB", "reserve", "--kv-pool-tokens",
                           "MemAvailable", "33.00 GiB"}) {
    EXPECT_NE(m.find(term), std::string::npos) << "missing '" << term << "' in: " << m;
  }
  small_host.host_available_bytes = 34 * kGiB;
  EXPECT_TRUE(PlanMemory(Llama3_8B(), At256K(KvMode::kOffload), small_host).ok());
  // A GPU too small for the offload tier names the tier's terms.
  MemoryAvailable small_gpu{18 * kGiB, 24 * kGiB, 500 * kGiB};
  plan = PlanMemory(Llama3_8B(), At256K(KvMode::kOffload), small_gpu);
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string g(plan.status().message());
  for (const char* term : {"label cache", "fetch buffers", "reuse slabs", "--offload-reuse-rows",
                           "--max-batch", "workspace"}) {
    EXPECT_NE(g.find(term), std::string::npos) << "missing '" << term << "' in: " << g;
  }
  EXPECT_EQ(g.find("KV pool"), std::string::npos) << g;  // the pool is not a GPU term here
  // gpu mode checks no host memory at all.
  MemoryAvailable no_host{79 * kGiB, 80 * kGiB, 0};
  EXPECT_TRUE(PlanMemory(Llama3_8B(), At256K(KvMode::kGpu), no_host).ok());
}

TEST(MemoryPlan, RejectsBadRequests) {
  MemoryPlanRequest r = At256K(KvMode::kGpu);
  r.max_context = 0;
  EXPECT_EQ(ComputeMemoryPlan(Llama3_8B(), r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r = At256K(KvMode::kGpu);
  r.labels.bits = 8;
  EXPECT_EQ(ComputeMemoryPlan(Llama3_8B(), r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r = At256K(KvMode::kGpu);
  r.dtype = DType::kF32;
  EXPECT_EQ(ComputeMemoryPlan(Llama3_8B(), r).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MemoryPlan, RequestFromModelOptions) {
  ModelOptions options;
  options.kv_mode = KvMode::kOffload;
  options.offload.reuse_rows = 1234;
  options.attention.mode = AttentionMode::kAuto;
  options.attention.channels = 8;
  options.attention.label_bits = 4;
  // auto without a channel config keeps no labels; max_context from the config.
  MemoryPlanRequest r = MemoryPlanRequestFor(Llama3_8B(), options, "/nonexistent", 4, 300, 5);
  EXPECT_EQ(r.labels.r, 0);
  EXPECT_EQ(r.max_context, 8192);
  EXPECT_EQ(r.PoolTokens(), 4 * 8192);
  EXPECT_EQ(r.reuse_rows, 1234);
  EXPECT_EQ(r.resident_layers, 0);  // -1: none
  options.offload.resident_layers = 2;
  EXPECT_EQ(MemoryPlanRequestFor(Llama3_8B(), options, "/nonexistent", 4, 300, 5).resident_layers,
            2);
  options.offload.resident_layers = -1;
  EXPECT_EQ(r.max_batch, 4);
  EXPECT_EQ(r.max_rows, 300);
  EXPECT_EQ(r.max_logit_rows, 5);
  EXPECT_EQ(r.kv_mode, KvMode::kOffload);
  // With a channel config (or double_sparse) the default format is planned.
  options.channel_config_path = "channels.json";
  r = MemoryPlanRequestFor(Llama3_8B(), options, "/nonexistent", 1, 1, 1);
  EXPECT_EQ(r.labels, (LabelFormat{8, 4}));
  options.channel_config_path.clear();
  options.attention.mode = AttentionMode::kDoubleSparse;
  options.max_context = 1000;
  options.kv_pool_tokens = 5000;
  r = MemoryPlanRequestFor(Llama3_8B(), options, "/nonexistent", 1, 1, 1);
  EXPECT_EQ(r.labels, (LabelFormat{8, 4}));
  EXPECT_EQ(r.max_context, 1000);
  EXPECT_EQ(r.PoolTokens(), 5008);
  options.attention.mode = AttentionMode::kDense;
  r = MemoryPlanRequestFor(Llama3_8B(), options, "/nonexistent", 1, 1, 1);
  EXPECT_EQ(r.labels.r, 0);
}

TEST(MemoryPlan, MemAvailable) {
  auto bytes = ParseMemAvailable(
      "MemTotal:       131072000 kB\nMemFree:  1000 kB\nMemAvailable:   123456 kB\n");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, 123456ll * 1024);
  EXPECT_EQ(ParseMemAvailable("MemTotal: 1 kB\n").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(ParseMemAvailable("MemAvailable: lots kB\n").ok());
  auto here = HostAvailableBytes();  // this (Linux) host
  ASSERT_TRUE(here.ok()) << here.status();
  EXPECT_GT(*here, 0);
}

}  // namespace
}  // namespace dsinfer
