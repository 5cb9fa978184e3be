// Every CUDA kernel against its plain C++ reference twin over shape sweeps: odd lengths
// (1, 7, 97, 4099), head_dim 64 and 128, GQA ratios 1/4/8, bf16 and fp16, batch 1 and > 1.
// Inputs are fresh random values (seed logged) rounded to the dtype, so kernel and twin see
// the very same numbers; outputs are poisoned with NaN first so an unwritten element fails.
// Error is ‖out − ref‖ / ‖ref‖ against a per-dtype bound. Skips without a GPU (except the
// host-side launch rules and the sampling twin's check against the CPU sampler, pure C++).
// One binary in one file per kernel family, so that a family's sweep reads on its own
// (kernel_twin_harness.h holds what they share). This file: the row-wise kernels — RMSNorm and
// add + RMSNorm, SwiGLU, the embedding gather, the fp32 residual stream variants, and RoPE with
// its store into the paged K/V pool. The others: linear_kernels_gpu_test.cc (GEMM and GEMVs),
// sampling_kernels_gpu_test.cc (argmax, log-sum-exp, GPU sampling),
// decode_attention_kernels_gpu_test.cc and prefill_attention_kernels_gpu_test.cc.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/reference_twins.h"
#include "kernels/dtype.h"
#include "kernels/paged_kv.h"
#include "kernels/rms_norm_reference.h"
#include "kernels/rope.h"
#include "kernels/swiglu_reference.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/kernel_twin_harness.h"

namespace dsinfer {
namespace {

TEST(KernelsGpu, RmsNormAndAddRmsNorm) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    for (int64_t rows : {1, 7, 97}) {
      for (int64_t dim : {64, 1000, 4099, 9001}) {
        const size_t n = rows * dim;
        HostArray x = Random(t, n), w = Random(t, dim), d = Random(t, n);
        DevBuf dx(x.raw), dw(w.raw), dd(d.raw), out(n * 2);
        ASSERT_OK(LaunchRmsNorm(t, dx.ptr, dw.ptr, rows, dim, 1e-5f, out.ptr, nullptr));
        std::vector<float> ref(n);
        RmsNormReference(x.f32.data(), w.f32.data(), rows, dim, 1e-5f, ref.data());
        EXPECT_LE(RelErr(out.Read16(t, n), ref), Tolerance(t)) << rows << "x" << dim;

        DevBuf out2(n * 2);
        ASSERT_OK(LaunchAddRmsNorm(t, dx.ptr, dd.ptr, dw.ptr, rows, dim, 1e-5f, out2.ptr, nullptr));
        std::vector<float> res = x.f32, ref2(n);
        AddRmsNormReference(res.data(), d.f32.data(), w.f32.data(), rows, dim, 1e-5f, ref2.data());
        EXPECT_LE(RelErr(out2.Read16(t, n), ref2), Tolerance(t)) << rows << "x" << dim;
        EXPECT_LE(RelErr(dx.Read16(t, n), res), Tolerance(t)) << "residual " << rows;
      }
    }
  }
}

// The fp32 residual stream: embedding into fp32 (exact), RmsNorm of fp32 input, add + RmsNorm
// updating an fp32 residual (twin: AddRmsNormReference with no rounding at all).
TEST(KernelsGpu, Fp32ResidualStream) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    for (int64_t rows : {1, 7, 97}) {
      for (int64_t dim : {64, 1000, 4099, 9001}) {
        const size_t n = rows * dim;
        std::vector<float> x(n);
        std::uniform_real_distribution<float> u(-3.0f, 3.0f);
        for (float& v : x) v = u(Rng());  // not representable in 16 bits: checks no rounding
        HostArray w = Random(t, dim), d = Random(t, n);
        DevBuf dx(x), dw(w.raw), dd(d.raw), out(n * 2), out2(n * 2);
        ASSERT_OK(LaunchRmsNormEx(t, DType::kF32, dx.ptr, dw.ptr, rows, dim, 1e-5f, out.ptr,
                                  nullptr));
        std::vector<float> ref(n);
        RmsNormReference(x.data(), w.f32.data(), rows, dim, 1e-5f, ref.data());
        EXPECT_LE(RelErr(out.Read16(t, n), ref), Tolerance(t)) << rows << "x" << dim;

        ASSERT_OK(LaunchAddRmsNormEx(t, DType::kF32, dx.ptr, dd.ptr, dw.ptr, rows, dim, 1e-5f,
                                     out2.ptr, nullptr));
        std::vector<float> res = x, ref2(n);
        AddRmsNormReference(res.data(), d.f32.data(), w.f32.data(), rows, dim, 1e-5f, ref2.data());
        EXPECT_LE(RelErr(out2.Read16(t, n), ref2), Tolerance(t)) << rows << "x" << dim;
        EXPECT_LE(RelErr(ReadF32(dx, n), res), 1e-6) << "fp32 residual " << rows << "x" << dim;
        // Rows of the fp32 residual gathered into a 16-bit tensor: rounded to nearest even.
        std::vector<int32_t> pick(rows);
        for (auto& r : pick) r = static_cast<int32_t>(Rng()() % rows);
        DevBuf dpick(pick), g16(n * 2);
        ASSERT_OK(LaunchEmbeddingEx(DType::kF32, t, dx.ptr, dim, dpick.as<int32_t>(), rows,
                                    g16.ptr, dim, nullptr));
        std::vector<float> want(n);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < dim; ++c) {
            want[r * dim + c] = From16(t, To16(t, res[pick[r] * dim + c]));
          }
        }
        EXPECT_EQ(g16.Read16(t, n), want) << "fp32 -> 16-bit gather";
      }
      const int64_t vocab = 1001, cols = 4099;
      HostArray table = Random(t, vocab * cols);
      std::vector<int32_t> ids(rows);
      for (auto& id : ids) id = static_cast<int32_t>(Rng()() % vocab);
      DevBuf dt(table.raw), di(ids), out(rows * cols * 4);
      ASSERT_OK(LaunchEmbeddingEx(t, DType::kF32, dt.ptr, cols, di.as<int32_t>(), rows, out.ptr,
                                  cols, nullptr));
      std::vector<float> ref(rows * cols);
      EmbeddingReference(table.f32.data(), cols, ids.data(), rows, ref.data());
      EXPECT_EQ(ReadF32(out, rows * cols), ref);
    }
  }
}

