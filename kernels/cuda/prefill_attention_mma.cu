// Tensor-core flash prefill attention (FlashAttention-2 style), the kMma body of
// LaunchPrefillAttention, which the engine's default kWgmma runs off Hopper. It matches the twin
// and kSimt on an H200 (tests/gpu/prefill_attention_kernels_gpu_test.cc); 16-19x faster than
// kSimt in run 4, ~1.4x faster again since run 36. Twin: CausalAttentionReference.
//
// Work split: one block per (query tile of kPrefillTileRowsMma = 128 rows, query head), 4 warps,
// each warp owning 32 consecutive rows (two m16 MMA tiles). Per query head rather than per KV
// head: a per-KV-head block would hold rows × group query rows (up to 1024 for GQA 8), far
// beyond what fits in registers; instead the grid runs the tiles of one head side by side
// (blockIdx.x fastest), so the blocks that share a K/V head are resident together and read
// each K/V tile from L2, not HBM. Two m16 tiles per warp make every K/V fragment loaded from
// shared memory feed two MMAs: with one m16 tile per warp the ldmatrix traffic, not the
// tensor cores, would bound the loop.
//
// Per 64-token K/V tile (a bulk copy per row into padded rows, BulkKvTile, double-buffered:
// tile j+1 loads while tile j computes, one __syncthreads per tile; Q by 16-byte cp.async):
//   S = Q·Kᵀ    mma.m16n8k16 (fp32 accumulate); Q and K fragments by ldmatrix (K rows are
//               already the "col" B layout);
//   softmax     online in fp32 registers, base 2: each row's maximum taken over the raw S
//               and scaled once, p = 2^(s·scale·log2 e − m) one FMA and one ex2 a score; each
//               thread holds 2 rows per m16 tile, row max/sum over the 4 threads of a quad;
//               the running sum l stays per thread until the end (all threads of a row share
//               the same rescale factors);
//   O += P·V    P rounded to bf16/fp16 in registers as it is computed, l summing the rounded
//               values (so each row's weights sum to 1 as used): the S accumulator layout of
//               two adjacent n8 tiles is exactly the A fragment of one k16 step, so P never
//               goes through shared memory; V fragments by ldmatrix.trans. One MMA per
//               fragment pair, as FlashAttention does. Run 36 (H200, bf16): 1.25-1.28x
//               faster than P = hi + lo (two bf16 parts, two MMAs, 1.5x the tensor-core work)
//               at 32K-64K, the golden models' bf16 error 0.0152-0.0203 of max|logit| against
//               transformers' own 0.0214-0.0229 (hi + lo: 0.0159-0.0172).
// Causal masking happens only on tiles that reach past the warp's smallest row position, and a
// warp skips the tiles past its largest. Rows carry their own positions (chunked prefill: a
// chunk's rows attend over earlier chunks' K/V in the pool); tokens past the block's last
// position are zero-filled, never read through the block table. O is divided by l at the end.
// Tiles run longest-first (reverse tile order) so the long causal tiles do not trail.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/prefill_attention_mma.h"
#include "kernels/cuda/prefill_launch.cuh"

