// dsinfer-read-bench: how fast one GPU streams HBM into its SMs, by load method — the ceiling
// a bandwidth-bound kernel (the decode GEMV, attention's K/V stream, label scoring) can reach
// with each, beside the device-to-device copy rate that dsinfer-bench's floors divide by.
//   loads     16-byte ld.global.nc (L1 no-allocate), 4 in flight per thread, 8 blocks per SM
//   cp.async  16-byte cp.async into a 4-stage ring of 8 KiB stages per block (as the decode
//             attention body loads K/V)
//   each of those also with the .L2::256B prefetch qualifier (as the earlier GEMV's loads),
//   and cp.async in its zero-filling form (a source-size operand; the attention body's)
//   bulk      cp.async.bulk (the TMA unit) into a 6-stage ring of 16 KiB stages per block
//             (bulk_copy.cuh; the GEMV's loads)
// and how fast it gathers rows — the ceiling of Double Sparsity's sparse attention, which reads
// each selected token's 256-byte K and V rows of a KV head:
//   gather N  one in --gather_one_in (16) of the buffer's N-byte rows, picked at random and read
//             in ascending order (as a top-k's selection; 1: every row, a streaming read through
//             the same kernel), 16-byte ld.global.nc loads, 8 in flight per thread, at each of
//             --gather_blocks_per_sm (8) resident blocks per SM (32 KiB in flight an SM each);
//             N = 256 (a K or V row at head_dim 128, fp16), 512, 1024, 2048 (a token's rows of
//             all 8 KV heads: the pool's layout)
// Each method reads the whole buffer once per timed launch (best of --reps after a warm-up) and
// XORs its 32-bit words per block; the blocks' XORs must equal ReadXorReference (the host twin)
// over the buffer's pattern (a gather's: GatherXorReference over its rows), so a method that
// skipped bytes fails instead of looking fast.
// Usage: dsinfer-read-bench [--gib 4] [--reps 5] [--gather_blocks_per_sm 8]
//                           [--gather_one_in 16] [--json_out FILE]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/list_flag.h"
#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(int32_t, gib, 4, "buffer size in GiB (read once per timed launch)");
ABSL_FLAG(int32_t, reps, 5, "timed launches per method (the best counts)");
ABSL_FLAG(std::string, json_out, "", "write results as JSON to this file");
ABSL_FLAG(std::string, gather_blocks_per_sm, "8",
          "resident blocks per SM the gathers run at, 1 to 8, comma-separated (each 256 threads, 8 "
          "16-byte loads in flight: 32 KiB an SM a block)");
ABSL_FLAG(std::string, gather_one_in, "16",
          "the gathers read one in N of the buffer's rows, comma-separated (1: every row, in "
          "order, a streaming read through the same kernel)");

namespace dsinfer {
namespace {

constexpr int kThreads = 256;
// The most blocks of kThreads an SM holds: every method's and gather's grid is at most this many
// blocks per SM, which the block-XOR buffer is sized for.
constexpr int kMaxBlocksPerSm = 2048 / kThreads;

__host__ __device__ inline uint32_t PatternWord(uint64_t i) {
  uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ static_cast<uint32_t>(i >> 32);
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  return h ^ (h >> 15);
}

// The host twin: the XOR of the buffer's words.
uint32_t ReadXorReference(uint64_t words) {
  uint32_t x = 0;
  for (uint64_t i = 0; i < words; ++i) x ^= PatternWord(i);
  return x;
}

__global__ void FillPatternKernel(uint32_t* p, uint64_t words) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < words;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    p[i] = PatternWord(i);
  }
}

__device__ __forceinline__ uint32_t Xor4(const uint4& v) { return v.x ^ v.y ^ v.z ^ v.w; }

// Thread 0 of each block publishes the block's XOR (after a block-wide XOR).
__device__ __forceinline__ void PublishXor(uint32_t x, uint32_t* block_xor) {
  __shared__ uint32_t warp_xor[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) x ^= __shfl_xor_sync(0xffffffffu, x, o);
  if (threadIdx.x % 32 == 0) warp_xor[threadIdx.x / 32] = x;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t b = 0;
    for (int w = 0; w < kThreads / 32; ++w) b ^= warp_xor[w];
    block_xor[blockIdx.x] = b;
  }
}

// One 16-byte load past L1; kL2Prefetch adds the .L2::256B qualifier (L2 fetches the whole
// 256-byte sector group), which the earlier GEMV used.
template <bool kL2Prefetch>
__device__ __forceinline__ uint4 LoadNoL1(const uint4* p) {
  uint4 r;
  if constexpr (kL2Prefetch) {
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
  } else {
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
  }
  return r;
}

