// The flash-decoding kernels of kernels_gpu_test against CausalAttentionReference: the split
// rule (host logic), every decode body (tiled, warp, pipelined) at split counts from one piece
// to more pieces than a short context fills, over the wide GQA sweep, and rows at negative
// positions, which the launch must leave untouched. Decode's twin is cheap (one query row per
// sequence), so this sweep is wider than prefill's.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/cuda/bench/kernel_algo_flags.h"
#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/kernel_twin_harness.h"

namespace dsinfer {
namespace {

// The flash-decoding split rule (a host function; runs without a GPU): at least one piece, at
// most 256, no piece under 64 tokens, enough blocks for the aimed waves when the context
// allows, and more waves never fewer pieces.
TEST(KernelsGpu, DecodeAttentionSplitsRule) {
  for (int64_t rows : {1, 8, 32}) {
    for (int hq_hkv : {1, 4, 8, 16}) {
      for (int64_t ctx : {1, 63, 64, 4096, 262144}) {
        int previous = 0;
        for (int waves : {1, 2, 4, 8}) {
          const int heads_kv = 32 / std::min(hq_hkv, 32);
          const int heads_q = heads_kv * hq_hkv;
          const int splits = DecodeAttentionSplits(rows, heads_q, heads_kv, ctx, 132, waves);
          SCOPED_TRACE(::testing::Message() << "rows " << rows << " group " << hq_hkv
                                            << " ctx " << ctx << " waves " << waves);
          EXPECT_GE(splits, 1);
          EXPECT_LE(splits, 256);
          EXPECT_LE(splits, std::max<int64_t>(1, (ctx + 63) / 64));
          // The most blocks that fit in the waves (one piece at least).
          const int64_t base = rows * heads_kv * ((hq_hkv + 7) / 8);
          if (splits > 1) {
            EXPECT_LE(base * splits, static_cast<int64_t>(waves) * 132);
          }
          if (splits < std::min<int64_t>(256, (ctx + 63) / 64)) {
            EXPECT_GT(base * (splits + 1), static_cast<int64_t>(waves) * 132);
          }
          EXPECT_GE(splits, previous);
          previous = splits;
        }
        // The engine's rule (waves 0): one round, or two where one leaves pieces of 32K or more.
        const int heads_kv = 32 / std::min(hq_hkv, 32);
        const int heads_q = heads_kv * hq_hkv;
        const int one = DecodeAttentionSplits(rows, heads_q, heads_kv, ctx, 132, 2);
        const int two = DecodeAttentionSplits(rows, heads_q, heads_kv, ctx, 132, 4);
        const int rule = DecodeAttentionSplits(rows, heads_q, heads_kv, ctx, 132, 0);
        EXPECT_EQ(rule, (ctx + one - 1) / one < kDecodeLongPieceTokens ? one : two)
            << "rows " << rows << " group " << hq_hkv << " ctx " << ctx;
      }
    }
  }
  // Llama-2 heads: batch 1 at 4K (one round) and 256K (32K-token pieces: two), batch 8 at 64K.
  EXPECT_EQ(DecodeAttentionSplits(1, 32, 32, 4096, 132, 0), 8);
  EXPECT_EQ(DecodeAttentionSplits(1, 32, 32, 262144, 132, 0), 16);
  EXPECT_EQ(DecodeAttentionSplits(8, 32, 32, 65536, 132, 0), 2);
}

TEST(KernelsGpu, DecodeAttentionMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (const AttnCase& c : AttnCases(true)) {
    const int hq = c.heads_kv * c.group, d = c.head_dim;
    const int64_t rows = static_cast<int64_t>(c.lens.size());
    const int64_t q_stride = static_cast<int64_t>(hq + 2 * c.heads_kv) * d;
    TestPool pool = MakePool(c.dtype, c.lens, c.heads_kv, d);
    HostArray q = Random(c.dtype, rows * q_stride);
    std::vector<int32_t> pos(rows), seq(rows);
    for (int64_t r = 0; r < rows; ++r) {
      pos[r] = c.lens[r] - 1;
      seq[r] = static_cast<int32_t>(r);
    }
    DevBuf dk(pool.k.raw), dv(pool.v.raw), dt(pool.tables), dq(q.raw), dpos(pos), dseq(seq);
    CudaPagedKv kv{dk.ptr, dv.ptr, dt.as<int32_t>(), pool.max_blocks, pool.block_tokens,
                   c.heads_kv, d};
    CudaBatchRows br{dpos.as<int32_t>(), dseq.as<int32_t>(), rows};
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    std::vector<float> ref(rows * hq * d);
    AttentionShape shape{hq, c.heads_kv, d, scale};
    for (int64_t r = 0; r < rows; ++r) {
      CausalAttentionReference(q.f32.data() + r * q_stride, q_stride, &pos[r], 1,
                               pool.HostView(static_cast<int>(r)), shape, ref.data() + r * hq * d,
                               hq * d);
    }
    // 300 splits: most pieces of the short sequences are empty (graph steps size the split by
    // capacity, not by the context).
    for (DecodeAttentionAlgo algo : {DecodeAttentionAlgo::kTiled, DecodeAttentionAlgo::kWarp,
                                     DecodeAttentionAlgo::kPipelined}) {
      for (int splits : {1, 7, 64, 300}) {
        DevBuf ws(DecodeAttentionWorkspaceFloats(rows, hq, d, splits) * 4 + 4);
        DevBuf out(rows * hq * d * 2);
        ASSERT_OK(LaunchDecodeAttention(c.dtype, dq.ptr, q_stride, br, hq, c.heads_kv, d, scale,
                                        kv, splits, ws.as<float>(), out.ptr, hq * d, nullptr,
                                        algo));
        EXPECT_LE(RelErr(out.Read16(c.dtype, rows * hq * d), ref), Tolerance(c.dtype))
            << DTypeName(c.dtype) << " hd " << d << " group " << c.group << " lens "
            << c.lens[0] << " batch " << rows << " splits " << splits << " algo "
            << AlgoName(algo);
      }
    }
  }
}

// Rows at a negative position are outside the launch (SubsetAttention beside Double Sparsity):
// their output stays poisoned, bit for bit, while the other rows match the twin, with every
// body and split count (the combine skips them too).
TEST(KernelsGpu, DecodeAttentionLeavesRowsAtNegativePositions) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    for (int group : {1, 4}) {
      const int hkv = 2, hq = hkv * group, d = 128;
      const std::vector<int> lens = {97, 300, 4099, 5};
      const int64_t rows = static_cast<int64_t>(lens.size());
      const int64_t q_stride = static_cast<int64_t>(hq + 2 * hkv) * d;
      TestPool pool = MakePool(t, lens, hkv, d);
      HostArray q = Random(t, rows * q_stride);
      // Rows 1 and 3 left out.
      std::vector<int32_t> pos(rows), seq(rows);
      for (int64_t r = 0; r < rows; ++r) {
        pos[r] = r % 2 == 1 ? -1 : lens[r] - 1;
        seq[r] = static_cast<int32_t>(r);
      }
      DevBuf dk(pool.k.raw), dv(pool.v.raw), dt(pool.tables), dq(q.raw), dpos(pos), dseq(seq);
      CudaPagedKv kv{dk.ptr, dv.ptr, dt.as<int32_t>(), pool.max_blocks, pool.block_tokens, hkv,
                     d};
      CudaBatchRows br{dpos.as<int32_t>(), dseq.as<int32_t>(), rows};
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      const float poison = 12345.0f;
      std::vector<float> ref(rows * hq * d, poison);
      for (int64_t r = 0; r < rows; ++r) {  // the twin keeps the poison of rows 1 and 3 too
        CausalAttentionReference(q.f32.data() + r * q_stride, q_stride, &pos[r], 1,
                                 pool.HostView(static_cast<int>(r)),
                                 AttentionShape{hq, hkv, d, scale}, ref.data() + r * hq * d,
                                 hq * d);
      }
      for (DecodeAttentionAlgo algo : {DecodeAttentionAlgo::kTiled, DecodeAttentionAlgo::kWarp,
                                       DecodeAttentionAlgo::kPipelined}) {
        for (int splits : {1, 7, 64}) {
          DevBuf ws(DecodeAttentionWorkspaceFloats(rows, hq, d, splits) * 4 + 4);
          DevBuf out(rows * hq * d * 2);  // poisoned: 0xffff, a NaN in both dtypes
          ASSERT_OK(LaunchDecodeAttention(t, dq.ptr, q_stride, br, hq, hkv, d, scale, kv, splits,
                                          ws.as<float>(), out.ptr, hq * d, nullptr, algo));
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          std::vector<uint16_t> raw(rows * hq * d);
          ASSERT_EQ(cudaMemcpy(raw.data(), out.ptr, raw.size() * 2, cudaMemcpyDeviceToHost),
                    cudaSuccess);
          std::vector<float> got(raw.size());
          for (size_t i = 0; i < raw.size(); ++i) {
            const bool skipped = pos[i / (hq * d)] < 0;
            if (skipped) {
              EXPECT_EQ(raw[i], 0xffff) << "row " << i / (hq * d) << " written";
            }
            got[i] = skipped ? poison : From16(t, raw[i]);
          }
          EXPECT_LE(RelErr(got, ref), Tolerance(t))
              << DTypeName(t) << " group " << group << " splits " << splits << " algo "
              << AlgoName(algo);
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsinfer
