// The prefill attention kernels of kernels_gpu_test against CausalAttentionReference: each body
// (kSimt, the CUDA-core one; kMma and kWgmma on the tensor cores) over whole prompts, chunks at
// deep positions, long prompts, scales off 1/sqrt(d), pool blocks other than 16 tokens and the
// misaligned q stride that sends kMma to its fallback — and, at a model's shape where the CPU
// twin is too slow, the tensor-core bodies against kSimt.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/kernel_twin_harness.h"

namespace dsinfer {
namespace {

// One prefill step: sequence s has lens[s] tokens in the pool and its last rows[s] tokens are
// this step's rows (rows < len: a chunk at a deep position over earlier chunks' K/V). The q
// rows sit in a qkv-shaped buffer of row stride q_stride (>= heads_q·d; a stride that is not
// a multiple of 8 sends kMma to its CUDA-core fallback).
struct PrefillCase {
  DType dtype;
  int head_dim, heads_kv, group;
  std::vector<int> lens, rows;
  int64_t q_stride_pad = 0;  // elements past (Hq + 2 Hkv)·d
  float scale = 0;           // 0: 1/sqrt(d)
  int block_tokens = 16;     // the pool's
};

std::string Describe(const PrefillCase& c) {
  std::string s = std::string(DTypeName(c.dtype)) + " hd " + std::to_string(c.head_dim) +
                  " hkv " + std::to_string(c.heads_kv) + " group " + std::to_string(c.group) +
                  " (len/rows)";
  for (size_t i = 0; i < c.lens.size(); ++i) {
    s += " " + std::to_string(c.lens[i]) + "/" + std::to_string(c.rows[i]);
  }
  return s + " pad " + std::to_string(c.q_stride_pad) + " scale " + std::to_string(c.scale) +
         " block " + std::to_string(c.block_tokens);
}

// Runs every algo on the case (fresh random inputs, poisoned output) and returns their outputs
// (fp32 of the 16-bit results) and, when `with_ref`, the twin's in *ref.
std::vector<std::vector<float>> RunPrefill(const PrefillCase& c,
                                           const std::vector<PrefillAttentionAlgo>& algos,
                                           std::vector<float>* ref) {
  const int hq = c.heads_kv * c.group, d = c.head_dim;
  const int64_t q_stride = static_cast<int64_t>(hq + 2 * c.heads_kv) * d + c.q_stride_pad;
  TestPool pool = MakePool(c.dtype, c.lens, c.heads_kv, d, c.block_tokens);
  std::vector<int32_t> pos, seq, first_rows;
  for (size_t s = 0; s < c.lens.size(); ++s) {
    const int m = c.rows[s];
    first_rows.push_back(static_cast<int32_t>(pos.size()));
    for (int i = 0; i < m; ++i) {
      pos.push_back(c.lens[s] - m + i);
      seq.push_back(static_cast<int32_t>(s));
    }
  }
  const int64_t rows = static_cast<int64_t>(pos.size());
  HostArray q = Random(c.dtype, rows * q_stride);
  DevBuf dk(pool.k.raw), dv(pool.v.raw), dt(pool.tables), dq(q.raw), dpos(pos), dseq(seq);
  CudaPagedKv kv{dk.ptr, dv.ptr, dt.as<int32_t>(), pool.max_blocks, pool.block_tokens,
                 c.heads_kv, d};
  CudaBatchRows br{dpos.as<int32_t>(), dseq.as<int32_t>(), rows};
  const float scale = c.scale != 0 ? c.scale : 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<std::vector<float>> outs;
  for (PrefillAttentionAlgo algo : algos) {
    // Tiles of the algorithm's size, as the CUDA backend builds them.
    const int tile_rows = PrefillTileRows(algo);
    std::vector<int32_t> tiles;
    for (size_t s = 0; s < c.lens.size(); ++s) {
      for (int r = 0; r < c.rows[s]; r += tile_rows) {
        tiles.push_back(first_rows[s] + r);
        tiles.push_back(std::min(tile_rows, c.rows[s] - r));
      }
    }
    DevBuf dtiles(tiles);
    DevBuf out(rows * hq * d * 2);  // poisoned
    const absl::Status st =
        LaunchPrefillAttention(c.dtype, dq.ptr, q_stride, br, dtiles.as<int32_t>(),
                               static_cast<int64_t>(tiles.size() / 2), hq, c.heads_kv, d, scale,
                               kv, out.ptr, hq * d, nullptr, algo);
    EXPECT_TRUE(st.ok()) << st;
    outs.push_back(out.Read16(c.dtype, rows * hq * d));
  }
  if (ref != nullptr) {
    ref->assign(rows * hq * d, 0.0f);
    AttentionShape shape{hq, c.heads_kv, d, scale};
    for (int64_t r = 0; r < rows; ++r) {
      CausalAttentionReference(q.f32.data() + r * q_stride, q_stride, &pos[r], 1,
                               pool.HostView(seq[r]), shape, ref->data() + r * hq * d, hq * d);
    }
  }
  return outs;
}

void ExpectPrefillMatchesReference(const PrefillCase& c) {
  // kWgmma: the default (Hopper's warpgroup MMA; kMma on other GPUs); kMma: the portable
  // tensor-core body; kSimt: the first body, kept for comparison benchmarks.
  const std::vector<PrefillAttentionAlgo> algos = {
      PrefillAttentionAlgo::kSimt, PrefillAttentionAlgo::kMma, PrefillAttentionAlgo::kWgmma};
  std::vector<float> ref;
  const std::vector<std::vector<float>> outs = RunPrefill(c, algos, &ref);
  for (size_t i = 0; i < algos.size(); ++i) {
    EXPECT_LE(RelErr(outs[i], ref), Tolerance(c.dtype)) << AlgoName(algos[i]) << " " << Describe(c);
  }
}

// The sweep: each sequence's last min(len, 97) tokens are this step's rows — a whole prompt
// for short sequences, a chunk at a deep position for 4099.
TEST(KernelsGpu, PrefillAttentionMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (const AttnCase& a : AttnCases(false)) {
    PrefillCase c{a.dtype, a.head_dim, a.heads_kv, a.group, a.lens, {}};
    for (int len : a.lens) c.rows.push_back(std::min(len, 97));
    ExpectPrefillMatchesReference(c);
  }
}

// Long rows: whole 4099-token prompts (33 tiles, the last one 3 rows; the kMma key loop runs
// 65 tiles with causal masking on the diagonal ones), few heads so the CPU twin stays quick.
TEST(KernelsGpu, PrefillAttentionLongPromptMatchesReference) {
  SKIP_WITHOUT_GPU();
  ExpectPrefillMatchesReference({DType::kBF16, 128, 1, 4, {4099}, {4099}});
  ExpectPrefillMatchesReference({DType::kF16, 64, 2, 1, {4099}, {4099}});
}

// Chunked prefill: rows whose positions start past 0 (a chunk over earlier chunks' K/V), chunk
// lengths off the tile and the 64-token K/V tile (tiles straddling a K/V tile boundary), a
// batch of sequences of different lengths and offsets in one launch, and a q row stride that is
// not a multiple of 8 elements (kMma's fallback path).
TEST(KernelsGpu, PrefillAttentionChunkedMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    for (int hd : {64, 128}) {
      for (int group : {1, 4, 8}) {
        ExpectPrefillMatchesReference({t, hd, 2, group, {300, 1000, 130}, {200, 333, 129}});
        ExpectPrefillMatchesReference({t, hd, 1, group, {777, 65}, {1, 64}});
      }
    }
    ExpectPrefillMatchesReference({t, 128, 2, 4, {500, 97}, {261, 97}, 3});
  }
}

// Scales off 1/sqrt(d): a negative one, which the tensor-core body does not take (it finds
// each row's maximum before scaling), sends kMma to its CUDA-core fallback, which must still
// match the twin; a large positive one (peaked rows) stays on the tensor cores.
TEST(KernelsGpu, PrefillAttentionAnyScaleMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    for (float scale : {-0.125f, 0.75f}) {
      ExpectPrefillMatchesReference({t, 128, 2, 4, {300, 130}, {200, 129}, 0, scale});
      ExpectPrefillMatchesReference({t, 64, 1, 1, {777}, {777}, 0, scale});
    }
  }
}