// Plain loads over the grid (block b, thread t: chunks (b · threads + t) + k · grid threads),
// kUnroll loads issued before any is used.
template <int kUnroll, bool kL2Prefetch>
__global__ void __launch_bounds__(kThreads) LoadReadKernel(const uint4* v, int64_t n,
                                                           uint32_t* block_xor) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  uint32_t x = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < n;
       i += stride * kUnroll) {
    uint4 r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = i + u * stride;
      r[u] = j < n ? LoadNoL1<kL2Prefetch>(v + j) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x ^= Xor4(r[u]);
  }
  PublishXor(x, block_xor);
}

// Gathers: piece j of the gather is 16-byte chunk j % (kRowBytes / 16) of row rows[j / (kRowBytes
// / 16)] (row r at v + r · kRowBytes); a thread's kUnroll pieces, a grid stride apart, have
// their row numbers loaded, then their loads issued, before any is used.
template <int kRowBytes, int kUnroll>
__global__ void __launch_bounds__(kThreads) GatherReadKernel(const uint8_t* v, const int64_t* rows,
                                                             int64_t pieces, uint32_t* block_xor) {
  constexpr int kPieces = kRowBytes / 16;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  uint32_t x = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < pieces;
       i += stride * kUnroll) {
    int64_t row[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = i + u * stride;
      row[u] = j < pieces ? rows[j / kPieces] : -1;
    }
    uint4 r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = i + u * stride;
      r[u] = row[u] >= 0 ? LoadNoL1<false>(reinterpret_cast<const uint4*>(v + row[u] * kRowBytes) +
                                           j % kPieces)
                         : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x ^= Xor4(r[u]);
  }
  PublishXor(x, block_xor);
}

// A block's contiguous range of kChunk-byte chunks (the last block's may be short).
struct ChunkRange {
  int64_t first, end;
};
__device__ __forceinline__ ChunkRange BlockChunks(int64_t chunks) {
  const int64_t per_block = (chunks + gridDim.x - 1) / gridDim.x;
  const int64_t first = blockIdx.x * per_block;
  return {first, min(chunks, first + per_block)};
}

// How a read method's 16-byte cp.async is spelled: plain (.cg: past L1), with the .L2::256B
// qualifier, or in the zero-filling form with a source size (always 16 here), as the decode
// attention body issues its K/V copies.
enum class CopyForm { kPlain, kL2Prefetch, kZeroFill };

template <CopyForm kForm>
__device__ __forceinline__ void CopyAsync16(void* smem, const void* gmem) {
  if constexpr (kForm == CopyForm::kL2Prefetch) {
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(cuda::SmemAddr(smem)),
                 "l"(gmem)
                 : "memory");
  } else if constexpr (kForm == CopyForm::kZeroFill) {
    cuda::CpAsync16(smem, gmem, /*valid=*/true);
  } else {
    cuda::CpAsync16(smem, gmem);
  }
}

// cp.async: every thread copies its 16-byte pieces of chunk c into stage c % kStages,
// kStages - 1 chunks in flight while one is read.
template <int kChunk, int kStages, CopyForm kForm>
__global__ void __launch_bounds__(kThreads) CpAsyncReadKernel(const uint8_t* v, int64_t chunks,
                                                              uint32_t* block_xor) {
  extern __shared__ __align__(128) uint8_t smem[];
  const ChunkRange range = BlockChunks(chunks);
  auto issue = [&](int64_t c) {
    if (c < range.end) {
      uint8_t* stage = smem + ((c - range.first) % kStages) * kChunk;
      for (int i = threadIdx.x; i < kChunk / 16; i += kThreads) {
        CopyAsync16<kForm>(stage + 16 * i, v + c * kChunk + 16 * i);
      }
    }
    cuda::CpAsyncCommit();
  };
  for (int s = 0; s < kStages - 1; ++s) issue(range.first + s);
  uint32_t x = 0;
  for (int64_t c = range.first; c < range.end; ++c) {
    issue(c + kStages - 1);
    cuda::CpAsyncWaitGroup<kStages - 1>();
    __syncthreads();
    const uint4* stage =
        reinterpret_cast<const uint4*>(smem + ((c - range.first) % kStages) * kChunk);
    for (int i = threadIdx.x; i < kChunk / 16; i += kThreads) x ^= Xor4(stage[i]);
    __syncthreads();
  }
  PublishXor(x, block_xor);
}

