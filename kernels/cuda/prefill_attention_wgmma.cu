// Warpgroup-MMA flash prefill attention (Hopper wgmma.mma_async), the kWgmma body of
// LaunchPrefillAttention. Twin: CausalAttentionReference
// (tests/gpu/prefill_attention_kernels_gpu_test.cc runs it beside kMma and kSimt over the same
// sweeps).
//
// The same algorithm and tiles as kMma (prefill_attention_mma.cu): one block per (query tile of
// kPrefillTileRowsMma = 128 rows, query head), the tiles of one head side by side so their K/V
// reads hit L2, online softmax in fp32 registers with base-2 exponents and the scale folded
// into one FMA, P rounded once to bf16/fp16, tokens past the tile's last position zero-filled,
// longest tiles first. Each row's sum runs over the fp32 values of P (as FlashAttention-2/3
// sum them; kMma sums the rounded ones). What changes is the product engine and the block's
// division of labour (FlashAttention-3's warp specialization): three warpgroups,
//   the producer   fills a two-stage ring each of K and V (128-token tiles, 128-byte swizzled
//                  shared memory) by 16-byte cp.async, from device or mapped host memory alike,
//                  four whole rows' 128-byte halves a copy instruction, and signals each stage
//                  on a shared-memory barrier once it has landed;
//   two consumers  of 64 query rows each, per K/V tile
//                    S = Q·Kᵀ   one m64n128k16 wgmma per 16 head-dimension columns, Q and K both
//                               read by the tensor cores from shared memory;
//                    O += P·V   one m64n{HD}k16 wgmma per 16 keys, P straight from the registers
//                               S came out in (the accumulator layout of two adjacent n8 column
//                               tiles is the A fragment of one k16 step), V read as stored
//                               (MN-major, transposed by the instruction);
//                  software-pipelined (P·V of tile j under the softmax of tile j + 1), each
//                  stage given back on an "empty" barrier once its products are done.
// No block-wide barrier after the start: the consumers run at their own pace, the producer as
// far ahead as the ring allows, and its registers (setmaxnreg) go to the consumers.
//
// Measured (H200, bf16, one causal prompt, d 128; docs/benchmarks.md, "Prefill attention on
// warpgroup MMA"): run 37's form (two warpgroups loading their own tiles between the products,
// one barrier a tile) 390-398 TFLOP/s at 32K-64K; this one 1.10-1.19x that (run 38, calls 2-4,
// alternated); in the final form 1.56-1.78x kMma, 375-481 TFLOP/s at 4K-64K (451 at 128K-256K),
// 0.73-0.88x SDPA's cuDNN backend (calls 5-7). Tried there and not kept: the consumers'
// products issued in turn (named barriers, FlashAttention-3's ping-pong) 4-9% slower; three
// stages 1-4% slower; copies arriving on the barriers as they land (no producer wait), one
// block-table entry a tile: no faster. Kept (call 6): a consumer waits for V_j's stage only
// once S_{j+1} is issued, 0-4% faster. Run 39: the producer's copies four whole rows' halves an
// instruction instead of two threads a row (whose stores took 4.5x the ideal shared-memory
// wavefronts, Nsight Compute) 1.07-1.11x; each row's sum over the fp32 values of P instead of
// the rounded ones (no unpacking a value) 1.05-1.06x; O rescaled under S_{j+1} instead of after
// P·V_{j-1}'s wait 1.006-1.014x: 541-567 TFLOP/s from 32K (548 at 256K), 1.88-2.04x kMma (call
// 6), 0.86-0.93x SDPA's cuDNN backend (call 4, before the rescale's move). Tried there and not
// kept: the row max as a tree and the sum in four chains, copies arriving on the barriers as
// they land, three V stages (each within 1%), ping-pong again (3% slower).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/prefill_attention_wgmma.h"
#include "kernels/cuda/prefill_launch.cuh"
#include "kernels/cuda/wgmma_ptx.cuh"

