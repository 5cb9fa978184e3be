// Per layer: h = x + Attn(RmsNorm(x)); x' = h + MLP(RmsNorm(h)). The residual stream lives in
// ws_.residual. Each sub-block starts with Backend::NormLinear (the norm and the first
// projection) and ends with Backend::AddLinear (the last projection added into the residual),
// so that a backend may fuse the norm and the add into the projections (the CUDA backend does
// at decode rows); no separate add pass exists. Projections are fused at upload: q|k|v into
// one [Hq·d + 2·Hkv·d, hidden] matrix and gate|up into one [2I, hidden].
#include "engine/model.h"

#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <numeric>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "engine/layer_ops.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

// The tier's options with the fetch buffers' growth capped at the pool's tokens: the contexts
// of one step never sum to more, and the memory plan counts no more. In kv mode offload the
// channel config's calibrated exemption list (layers where prediction was poor on its
// calibration text) becomes own_query_extra, unless the caller named layers or opted out.
OffloadOptions TierOptions(OffloadOptions options, const KvPoolOptions& pool, KvMode mode,
                           const std::optional<ChannelConfig>& channels) {
  if (options.max_buffer_rows == 0) options.max_buffer_rows = pool.num_blocks * pool.block_tokens;
  options.resident_layers = pool.resident_layers;  // resolved (ResidentLayers)
  if (mode == KvMode::kOffload && options.use_calibrated_own_query &&
      options.own_query_extra.empty() && channels.has_value() && channels->prediction.has_value()) {
    options.own_query_extra = channels->prediction->own_query_extra;
  }
  return options;
}

}  // namespace

int ResidentLayers(const ModelOptions& options, int layers) {
  if (options.kv_mode == KvMode::kGpu) return 0;
  return std::min(std::max(options.offload.resident_layers, 0), layers);
}

absl::Status ModelOptions::Validate() const {
  if (kv_block_tokens <= 0 || kv_block_tokens > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_block_tokens must be in [1, 4096], got ", kv_block_tokens));
  }
  if (kv_pool_tokens < 0) return absl::InvalidArgumentError("kv_pool_tokens must be >= 0");
  if (max_context < 0) return absl::InvalidArgumentError("max_context must be >= 0");
  RETURN_IF_ERROR(offload.Validate());
  return attention.Validate();
}

Model::Model(ModelConfig config, Backend& backend)
    : config_(std::move(config)), backend_(backend) {}

