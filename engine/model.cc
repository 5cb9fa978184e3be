// Per layer: h = x + Attn(RmsNorm(x)); x' = h + MLP(RmsNorm(h)). The residual stream lives in
// ws_.residual; each sub-block's output goes to ws_.delta and is added by the next fused
// AddRmsNorm, so no separate add pass exists. Projections are fused at upload: q|k|v into
// one [Hq·d + 2·Hkv·d, hidden] matrix and gate|up into one [2I, hidden].
#include "engine/model.h"

#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace dsinfer {

absl::Status ModelOptions::Validate() const {
  if (kv_block_tokens <= 0 || kv_block_tokens > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_block_tokens must be in [1, 4096], got ", kv_block_tokens));
  }
  if (kv_pool_tokens < 0) return absl::InvalidArgumentError("kv_pool_tokens must be >= 0");
  if (max_context < 0) return absl::InvalidArgumentError("max_context must be >= 0");
  return attention.Validate();
}

Model::Model(ModelConfig config, Backend& backend)
    : config_(std::move(config)), backend_(backend) {}

Model::~Model() {
  FreeWorkspace();
  for (DeviceTensor* t : owned_) backend_.Free(*t);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& model_dir, Backend& backend,
                                                   const ModelOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(config, model_dir));
  auto model = std::unique_ptr<Model>(new Model(config, backend));
  RETURN_IF_ERROR(model->Upload(weights));
  model->attention_.num_heads_q = config.num_heads_q;
  model->attention_.num_heads_kv = config.num_heads_kv;
  model->attention_.head_dim = config.head_dim;
  model->attention_.rope_inv_freq = ComputeRopeInvFreq(config.rope, config.head_dim);
  int64_t max_context = options.max_context;
  const int64_t model_limit =
      config.max_position_embeddings > 0 ? config.max_position_embeddings : 4096;
  if (max_context == 0) max_context = model_limit;
  if (max_context > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("max_context ", max_context, " is too large"));
  }
  model->max_context_ = max_context;
  KvPoolOptions pool;
  pool.layers = config.num_layers;
  pool.kv_heads = config.num_heads_kv;
  pool.head_dim = config.head_dim;
  pool.block_tokens = options.kv_block_tokens;
  const int64_t pool_tokens = options.kv_pool_tokens > 0 ? options.kv_pool_tokens : 4 * max_context;
  pool.num_blocks = (pool_tokens + pool.block_tokens - 1) / pool.block_tokens;
  pool.dtype = backend.kv_dtype();
  ASSIGN_OR_RETURN(model->pool_, KvBlockPool::Create(pool, backend.kv_memory()));
  model->ds_ = std::make_unique<DoubleSparsity>(config.num_layers, config.num_heads_q,
                                                config.num_heads_kv, config.head_dim);
  RETURN_IF_ERROR(model->ds_->SetDefaults(options.attention));
  if (!options.channel_config_path.empty()) {
    ASSIGN_OR_RETURN(ChannelConfig channels, LoadChannelConfig(options.channel_config_path));
    RETURN_IF_ERROR(model->ds_->SetChannelConfig(std::move(channels)));
  }
  return model;
}

absl::Status Model::Upload(const ModelWeights& w) {
  auto upload = [&](DeviceTensor& dst, std::initializer_list<const TensorRef*> parts) -> absl::Status {
    ASSIGN_OR_RETURN(dst, backend_.UploadWeight(std::vector<const TensorRef*>(parts)));
    owned_.push_back(&dst);
    return absl::OkStatus();
  };
  layers_.resize(w.layers.size());
  RETURN_IF_ERROR(upload(embed_, {w.embed_tokens}));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& lw = w.layers[i];
    Layer& l = layers_[i];
    RETURN_IF_ERROR(upload(l.input_norm, {lw.input_norm}));
    RETURN_IF_ERROR(upload(l.qkv_proj, {lw.q_proj, lw.k_proj, lw.v_proj}));
    RETURN_IF_ERROR(upload(l.o_proj, {lw.o_proj}));
    RETURN_IF_ERROR(upload(l.post_attn_norm, {lw.post_attn_norm}));
    RETURN_IF_ERROR(upload(l.gate_up_proj, {lw.gate_proj, lw.up_proj}));
    RETURN_IF_ERROR(upload(l.down_proj, {lw.down_proj}));
  }
  RETURN_IF_ERROR(upload(final_norm_, {w.final_norm}));
  if (w.lm_head == w.embed_tokens) {
    lm_head_ = embed_;  // tied: shared, freed once through embed_
  } else {
    RETURN_IF_ERROR(upload(lm_head_, {w.lm_head}));
  }
  return absl::OkStatus();
}

