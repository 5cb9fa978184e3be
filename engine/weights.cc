// Names follow transformers' Llama/Mistral modules. Buffers some old checkpoints carry
// (`rotary_emb.inv_freq`) are recomputed, not read, and so are tolerated; anything else
// unexpected is an error, because it usually means the wrong architecture.
#include "engine/weights.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

class Binder {
 public:
  explicit Binder(const SafetensorsCheckpoint& ckpt) : ckpt_(ckpt) {}

  absl::StatusOr<const TensorRef*> Get(const std::string& name, std::vector<int64_t> shape) {
    ASSIGN_OR_RETURN(const TensorRef* t, ckpt_.Find(name));
    used_.insert(name);
    if (t->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          t->file, ": tensor '", name, "' has shape [", absl::StrJoin(t->shape, ", "),
          "], the config implies [", absl::StrJoin(shape, ", "), "]"));
    }
    if (t->dtype == DType::kI32) {
      return absl::InvalidArgumentError(
          absl::StrCat(t->file, ": tensor '", name, "' has dtype i32; weights must be f32, bf16 or f16"));
    }
    return t;
  }

  absl::Status CheckNoneLeft() const {
    for (const auto& [name, t] : ckpt_.tensors()) {
      if (used_.count(name) || absl::EndsWith(name, "rotary_emb.inv_freq")) continue;
      return absl::InvalidArgumentError(
          absl::StrCat(t.file, ": unexpected tensor '", name, "' for this architecture"));
    }
    return absl::OkStatus();
  }
  void MarkUsed(const std::string& name) { used_.insert(name); }

 private:
  const SafetensorsCheckpoint& ckpt_;
  std::set<std::string> used_;
};

}  // namespace

absl::StatusOr<ModelWeights> BindModelWeights(const ModelConfig& c,
                                              std::unique_ptr<SafetensorsCheckpoint> checkpoint) {
  ModelWeights w;
  Binder b(*checkpoint);
  const int64_t h = c.hidden_size, q = c.q_size(), kv = c.kv_size(), inter = c.intermediate_size;
  ASSIGN_OR_RETURN(w.embed_tokens, b.Get("model.embed_tokens.weight", {c.vocab_size, h}));
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    LayerWeights l;
    ASSIGN_OR_RETURN(l.input_norm, b.Get(p + "input_layernorm.weight", {h}));
    ASSIGN_OR_RETURN(l.q_proj, b.Get(p + "self_attn.q_proj.weight", {q, h}));
    ASSIGN_OR_RETURN(l.k_proj, b.Get(p + "self_attn.k_proj.weight", {kv, h}));
    ASSIGN_OR_RETURN(l.v_proj, b.Get(p + "self_attn.v_proj.weight", {kv, h}));
    ASSIGN_OR_RETURN(l.o_proj, b.Get(p + "self_attn.o_proj.weight", {h, q}));
    ASSIGN_OR_RETURN(l.post_attn_norm, b.Get(p + "post_attention_layernorm.weight", {h}));
    ASSIGN_OR_RETURN(l.gate_proj, b.Get(p + "mlp.gate_proj.weight", {inter, h}));
    ASSIGN_OR_RETURN(l.up_proj, b.Get(p + "mlp.up_proj.weight", {inter, h}));
    ASSIGN_OR_RETURN(l.down_proj, b.Get(p + "mlp.down_proj.weight", {h, inter}));
    w.layers.push_back(l);
  }
  ASSIGN_OR_RETURN(w.final_norm, b.Get("model.norm.weight", {h}));
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed_tokens;
    // Some exports write the tied head anyway; it must then match the embedding's shape.
    if (checkpoint->tensors().count("lm_head.weight")) {
      ASSIGN_OR_RETURN(const TensorRef* unused, b.Get("lm_head.weight", {c.vocab_size, h}));
      (void)unused;
    }
  } else {
    absl::StatusOr<const TensorRef*> head = b.Get("lm_head.weight", {c.vocab_size, h});
    if (!head.ok()) {
      return absl::Status(head.status().code(),
                          absl::StrCat(head.status().message(),
                                       " (config says tie_word_embeddings=false)"));
    }
    w.lm_head = *head;
  }
  RETURN_IF_ERROR(b.CheckNoneLeft());
  w.checkpoint = std::move(checkpoint);
  return w;
}

absl::StatusOr<ModelWeights> LoadModelWeights(const ModelConfig& config,
                                              const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> ckpt,
                   SafetensorsCheckpoint::OpenDir(model_dir));
  return BindModelWeights(config, std::move(ckpt));
}

}  // namespace dsinfer