Model::~Model() {
  FreeWorkspace();
  for (DeviceTensor* t : {&ows_.input, &ows_.normed, &ows_.q}) backend_.Free(*t);
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
  // In the offload modes the pool is the host tier (pinned mapped memory on CUDA), except its
  // resident layers, which stay in the backend's device memory.
  HostMemory& pool_memory =
      options.kv_mode == KvMode::kGpu ? backend.kv_memory() : backend.offload_kv_memory();
  pool.resident_layers = ResidentLayers(options, config.num_layers);
  ASSIGN_OR_RETURN(model->pool_, KvBlockPool::Create(pool, pool_memory, &backend.kv_memory()));
  // A backend that keeps labels in its own memory needs only the label cache's accounts: no
  // host label bytes (2 GiB at 256K tokens for Llama-3-8B at r = 16, fp16).
  model->ds_ = std::make_unique<DoubleSparsity>(
      config.num_layers, config.num_heads_q, config.num_heads_kv, config.head_dim,
      backend.keeps_labels_on_device() ? LabelStorage::kAccountingOnly : LabelStorage::kHost);
  RETURN_IF_ERROR(model->ds_->SetDefaults(options.attention));
  // An explicit channel config wins; else one shipped beside the checkpoint is used.
  std::string channel_config_path = options.channel_config_path;
  if (channel_config_path.empty()) {
    const std::string beside = model_dir + "/" + kModelChannelConfigFile;
    if (access(beside.c_str(), F_OK) == 0) channel_config_path = beside;
  }
  if (!channel_config_path.empty()) {
    ASSIGN_OR_RETURN(ChannelConfig channels, LoadChannelConfig(channel_config_path));
    RETURN_IF_ERROR(model->ds_->SetChannelConfig(std::move(channels)));
  }
  model->kv_mode_ = options.kv_mode;
  if (options.kv_mode != KvMode::kGpu) {
    // Fetch buffers and reuse slabs live where attention reads them (device memory on CUDA;
    // the CPU backend's "device" memory is host memory).
    ASSIGN_OR_RETURN(model->tier_,
                     OffloadTier::Create(config.num_layers, config.num_heads_kv, config.head_dim,
                                         backend.kv_dtype(),
                                         TierOptions(options.offload, pool, options.kv_mode,
                                                     model->ds_->channel_config()),
                                         backend.offload_buffer_memory()));
    model->ds_->set_force_dense(options.kv_mode == KvMode::kDenseOffload);
    if (options.kv_mode == KvMode::kOffload) model->ds_->set_dense_layer_limit(pool.resident_layers);
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
  ASSIGN_OR_RETURN(ws_.residual, backend_.AllocateF32(rows, h));  // fp32 where supported
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
  if (tier_ != nullptr) tier_->Release(seq);
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
  return RunStep(batch, [&](const DeviceTensor& normed) {
    return LmHead(normed, batch.logit_rows, logits);
  });
}

absl::Status Model::ForwardAndChoose(const ForwardBatch& batch,
                                     absl::Span<const DeviceTokenChoice> choices,
                                     std::vector<ChosenToken>& chosen) {
  chosen.clear();
  if (!backend_.ChoosesTokensOnDevice()) {
    return absl::FailedPreconditionError(
        absl::StrCat("backend ", backend_.name(), " cannot choose tokens on the device"));
  }
  if (choices.size() != batch.logit_rows.size()) {
    return absl::InvalidArgumentError(absl::StrCat("ForwardAndChoose: ", choices.size(),
                                                   " token choices for ",
                                                   batch.logit_rows.size(), " logit rows"));
  }
  for (size_t i = 0; i < choices.size(); ++i) {
    RETURN_IF_ERROR(ValidateDeviceTokenChoice(choices[i], i));
  }
  return RunStep(batch, [&](const DeviceTensor& normed) {
    return ChooseOnBackend(normed, batch.logit_rows, choices, chosen);
  });
}

absl::Status Model::RunStep(const ForwardBatch& batch,
                            absl::FunctionRef<absl::Status(const DeviceTensor& normed)> head) {
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
  if (tier_ != nullptr) {
    tier_->ReleaseMissing(*pool_);
    std::vector<int64_t> segment_rows(batch.sequences.size()), sparse_rows(segment_rows.size());
    for (size_t j = 0; j < batch.sequences.size(); ++j) {
      segment_rows[j] = ds_->FetchRows(j, batch, pool_->options().resident_layers);
      sparse_rows[j] = ds_->SparseFetchRows(j, batch);
    }
    RETURN_IF_ERROR(tier_->BeginStep(segment_rows, sparse_rows));
    for (auto& per_parity : offload_selection_) per_parity.assign(batch.sequences.size(), {});
    RETURN_IF_ERROR(backend_.BeginOffloadStep(attention_, batch, *pool_));
  }
  // A step that fails part-way may have kept rows no gather wrote: forget them all.
  absl::Cleanup abandon = [this] {
    if (tier_ != nullptr) tier_->AbandonStep();
  };
  RETURN_IF_ERROR(EnsureWorkspace(n));
  DeviceTensor residual = Rows(ws_.residual, n), normed = Rows(ws_.normed, n),
               qkv = Rows(ws_.qkv, n), attn = Rows(ws_.attn, n), delta = Rows(ws_.delta, n),
               gate_up = Rows(ws_.gate_up, n), mlp = Rows(ws_.mlp, n);
  const float eps = config_.rms_norm_eps;
  // Steps the backend may record and replay: GPU-resident KV, no observer, labels (if any)
  // kept by the backend.
  const bool capturable = observer_ == nullptr && tier_ == nullptr &&
                          (!ds_->StoresLabels() || backend_.keeps_labels_on_device());
  RETURN_IF_ERROR(backend_.BeginStep(batch, *pool_, capturable, ds_.get()));
  RETURN_IF_ERROR(backend_.Embedding(embed_, batch.token_ids, residual));
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const int layer = static_cast<int>(i);
    RETURN_IF_ERROR(backend_.NormLinear(residual, l.input_norm, eps, l.qkv_proj, normed, qkv));
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
    if (tier_ != nullptr) {
      RETURN_IF_ERROR(OffloadLayer(layer, batch, residual, normed, qkv, attn));
    } else {
      RETURN_IF_ERROR(
          LayerAttention(backend_, layer, attention_, batch, *pool_, *ds_, qkv, attn));
    }
    RETURN_IF_ERROR(FinishLayer(backend_, l, eps, attn, delta, residual, normed, gate_up, mlp));
  }
  RETURN_IF_ERROR(backend_.RmsNorm(residual, final_norm_, eps, normed));
  RETURN_IF_ERROR(backend_.EndStep());
  RETURN_IF_ERROR(head(normed));
  RETURN_IF_ERROR(CountDeviceReuse(backend_, tier_.get(), *ds_, batch));
  std::move(abandon).Cancel();
  return absl::OkStatus();
}