void Model::FreeWorkspace() {
  for (DeviceTensor* t : {&ws_.residual, &ws_.normed, &ws_.qkv, &ws_.attn, &ws_.delta,
                          &ws_.gate_up, &ws_.mlp, &ws_.logits_in, &ws_.logits}) {
    backend_.Free(*t);
    *t = DeviceTensor();  // rows = 0, so the next Forward reallocates what it needs
  }
  ws_.rows = 0;
}

absl::Status Model::EnsureWorkspace(int64_t rows) {
  if (rows <= ws_.rows) return absl::OkStatus();
  FreeWorkspace();
  const int64_t h = config_.hidden_size;
  const int64_t qkv = config_.q_size() + 2 * config_.kv_size();
  const int64_t inter = config_.intermediate_size;
  ASSIGN_OR_RETURN(ws_.residual, backend_.Allocate(rows, h));
  ASSIGN_OR_RETURN(ws_.normed, backend_.Allocate(rows, h));
  ASSIGN_OR_RETURN(ws_.qkv, backend_.Allocate(rows, qkv));
  ASSIGN_OR_RETURN(ws_.attn, backend_.Allocate(rows, config_.q_size()));
  ASSIGN_OR_RETURN(ws_.delta, backend_.Allocate(rows, h));
  ASSIGN_OR_RETURN(ws_.gate_up, backend_.Allocate(rows, 2 * inter));
  ASSIGN_OR_RETURN(ws_.mlp, backend_.Allocate(rows, inter));
  ws_.rows = rows;
  return absl::OkStatus();
}

void Model::ReleaseSequence(KvBlockPool::SequenceId seq) {
  pool_->Release(seq);
  ds_->labels().Release(seq);
}

namespace {
// A view of the first `rows` rows of `t`.
DeviceTensor Rows(const DeviceTensor& t, int64_t rows) {
  DeviceTensor v = t;
  v.rows = rows;
  return v;
}
}  // namespace