namespace dsinfer {
namespace {

using cuda::ArriveBarrier;
using cuda::CpAsync16;
using cuda::CpAsyncCommit;
using cuda::CpAsyncWaitGroup;
using cuda::Exp2;
using cuda::FenceProxyAsyncShared;
using cuda::FenceRegisters;
using cuda::InitBarrier;
using cuda::KvOffset;
using cuda::Num;
using cuda::PackF;
using cuda::SetMaxRegisters;
using cuda::SmemAddr;
using cuda::SwizzledDescriptor;
using cuda::SwizzledOffset;
using cuda::WaitBarrier;
using cuda::WgmmaCommit;
using cuda::WgmmaFence;
using cuda::WgmmaRSTransB;
using cuda::WgmmaSS;
using cuda::WgmmaWait;

constexpr int kThreads = 3 * 128;  // the producer warpgroup, then two consumers
constexpr int kConsumerWarps = 8;
constexpr int kRows = kPrefillTileRowsMma;  // query rows per block
constexpr int kGroupRows = kRows / 2;       // per consumer
constexpr int kKeys = 128;                  // K/V tile
constexpr int kStages = 2;
constexpr int kAlign = 1024;  // the swizzled tiles' alignment
static_assert(kGroupRows == 64, "one m64 product per consumer warpgroup");
// The producer needs few registers, the consumers' accumulators many: 168 a thread at launch
// (the block's 64K), then these.
constexpr int kProducerRegs = 40;
constexpr int kConsumerRegs = 224;
static_assert(kProducerRegs * 128 + 2 * kConsumerRegs * 128 <= 65536, "the register file");

template <int HD>
constexpr int SmemBytes() {
  return kAlign + (kRows + 2 * kStages * kKeys) * HD * 2;  // Q + stages × (K, V), 16-bit
}

// The ring's shared-memory barriers: "full" completes once the producer's 128 threads saw a
// stage's copies land, "empty" once the 8 consumer warps are done reading it.
struct RingBarriers {
  uint64_t q_full, k_full[kStages], v_full[kStages], k_empty[kStages], v_empty[kStages];
};

// Rows 32w .. 32w + 31 of a swizzled kTileRows-row tile by the 32 lanes of producer warp w,
// lane l holding row 32w + l's element offset in src (-1: zero-fill the row): each copy
// instruction takes four whole rows' 128-byte halves (lane / 8 the row of the four, lane % 8 the
// 16-byte chunk), so its global reads are four whole 128-byte lines and its shared-memory
// stores four conflict-free wavefronts.
static_assert(kRows == 128 && kKeys == 128, "LoadWarpRows: a tile row for each producer thread");
template <typename T, int HD, int kTileRows>
__device__ __forceinline__ void LoadWarpRows(unsigned char* dst, const T* src, int64_t row_off) {
  const int lane = threadIdx.x & 31, warp_row0 = threadIdx.x & ~31 & 127;
  const int quad_row = lane >> 3, chunk = lane & 7;
#pragma unroll 4  // (fully unrolled, the 64-bit offsets spill at 40 registers)
  for (int i = 0; i < 8; ++i) {
    const int l = 4 * i + quad_row;
    const int64_t off = __shfl_sync(0xffffffffu, row_off, l);
#pragma unroll
    for (int h = 0; h < HD / 64; ++h) {
      const int c = h * 64 + chunk * 8;
      CpAsync16(dst + SwizzledOffset<kTileRows>(warp_row0 + l, c), src + max(off, int64_t{0}) + c,
                off >= 0);
    }
  }
}

// Element offset of row r of key tile t in kv.k / kv.v, or -1 past the last position.
template <int HD>
__device__ __forceinline__ int64_t RowOffset(const CudaPagedKv& kv, const int32_t* table, int t,
                                             int r, int kvh, int last_pos) {
  const int pos = t * kKeys + r;
  return pos > last_pos ? -1 : KvOffset(kv, table, pos, kvh, HD);
}

// The producer warpgroup (threads 0..127, thread i computing row i's offset, LoadWarpRows
// copying): Q, then K_0, and per tile j K_{j+1} and V_j (the order the consumers need them), each
// into its stage once both consumers gave it back. A stage is signalled full once its copies
// landed, checked after the next stage's copies are issued (one batch in flight behind the one
// being issued).
template <typename T, int HD>
__device__ __forceinline__ void ProduceTiles(unsigned char* qs, unsigned char* ks,
                                             unsigned char* vs, RingBarriers& b, const T* q,
                                             int64_t q_stride, int first, int count, int qh,
                                             int kvh, int last_pos, int key_tiles,
                                             const CudaPagedKv& kv, const int32_t* table) {
  constexpr int kTileBytes = kKeys * HD * 2;
  const int row = threadIdx.x;
  const T* kpool = static_cast<const T*>(kv.k);
  const T* vpool = static_cast<const T*>(kv.v);
  LoadWarpRows<T, HD, kRows>(
      qs, q,
      row < count ? static_cast<int64_t>(first + row) * q_stride + static_cast<int64_t>(qh) * HD
                  : int64_t{-1});
  CpAsyncCommit();
  uint64_t* in_flight = &b.q_full;  // the barrier of the batch before the one just issued
  auto issue = [&](unsigned char* dst, const T* pool, int64_t row_off, uint64_t* full) {
    LoadWarpRows<T, HD, kKeys>(dst, pool, row_off);
    CpAsyncCommit();
    CpAsyncWaitGroup<1>();  // the batch before landed: visible to the tensor cores, signalled
    FenceProxyAsyncShared();
    ArriveBarrier(in_flight);
    in_flight = full;
  };
  // This thread's row of tile j (for V_j) and of tile j + 1 (for K_{j+1}).
  int64_t off_k = RowOffset<HD>(kv, table, 0, row, kvh, last_pos);
  WaitBarrier(&b.k_empty[0], 1);  // a fresh barrier: the phase before the first has completed
  issue(ks, kpool, off_k, &b.k_full[0]);
  for (int j = 0; j < key_tiles; ++j) {
    const int64_t off_v = off_k;
    const int t = j + 1;
    if (t < key_tiles) {
      off_k = RowOffset<HD>(kv, table, t, row, kvh, last_pos);
      WaitBarrier(&b.k_empty[t % kStages], ((t / kStages) & 1) ^ 1);
      issue(ks + (t % kStages) * kTileBytes, kpool, off_k, &b.k_full[t % kStages]);
    }
    WaitBarrier(&b.v_empty[j % kStages], ((j / kStages) & 1) ^ 1);
    issue(vs + (j % kStages) * kTileBytes, vpool, off_v, &b.v_full[j % kStages]);
  }
  CpAsyncWaitGroup<0>();
  FenceProxyAsyncShared();
  ArriveBarrier(in_flight);
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
// place: masks keys past each row's position where `mask`, turns s into P (fp32; PackP rounds
// it to T for P·V), updates the running max m and sum l (over the fp32 values, as
// FlashAttention-2/3 sum them), and returns each row's rescale factor for O in corr. It writes
// no register a product in flight reads (P·V of the tile before may still run: writing its next
// A operands now would make the compiler serialize the products).
__device__ __forceinline__ void Softmax(float (&s)[kKeys / 2], float (&m)[2], float (&l)[2],
                                        float (&corr)[2], const int (&row_pos)[2], int t0,
                                        bool mask, int tq, float scale_log2) {
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
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& v = s[4 * nt + 2 * h + e];
        v = Exp2(fmaf(v, scale_log2, -m_new));
        sum += v;
      }
    }
    l[h] = l[h] * corr[h] + sum;
  }
}