TEST(KernelsGpu, SwiGlu) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    for (int64_t rows : {1, 7, 97}) {
      for (int64_t inter : {7, 4099}) {
        HostArray gu = Random(t, rows * 2 * inter, 4.0f);
        DevBuf dgu(gu.raw), out(rows * inter * 2);
        ASSERT_OK(LaunchSwiGlu(t, dgu.ptr, rows, inter, out.ptr, nullptr));
        std::vector<float> ref(rows * inter);
        SwiGluReference(gu.f32.data(), rows, inter, ref.data());
        EXPECT_LE(RelErr(out.Read16(t, rows * inter), ref), Tolerance(t));
      }
    }
  }
}

TEST(KernelsGpu, EmbeddingGather) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    for (int64_t cols : {64, 4099}) {
      for (int64_t n : {1, 7, 97}) {
        const int64_t vocab = 1001;
        HostArray table = Random(t, vocab * cols);
        std::vector<int32_t> ids(n);
        for (auto& id : ids) id = static_cast<int32_t>(Rng()() % vocab);
        DevBuf dt(table.raw), di(ids), out(n * cols * 2);
        ASSERT_OK(LaunchEmbedding(t, dt.ptr, cols, di.as<int32_t>(), n, out.ptr, cols, nullptr));
        std::vector<float> ref(n * cols);
        EmbeddingReference(table.f32.data(), cols, ids.data(), n, ref.data());
        EXPECT_EQ(out.Read16(t, n * cols), ref);  // a gather is exact
      }
    }
  }
}

TEST(KernelsGpu, RopeStoreKvMatchesReference) {
  SKIP_WITHOUT_GPU();
  RopeParams llama3;
  llama3.type = RopeParams::Type::kLlama3;
  llama3.theta = 500000.0;
  for (DType t : kDTypes) {
    for (int d : {64, 128}) {
      for (int group : {1, 4, 8}) {
        for (const RopeParams& rp : {RopeParams{}, llama3}) {
          for (const std::vector<int>& lens : {std::vector<int>{1}, {7}, {97, 1, 4099}}) {
            const int hkv = 2, hq = hkv * group;
            const int64_t stride = static_cast<int64_t>(hq + 2 * hkv) * d;
            TestPool pool = MakePool(t, lens, hkv, d);
            std::vector<int32_t> pos, seq;
            for (size_t s = 0; s < lens.size(); ++s) {
              const int m = std::min(lens[s], 97);  // the last m tokens are written this step
              for (int i = 0; i < m; ++i) {
                pos.push_back(lens[s] - m + i);
                seq.push_back(static_cast<int32_t>(s));
              }
            }
            const int64_t rows = static_cast<int64_t>(pos.size());
            HostArray qkv = Random(t, rows * stride);
            const std::vector<float> inv = ComputeRopeInvFreq(rp, d);
            DevBuf dk(pool.Elems() * 2), dv(pool.Elems() * 2), dt(pool.tables), dq(qkv.raw),
                dpos(pos), dseq(seq), dinv(inv);
            CudaPagedKv kv{dk.ptr, dv.ptr, dt.as<int32_t>(), pool.max_blocks, pool.block_tokens,
                           hkv, d};
            CudaBatchRows br{dpos.as<int32_t>(), dseq.as<int32_t>(), rows};
            ASSERT_OK(LaunchRopeStoreKv(t, dq.ptr, stride, br, hq, hkv, d, dinv.as<float>(), kv,
                                        nullptr));
            std::vector<float> ref = qkv.f32;
            RopeReference(ref.data(), rows, stride, hq + hkv, d, pos.data(), inv.data());
            EXPECT_LE(RelErr(dq.Read16(t, rows * stride), ref), Tolerance(t))
                << "qkv hd " << d << " group " << group;
            // The pool rows written must equal the rotated k and the unchanged v.
            const std::vector<float> pk = dk.Read16(t, pool.Elems()),
                                     pv = dv.Read16(t, pool.Elems());
            std::vector<float> got_k, want_k, got_v, want_v;
            for (int64_t r = 0; r < rows; ++r) {
              PagedKvView<const float> view = pool.HostView(seq[r]);
              view.k = pk.data();
              view.v = pv.data();
              for (int h = 0; h < hkv; ++h) {
                const float* kr = view.KRow(pos[r], h);
                const float* vr = view.VRow(pos[r], h);
                got_k.insert(got_k.end(), kr, kr + d);
                got_v.insert(got_v.end(), vr, vr + d);
                const float* want = ref.data() + r * stride + static_cast<int64_t>(hq + h) * d;
                want_k.insert(want_k.end(), want, want + d);
                want_v.insert(want_v.end(), want + hkv * d, want + hkv * d + d);
              }
            }
            EXPECT_LE(RelErr(got_k, want_k), Tolerance(t)) << "pool k";
            EXPECT_EQ(got_v, want_v) << "pool v";
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsinfer
