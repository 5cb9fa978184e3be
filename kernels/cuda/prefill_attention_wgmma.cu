// Warpgroup-MMA flash prefill attention (Hopper wgmma.mma_async), the kWgmma body of
// LaunchPrefillAttention. Twin: CausalAttentionReference (tests/gpu/kernels_gpu_test.cc runs it
// beside kMma and kSimt over the same sweeps).
//
// The same algorithm, tiles and numerics as kMma (prefill_attention_mma.cu): one block per
// (query tile of kPrefillTileRowsMma = 128 rows, query head), the tiles of one head side by side
// so their K/V reads hit L2, online softmax in fp32 registers with base-2 exponents and the
// scale folded into one FMA, P rounded once to bf16/fp16 with each row's sum over the rounded
// values, tokens past the tile's last position zero-filled, longest tiles first. What changes
// is the product engine: two warpgroups (8 warps) of 64 query rows each, and per 128-token K/V
// tile
//   S = Q·Kᵀ   one m64n128k16 wgmma per 16 head-dimension columns, Q and K both read by the
//              tensor cores from shared memory (no ldmatrix, no fragment registers);
//   O += P·V   one m64n{HD}k16 wgmma per 16 keys, P straight from the registers S came out in
//              (the accumulator layout of two adjacent n8 column tiles is the A fragment of
//              one k16 step), V read from shared memory as stored (MN-major, transposed by the
//              instruction).
// Shared memory holds Q and two stages each of K and V in the 128-byte swizzled layout the
// wgmma descriptors name (wgmma_ptx.cuh), filled by 16-byte cp.async (from device or mapped host
// memory alike), two threads a row. The loop is software-pipelined (FlashAttention-3's
// intra-warpgroup overlap, see PrefillWgmmaKernel), one barrier per tile.
//
// Run 37 (H200, bf16, one causal prompt, d 128): 1.34-1.41x kMma from 4K to 256K, 390-398
// TFLOP/s at 32K-256K (docs/benchmarks.md, "Prefill attention on warpgroup MMA"). What it took,
// in calls 2-5: the products and the softmax in sequence ran at kMma's rate; pipelined with
// eight rows a thread (eight block-table lookups and divisions a tile per thread), 0.72x kMma;
// the loads reshaped to one row a thread pair, 1.11x; the row's block-table entry read a tile
// ahead with no division, the causal mask a branch, the O rescale skipped where no row's
// maximum moved, 1.36-1.41x. Nsight Compute (call 4): one block an SM (164 KB of shared memory,
// ~240 registers a thread), 8 warps issuing on 37% of cycles; cuDNN's kernel still runs 1.5-1.7x
// faster (FlashAttention-3's producer warps and ping-pong between warpgroups, not built here).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/prefill_attention_wgmma.h"
#include "kernels/cuda/prefill_launch.cuh"
#include "kernels/cuda/wgmma_ptx.cuh"

namespace dsinfer {
namespace {

using cuda::CpAsync16;
using cuda::CpAsyncCommit;
using cuda::CpAsyncWaitGroup;
using cuda::Exp2;
using cuda::FenceProxyAsyncShared;
using cuda::FenceRegisters;
using cuda::KvOffset;
using cuda::Num;
using cuda::PackF;
using cuda::SmemAddr;
using cuda::SwizzledDescriptor;
using cuda::SwizzledOffset;
using cuda::WgmmaCommit;
using cuda::WgmmaFence;
using cuda::WgmmaRSTransB;
using cuda::WgmmaSS;
using cuda::WgmmaWait;

constexpr int kWarpgroups = 2;
constexpr int kThreads = kWarpgroups * 128;
constexpr int kRows = kPrefillTileRowsMma;  // query rows per block
constexpr int kGroupRows = kRows / kWarpgroups;
constexpr int kKeys = 128;    // K/V tile
constexpr int kAlign = 1024;  // the swizzled tiles' alignment
static_assert(kGroupRows == 64, "one m64 product per warpgroup");

template <int HD>
constexpr int SmemBytes() {
  return kAlign + (kRows + 4 * kKeys) * HD * 2;  // Q + 2 × (K, V), 16-bit elements
}

// Where this thread's row r = threadIdx.x / 2 of each kKeys-token tile lives in the pool (two
// threads a row). Where the pool's blocks divide the tile (the engine's 16-token blocks), row r
// of every tile sits at the same place in its block: one block-table entry a tile, read a tile
// ahead (Block), and no division per row; otherwise KvOffset's division per row.
template <int HD>
struct TileRow {
  const CudaPagedKv& kv;
  const int32_t* table;
  int kvh, last_pos, r;
  bool aligned;      // kKeys % kv.block_tokens == 0
  int block_of_row;  // r / block_tokens, r % block_tokens (aligned only)
  int row_in_block;