namespace dsinfer {
namespace {

using cuda::BulkLoad;
using cuda::CpAsync16;
using cuda::CpAsyncCommit;
using cuda::CpAsyncWaitGroup;
using cuda::Exp2;
using cuda::ExpectBytes;
using cuda::InitBarrier;
using cuda::KvOffset;
using cuda::LdMatrixX4;
using cuda::LdMatrixX4Trans;
using cuda::Mma16816;
using cuda::Num;
using cuda::PackF;
using cuda::SmemAddr;
using cuda::WaitBarrier;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kPrefillTileRowsMma;  // query rows per block
constexpr int kRowsPerWarp = kRows / kWarps;
constexpr int kMTiles = kRowsPerWarp / 16;  // m16 tiles per warp
constexpr int kKeys = 64;                   // K/V tile
constexpr int kNTiles = kKeys / 8;          // n8 tiles of S
static_assert(kRowsPerWarp == 32 && kThreads == kRows, "one position load per thread");

// Shared-memory row stride: 16 bytes of padding shift consecutive rows by 4 banks, so the 8
// row addresses of each ldmatrix 8×8 matrix hit distinct banks.
template <int HD>
constexpr int Stride() {
  return HD + 8;
}
template <typename T, int HD>
constexpr int SmemBytes() {
  return (kRows + 4 * kKeys) * Stride<HD>() * static_cast<int>(sizeof(T));  // Q + 2 × (K, V)
}

// Tokens [t0, t0 + kKeys) of K and V into shared memory by bulk copies (the TMA unit): thread
// i < kKeys copies token t0 + i's K row, thread kKeys + i its V row, counted against `bar`,
// which thread 0 arms with the tile's bytes. Rows of tokens past last_pos are zeroed by stores
// instead (so P·V over them adds exact zeros, never NaN from stale memory). One copy a thread
// in place of 2·kKeys·HD/8 16-byte cp.async and their address arithmetic: run 36 (H200, bf16
// prefill, 4K-64K, alternated twice) 1.07-1.12x faster.
template <typename T, int HD>
__device__ __forceinline__ void BulkKvTile(T* ks, T* vs, uint64_t* bar, const CudaPagedKv& kv,
                                           const int32_t* table, int kvh, int t0, int last_pos) {
  static_assert(kThreads == 2 * kKeys, "a row a thread");
  constexpr uint32_t kRowBytes = HD * sizeof(T);
  const int valid = min(kKeys, last_pos - t0 + 1);  // >= 1: t0 <= last_pos
  if (threadIdx.x == 0) ExpectBytes(bar, 2 * static_cast<uint32_t>(valid) * kRowBytes);
  const int i = static_cast<int>(threadIdx.x) % kKeys;
  const bool is_v = static_cast<int>(threadIdx.x) >= kKeys;
  T* dst = (is_v ? vs : ks) + i * Stride<HD>();
  if (i < valid) {
    const T* base = static_cast<const T*>(is_v ? kv.v : kv.k);
    BulkLoad(dst, base + KvOffset(kv, table, t0 + i, kvh, HD), kRowBytes, bar);
  } else {
#pragma unroll
    for (int c = 0; c < HD / 8; ++c) reinterpret_cast<uint4*>(dst)[c] = make_uint4(0, 0, 0, 0);
  }
}

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads, 2)
    PrefillMmaKernel(const T* q, int64_t q_stride, const int32_t* positions,
                     const int32_t* row_seq, const int32_t* tiles, int num_tiles, int heads_q,
                     int heads_kv, float scale_log2, CudaPagedKv kv, T* out,
                     int64_t out_stride) {
  constexpr int S = Stride<HD>();
  constexpr int kDTiles = HD / 8;  // n8 tiles of O
  using Vec2 = typename Num<T>::Vec2;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);
  T* ks = qs + kRows * S;      // 2 stages of kKeys × S
  T* vs = ks + 2 * kKeys * S;  // 2 stages of kKeys × S
  __shared__ int warp_max_s[kWarps];
  __shared__ uint64_t kv_bar[2];  // a K/V stage's bulk copies landed

