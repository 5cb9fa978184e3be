// Plain C++ twins of the CUDA kernels that have no twin among the CPU backend's references
// (embedding gather, argmax, sampling). fp32, no CUDA: the GPU tests compare the kernels to these.
#ifndef DSINFER_KERNELS_CUDA_REFERENCE_TWINS_H_
#define DSINFER_KERNELS_CUDA_REFERENCE_TWINS_H_

#include <cstdint>

#include "kernels/sample_knobs.h"

namespace dsinfer {

// out[i, :] = table[ids[i], :]. table: [vocab, cols]; out: [n, cols].
void EmbeddingReference(const float* table, int64_t cols, const int32_t* ids, int64_t n,
                        float* out);

// ids[i] = argmax_j logits[i, j], lowest index on ties, NaN never wins (0 if all NaN).
// logits: [rows, vocab].
void ArgmaxReference(const float* logits, int64_t rows, int64_t vocab, int32_t* ids);
// Twin of LaunchLogSumExp, accumulated in double (as engine/sampler.cc's LogProbability).
void LogSumExpReference(const float* logits, int64_t rows, int64_t vocab, float* lse);

// LaunchSample's semantics in plain loops (the same fp32 probabilities and thresholds, found
// here by bisection over their bit patterns, where the kernel descends by radix digits; masses
// summed serially in double, as the CPU sampler sums them), row r with its own knobs[r]
// (temperature 0: ArgmaxReference of the row; no finite probability: id -1).
// logits: [rows, vocab]; knobs, uniforms, ids: [rows]. When `thresholds` is not null it
// receives each row's kept threshold: token i is kept iff 2^((x_i - max) · log2e / T_r) >=
// thresholds[r] (not written for greedy rows).
void SampleReference(const float* logits, int64_t rows, int64_t vocab, const SampleKnobs* knobs,
                     const float* uniforms, int32_t* ids, float* thresholds = nullptr);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_REFERENCE_TWINS_H_