// P (the values Softmax left in s) rounded to T and packed as P·V's A operands.
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

// Per consumer warpgroup and key tile j, software-pipelined so the tensor cores run P·V of tile
// j while the warps compute the softmax of tile j + 1 (FlashAttention-3's intra-warpgroup
// overlap):
//   wait for K_{j+1}; issue S_{j+1} = Q·K_{j+1}ᵀ; O *= the rescale factor of tile j (under
//   S_{j+1}, FlashAttention-3's place); wait for V_j; issue O += P_j·V_j;
//   wait for S_{j+1} (K_{j+1}'s stage given back); softmax → P_{j+1};
//   wait for P·V (V_j's stage given back).
// Both consumers run every key tile of the block (a tile past a row's position is masked whole
// for it), so each gives back every stage the producer fills.
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
  unsigned char* ks = qs + kRows * HD * 2;
  unsigned char* vs = ks + kStages * kTileBytes;
  __shared__ RingBarriers bars;
  __shared__ int warp_max_s[kConsumerWarps];

  const int tile = num_tiles - 1 - static_cast<int>(blockIdx.x);
  const int first = tiles[2 * tile];
  const int count = tiles[2 * tile + 1];
  const int qh = blockIdx.y;
  const int kvh = qh / (heads_q / heads_kv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int consumer = warp / 4 - 1;       // 0 / 1; the producer: -1
  const int g = lane >> 2, tq = lane & 3;  // fragment row group, thread in quad
  const int row0 = consumer * kGroupRows + (warp & 3) * 16 + g;  // rows row0, row0 + 8

  // Padding rows borrow the last real row's position, so every row attends to at least token 0
  // and the running max is finite after the first tile.
  int row_pos[2] = {0, 0}, wmin = 0;
  if (consumer >= 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) row_pos[h] = positions[first + min(row0 + 8 * h, count - 1)];
    int wmax = max(row_pos[0], row_pos[1]);
    wmin = min(row_pos[0], row_pos[1]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));
      wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
    }
    if (lane == 0) warp_max_s[warp - 4] = wmax;
  }
  if (tid == 0) {
    InitBarrier(&bars.q_full, 128);
    for (int i = 0; i < kStages; ++i) {
      InitBarrier(&bars.k_full[i], 128);
      InitBarrier(&bars.v_full[i], 128);
      InitBarrier(&bars.k_empty[i], kConsumerWarps);
      InitBarrier(&bars.v_empty[i], kConsumerWarps);
    }
  }
  __syncthreads();  // warp_max_s, the barriers
  int last_pos = warp_max_s[0];