  __device__ TileRow(const CudaPagedKv& kv_, const int32_t* table_, int kvh_, int last_pos_)
      : kv(kv_),
        table(table_),
        kvh(kvh_),
        last_pos(last_pos_),
        r(static_cast<int>(threadIdx.x) / 2),
        aligned(kKeys % kv_.block_tokens == 0),
        block_of_row(aligned ? r / kv_.block_tokens : 0),
        row_in_block(aligned ? r % kv_.block_tokens : 0) {}
  __device__ bool Valid(int tile) const { return tile * kKeys + r <= last_pos; }
  // The block-table entry of the row in `tile` (aligned and valid rows; else unused).
  __device__ int Block(int tile) const {
    return aligned && Valid(tile) ? table[tile * (kKeys / kv.block_tokens) + block_of_row] : 0;
  }
  // Element offset of the row in kv.k / kv.v (0 for a row past last_pos: not read).
  __device__ int64_t Offset(int tile, int block) const {
    if (!Valid(tile)) return 0;
    if (!aligned) return KvOffset(kv, table, tile * kKeys + r, kvh, HD);
    return ((static_cast<int64_t>(block) * kv.block_tokens + row_in_block) * kv.kv_heads + kvh) *
           static_cast<int64_t>(HD);
  }
};

// Row r of a swizzled kKeys-row stage: copies its 16-byte chunks in alternation with the row's
// other thread (each pair reads whole 32-byte sectors, and each copy instruction's stores spread
// over all the banks), or zero-fills them (cp.async with no source bytes) where !valid.
template <typename T, int HD, int kTileRows>
__device__ __forceinline__ void LoadRow(unsigned char* dst, const T* src, bool valid) {
  const int r = static_cast<int>(threadIdx.x) / 2, half = static_cast<int>(threadIdx.x) & 1;
#pragma unroll
  for (int i = 0; i < HD / 16; ++i) {
    const int c = 2 * i + half;
    CpAsync16(dst + SwizzledOffset<kTileRows>(r, c * 8), src + c * 8, valid);
  }
}

// S = Q·Kᵀ for the warpgroup's 64 rows over one K stage: HD / 16 products, issued and committed
// (not waited for). A k16 step of a K-major tile is 32 bytes into its 128-byte rows, each 64
// columns a sub-tile of rows × 128 bytes.
template <typename T, int HD>
__device__ __forceinline__ void IssueScores(float (&s)[kKeys / 2], uint32_t q_addr,
                                            uint32_t k_addr) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    const uint32_t step = (kk % 4) * 32;
    WgmmaSS<T, kKeys>(s, SwizzledDescriptor(q_addr + (kk / 4) * kRows * 128 + step, 16, 1024),
                      SwizzledDescriptor(k_addr + (kk / 4) * kKeys * 128 + step, 16, 1024), kk > 0);
  }
  WgmmaCommit();
}

// P of one tile as the A operands of P·V: pa[kk] the four registers of keys 16kk .. 16kk + 15
// (rows g and g + 8 of key tiles 2kk and 2kk + 1), each two values rounded to T. Kept in this
// order so each product takes its registers as they are (assembling them between the products
// would serialize them).
constexpr int kKSteps = kKeys / 16;
using PFragments = uint32_t[kKSteps][4];