absl::Status CountDeviceReuse(Backend& backend, OffloadTier* tier, DoubleSparsity& ds,
                              const ForwardBatch& batch) {
  if (tier == nullptr || !tier->device_lookups()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const std::vector<int64_t> hits,
                   backend.DeviceReuseHits(batch.sequences.size()));
  for (size_t j = 0; j < hits.size(); ++j) {
    const KvBlockPool::SequenceId seq = batch.sequences[j].kv;
    ds.AddFetch(seq, tier->CountReusedOnDevice(seq, hits[j]));
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceTensor> Model::LogitsOnBackend(const DeviceTensor& normed,
                                                    absl::Span<const int64_t> rows) {
  const int64_t m = static_cast<int64_t>(rows.size());
  if (ws_.logits_in.rows < m) {
    backend_.Free(ws_.logits_in);
    backend_.Free(ws_.logits);
    ASSIGN_OR_RETURN(ws_.logits_in, backend_.Allocate(m, config_.hidden_size));
    ASSIGN_OR_RETURN(ws_.logits, backend_.AllocateF32(m, config_.vocab_size));
  }
  DeviceTensor gathered = Rows(ws_.logits_in, m);
  RETURN_IF_ERROR(backend_.GatherRows(normed, rows, gathered));
  DeviceTensor out = Rows(ws_.logits, m);
  RETURN_IF_ERROR(backend_.Linear(gathered, lm_head_, out));
  return out;
}

absl::Status Model::LmHead(const DeviceTensor& normed, absl::Span<const int64_t> rows,
                           std::vector<float>& logits) {
  const int64_t m = static_cast<int64_t>(rows.size());
  logits.assign(static_cast<size_t>(m * config_.vocab_size), 0.0f);
  logit_stats_.clear();
  if (m == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(const DeviceTensor out, LogitsOnBackend(normed, rows));
  if (backend_.ComputesLogitStats()) RETURN_IF_ERROR(backend_.LogitStats(out, m, logit_stats_));
  std::vector<int64_t> all(m);
  for (int64_t i = 0; i < m; ++i) all[i] = i;
  return backend_.CopyRowsToHost(out, all, logits.data());
}

absl::Status Model::ChooseOnBackend(const DeviceTensor& normed, absl::Span<const int64_t> rows,
                                    absl::Span<const DeviceTokenChoice> choices,
                                    std::vector<ChosenToken>& chosen) {
  chosen.clear();
  logit_stats_.clear();
  if (rows.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const DeviceTensor out, LogitsOnBackend(normed, rows));
  return backend_.ChooseTokens(out, choices, chosen);
}

const LogitRowStat* Model::logit_stat(int64_t row) const {
  return row >= 0 && row < static_cast<int64_t>(logit_stats_.size()) ? &logit_stats_[row] : nullptr;
}

namespace {
// Rows [first, first + rows) of `t`, in place.
DeviceTensor RowRange(const DeviceTensor& t, int64_t first, int64_t rows) {
  DeviceTensor v = t;
  v.data = static_cast<char*>(t.data) + first * t.cols * static_cast<int64_t>(DTypeSize(t.dtype));
  v.rows = rows;
  return v;
}
}  // namespace

LayerMajorPrefill::~LayerMajorPrefill() {
  if (backend == nullptr) return;
  // A prefill dropped half-way (cancelled, failed): later work on the pool's blocks waits for
  // the layer copies still in flight.
  (void)backend->JoinKvCopy(0);
  (void)backend->JoinKvCopy(1);
  if (residual.data != nullptr) backend->Free(residual);
}

ForwardBatch LayerMajorPrefill::Whole() const {
  ForwardBatch whole;
  whole.Add(seq, ids.data(), static_cast<int64_t>(ids.size()), 0, false);
  whole.sequences.back().attention = options;
  return whole;
}

absl::StatusOr<std::unique_ptr<LayerMajorPrefill>> Model::StartLayerMajor(
    KvBlockPool::SequenceId seq, absl::Span<const int32_t> ids, int64_t chunk,
    const AttentionOptions* options) {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n == 0 || chunk <= 0) {
    return absl::InvalidArgumentError("layer-major prefill of an empty prompt or chunk");
  }
  if (n > max_context_) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt of ", n, " tokens is over the context limit ", max_context_));
  }
  if (!pool_->Contains(seq) ||
      pool_->BlocksFor(n) > static_cast<int64_t>(pool_->BlockTable(seq).size())) {
    return absl::InternalError("layer-major prefill: sequence has no KV room reserved");
  }
  auto p = std::make_unique<LayerMajorPrefill>();
  p->seq = seq;
  p->ids.assign(ids.begin(), ids.end());
  p->chunk = chunk;
  p->options = options;
  // Two staging pools, used by alternate layers (the copy of one layer to the model's pool
  // runs beside the next layer): one layer each, the model pool's geometry, the sequence's own
  // block ids.
  KvPoolOptions so = pool_->options();
  so.layers = 1;
  so.resident_layers = 0;
  p->table = pool_->BlockTable(seq);
  for (int s = 0; s < std::min<int>(2, config_.num_layers); ++s) {
    ASSIGN_OR_RETURN(p->staging[s], KvBlockPool::Create(so, backend_.kv_memory()));
    ASSIGN_OR_RETURN(p->stage_seq[s], p->staging[s]->AddSequenceWithBlocks(p->table));
  }
  // Double Sparsity plans the prompt as one prefill (labels reserved, statistics counted once).
  const ForwardBatch whole = p->Whole();
  RETURN_IF_ERROR(ds_->BeginStep(whole, *pool_));
  ASSIGN_OR_RETURN(p->residual, backend_.AllocateF32(n, config_.hidden_size));
  p->backend = &backend_;
  RETURN_IF_ERROR(EnsureWorkspace(std::min(chunk, n)));
  RETURN_IF_ERROR(backend_.BeginStep(whole, *p->staging[0], /*capturable=*/false, nullptr));
  RETURN_IF_ERROR(backend_.Embedding(embed_, p->ids, p->residual));
  p->step_open = true;
  return p;
}

absl::StatusOr<bool> Model::ContinueLayerMajor(LayerMajorPrefill& p, int layers,
                                               std::vector<float>& logits) {
  const int num_layers = static_cast<int>(layers_.size());
  if (p.next_layer >= num_layers) {
    return absl::FailedPreconditionError("layer-major prefill already finished");
  }
  const int64_t n = static_cast<int64_t>(p.ids.size());
  const int64_t chunk = p.chunk;
  const ForwardBatch whole = p.Whole();
  if (!p.step_open) {
    // Other steps ran since the last layers: plan this prompt again (counted once already)
    // and take the workspace back.
    RETURN_IF_ERROR(ds_->BeginStep(whole, *pool_, /*count_stats=*/false));
    RETURN_IF_ERROR(EnsureWorkspace(std::min(chunk, n)));
    RETURN_IF_ERROR(backend_.BeginStep(whole, *p.staging[0], /*capturable=*/false, nullptr));
    p.step_open = true;
  }
  const int end = layers > 0 ? std::min(num_layers, p.next_layer + layers) : num_layers;
  const float eps = config_.rms_norm_eps;
  for (; p.next_layer < end; ++p.next_layer) {
    const int layer = p.next_layer;
    const Layer& l = layers_[layer];
    const int slot = layer % 2;
    KvBlockPool& stage_pool = *p.staging[slot];
    // Layer - 2's copy out of this staging pool must be done before it is rewritten.
    RETURN_IF_ERROR(backend_.JoinKvCopy(slot));
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      const int64_t m = std::min(chunk, n - r0);
      // The same rows twice: against the staging pool (K/V) and the model's (labels).
      ForwardBatch stage, real;
      stage.Add(p.stage_seq[slot], p.ids.data() + r0, m, r0, false);
      real.Add(p.seq, p.ids.data() + r0, m, r0, false);
      stage.sequences.back().attention = real.sequences.back().attention = p.options;
      DeviceTensor res = RowRange(p.residual, r0, m), normed = Rows(ws_.normed, m),
                   qkv = Rows(ws_.qkv, m), attn = Rows(ws_.attn, m), delta = Rows(ws_.delta, m),
                   gate_up = Rows(ws_.gate_up, m), mlp = Rows(ws_.mlp, m);
      RETURN_IF_ERROR(backend_.NormLinear(res, l.input_norm, eps, l.qkv_proj, normed, qkv));
      RETURN_IF_ERROR(backend_.RopeAndStoreKv(0, attention_, stage, stage_pool, qkv));
      if (ds_->StoresLabels()) RETURN_IF_ERROR(backend_.StoreLabels(layer, real, *ds_, qkv));
      RETURN_IF_ERROR(backend_.Attention(0, attention_, stage, stage_pool, qkv, attn));
      RETURN_IF_ERROR(FinishLayer(backend_, l, eps, attn, delta, res, normed, gate_up, mlp));
    }
    // The layer is done: in the offload modes its labels are derived from the staging pool
    // in HBM (not read back over PCIe at the first decode step), then its K/V go to the
    // model's pool beside the next layer's work (which uses the other staging pool).
    if (tier_ != nullptr) {
      RETURN_IF_ERROR(backend_.LabelLayerFrom(layer, whole, 0, *ds_, stage_pool, 0, *pool_));
    }
    RETURN_IF_ERROR(backend_.CopyKvBlocksAside(stage_pool, 0, *pool_, layer, p.table, slot));
  }
  if (p.next_layer < num_layers) {
    // Paused: other steps may run (they touch neither this sequence nor the staging pools).
    RETURN_IF_ERROR(backend_.EndStep());
    p.step_open = false;
    return false;
  }
  // Every layer is in the model's pool before anything after the prefill reads it.
  RETURN_IF_ERROR(backend_.JoinKvCopy(0));
  RETURN_IF_ERROR(backend_.JoinKvCopy(1));
  RETURN_IF_ERROR(backend_.EndStep());
  p.step_open = false;
  // The LM head over the prompt's last row, after the final norm.
  DeviceTensor last = RowRange(p.residual, n - 1, 1), normed = Rows(ws_.normed, 1);
  RETURN_IF_ERROR(backend_.RmsNorm(last, final_norm_, config_.rms_norm_eps, normed));
  const int64_t row0[1] = {0};
  RETURN_IF_ERROR(LmHead(normed, row0, logits));
  return true;
}