absl::Status Model::Forward(const ForwardBatch& batch, std::vector<float>& logits) {
  const int64_t n = batch.rows();
  if (n == 0) return absl::InvalidArgumentError("empty batch");
  for (const BatchSequence& s : batch.sequences) {
    if (s.start_position + s.num_rows > max_context_) {
      return absl::InvalidArgumentError(absl::StrCat("sequence would reach ", s.start_position + s.num_rows,
                                                     " tokens, over the context limit ", max_context_));
    }
    if (!pool_->Contains(s.kv) ||
        pool_->BlocksFor(s.start_position + s.num_rows) >
            static_cast<int64_t>(pool_->BlockTable(s.kv).size())) {
      return absl::InternalError("forward batch: sequence has no KV room reserved");
    }
  }
  RETURN_IF_ERROR(ds_->BeginStep(batch, *pool_));
  RETURN_IF_ERROR(EnsureWorkspace(n));
  DeviceTensor residual = Rows(ws_.residual, n), normed = Rows(ws_.normed, n),
               qkv = Rows(ws_.qkv, n), attn = Rows(ws_.attn, n), delta = Rows(ws_.delta, n),
               gate_up = Rows(ws_.gate_up, n), mlp = Rows(ws_.mlp, n);
  const float eps = config_.rms_norm_eps;
  RETURN_IF_ERROR(backend_.Embedding(embed_, batch.token_ids, residual));
  RETURN_IF_ERROR(backend_.RmsNorm(residual, layers_[0].input_norm, eps, normed));
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const int layer = static_cast<int>(i);
    RETURN_IF_ERROR(backend_.Linear(normed, l.qkv_proj, qkv));
    std::vector<int64_t> all_rows;
    if (observer_ != nullptr) {
      all_rows.resize(n);
      for (int64_t r = 0; r < n; ++r) all_rows[r] = r;
      observed_pre_.resize(static_cast<size_t>(n * qkv.cols));
      observed_post_.resize(static_cast<size_t>(n * qkv.cols));
      RETURN_IF_ERROR(backend_.CopyRowsToHost(qkv, all_rows, observed_pre_.data()));
    }
    RETURN_IF_ERROR(backend_.RopeAndStoreKv(layer, attention_, batch, *pool_, qkv));
    if (observer_ != nullptr) {
      RETURN_IF_ERROR(backend_.CopyRowsToHost(qkv, all_rows, observed_post_.data()));
      observer_->OnLayerQkv(layer, batch, observed_pre_.data(), observed_post_.data());
    }
    if (ds_->StoresLabels()) RETURN_IF_ERROR(backend_.StoreLabels(layer, batch, *ds_, qkv));
    if (!ds_->AnySparse(layer)) {
      RETURN_IF_ERROR(backend_.Attention(layer, attention_, batch, *pool_, qkv, attn));
    } else {
      // Dense sequences keep the dense op (a batch view listing only them: rows are
      // addressed through first_row, so nothing moves); sparse ones go to the DS op.
      ForwardBatch dense = batch;
      dense.sequences.clear();
      std::vector<size_t> sparse;
      for (size_t j = 0; j < batch.sequences.size(); ++j) {
        if (ds_->IsSparse(j, layer)) {
          sparse.push_back(j);
        } else {
          dense.sequences.push_back(batch.sequences[j]);
        }
      }
      if (!dense.sequences.empty()) {
        RETURN_IF_ERROR(backend_.Attention(layer, attention_, dense, *pool_, qkv, attn));
      }
      RETURN_IF_ERROR(backend_.SparseAttention(layer, batch, sparse, *pool_, *ds_, qkv, attn));
    }
    RETURN_IF_ERROR(backend_.Linear(attn, l.o_proj, delta));
    RETURN_IF_ERROR(backend_.AddRmsNorm(residual, delta, l.post_attn_norm, eps, normed));
    RETURN_IF_ERROR(backend_.Linear(normed, l.gate_up_proj, gate_up));
    RETURN_IF_ERROR(backend_.SwiGlu(gate_up, mlp));
    RETURN_IF_ERROR(backend_.Linear(mlp, l.down_proj, delta));
    const DeviceTensor& next_norm =
        i + 1 < layers_.size() ? layers_[i + 1].input_norm : final_norm_;
    RETURN_IF_ERROR(backend_.AddRmsNorm(residual, delta, next_norm, eps, normed));
  }
  // LM head over the wanted rows only.
  const int64_t m = static_cast<int64_t>(batch.logit_rows.size());
  logits.assign(static_cast<size_t>(m * config_.vocab_size), 0.0f);
  if (m == 0) return absl::OkStatus();
  if (ws_.logits_in.rows < m) {
    backend_.Free(ws_.logits_in);
    backend_.Free(ws_.logits);
    ASSIGN_OR_RETURN(ws_.logits_in, backend_.Allocate(m, config_.hidden_size));
    ASSIGN_OR_RETURN(ws_.logits, backend_.Allocate(m, config_.vocab_size));
  }
  DeviceTensor gathered = Rows(ws_.logits_in, m);
  RETURN_IF_ERROR(backend_.GatherRows(normed, batch.logit_rows, gathered));
  DeviceTensor out = Rows(ws_.logits, m);
  RETURN_IF_ERROR(backend_.Linear(gathered, lm_head_, out));
  std::vector<int64_t> all(m);
  for (int64_t i = 0; i < m; ++i) all[i] = i;
  return backend_.CopyRowsToHost(out, all, logits.data());
}

}  // namespace dsinfer