// O += P·V over one V stage: kKSteps products, issued and committed; 16 keys down the MN-major
// V tile a step, its 64-column sub-tiles kKeys × 128 bytes apart.
template <typename T, int HD>
__device__ __forceinline__ void IssueValues(float (&o)[HD / 2], const PFragments& pa,
                                            uint32_t v_addr) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk) {
    WgmmaRSTransB<T, HD>(o, pa[kk], SwizzledDescriptor(v_addr + kk * 16 * 128, kKeys * 128, 1024));
  }
  WgmmaCommit();
}

// Online softmax of one S tile (keys t0 ..) for this thread's rows (positions row_pos), in
// place: masks keys past each row's position where `mask`, turns s into P rounded to T (kept as
// fp32), updates the running max m and sum l, and returns each row's rescale factor for O in
// corr. It writes no register a product in flight reads (P·V of the tile before may still run:
// writing its next A operands now would make the compiler serialize the products).
template <typename T>
__device__ __forceinline__ void Softmax(float (&s)[kKeys / 2], float (&m)[2], float (&l)[2],
                                        float (&corr)[2], const int (&row_pos)[2], int t0,
                                        bool mask, int tq, float scale_log2) {
  using Vec2 = typename Num<T>::Vec2;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (mask) {  // warp-uniform: only tiles that reach past a row's position
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (t0 + nt * 8 + 2 * tq + e > row_pos[h]) s[4 * nt + 2 * h + e] = -INFINITY;
        }
      }
    }
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < kKeys / 8; ++i)
      mx = fmaxf(mx, fmaxf(s[4 * i + 2 * h], s[4 * i + 2 * h + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    mx *= scale_log2;  // > 0 (PrefillAttentionMmaSupports): max(s)·c = max(s·c)
    const float m_new = fmaxf(m[h], mx);  // finite: every row attends to token 0
    corr[h] = Exp2(m[h] - m_new);
    m[h] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      const float p0 = Exp2(fmaf(s[4 * nt + 2 * h], scale_log2, -m_new));
      const float p1 = Exp2(fmaf(s[4 * nt + 2 * h + 1], scale_log2, -m_new));
      const uint32_t packed = PackF<T>(p0, p1);
      // l sums the rounded values P·V multiplies: the weights of each row sum to 1.
      const float2 r = Num<T>::ToF2(*reinterpret_cast<const Vec2*>(&packed));
      s[4 * nt + 2 * h] = r.x;
      s[4 * nt + 2 * h + 1] = r.y;
      sum += r.x;
      sum += r.y;
    }
    l[h] = l[h] * corr[h] + sum;
  }
}

// P (the values Softmax left in s, already representable in T) packed as P·V's A operands.
template <typename T>
__device__ __forceinline__ void PackP(const float (&s)[kKeys / 2], PFragments& pa) {
#pragma unroll
  for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      pa[nt / 2][(nt % 2) * 2 + h] = PackF<T>(s[4 * nt + 2 * h], s[4 * nt + 2 * h + 1]);
    }
  }
}

