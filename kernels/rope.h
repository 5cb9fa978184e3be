// Rotary position embedding in the Hugging Face rotate-half layout: channel i pairs with
// channel i + head_dim/2. Frequencies come from RopeParams (default, or Llama 3 scaling) and
// are computed once per model; the kernels and the reference both take the table.
#ifndef DSINFER_KERNELS_ROPE_H_
#define DSINFER_KERNELS_ROPE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace dsinfer {

struct RopeParams {
  enum class Type { kDefault, kLlama3 };
  Type type = Type::kDefault;
  double theta = 10000.0;
  // kLlama3 only.
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;

  absl::Status Validate() const;
};

// inv_freq[i] for i in [0, head_dim/2), as transformers computes it (in fp32 from doubles).
std::vector<float> ComputeRopeInvFreq(const RopeParams& params, int head_dim);

// Rotates x in place. x: [tokens, heads, head_dim] with row stride `token_stride` elements
// between tokens; positions: [tokens]; inv_freq: [head_dim/2].
void RopeReference(float* x, int64_t tokens, int64_t token_stride, int heads, int head_dim,
                   const int32_t* positions, const float* inv_freq);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_ROPE_H_