absl::StatusOr<std::vector<float>> Model::PrefillLayerMajor(KvBlockPool::SequenceId seq,
                                                           absl::Span<const int32_t> ids,
                                                           int64_t chunk,
                                                           const AttentionOptions* options) {
  ASSIGN_OR_RETURN(std::unique_ptr<LayerMajorPrefill> p,
                   StartLayerMajor(seq, ids, chunk, options));
  std::vector<float> logits;
  ASSIGN_OR_RETURN(const bool done, ContinueLayerMajor(*p, 0, logits));
  if (!done) return absl::InternalError("layer-major prefill stopped before its last layer");
  return logits;
}

// Offload modes. Per layer: (1) this layer's rows — a selection predicted during the
// previous layer was fetched then; otherwise select with the layer's own query and fetch
// now; dense decode rows fetch every past token; prefill rows read the pool directly (the
// layer-major prefill path); (2) predict and fetch layer + 1 — before this layer's
// attention, so on the GPU the copy overlaps it; (3) attend over the fetch buffers.
absl::Status Model::FetchSelection(int layer, const ForwardBatch& batch, size_t index,
                                   const std::vector<std::vector<int32_t>>& selection) {
  const BatchSequence& s = batch.sequences[index];
  const int32_t position = batch.positions[s.first_row];
  std::vector<std::vector<int32_t>> rows(selection.size());
  for (size_t h = 0; h < selection.size(); ++h) {
    rows[h] = selection[h];
    if (!rows[h].empty() && rows[h].back() == position) rows[h].pop_back();
  }
  ASSIGN_OR_RETURN(FetchPlan plan,
                   tier_->Plan(layer, index, s.kv, std::move(rows), /*use_cache=*/true));
  ds_->AddFetch(s.kv, plan.counts);
  return backend_.FetchRows(plan, *pool_, s.kv, *tier_);
}

