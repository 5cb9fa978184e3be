// Shared benchmark model pieces (bench_model.h).
#include "engine/cuda/bench/bench_model.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <utility>

#include "kernels/rope.h"
#include "kernels/status.h"

namespace dsinfer {

ModelConfig BenchModelShape(absl::string_view name) {
  ModelConfig c;
  c.hidden_size = 4096;
  c.num_layers = 32;
  c.num_heads_q = 32;
  c.head_dim = 128;
  c.rms_norm_eps = 1e-5f;
  if (name == "llama2-7b") {
    c.vocab_size = 32000;
    c.intermediate_size = 11008;
    c.num_heads_kv = 32;
  } else {
    c.vocab_size = 128256;
    c.intermediate_size = 14336;
    c.num_heads_kv = 8;
    c.rope.theta = 500000.0;
  }
  return c;
}

RandomWeightModel::RandomWeightModel(CudaBackend* b, ModelConfig c)
    : backend(b), config(std::move(c)) {}

RandomWeightModel::~RandomWeightModel() {
  for (DeviceTensor* t : owned_) backend->Free(*t);
}

absl::Status RandomWeightModel::Make(DeviceTensor& t, int64_t rows, int64_t cols, float scale,
                                     uint64_t seed) {
  ASSIGN_OR_RETURN(t, backend->Allocate(rows, cols));
  owned_.push_back(&t);
  weight_bytes += rows * cols * 2;
  return backend->FillRandom(t, seed, scale);
}

absl::Status RandomWeightModel::Init() {
  const ModelConfig& c = config;
  const int64_t h = c.hidden_size;
  layers.resize(c.num_layers);
  uint64_t seed = 1;
  RETURN_IF_ERROR(Make(embed, c.vocab_size, h, 0.5f, seed++));
  RETURN_IF_ERROR(Make(final_norm, 1, h, 1.0f, seed++));
  RETURN_IF_ERROR(Make(lm_head, c.vocab_size, h, 0.02f, seed++));
  for (Layer& l : layers) {
    RETURN_IF_ERROR(Make(l.input_norm, 1, h, 1.0f, seed++));
    RETURN_IF_ERROR(Make(l.qkv_proj, c.q_size() + 2 * c.kv_size(), h, 0.02f, seed++));
    RETURN_IF_ERROR(Make(l.o_proj, h, c.q_size(), 0.02f, seed++));
    RETURN_IF_ERROR(Make(l.post_attn_norm, 1, h, 1.0f, seed++));
    RETURN_IF_ERROR(Make(l.gate_up_proj, 2 * c.intermediate_size, h, 0.02f, seed++));
    RETURN_IF_ERROR(Make(l.down_proj, h, c.intermediate_size, 0.02f, seed++));
  }
  attention = {c.num_heads_q, c.num_heads_kv, c.head_dim, ComputeRopeInvFreq(c.rope, c.head_dim)};
  return absl::OkStatus();
}

ChannelConfig RandomChannelConfig(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  ChannelConfig config;
  for (ChannelStatistic kind :
       {ChannelStatistic::kQK, ChannelStatistic::kQ, ChannelStatistic::kK}) {
    auto& layers = config.Mutable(kind);
    layers.resize(c.num_layers);
    for (auto& l : layers) {
      l.resize(kind == ChannelStatistic::kK ? c.num_heads_kv : c.num_heads_q);
      for (auto& order : l) {
        order.resize(c.head_dim);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
      }
    }
  }
  return config;
}

}  // namespace dsinfer