// Per warpgroup and key tile j, software-pipelined so the tensor cores run P·V of tile j while
// the warps compute the softmax of tile j + 1 (FlashAttention-3's intra-warpgroup overlap):
//   issue S_{j+1} = Q·K_{j+1}ᵀ; issue O += P_j·V_j; wait for S_{j+1}; softmax → P_{j+1};
//   wait for P·V; O *= the rescale factor of tile j + 1.
// Hence the two rings: K runs two tiles ahead of the values being multiplied, V one. Loads for
// the next iteration (K_{j+2}, V_{j+1}) are issued after the products, so their block-table
// reads wait under the tensor cores' work; one barrier per tile.
template <typename T, int HD>
__global__ void __launch_bounds__(kThreads, 1)
    PrefillWgmmaKernel(const T* q, int64_t q_stride, const int32_t* positions,
                       const int32_t* row_seq, const int32_t* tiles, int num_tiles, int heads_q,
                       int heads_kv, float scale_log2, CudaPagedKv kv, T* out, int64_t out_stride) {
  constexpr int kDTiles = HD / 8;  // n8 column tiles of O
  constexpr int kTileBytes = kKeys * HD * 2;
  using Vec2 = typename Num<T>::Vec2;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* qs = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + kAlign - 1) & ~static_cast<uintptr_t>(kAlign - 1));
  unsigned char* ks = qs + kRows * HD * 2;  // 2 stages
  unsigned char* vs = ks + 2 * kTileBytes;  // 2 stages
  __shared__ int warp_max_s[kThreads / 32];

  const int tile = num_tiles - 1 - static_cast<int>(blockIdx.x);
  const int first = tiles[2 * tile];
  const int count = tiles[2 * tile + 1];
  const int qh = blockIdx.y;
  const int kvh = qh / (heads_q / heads_kv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int g = lane >> 2, tq = lane & 3;                  // fragment row group, thread in quad
  const int row0 = wg * kGroupRows + (warp & 3) * 16 + g;  // this thread's rows: row0, row0 + 8

  // Padding rows borrow the last real row's position, so every row attends to at least token 0
  // and the running max is finite after the first tile.
  int row_pos[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) row_pos[h] = positions[first + min(row0 + 8 * h, count - 1)];
  int wmax = max(row_pos[0], row_pos[1]), wmin = min(row_pos[0], row_pos[1]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));
    wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
  }
  if (lane == 0) warp_max_s[warp] = wmax;

  const int32_t* table = kv.block_tables + static_cast<int64_t>(row_seq[first]) * kv.max_blocks;
  static_assert(kThreads == 2 * kRows && kThreads == 2 * kKeys, "two threads a row");
  {  // Q, laid out as K
    const int r = tid / 2;
    LoadRow<T, HD, kRows>(qs,
                          q + static_cast<int64_t>(first + min(r, count - 1)) * q_stride +
                              static_cast<int64_t>(qh) * HD,
                          r < count);
  }
  __syncthreads();  // warp_max_s
  int last_pos = warp_max_s[0], group_max = warp_max_s[4 * wg];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) last_pos = max(last_pos, warp_max_s[w]);
#pragma unroll
  for (int w = 1; w < 4; ++w) group_max = max(group_max, warp_max_s[4 * wg + w]);
  const int key_tiles = last_pos / kKeys + 1;
  // This warpgroup's tiles: 0 .. group_tiles - 1 (none for a warpgroup past the tile's rows).
  const int group_tiles = wg * kGroupRows < count ? group_max / kKeys + 1 : 0;
  const TileRow<HD> row(kv, table, kvh, last_pos);
  const T* kpool = static_cast<const T*>(kv.k);
  const T* vpool = static_cast<const T*>(kv.v);
  int block_next = row.Block(0);  // the row's block-table entry in tile j + 1 (for V_{j+1})
  {
    const int64_t off = row.Offset(0, block_next);
    LoadRow<T, HD, kKeys>(ks, kpool + off, row.Valid(0));
    LoadRow<T, HD, kKeys>(vs, vpool + off, row.Valid(0));
  }
  block_next = row.Block(1);
  if (key_tiles > 1)
    LoadRow<T, HD, kKeys>(ks + kTileBytes, kpool + row.Offset(1, block_next), row.Valid(1));
  CpAsyncCommit();                 // Q, K_0, V_0, K_1
  int block_ahead = row.Block(2);  // ... in tile j + 2 (for K_{j+2}), read a tile ahead
  CpAsyncWaitGroup<0>();
  FenceProxyAsyncShared();
  __syncthreads();

  const uint32_t q_addr = SmemAddr(qs) + wg * kGroupRows * 128;  // this warpgroup's Q rows
  float o[HD / 2];
