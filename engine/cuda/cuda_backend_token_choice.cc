// The device token path of the CUDA backend (engine/token_choice.h says what it covers).
//
// Per step, after the LM head: the rows' knobs and uniforms (20 bytes a row) are packed into
// pinned staging and uploaded on the backend stream; LaunchSample chooses every row's token
// with its own knobs (argmax for greedy rows) and writes the chosen logit beside the id;
// LaunchLogSumExp gives each row's log Σ exp; only ids, chosen logits and log Σ exp (12 bytes
// a row) come back, into the same staging, and the one host wait of the step is on them —
// where the host path moved vocab × 4 bytes a row (512 KB at 128K) and waited as long.
//
// The staging is reused from step to step without events: every call ends with a stream
// wait, so no copy from the previous call is still reading or writing it. The log-probability
// is logit − log Σ exp in double on the host, as NextToken computes it from a LogitRowStat.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

// Bytes a row occupies in the staging and the device buffer, and where each part starts
// (as multiples of the rows): knobs, uniforms | ids, chosen logits, log Σ exp. The first part
// goes up, the second comes back.
constexpr size_t kKnobsAt = 0, kUniformsAt = sizeof(SampleKnobs), kIdsAt = kUniformsAt + 4;
constexpr size_t kChosenAt = kIdsAt + 4, kLseAt = kChosenAt + 4, kRowBytes = kLseAt + 4;

// The kernel's uniform: the host's double draw rounded to float, kept below 1 (a draw just
// under 1 may round up to it, which the inverse CDF would treat as past the total).
float KernelUniform(double u) {
  const float f = static_cast<float>(u);
  return f < 1.0f ? f : std::nextafter(1.0f, 0.0f);
}

}  // namespace

struct CudaBackend::TokenChoiceState {
  ~TokenChoiceState() {
    if (host != nullptr) cudaFreeHost(host);
    if (device != nullptr) cudaFree(device);
  }
  // Makes both buffers hold at least `bytes` (contents lost). Callers hold no work in flight
  // on them (see the file comment).
  absl::Status Reserve(size_t bytes) {
    if (bytes <= capacity) return absl::OkStatus();
    const size_t grown = std::max<size_t>(bytes, 64 * kRowBytes);
    if (host != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeHost(host));
    if (device != nullptr) CUDA_RETURN_IF_ERROR(cudaFree(device));
    host = nullptr;
    device = nullptr;
    capacity = 0;
    CUDA_RETURN_IF_ERROR(cudaHostAlloc(&host, grown, cudaHostAllocDefault));
    CUDA_RETURN_IF_ERROR(cudaMalloc(&device, grown));
    capacity = grown;
    return absl::OkStatus();
  }

  char* host = nullptr;    // pinned staging
  char* device = nullptr;  // the kernels' inputs and outputs, same layout
  size_t capacity = 0;
};

absl::Status CudaBackend::ChooseTokens(const DeviceTensor& logits,
                                       absl::Span<const DeviceTokenChoice> choices,
                                       std::vector<ChosenToken>& out) {
  out.clear();
  const size_t n = choices.size();
  if (n == 0) return absl::OkStatus();
  if (logits.dtype != DType::kF32 || logits.rows < static_cast<int64_t>(n)) {
    return absl::InternalError(absl::StrCat("cuda backend ChooseTokens: ", n,
                                            " choices for fp32 logits, got ",
                                            DTypeName(logits.dtype), " [", logits.rows, ", ",
                                            logits.cols, "]"));
  }
  if (mode_ != StepMode::kEager) {
    return absl::InternalError("cuda backend ChooseTokens: inside a graph step");
  }
  for (size_t i = 0; i < n; ++i) RETURN_IF_ERROR(ValidateDeviceTokenChoice(choices[i], i));
  if (token_choice_state_ == nullptr) token_choice_state_ = std::make_shared<TokenChoiceState>();
  TokenChoiceState& st = *token_choice_state_;
  RETURN_IF_ERROR(st.Reserve(n * kRowBytes));
  auto* knobs = reinterpret_cast<SampleKnobs*>(st.host + kKnobsAt * n);
  auto* uniforms = reinterpret_cast<float*>(st.host + kUniformsAt * n);
  for (size_t i = 0; i < n; ++i) {
    knobs[i] = choices[i].knobs;
    uniforms[i] = KernelUniform(choices[i].uniform);
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.device, st.host, kIdsAt * n, cudaMemcpyHostToDevice,
                                       stream_));
  int32_t* ids = reinterpret_cast<int32_t*>(st.device + kIdsAt * n);
  float* chosen = reinterpret_cast<float*>(st.device + kChosenAt * n);
  float* lse = reinterpret_cast<float*>(st.device + kLseAt * n);
  const int64_t rows = static_cast<int64_t>(n);
  RETURN_IF_ERROR(LaunchSample(DType::kF32, logits.data, rows, logits.cols, logits.cols,
                               reinterpret_cast<const SampleKnobs*>(st.device + kKnobsAt * n),
                               reinterpret_cast<const float*>(st.device + kUniformsAt * n), ids,
                               chosen, stream_));
  RETURN_IF_ERROR(LaunchLogSumExp(static_cast<const float*>(logits.data), rows, logits.cols,
                                  logits.cols, lse, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.host + kIdsAt * n, st.device + kIdsAt * n,
                                       (kRowBytes - kIdsAt) * n, cudaMemcpyDeviceToHost,
                                       stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  const auto* host_ids = reinterpret_cast<const int32_t*>(st.host + kIdsAt * n);
  const auto* host_chosen = reinterpret_cast<const float*>(st.host + kChosenAt * n);
  const auto* host_lse = reinterpret_cast<const float*>(st.host + kLseAt * n);
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (host_ids[i] < 0 || host_ids[i] >= logits.cols) {
      out.clear();
      return absl::InternalError(absl::StrCat("cuda backend ChooseTokens: row ", i,
                                              " chose token ", host_ids[i],
                                              " (non-finite logits?)"));
    }
    out[i].token = host_ids[i];
    out[i].logprob = static_cast<double>(host_chosen[i]) - static_cast<double>(host_lse[i]);
  }
  ++device_token_steps_;
  return absl::OkStatus();
}

}  // namespace dsinfer