// Bulk copies: thread 0 fills stage c % kStages with chunk c (one copy), every thread reads it
// once its barrier completes, and thread 0 refills it after a block barrier.
template <int kChunk, int kStages>
__global__ void __launch_bounds__(kThreads) BulkReadKernel(const uint8_t* v, int64_t chunks,
                                                           uint32_t* block_xor) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ uint64_t full[kStages];
  const ChunkRange range = BlockChunks(chunks);
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) cuda::InitBarrier(&full[s]);
  }
  __syncthreads();
  auto issue = [&](int64_t c) {
    const int s = static_cast<int>((c - range.first) % kStages);
    cuda::ExpectBytes(&full[s], kChunk);
    cuda::BulkLoad(smem + s * kChunk, v + c * kChunk, kChunk, &full[s]);
  };
  if (threadIdx.x == 0) {
    for (int64_t c = range.first; c < range.end && c < range.first + kStages; ++c) issue(c);
  }
  uint32_t x = 0;
  for (int64_t c = range.first; c < range.end; ++c) {
    const int64_t n = c - range.first;
    const int s = static_cast<int>(n % kStages);
    cuda::WaitBarrier(&full[s], static_cast<uint32_t>((n / kStages) & 1));
    const uint4* stage = reinterpret_cast<const uint4*>(smem + s * kChunk);
    for (int i = threadIdx.x; i < kChunk / 16; i += kThreads) x ^= Xor4(stage[i]);
    __syncthreads();
    if (threadIdx.x == 0 && c + kStages < range.end) issue(c + kStages);
  }
  PublishXor(x, block_xor);
}

struct Method {
  std::string name;
  int blocks_per_sm;
  int smem;
  // Launches one read of the buffer into block_xor (grid = sms × blocks_per_sm).
  cudaError_t (*launch)(const uint8_t* v, int64_t bytes, int grid, int smem, uint32_t* xors);
};

constexpr int kCpChunk = 8192, kCpStages = 4;
constexpr int kBulkChunk = 16384, kBulkStages = 6;

// Method launchers: one read of `bytes` from v, the blocks' XORs into `xors`.
template <bool kL2Prefetch>
cudaError_t LaunchLoadRead(const uint8_t* v, int64_t bytes, int grid, int, uint32_t* xors) {
  LoadReadKernel<4, kL2Prefetch>
      <<<grid, kThreads>>>(reinterpret_cast<const uint4*>(v), bytes / 16, xors);
  return cudaGetLastError();
}
template <CopyForm kForm>
cudaError_t LaunchCpAsyncRead(const uint8_t* v, int64_t bytes, int grid, int smem,
                              uint32_t* xors) {
  CpAsyncReadKernel<kCpChunk, kCpStages, kForm>
      <<<grid, kThreads, smem>>>(v, bytes / kCpChunk, xors);
  return cudaGetLastError();
}
cudaError_t LaunchBulkRead(const uint8_t* v, int64_t bytes, int grid, int smem, uint32_t* xors) {
  BulkReadKernel<kBulkChunk, kBulkStages><<<grid, kThreads, smem>>>(v, bytes / kBulkChunk, xors);
  return cudaGetLastError();
}

struct Gather {
  int row_bytes;
  // Launches one gather of `n` rows (numbers at `rows`) from v into block_xor.
  cudaError_t (*launch)(const uint8_t* v, const int64_t* rows, int64_t n, int grid,
                        uint32_t* xors);
};
constexpr int kGatherUnroll = 8;

template <int kRowBytes>
cudaError_t LaunchGather(const uint8_t* v, const int64_t* rows, int64_t n, int grid,
                         uint32_t* xors) {
  GatherReadKernel<kRowBytes, kGatherUnroll>
      <<<grid, kThreads>>>(v, rows, n * (kRowBytes / 16), xors);
  return cudaGetLastError();
}

// The rows a gather reads: each of the buffer's `total` rows with probability 1 / one_in (a
// fixed seed), ascending; and the host twin of the XOR of their words.
std::vector<int64_t> GatherRows(int64_t total, int row_bytes, int one_in) {
  std::mt19937_64 rng(0x5eed0000u + row_bytes);
  std::vector<int64_t> rows;
  rows.reserve(total / one_in + 1024);
  for (int64_t r = 0; r < total; ++r) {
    if (rng() % one_in == 0) rows.push_back(r);
  }
  return rows;
}
uint32_t GatherXorReference(const std::vector<int64_t>& rows, int row_bytes) {
  uint32_t x = 0;
  const uint64_t words = row_bytes / 4;
  for (int64_t r : rows) {
    for (uint64_t w = 0; w < words; ++w) x ^= PatternWord(r * words + w);
  }
  return x;
}