#pragma unroll
  for (int i = 0; i < HD / 2; ++i) o[i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, corr[2];
  PFragments pa;  // P_j
  float s[kKeys / 2];
  if (group_tiles > 0) {
    IssueScores<T, HD>(s, q_addr, SmemAddr(ks));
    WgmmaWait<0>();
    FenceRegisters(s);
    Softmax<T>(s, m, l, corr, row_pos, 0, kKeys - 1 > wmin, tq, scale_log2);
    PackP<T>(s, pa);
  }
  __syncthreads();  // every warpgroup done with K_0 (its stage takes K_2 next)

  // Tile j's loads: K_{j+2} and V_{j+1} into the stages tile j - 1 / j freed, committed; then
  // waited for, made visible to the tensor cores' reads, and a barrier (after which everyone is
  // done with the stages the next loads overwrite).
  auto issue_loads = [&](int j) {
    if (j + 2 < key_tiles) {
      LoadRow<T, HD, kKeys>(ks + (j & 1) * kTileBytes, kpool + row.Offset(j + 2, block_ahead),
                            row.Valid(j + 2));
    }
    if (j + 1 < key_tiles) {
      LoadRow<T, HD, kKeys>(vs + ((j + 1) & 1) * kTileBytes, vpool + row.Offset(j + 1, block_next),
                            row.Valid(j + 1));
    }
    CpAsyncCommit();
    block_next = block_ahead;
    block_ahead = row.Block(j + 3);
  };
  auto finish_loads = [&] {
    CpAsyncWaitGroup<0>();
    FenceProxyAsyncShared();
    __syncthreads();
  };
  // Three loops with no product issued under a condition (the compiler would serialize the
  // products of a divergent path): the tiles with a next one, this warpgroup's last tile, the
  // tiles only the other warpgroup needs (loads and barriers only).
  int j = 0;
  for (; j + 1 < group_tiles; ++j) {
    IssueScores<T, HD>(s, q_addr, SmemAddr(ks + ((j + 1) & 1) * kTileBytes));
    IssueValues<T, HD>(o, pa, SmemAddr(vs + (j & 1) * kTileBytes));
    issue_loads(j);
    WgmmaWait<1>();  // S_{j+1} (P·V of tile j may still run)
    FenceRegisters(s);
    const int t0 = (j + 1) * kKeys;
    Softmax<T>(s, m, l, corr, row_pos, t0, t0 + kKeys - 1 > wmin, tq, scale_log2);
    WgmmaWait<0>();  // P·V of tile j: its P registers and O are free again
    FenceRegisters(o);
    for (auto& regs : pa) FenceRegisters(regs);
    // Rows whose maximum did not move have corr = 1 exactly: the warp skips the rescale
    // when all of its rows are such.
    if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
      for (int nt = 0; nt < kDTiles; ++nt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          o[4 * nt + 2 * h] *= corr[h];
          o[4 * nt + 2 * h + 1] *= corr[h];
        }
      }
    }
    PackP<T>(s, pa);
    // Both settled here, not sunk by the compiler to between the next tile's products (which
    // would serialize them).
    FenceRegisters(o);
    for (auto& regs : pa) FenceRegisters(regs);
    finish_loads();
  }
  if (j < group_tiles) {  // the last tile: P·V only
    FenceRegisters(o);
    IssueValues<T, HD>(o, pa, SmemAddr(vs + (j & 1) * kTileBytes));
    issue_loads(j);
    WgmmaWait<0>();
    FenceRegisters(o);
    for (auto& regs : pa) FenceRegisters(regs);
    finish_loads();
    ++j;
  }
  for (; j < key_tiles; ++j) {
    issue_loads(j);
    finish_loads();
  }

  if (group_tiles == 0) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = 1.0f / sum;
    const int r = row0 + 8 * h;
    if (r >= count) continue;
    T* dst =
        out + static_cast<int64_t>(first + r) * out_stride + static_cast<int64_t>(qh) * HD + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < kDTiles; ++nt) {
      const uint32_t packed = PackF<T>(o[4 * nt + 2 * h] * inv, o[4 * nt + 2 * h + 1] * inv);
      *reinterpret_cast<Vec2*>(dst + nt * 8) = *reinterpret_cast<const Vec2*>(&packed);
    }
  }
}

}  // namespace

absl::Status LaunchPrefillAttentionWgmma(DType dtype, int head_dim, const cuda::PrefillArgs& args) {
  return cuda::DispatchPrefillShape(dtype, head_dim, [&](auto t, auto hd) {
    using T = decltype(t);
    constexpr int HD = decltype(hd)::value;
    return cuda::LaunchPrefillKernel<T>(PrefillWgmmaKernel<T, HD>, kThreads, SmemBytes<HD>(), args,
                                        "LaunchPrefillAttentionWgmma");
  });
}

}  // namespace dsinfer