  const int tile = num_tiles - 1 - static_cast<int>(blockIdx.x);
  const int first = tiles[2 * tile];
  const int count = tiles[2 * tile + 1];
  const int qh = blockIdx.y;
  const int kvh = qh / (heads_q / heads_kv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3;  // fragment row group, thread in quad

  // Thread tid owns row tid's position; padding rows borrow the last real row's, so every row
  // attends to at least token 0 and the running max is finite after the first tile.
  const int my_pos = positions[first + min(tid, count - 1)];
  int wmax = my_pos, wmin = my_pos;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));
    wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
  }
  // Positions of this thread's fragment rows: warp row mt·16 + g + 8h is lane (mt·16 + g + 8h).
  int row_pos[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_pos[mt][h] = __shfl_sync(0xffffffffu, my_pos, mt * 16 + g + 8 * h);
    }
  }
  if (lane == 0) warp_max_s[warp] = wmax;
  if (tid == 0) {
    InitBarrier(&kv_bar[0]);
    InitBarrier(&kv_bar[1]);
  }

  const int32_t* table = kv.block_tables + static_cast<int64_t>(row_seq[first]) * kv.max_blocks;
  {
    constexpr int kChunks = HD / 8;
    for (int i = tid; i < kRows * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const T* src = q + static_cast<int64_t>(first + min(r, count - 1)) * q_stride +
                     static_cast<int64_t>(qh) * HD + c * 8;
      CpAsync16(qs + r * S + c * 8, src, r < count);
    }
  }
  __syncthreads();  // warp_max_s
  int last_pos = warp_max_s[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) last_pos = max(last_pos, warp_max_s[w]);
  const int key_tiles = last_pos / kKeys + 1;
  BulkKvTile<T, HD>(ks, vs, &kv_bar[0], kv, table, kvh, 0, last_pos);
  CpAsyncCommit();  // Q

  float o[kMTiles][kDTiles][4];
  float m[kMTiles][2], l[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m[mt][h] = -INFINITY;
      l[mt][h] = 0.0f;
    }
#pragma unroll
    for (int nt = 0; nt < kDTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][nt][e] = 0.0f;
    }
  }
  const bool warp_on = warp * kRowsPerWarp < count;  // warp-uniform
  // ldmatrix lane addresses (byte offsets inside a tile): lanes 8i..8i+7 give the 8 row
  // addresses of matrix i.
  //  Q (A, row-major): matrices (rows 0-7 | 8-15) × (cols 0-7 | 8-15) = a0, a1, a2, a3.
  const uint32_t q_lane =
      SmemAddr(qs) +
      ((warp * kRowsPerWarp + (lane & 7) + ((lane >> 3) & 1) * 8) * S + (lane >> 4) * 8) * 2;
  //  K (B "col" = K rows): matrices (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7),
  //  (keys 8-15, d 8-15) = b0, b1 of n-tile 2j, then b0, b1 of n-tile 2j+1.
  const uint32_t k_lane = ((lane & 7) + (lane >> 4) * 8) * S * 2 + ((lane >> 3) & 1) * 16;
  //  V (B row-major, transposed on load): matrices (keys 0-7, d 0-7), (keys 8-15, d 0-7),
  //  (keys 0-7, d 8-15), (keys 8-15, d 8-15) = b0, b1 of d-tile 2j, then of d-tile 2j+1.
  const uint32_t v_lane = ((lane & 7) + ((lane >> 3) & 1) * 8) * S * 2 + (lane >> 4) * 16;

  for (int kt = 0; kt < key_tiles; ++kt) {
    WaitBarrier(&kv_bar[kt & 1], (kt >> 1) & 1);  // the stage's fill kt >> 1 landed
    CpAsyncWaitGroup<0>();                        // Q (the first tile)
    __syncthreads();  // tile kt visible to all; everyone is done with the buffer reloaded next
    if (kt + 1 < key_tiles) {
      const int nb = (kt + 1) & 1;
      BulkKvTile<T, HD>(ks + nb * kKeys * S, vs + nb * kKeys * S, &kv_bar[nb], kv, table, kvh,
                        (kt + 1) * kKeys, last_pos);
    }
    const int t0 = kt * kKeys;
    if (!warp_on || t0 > wmax) continue;  // warp-uniform: all of this warp's keys are masked
    const uint32_t k_tile = SmemAddr(ks + (kt & 1) * kKeys * S);
    const uint32_t v_tile = SmemAddr(vs + (kt & 1) * kKeys * S);

    float s[kMTiles][kNTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.0f;
      }
    }
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t a[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) LdMatrixX4(a[mt], q_lane + (mt * 16 * S + kk * 16) * 2);
#pragma unroll
      for (int np = 0; np < kNTiles / 2; ++np) {
        uint32_t b[4];
        LdMatrixX4(b, k_tile + k_lane + (np * 16 * S + kk * 16) * 2);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          Mma16816<T>(s[mt][2 * np], a[mt], b[0], b[1]);
          Mma16816<T>(s[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }

    const bool mask = t0 + kKeys - 1 > wmin;  // warp-uniform
    uint32_t pk[kMTiles][kNTiles][2];         // P rounded to T, packed as the A fragments want it
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float v = s[mt][nt][2 * h + e];
            if (mask && t0 + nt * 8 + 2 * tq + e > row_pos[mt][h]) v = -INFINITY;
            s[mt][nt][2 * h + e] = v;
            mx = fmaxf(mx, v);
          }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        mx *= scale_log2;  // > 0 (PrefillAttentionMmaSupports): max(s)·c = max(s·c)
        const float m_new = fmaxf(m[mt][h], mx);  // finite: see row_pos
        const float corr = Exp2(m[mt][h] - m_new);
        m[mt][h] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
          const float p0 = Exp2(fmaf(s[mt][nt][2 * h], scale_log2, -m_new));
          const float p1 = Exp2(fmaf(s[mt][nt][2 * h + 1], scale_log2, -m_new));
          pk[mt][nt][h] = PackF<T>(p0, p1);
          // l sums the rounded values P·V multiplies: the weights of each row sum to 1.
          const float2 r = Num<T>::ToF2(*reinterpret_cast<const Vec2*>(&pk[mt][nt][h]));
          sum += r.x;
          sum += r.y;
        }
        l[mt][h] = l[mt][h] * corr + sum;