bool Model::DeviceSelection() const {
  return backend_.SelectsOnDevice() && tier_->options().reuse_rows == 0 &&
         !tier_->options().measure_prediction_recall;
}

absl::Status Model::SelectAndFetch(int layer, const ForwardBatch& batch,
                                   const std::vector<size_t>& indices,
                                   const std::vector<int64_t>& q_rows, const DeviceTensor& q,
                                   bool current_label_written) {
  if (!DeviceSelection()) {
    for (size_t i = 0; i < indices.size(); ++i) {
      std::vector<std::vector<int32_t>>& sel = offload_selection_[layer % 2][indices[i]];
      RETURN_IF_ERROR(backend_.SelectTokens(layer, batch, indices[i], *ds_, q, q_rows[i],
                                            current_label_written, sel));
      RETURN_IF_ERROR(FetchSelection(layer, batch, indices[i], sel));
    }
    return absl::OkStatus();
  }
  for (size_t j : indices) offload_selection_[layer % 2][j].clear();  // stays on the device
  return SelectAndFetchOnDevice(backend_, *tier_, *ds_, *pool_, layer, batch, indices, q_rows, q,
                                current_label_written);
}

absl::Status SelectAndFetchOnDevice(Backend& backend, OffloadTier& tier, DoubleSparsity& ds,
                                    const KvBlockPool& pool, int layer, const ForwardBatch& batch,
                                    const std::vector<size_t>& indices,
                                    const std::vector<int64_t>& q_rows, const DeviceTensor& q,
                                    bool current_label_written) {
  std::vector<FetchPlan> plans;
  plans.reserve(indices.size());
  for (size_t j : indices) {
    const BatchSequence& s = batch.sequences[j];
    const AttentionOptions& o = s.attention != nullptr ? *s.attention : ds.defaults();
    const int64_t selected = o.BudgetFor(static_cast<int64_t>(batch.positions[s.first_row]) + 1);
    ASSIGN_OR_RETURN(FetchPlan plan,
                     tier.PlanCounted(layer, j, s.kv,
                                      std::vector<int64_t>(pool.options().kv_heads, selected - 1)));
    ds.AddFetch(s.kv, plan.counts);
    plans.push_back(std::move(plan));
  }
  std::vector<Backend::SelectFetch> rows(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) rows[i] = {indices[i], q_rows[i], &plans[i]};
  return backend.SelectAndFetchMany(layer, batch, rows, ds, q, current_label_written, pool, tier);
}