// Pool blocks other than the engine's 16 tokens: ones that divide the 128-token K/V tiles of the
// tensor-core bodies and ones that do not (7, 48, 256: a tile's rows spread over blocks at
// offsets other than 0), over chunks at offsets and whole prompts.
TEST(KernelsGpu, PrefillAttentionAnyBlockSizeMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (int block : {7, 32, 48, 128, 256}) {
    ExpectPrefillMatchesReference(
        {DType::kBF16, 128, 2, 4, {300, 1000, 130}, {200, 333, 129}, 0, 0, block});
    ExpectPrefillMatchesReference({DType::kF16, 64, 1, 1, {777}, {777}, 0, 0, block});
  }
}

// Llama-3-8B heads (32 q / 8 kv, d 128) over a 2048-token prompt, past where the CPU twin is
// affordable: the tensor-core bodies against the CUDA-core one.
TEST(KernelsGpu, PrefillAttentionTensorCoresMatchSimtAtModelShape) {
  SKIP_WITHOUT_GPU();
  for (DType t : kDTypes) {
    const PrefillCase c{t, 128, 8, 4, {2048}, {2048}};
    const std::vector<std::vector<float>> outs = RunPrefill(
        c, {PrefillAttentionAlgo::kMma, PrefillAttentionAlgo::kWgmma, PrefillAttentionAlgo::kSimt},
        nullptr);
    EXPECT_LE(RelErr(outs[0], outs[2]), Tolerance(t)) << "mma " << Describe(c);
    EXPECT_LE(RelErr(outs[1], outs[2]), Tolerance(t)) << "wgmma " << Describe(c);
  }
}

}  // namespace
}  // namespace dsinfer