#pragma unroll
        for (int nt = 0; nt < kDTiles; ++nt) {
          o[mt][nt][2 * h] *= corr;
          o[mt][nt][2 * h + 1] *= corr;
        }
      }
    }

#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t pa[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          // A register q: row g (q even) or g + 8 of n8 key tile 2kk (q < 2) or 2kk + 1.
          pa[mt][q] = pk[mt][2 * kk + q / 2][q % 2];
        }
      }
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        uint32_t b[4];
        LdMatrixX4Trans(b, v_tile + v_lane + (kk * 16 * S + dp * 16) * 2);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          Mma16816<T>(o[mt][2 * dp], pa[mt], b[0], b[1]);
          Mma16816<T>(o[mt][2 * dp + 1], pa[mt], b[2], b[3]);
        }
      }
    }
  }

  if (!warp_on) return;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = l[mt][h];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = 1.0f / sum;
      const int r = warp * kRowsPerWarp + mt * 16 + g + 8 * h;
      if (r >= count) continue;
      T* dst = out + static_cast<int64_t>(first + r) * out_stride + static_cast<int64_t>(qh) * HD +
               2 * tq;
#pragma unroll
      for (int nt = 0; nt < kDTiles; ++nt) {
        const uint32_t packed = PackF<T>(o[mt][nt][2 * h] * inv, o[mt][nt][2 * h + 1] * inv);
        *reinterpret_cast<Vec2*>(dst + nt * 8) = *reinterpret_cast<const Vec2*>(&packed);
      }
    }
  }
}

}  // namespace

bool PrefillAttentionMmaSupports(DType dtype, const void* q, int64_t q_stride, int head_dim,
                                 float scale, const CudaPagedKv& kv, const void* out,
                                 int64_t out_stride) {
  return (dtype == DType::kBF16 || dtype == DType::kF16) && scale > 0.0f && std::isfinite(scale) &&
         (head_dim == 64 || head_dim == 128) && cuda::IsAligned(q, 16) && q_stride % 8 == 0 &&
         cuda::IsAligned(kv.k, 16) && cuda::IsAligned(kv.v, 16) && cuda::IsAligned(out, 4) &&
         out_stride % 2 == 0;
}

absl::Status LaunchPrefillAttentionMma(DType dtype, int head_dim, const cuda::PrefillArgs& args) {
  return cuda::DispatchPrefillShape(dtype, head_dim, [&](auto t, auto hd) {
    using T = decltype(t);
    constexpr int HD = decltype(hd)::value;
    return cuda::LaunchPrefillKernel<T>(PrefillMmaKernel<T, HD>, kThreads, (SmemBytes<T, HD>()),
                                        args, "LaunchPrefillAttentionMma");
  });
}

}  // namespace dsinfer
