// Where Double Sparsity's label bytes live (issue 8): the CPU backend reads and writes them in
// DoubleSparsity's host label cache; a backend that keeps labels in its own memory
// (Backend::keeps_labels_on_device, the CUDA backend) must not cost host memory for them. The
// Model reads the capability when it creates DoubleSparsity; the label cache then keeps only
// the accounts (which sequences, format, capacity, bytes) that such a backend reads.
//
// The device-label backend here is the CPU backend declaring the capability, with a
// StoreLabels that writes nothing (the CUDA backend's also writes nothing at StoreLabels: it
// derives labels from the pool when a layer selects). It runs prefill (dense) exactly as the
// CPU backend does, which is what lets the test compare logits and accounts side by side.
#include <cmath>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "engine/sparse/label_cache.h"
#include "gtest/gtest.h"
#include "tests/engine_test_util.h"

namespace dsinfer {
namespace {

class DeviceLabelsCpuBackend : public CpuBackend {
 public:
  bool keeps_labels_on_device() const override { return true; }
  absl::Status StoreLabels(int, const ForwardBatch&, DoubleSparsity&,
                           const DeviceTensor&) override {
    ++store_calls;
    return absl::OkStatus();
  }
  int store_calls = 0;
};

struct Prefilled {
  KvBlockPool::SequenceId seq = 0;
  std::vector<float> logits;
};

// Prefills `ids` as one chunk with `options`, leaving the sequence in the pool.
Prefilled Prefill(Model& model, const std::vector<int32_t>& ids, const AttentionOptions& options) {
  Prefilled out;
  out.seq = model.kv_pool().AddSequence();
  EXPECT_TRUE(model.kv_pool().Reserve(out.seq, static_cast<int64_t>(ids.size()) + 1).ok());
  ForwardBatch batch;
  batch.Add(out.seq, ids.data(), static_cast<int64_t>(ids.size()), 0, false);
  batch.sequences.back().attention = &options;
  const absl::Status st = model.Forward(batch, out.logits);
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

TEST(LabelStorage, AccountingOnlyCacheAllocatesNothingAndCountsTheSame) {
  for (const LabelFormat format : {LabelFormat{16, 16}, LabelFormat{16, 4}, LabelFormat{5, 4}}) {
    LabelCache host(4, 2), accounts(4, 2, LabelStorage::kAccountingOnly);
    EXPECT_TRUE(host.host_storage());
    EXPECT_FALSE(accounts.host_storage());
    for (int64_t tokens : {10, 11, 300}) {
      ASSERT_TRUE(host.Reserve(7, format, tokens).ok());
      ASSERT_TRUE(accounts.Reserve(7, format, tokens).ok());
      EXPECT_EQ(accounts.capacity(7), host.capacity(7));
      EXPECT_EQ(accounts.bytes_in_use(), host.bytes_in_use());
      EXPECT_EQ(host.host_bytes(), host.bytes_in_use());
      EXPECT_EQ(accounts.host_bytes(), 0);
    }
    EXPECT_EQ(accounts.bytes_in_use(), accounts.capacity(7) * 4 * 2 * format.RowBytes());
    for (int l = 0; l < 4; ++l) {
      const LabelCache::Layer& a = accounts.layer(7, l);
      EXPECT_TRUE(a.f16.empty() && a.codes.empty() && a.scales.empty() && a.minimums.empty());
      const LabelCache::Layer& h = host.layer(7, l);
      EXPECT_FALSE(h.f16.empty() && h.codes.empty());
    }
    // The format still cannot change, and release returns every accounted byte.
    EXPECT_EQ(accounts.Reserve(7, LabelFormat{format.r + 1, format.bits}, 1).code(),
              absl::StatusCode::kInvalidArgument);
    accounts.Release(7);
    EXPECT_EQ(accounts.bytes_in_use(), 0);
    EXPECT_EQ(accounts.sequences(), 0);
  }
}

TEST(LabelStorage, ModelSkipsHostLabelsForABackendThatKeepsThem) {
  for (const char* dir : kGoldenModels) {
    CpuBackend cpu;
    DeviceLabelsCpuBackend device;
    auto on_cpu = Model::Load(dir, cpu);
    auto on_device = Model::Load(dir, device);
    ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
    ASSERT_TRUE(on_device.ok()) << on_device.status();
    const ModelConfig& c = (*on_cpu)->config();
    EXPECT_TRUE((*on_cpu)->double_sparsity().labels().host_storage());
    EXPECT_FALSE((*on_device)->double_sparsity().labels().host_storage());

    AttentionOptions ds;
    ds.mode = AttentionMode::kDoubleSparse;
    ds.channels = c.head_dim;  // no channel config needed with every channel
    ds.token_budget = 8;
    ds.dense_layers = 0;
    const std::vector<int32_t> ids = RandomIds(37, static_cast<int>(c.vocab_size), 5);
    for (int bits : {16, 4}) {
      ds.label_bits = bits;
      const Prefilled a = Prefill(**on_cpu, ids, ds);
      const Prefilled b = Prefill(**on_device, ids, ds);
      // Prefill is dense on both: the same logits, bit for bit.
      ASSERT_EQ(a.logits.size(), b.logits.size());
      for (size_t i = 0; i < a.logits.size(); ++i) ASSERT_EQ(a.logits[i], b.logits[i]) << i;
      const LabelCache& host = (*on_cpu)->double_sparsity().labels();
      const LabelCache& accounts = (*on_device)->double_sparsity().labels();
      // The same accounts: the sequence keeps labels in the request's format and capacity.
      ASSERT_TRUE(accounts.Contains(b.seq));
      EXPECT_EQ(accounts.format(b.seq), (LabelFormat{c.head_dim, bits}));
      EXPECT_EQ(accounts.capacity(b.seq), host.capacity(a.seq));
      EXPECT_EQ(accounts.bytes_in_use(), host.bytes_in_use());
      EXPECT_GT(accounts.bytes_in_use(), 0);
      // The CPU backend holds them on the host; the device-label backend holds none there.
      EXPECT_EQ(host.host_bytes(), host.bytes_in_use());
      EXPECT_EQ(accounts.host_bytes(), 0);
      for (int l = 0; l < c.num_layers; ++l) {
        const LabelCache::Layer& lab = accounts.layer(b.seq, l);
        EXPECT_TRUE(lab.f16.empty() && lab.codes.empty() && lab.scales.empty() &&
                    lab.minimums.empty());
      }
      // A host label path on accounting-only labels is a clean INTERNAL error, never a write
      // into storage that does not exist: the CPU SparseAttention of a decode row reaches
      // SelectHost.
      const int32_t next = ids[0];
      std::vector<float> logits;
      ForwardBatch decode;
      decode.Add(b.seq, &next, 1, static_cast<int64_t>(ids.size()), false);
      decode.sequences.back().attention = &ds;
      const absl::Status st = (*on_device)->Forward(decode, logits);
      EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
      (*on_cpu)->ReleaseSequence(a.seq);
      (*on_device)->ReleaseSequence(b.seq);
      EXPECT_EQ(host.bytes_in_use(), 0);
      EXPECT_EQ(accounts.bytes_in_use(), 0);
    }
    // Per label format: every prefill layer, and layer 0 of the failed decode step.
    EXPECT_EQ(device.store_calls, 2 * (c.num_layers + 1));
  }
}

}  // namespace
}  // namespace dsinfer