// The XOR of a launch's `grid` block XORs.
absl::StatusOr<uint32_t> GridXor(const uint32_t* xors, int grid) {
  std::vector<uint32_t> got(grid);
  CUDA_RETURN_IF_ERROR(
      cudaMemcpy(got.data(), xors, sizeof(uint32_t) * grid, cudaMemcpyDeviceToHost));
  uint32_t x = 0;
  for (uint32_t b : got) x ^= b;
  return x;
}

// A list flag's positive integers (ParsePositiveIntList), each at most `most`.
absl::StatusOr<std::vector<int>> IntsUpTo(absl::string_view flag, const std::string& text,
                                          int most) {
  ASSIGN_OR_RETURN(const std::vector<int64_t> list, ParsePositiveIntList(text, flag));
  std::vector<int> out;
  for (const int64_t v : list) {
    if (v > most) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", v, " is over ", most));
    }
    out.push_back(static_cast<int>(v));
  }
  return out;
}

absl::Status Run() {
  const int64_t bytes = int64_t{absl::GetFlag(FLAGS_gib)} << 30;
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));
  if (bytes <= 0 || bytes % kBulkChunk != 0) return absl::InvalidArgumentError("--gib >= 1");
  ASSIGN_OR_RETURN(const std::vector<int> gather_blocks,
                   IntsUpTo("gather_blocks_per_sm", absl::GetFlag(FLAGS_gather_blocks_per_sm),
                            /*most=*/kMaxBlocksPerSm));
  ASSIGN_OR_RETURN(
      const std::vector<int> gather_one_in,
      IntsUpTo("gather_one_in", absl::GetFlag(FLAGS_gather_one_in), /*most=*/1 << 20));
  int device = 0, sms = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  uint8_t *buf = nullptr, *dst = nullptr;
  uint32_t* xors = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&buf, bytes));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&dst, bytes / 2));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&xors, sizeof(uint32_t) * sms * kMaxBlocksPerSm));
  const uint64_t words = static_cast<uint64_t>(bytes) / 4;
  FillPatternKernel<<<sms * 8, kThreads>>>(reinterpret_cast<uint32_t*>(buf), words);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  const uint32_t expected = ReadXorReference(words);
  cudaEvent_t e0, e1;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e0));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e1));

  // Best of `reps` timed calls after one warm-up, in ms.
  auto time_ms = [&](auto&& call) -> absl::StatusOr<float> {
    CUDA_RETURN_IF_ERROR(call());
    float best = 1e30f;
    for (int i = 0; i < reps; ++i) {
      CUDA_RETURN_IF_ERROR(cudaEventRecord(e0));
      CUDA_RETURN_IF_ERROR(call());
      CUDA_RETURN_IF_ERROR(cudaEventRecord(e1));
      CUDA_RETURN_IF_ERROR(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, e0, e1));
      best = std::min(best, ms);
    }
    return best;
  };

  nlohmann::json out;
  out["gpu"] = prop.name;
  out["bytes"] = bytes;
  std::printf("GPU %s, %d SMs; %lld MiB read per launch, best of %d\n", prop.name, sms,
              static_cast<long long>(bytes >> 20), reps);
  // The copy rate the floors use: bytes read + written per second.
  absl::StatusOr<float> copy_ms = time_ms(
      [&] { return cudaMemcpyAsync(dst, buf, bytes / 2, cudaMemcpyDeviceToDevice); });
  if (!copy_ms.ok()) return copy_ms.status();
  const double copy_gbps = bytes / (*copy_ms * 1e6);
  std::printf("%-24s %9.0f GB/s  (read + write)\n", "d2d copy", copy_gbps);
  out["d2d_copy_gbps"] = copy_gbps;

  const Method methods[] = {
      {"loads", 8, 0, LaunchLoadRead<false>},
      {"loads+L2::256B", 8, 0, LaunchLoadRead<true>},
      {"cp.async", 2, kCpChunk * kCpStages, LaunchCpAsyncRead<CopyForm::kPlain>},
      {"cp.async+L2::256B", 2, kCpChunk * kCpStages, LaunchCpAsyncRead<CopyForm::kL2Prefetch>},
      {"cp.async zero-fill form", 2, kCpChunk * kCpStages, LaunchCpAsyncRead<CopyForm::kZeroFill>},
      {"bulk", 2, kBulkChunk * kBulkStages, LaunchBulkRead},
  };
  for (auto* kernel : {CpAsyncReadKernel<kCpChunk, kCpStages, CopyForm::kPlain>,
                       CpAsyncReadKernel<kCpChunk, kCpStages, CopyForm::kL2Prefetch>,
                       CpAsyncReadKernel<kCpChunk, kCpStages, CopyForm::kZeroFill>}) {
    CUDA_RETURN_IF_ERROR(cuda::OptInSharedMemory(kernel, kCpChunk * kCpStages));
  }
  CUDA_RETURN_IF_ERROR(cuda::OptInSharedMemory(BulkReadKernel<kBulkChunk, kBulkStages>,
                                               kBulkChunk * kBulkStages));
  bool all_match = true;
  for (const Method& m : methods) {
    const int grid = sms * m.blocks_per_sm;
    absl::StatusOr<float> ms = time_ms([&] { return m.launch(buf, bytes, grid, m.smem, xors); });
    if (!ms.ok()) return ms.status();
    ASSIGN_OR_RETURN(const uint32_t x, GridXor(xors, grid));
    const double gbps = bytes / (*ms * 1e6);
    std::printf("%-24s %9.0f GB/s  (read; %.2f × the copy rate)%s\n", m.name.c_str(), gbps,
                gbps / copy_gbps, x == expected ? "" : "  WRONG XOR: bytes were skipped");
    out["methods"].push_back({{"name", m.name}, {"read_gbps", gbps}, {"ms", *ms},
                              {"xor_matches", x == expected}});
    all_match = all_match && x == expected;
  }
  const Gather gathers[] = {
      {256, LaunchGather<256>},
      {512, LaunchGather<512>},
      {1024, LaunchGather<1024>},
      {2048, LaunchGather<2048>},
  };
  int64_t* rows_dev = nullptr;
  for (const int one_in : gather_one_in) {
    for (const Gather& g : gathers) {
      const std::vector<int64_t> rows = GatherRows(bytes / g.row_bytes, g.row_bytes, one_in);
      const int64_t n = static_cast<int64_t>(rows.size());
      const uint32_t want = GatherXorReference(rows, g.row_bytes);
      CUDA_RETURN_IF_ERROR(cudaFree(rows_dev));
      CUDA_RETURN_IF_ERROR(cudaMalloc(&rows_dev, sizeof(int64_t) * n));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(rows_dev, rows.data(), sizeof(int64_t) * n, cudaMemcpyHostToDevice));
      for (const int blocks_per_sm : gather_blocks) {
        const int grid = sms * blocks_per_sm;
        absl::StatusOr<float> ms = time_ms([&] { return g.launch(buf, rows_dev, n, grid, xors); });
        if (!ms.ok()) return ms.status();
        ASSIGN_OR_RETURN(const uint32_t x, GridXor(xors, grid));
        const bool match = x == want;
        const double gbps = n * g.row_bytes / (*ms * 1e6);
        const std::string name = absl::StrCat("gather ", g.row_bytes, " 1/", one_in, " ",
                                              blocks_per_sm, " blk/SM");
        std::printf("%-24s %9.0f GB/s  (read; %.2f × the copy rate; %d KiB in flight an SM)%s\n",
                    name.c_str(), gbps, gbps / copy_gbps,
                    blocks_per_sm * kThreads * kGatherUnroll * 16 / 1024,
                    match ? "" : "  WRONG XOR: bytes were skipped");
        out["gathers"].push_back({{"name", name},
                                  {"row_bytes", g.row_bytes},
                                  {"one_in", one_in},
                                  {"blocks_per_sm", blocks_per_sm},
                                  {"rows", n},
                                  {"read_gbps", gbps},
                                  {"ms", *ms},
                                  {"xor_matches", match}});
        all_match = all_match && match;
      }
    }
  }
  cudaFree(rows_dev);
  cudaFree(buf);
  cudaFree(dst);
  cudaFree(xors);
  const std::string path = absl::GetFlag(FLAGS_json_out);
  if (!path.empty()) std::ofstream(path) << out.dump(1) << "\n";
  if (!all_match) return absl::InternalError("a read method's XOR differs from the reference");
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsinfer

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(argc, argv,
                                     "dsinfer-read-bench [--gib 4] [--reps 5] [--json_out FILE]");
  const absl::Status s = dsinfer::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "dsinfer-read-bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