#pragma unroll
  for (int w = 1; w < kConsumerWarps; ++w) last_pos = max(last_pos, warp_max_s[w]);
  const int key_tiles = last_pos / kKeys + 1;
  const int32_t* table = kv.block_tables + static_cast<int64_t>(row_seq[first]) * kv.max_blocks;

  if (consumer < 0) {
    SetMaxRegisters<kProducerRegs, false>();
    ProduceTiles<T, HD>(qs, ks, vs, bars, q, q_stride, first, count, qh, kvh, last_pos, key_tiles,
                        kv, table);
    return;
  }
  SetMaxRegisters<kConsumerRegs, true>();
  auto give_back = [&](uint64_t* empty) {  // after the warp's wait for the products reading it
    if (lane == 0) ArriveBarrier(empty);
  };
  const uint32_t q_addr = SmemAddr(qs) + consumer * kGroupRows * 128;  // this consumer's Q rows
  float o[HD / 2];
#pragma unroll
  for (int i = 0; i < HD / 2; ++i) o[i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, corr[2] = {1.0f, 1.0f};
  PFragments pa;  // P_j
  float s[kKeys / 2];
  // O *= each row's rescale factor of the tile Softmax last took. Rows whose maximum did not
  // move have corr = 1 exactly: the warp skips the rescale when all of its rows are such.
  auto rescale = [&] {
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
  };
  WaitBarrier(&bars.q_full, 0);
  WaitBarrier(&bars.k_full[0], 0);
  IssueScores<T, HD>(s, q_addr, SmemAddr(ks));
  WgmmaWait<0>();
  FenceRegisters(s);
  give_back(&bars.k_empty[0]);
  Softmax(s, m, l, corr, row_pos, 0, kKeys - 1 > wmin, tq, scale_log2);
  PackP<T>(s, pa);
  int j = 0;
  for (; j + 1 < key_tiles; ++j) {
    const int t = j + 1;
    WaitBarrier(&bars.k_full[t % kStages], (t / kStages) & 1);
    IssueScores<T, HD>(s, q_addr, SmemAddr(ks + (t % kStages) * kTileBytes));
    rescale();  // by tile j's factor, under S_{j+1} (O is free since P·V_{j-1}'s wait)
    FenceRegisters(o);
    WaitBarrier(&bars.v_full[j % kStages], (j / kStages) & 1);  // under S_{j+1}
    IssueValues<T, HD>(o, pa, SmemAddr(vs + (j % kStages) * kTileBytes));
    WgmmaWait<1>();  // S_{j+1} (P·V of tile j may still run)
    FenceRegisters(s);
    give_back(&bars.k_empty[t % kStages]);
    const int t0 = t * kKeys;
    Softmax(s, m, l, corr, row_pos, t0, t0 + kKeys - 1 > wmin, tq, scale_log2);
    WgmmaWait<0>();  // P·V of tile j: its P registers and O are free again
    FenceRegisters(o);
    for (auto& regs : pa) FenceRegisters(regs);
    give_back(&bars.v_empty[j % kStages]);
    PackP<T>(s, pa);
    // Both settled here, not sunk by the compiler to between the next tile's products (which
    // would serialize them).
    FenceRegisters(o);
    for (auto& regs : pa) FenceRegisters(regs);
  }
  WaitBarrier(&bars.v_full[j % kStages], (j / kStages) & 1);  // the last tile: P·V only
  rescale();
  FenceRegisters(o);
  IssueValues<T, HD>(o, pa, SmemAddr(vs + (j % kStages) * kTileBytes));
  WgmmaWait<0>();
  FenceRegisters(o);

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