absl::Status Model::PredictNext(int layer, const ForwardBatch& batch,
                                const DeviceTensor& residual, const DeviceTensor& normed) {
  const int next = layer + 1;
  std::vector<size_t> targets;
  std::vector<int64_t> rows;
  std::vector<int32_t> positions;
  for (size_t j = 0; j < batch.sequences.size(); ++j) {
    const BatchSequence& s = batch.sequences[j];
    if (s.num_rows != 1 || !ds_->IsSparse(j, next)) continue;
    targets.push_back(j);
    rows.push_back(s.first_row);
    positions.push_back(batch.positions[s.first_row]);
  }
  if (targets.empty()) return absl::OkStatus();
  const int64_t m = static_cast<int64_t>(targets.size());
  if (ows_.rows < m) {
    for (DeviceTensor* t : {&ows_.input, &ows_.normed, &ows_.q}) backend_.Free(*t);
    ows_.rows = 0;
    // Same dtype as the residual it is gathered from (fp32 where the backend keeps it so).
    ASSIGN_OR_RETURN(ows_.input, backend_.AllocateF32(m, config_.hidden_size));
    ASSIGN_OR_RETURN(ows_.normed, backend_.Allocate(m, config_.hidden_size));
    ASSIGN_OR_RETURN(ows_.q, backend_.Allocate(m, config_.q_size()));
    ows_.rows = m;
  }
  DeviceTensor input = Rows(ows_.input, m), in_normed = Rows(ows_.normed, m),
               q = Rows(ows_.q, m);
  if (tier_->options().prediction_input == PredictionInput::kNextNorm) {
    // x_l normalized with layer l+1's weight: what layer l+1 would see if layer l added
    // nothing to the residual stream.
    RETURN_IF_ERROR(backend_.GatherRows(residual, rows, input));
    RETURN_IF_ERROR(
        backend_.RmsNorm(input, layers_[next].input_norm, config_.rms_norm_eps, in_normed));
  } else {
    RETURN_IF_ERROR(backend_.GatherRows(normed, rows, in_normed));
  }
  // Layer l+1's q projection is the first Hq·d rows of its fused q|k|v matrix.
  DeviceTensor q_proj = layers_[next].qkv_proj;
  q_proj.rows = config_.q_size();
  RETURN_IF_ERROR(backend_.Linear(in_normed, q_proj, q));
  RETURN_IF_ERROR(backend_.RopeQueries(attention_, positions, q));
  std::vector<int64_t> q_rows(targets.size());
  std::iota(q_rows.begin(), q_rows.end(), 0);
  return SelectAndFetch(next, batch, targets, q_rows, q, /*current_label_written=*/false);
}

