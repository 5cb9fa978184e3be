// Names of the selectable CUDA kernel bodies, shared by the benchmark programs' flags
// (dsinfer-bench, dsinfer-attention-bench): every body has run on a GPU; the defaults are the
// fastest measured (docs/benchmarks.md), the others stay for side-by-side timings.
//   decode attention:   pipelined (default) | tiled | warp
//   prefill attention:  mma (default) | simt
//   DS label scoring:   strided (default) | coalesced | row
//   DS top-k:           auto (default: resident where the rows fit one block's shared
//                       memory, else cluster for few (sequence, KV head) pairs, else
//                       striped) | one-block | two-read | striped | cluster | multi-block |
//                       resident
//   DS attention:       pipelined (default) | warp
//   linear layers:      cublas (default) | gemv (decode steps of up to 8 rows)
#ifndef DSINFER_ENGINE_CUDA_BENCH_KERNEL_ALGO_FLAGS_H_
#define DSINFER_ENGINE_CUDA_BENCH_KERNEL_ALGO_FLAGS_H_

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {

inline const char* AlgoName(DecodeAttentionAlgo a) {
  return a == DecodeAttentionAlgo::kPipelined ? "pipelined"
         : a == DecodeAttentionAlgo::kTiled   ? "tiled"
                                              : "warp";
}
inline const char* AlgoName(PrefillAttentionAlgo a) {
  return a == PrefillAttentionAlgo::kWgmma ? "wgmma"
         : a == PrefillAttentionAlgo::kMma ? "mma"
                                           : "simt";
}
inline const char* AlgoName(LabelScoreAlgo a) {
  return a == LabelScoreAlgo::kStrided     ? "strided"
         : a == LabelScoreAlgo::kCoalesced ? "coalesced"
                                           : "row";
}
inline const char* AlgoName(TopKAlgo a) {
  return a == TopKAlgo::kCluster      ? "cluster"
         : a == TopKAlgo::kAuto       ? "auto"
         : a == TopKAlgo::kTwoRead    ? "two-read"
         : a == TopKAlgo::kStriped    ? "striped"
         : a == TopKAlgo::kMultiBlock ? "multi-block"
         : a == TopKAlgo::kResident   ? "resident"
                                      : "one-block";
}

inline const char* AlgoName(SparseAttentionAlgo a) {
  return a == SparseAttentionAlgo::kPipelined ? "pipelined" : "warp";
}

inline const char* AlgoName(LinearAlgo a) {
  return a == LinearAlgo::kGemv ? "gemv" : a == LinearAlgo::kAuto ? "auto" : "cublas";
}

// Parses one name into `*out`, trying every value of Enum in `values`.
template <typename Enum>
absl::Status ParseAlgo(absl::string_view name, std::initializer_list<Enum> values,
                       absl::string_view what, Enum* out) {
  std::string known;
  for (Enum v : values) {
    if (name == AlgoName(v)) {
      *out = v;
      return absl::OkStatus();
    }
    absl::StrAppend(&known, known.empty() ? "" : ", ", AlgoName(v));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ", what, " \"", name, "\" (known: ", known, ")"));
}

inline absl::Status ParseAlgo(absl::string_view name, DecodeAttentionAlgo* out) {
  return ParseAlgo(name,
                   {DecodeAttentionAlgo::kPipelined, DecodeAttentionAlgo::kTiled,
                    DecodeAttentionAlgo::kWarp},
                   "decode attention body", out);
}
inline absl::Status ParseAlgo(absl::string_view name, PrefillAttentionAlgo* out) {
  return ParseAlgo(
      name, {PrefillAttentionAlgo::kSimt, PrefillAttentionAlgo::kMma, PrefillAttentionAlgo::kWgmma},
      "prefill attention body", out);
}
inline absl::Status ParseAlgo(absl::string_view name, LabelScoreAlgo* out) {
  return ParseAlgo(name, {LabelScoreAlgo::kRowPerThread, LabelScoreAlgo::kCoalesced,
                          LabelScoreAlgo::kStrided},
                   "label scoring body", out);
}
inline absl::Status ParseAlgo(absl::string_view name, TopKAlgo* out) {
  return ParseAlgo(
      name,
      {TopKAlgo::kAuto, TopKAlgo::kOneBlock, TopKAlgo::kTwoRead, TopKAlgo::kStriped,
       TopKAlgo::kCluster, TopKAlgo::kMultiBlock, TopKAlgo::kResident},
      "top-k kernel", out);
}

inline absl::Status ParseAlgo(absl::string_view name, SparseAttentionAlgo* out) {
  return ParseAlgo(name, {SparseAttentionAlgo::kPipelined, SparseAttentionAlgo::kWarp},
                   "sparse attention body", out);
}

inline absl::Status ParseAlgo(absl::string_view name, LinearAlgo* out) {
  return ParseAlgo(name, {LinearAlgo::kCublas, LinearAlgo::kGemv, LinearAlgo::kAuto},
                   "linear-layer body", out);
}

// A comma-separated list of names ("simt,mma"); at least one.
template <typename Enum>
absl::StatusOr<std::vector<Enum>> ParseAlgoList(absl::string_view list) {
  std::vector<Enum> out;
  for (absl::string_view name : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    Enum v{};
    if (absl::Status s = ParseAlgo(name, &v); !s.ok()) return s;
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("empty list \"", list, "\""));
  return out;
}

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_KERNEL_ALGO_FLAGS_H_