absl::Status Model::OffloadLayer(int layer, const ForwardBatch& batch,
                                 const DeviceTensor& residual, const DeviceTensor& normed,
                                 const DeviceTensor& qkv, DeviceTensor& attn) {
  std::vector<size_t> direct;  // sequences attending the pool in place (SubsetAttention)
  const int hkv = config_.num_heads_kv;
  std::vector<std::vector<int32_t>> exact;
  // Prefill rows, and dense rows of a resident layer, attend the pool in place (a resident
  // layer's K/V is in device memory: nothing crosses PCIe).
  const bool resident = layer < pool_->options().resident_layers;
  std::vector<bool> in_place(batch.sequences.size(), false);
  // Sparse decode rows that select with this layer's own query (nothing predicted for them).
  std::vector<size_t> own;
  std::vector<int64_t> own_rows;
  for (size_t j = 0; j < batch.sequences.size(); ++j) {
    const BatchSequence& s = batch.sequences[j];
    if (s.num_rows != 1 || (resident && !ds_->IsSparse(j, layer))) {
      direct.push_back(j);
      in_place[j] = true;
      if (!resident) ds_->AddFetch(s.kv, tier_->CountDirect(s.kv, s.start_position * hkv));
      continue;
    }
    const int32_t position = batch.positions[s.first_row];
    std::vector<std::vector<int32_t>>& sel = offload_selection_[layer % 2][j];
    if (!ds_->IsSparse(j, layer)) {
      std::vector<std::vector<int32_t>> all(hkv, std::vector<int32_t>(position));
      for (auto& h : all) std::iota(h.begin(), h.end(), 0);
      ASSIGN_OR_RETURN(FetchPlan plan,
                       tier_->Plan(layer, j, s.kv, std::move(all), /*use_cache=*/false));
      ds_->AddFetch(s.kv, plan.counts);
      RETURN_IF_ERROR(backend_.FetchRows(plan, *pool_, s.kv, *tier_));
      continue;
    }
    if (!tier_->HasPending(layer, j)) {  // selected below, all together
      own.push_back(j);
      own_rows.push_back(s.first_row);
      continue;
    }
    // Predicted during the previous layer and already fetched.
    ds_->CountPredictedRow(s.kv);
    if (tier_->options().measure_prediction_recall) {
      RETURN_IF_ERROR(backend_.SelectTokens(layer, batch, j, *ds_, qkv, s.first_row,
                                            /*current_label_written=*/true, exact));
      int64_t overlap = 0, total = 0;
      for (int h = 0; h < hkv; ++h) {
        std::vector<int32_t> free_exact, free_pred;
        for (int32_t t : exact[h]) {
          if (!ds_->IsKept(j, batch, t)) free_exact.push_back(t);
        }
        for (int32_t t : sel[h]) {
          if (!ds_->IsKept(j, batch, t)) free_pred.push_back(t);
        }
        std::vector<int32_t> both;
        std::set_intersection(free_exact.begin(), free_exact.end(), free_pred.begin(),
                              free_pred.end(), std::back_inserter(both));
        overlap += static_cast<int64_t>(both.size());
        total += static_cast<int64_t>(free_exact.size());
      }
      ds_->AddPrediction(layer, s.kv, overlap, total);
    }
  }
  if (!own.empty()) {
    RETURN_IF_ERROR(SelectAndFetch(layer, batch, own, own_rows, qkv,
                                   /*current_label_written=*/true));
  }
  if (!direct.empty()) {
    RETURN_IF_ERROR(backend_.SubsetAttention(layer, attention_, batch, direct, *pool_, qkv, attn));
  }
  const OffloadOptions& o = tier_->options();
  if (layer + 1 < config_.num_layers && !o.OwnQuery(layer + 1)) {
    RETURN_IF_ERROR(PredictNext(layer, batch, residual, normed));
  }
  for (size_t j = 0; j < batch.sequences.size(); ++j) {
    if (in_place[j]) continue;
    const bool sparse = ds_->IsSparse(j, layer);
    RETURN_IF_ERROR(backend_.GatheredAttention(
        layer, attention_, batch, j, sparse ? &offload_selection_[layer % 2][j] : nullptr,
        *tier_, j, *pool_, *ds_, qkv, attn));
  }
  return absl::OkStatus();
}

}  // namespace dsinfer
