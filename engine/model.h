// The Llama/Mistral forward pass, written once against the Backend interface (DESIGN §2).
// A Model owns the uploaded weights, the KV block pool and a workspace that grows to the
// largest batch seen. One thread drives it.
#ifndef DSINFER_ENGINE_MODEL_H_
#define DSINFER_ENGINE_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/forward_batch.h"
#include "engine/attention_options.h"
#include "engine/model_config.h"
#include "engine/sparse/double_sparsity.h"
#include "engine/token_choice.h"
#include "engine/weights.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

// A Double Sparsity channel config shipped in a model directory under this name is loaded
// when ModelOptions::channel_config_path is empty.
inline constexpr char kModelChannelConfigFile[] = "double_sparsity_channels.json";

struct ModelOptions {
  int kv_block_tokens = 16;
  // KV pool capacity in tokens (summed over all sequences); 0 = 4 × max context.
  int64_t kv_pool_tokens = 0;
  // Longest sequence (prompt + generated) the model serves; 0 = max_position_embeddings
  // (or 4096 when the config does not say).
  int64_t max_context = 0;
  // Attention options for sequences whose BatchSequence::attention is null.
  AttentionOptions attention;
  // Double Sparsity channel config (reference JSON format); empty = the model directory's
  // kModelChannelConfigFile if present, else none, in which case `auto` stays dense
  // (engine/sparse/double_sparsity.h says what double_sparse does).
  std::string channel_config_path;
  // Where decode attention reads K/V from (offload/offload_tier.h, docs/offload.md), and the
  // offload tier's options for the offload modes.
  KvMode kv_mode = KvMode::kGpu;
  OffloadOptions offload;

  absl::Status Validate() const;
};

// After a step whose device gathers looked rows up in previous-step reuse
// (OffloadTier::device_lookups): moves the rows they found from host reads to reused, in the
// tier and in `ds`'s per-request stats. Model::Forward and dsinfer-offload-bench call it.
absl::Status CountDeviceReuse(Backend& backend, OffloadTier* tier, DoubleSparsity& ds,
                              const ForwardBatch& batch);

// The device path of selecting sparse decode rows `indices` of `layer` (queries in rows q_rows
// of q) and fetching them: each row's tier plan counted (OffloadTier::PlanCounted: every KV head
// fetches BudgetFor(tokens) - 1 rows, the current token being its selection's last) and added to
// `ds`'s per-request stats, then one Backend::SelectAndFetchMany for all of them.
// Model::SelectAndFetch and dsinfer-offload-bench call it.
absl::Status SelectAndFetchOnDevice(Backend& backend, OffloadTier& tier, DoubleSparsity& ds,
                                    const KvBlockPool& pool, int layer, const ForwardBatch& batch,
                                    const std::vector<size_t>& indices,
                                    const std::vector<int64_t>& q_rows, const DeviceTensor& q,
                                    bool current_label_written);

// Layers whose K/V the pool keeps in the backend's device memory under `options`
// (OffloadOptions::resident_layers resolved: 0 in kv mode gpu, where every layer is there).
int ResidentLayers(const ModelOptions& options, int layers);

// Sees each layer's q/k/v as the forward pass computes them (calibration, diagnostics).
// Called once per layer per Forward with host fp32 copies: pre_rope and post_rope are
// [batch.rows(), (Hq + 2 Hkv) · head_dim], packed q | k | v per row. Copies are made only
// while an observer is set, so the normal path pays nothing.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  virtual void OnLayerQkv(int layer, const ForwardBatch& batch, const float* pre_rope,
                          const float* post_rope) = 0;
};

// A layer-major prefill in progress (Model::StartLayerMajor): the prompt, its staging pools
// and hidden states, and the next layer to run. Destroying it half-way is a cancel: the
// layer copies in flight are waited for and its memory freed (the sequence's pool blocks are
// the caller's to release).
struct LayerMajorPrefill {
  ~LayerMajorPrefill();
  // The prompt as one prefill of its sequence.
  ForwardBatch Whole() const;

  KvBlockPool::SequenceId seq = 0;
  std::vector<int32_t> ids;
  int64_t chunk = 0;
  const AttentionOptions* options = nullptr;  // must outlive the prefill
  std::vector<int32_t> table;                 // the sequence's block ids
  std::unique_ptr<KvBlockPool> staging[2];    // alternate layers' staging pools
  KvBlockPool::SequenceId stage_seq[2] = {0, 0};
  DeviceTensor residual;        // [prompt, hidden] fp32, on the backend
  Backend* backend = nullptr;   // frees `residual`; set once it is allocated
  int next_layer = 0;
  bool step_open = false;       // a backend / Double Sparsity step begun and not ended
};

class Model {
 public:
  // Loads config, checkpoint and weights from `model_dir` onto `backend` (not owned; must
  // outlive the model).
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& model_dir,
                                                     Backend& backend,
                                                     const ModelOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return config_; }
  int64_t max_context() const { return max_context_; }
  KvBlockPool& kv_pool() { return *pool_; }
  Backend& backend() { return backend_; }
  // Double Sparsity state: channel config, label cache, per-sequence attention stats.
  DoubleSparsity& double_sparsity() { return *ds_; }
  const DoubleSparsity& double_sparsity() const { return *ds_; }
  // Releases a sequence's KV blocks and its labels at once (Forward also frees labels of
  // sequences released from the pool directly, at its next step).
  void ReleaseSequence(KvBlockPool::SequenceId seq);
  KvMode kv_mode() const { return kv_mode_; }
  // The offload tier in kv modes offload and dense-offload; nullptr in gpu mode.
  OffloadTier* offload_tier() { return tier_.get(); }
  const OffloadTier* offload_tier() const { return tier_.get(); }
  // Not owned; nullptr to stop observing.
  void set_observer(ForwardObserver* observer) { observer_ = observer; }

  // Runs the new tokens of `batch` through the model, appending their K/V to the pool (each
  // sequence must have room reserved for them), and writes the logits of batch.logit_rows to
  // `logits` [logit_rows.size(), vocab] (fp32). On error the batch's sequences must be
  // considered corrupt (their newly written KV rows are undefined).
  absl::Status Forward(const ForwardBatch& batch, std::vector<float>& logits);
  // The same step ending on the device token path (engine/token_choice.h) instead: the logits
  // stay on the backend, which chooses the token of logit row i with choices[i] (one per
  // batch.logit_rows entry, in that order), and only the tokens and their log-probabilities
  // come back, in `chosen`. logit_stat() has nothing after it. Checked before the step runs:
  // FAILED_PRECONDITION when the backend cannot (Backend::ChoosesTokensOnDevice),
  // INVALID_ARGUMENT when choices and logit rows differ in number or a choice is out of range
  // (ValidateDeviceTokenChoice). Other errors as Forward's.
  absl::Status ForwardAndChoose(const ForwardBatch& batch,
                                absl::Span<const DeviceTokenChoice> choices,
                                std::vector<ChosenToken>& chosen);
  // Row `row` of the logits the latest Forward (or layer-major prefill) returned, as the
  // backend summarized it where they were computed (argmax, log Σ exp; Backend::LogitStats);
  // null when the backend computes none or `row` is out of range. For NextToken.
  const LogitRowStat* logit_stat(int64_t row) const;

  // Prefills a whole prompt layer-major: every `chunk` rows of `ids` through layer l, then the
  // next layer, with layer l's K/V in a one-layer staging pool in the backend's device memory
  // (kv_memory) — two pools, used by alternate layers — and copied into the model's pool
  // beside layer l + 1's work (Backend::CopyKvBlocksAside); in the offload modes the layer's
  // labels are derived from the staging pool first (Backend::LabelLayerFrom). So each K/V
  // byte crosses PCIe once, where chunked prefill through Forward rereads the pool for every
  // chunk. `seq` must be new (no cached tokens) with room reserved for ids.size() tokens;
  // `options` are its attention options (BatchSequence::attention: null = the engine
  // defaults). Returns the last position's logits [vocab]. Memory beyond Forward's: two layers
  // of the pool's blocks (the staging pools) and the prompt's fp32 residual stream. Generate
  // and the server's scheduler use it from GeneratorOptions / SchedulerOptions::
  // layer_major_from.
  // The same prefill in pieces, so that other Forward steps (other sequences' decode) can run
  // between its layers: StartLayerMajor checks and sets it up (embedding; `options` must
  // outlive it), each ContinueLayerMajor runs up to `layers` more layers (0 = all that are
  // left) and returns true with the last position's logits in `logits` once the last layer is
  // done (false before).
  // PrefillLayerMajor is Start then one Continue of every layer: the same operations.
  absl::StatusOr<std::unique_ptr<LayerMajorPrefill>> StartLayerMajor(
      KvBlockPool::SequenceId seq, absl::Span<const int32_t> ids, int64_t chunk,
      const AttentionOptions* options = nullptr);
  absl::StatusOr<bool> ContinueLayerMajor(LayerMajorPrefill& p, int layers,
                                          std::vector<float>& logits);
  absl::StatusOr<std::vector<float>> PrefillLayerMajor(KvBlockPool::SequenceId seq,
                                                       absl::Span<const int32_t> ids,
                                                       int64_t chunk,
                                                       const AttentionOptions* options = nullptr);

 private:
  Model(ModelConfig config, Backend& backend);
  absl::Status Upload(const ModelWeights& weights);
  absl::Status EnsureWorkspace(int64_t rows);
  // Forward's step up to the final norm, then `head` on the normed rows [batch.rows(), hidden]
  // (Forward: LmHead; ForwardAndChoose: ChooseOnBackend).
  absl::Status RunStep(const ForwardBatch& batch,
                       absl::FunctionRef<absl::Status(const DeviceTensor& normed)> head);
  // The fp32 logits of `rows` of `normed` (rows after the final norm) through the LM head,
  // left on the backend: the first rows.size() rows of the workspace's logits, [rows, vocab].
  absl::StatusOr<DeviceTensor> LogitsOnBackend(const DeviceTensor& normed,
                                               absl::Span<const int64_t> rows);
  // LogitsOnBackend, then the rows copied to host `logits` [rows, vocab] (the host path).
  absl::Status LmHead(const DeviceTensor& normed, absl::Span<const int64_t> rows,
                      std::vector<float>& logits);
  // LogitsOnBackend, then Backend::ChooseTokens on them (the device path).
  absl::Status ChooseOnBackend(const DeviceTensor& normed, absl::Span<const int64_t> rows,
                               absl::Span<const DeviceTokenChoice> choices,
                               std::vector<ChosenToken>& chosen);
  void FreeWorkspace();

  struct Layer {
    DeviceTensor input_norm, qkv_proj, o_proj, post_attn_norm, gate_up_proj, down_proj;
  };
  struct Workspace {
    int64_t rows = 0;
    DeviceTensor residual, normed, qkv, attn, delta, gate_up, mlp, logits_in, logits;
  };

  ModelConfig config_;
  Backend& backend_;
  AttentionConfig attention_;
  int64_t max_context_ = 0;
  DeviceTensor embed_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
  std::vector<DeviceTensor*> owned_;  // every uploaded weight, for freeing
  Workspace ws_;
  std::vector<LogitRowStat> logit_stats_;  // of the latest LmHead's rows (logit_stat)
  std::unique_ptr<KvBlockPool> pool_;
  std::unique_ptr<DoubleSparsity> ds_;
  ForwardObserver* observer_ = nullptr;
  std::vector<float> observed_pre_, observed_post_;

  // Offload modes (docs/offload.md). OffloadLayer replaces the attention of one layer;
  // PredictNext selects and fetches layer + 1 from layer's hidden state; SelectAndFetch
  // selects the rows of `layer` of batch sequences `indices` with their queries in rows
  // q_rows of q and fetches them (minus the current token) into their segments — on the
  // device when the backend can (DeviceSelection; all sequences in one backend call), else
  // through host lists (FetchSelection).
  absl::Status OffloadLayer(int layer, const ForwardBatch& batch, const DeviceTensor& residual,
                            const DeviceTensor& normed, const DeviceTensor& qkv,
                            DeviceTensor& attn);
  absl::Status PredictNext(int layer, const ForwardBatch& batch, const DeviceTensor& residual,
                           const DeviceTensor& normed);
  absl::Status SelectAndFetch(int layer, const ForwardBatch& batch,
                              const std::vector<size_t>& indices,
                              const std::vector<int64_t>& q_rows, const DeviceTensor& q,
                              bool current_label_written);
  bool DeviceSelection() const;
  absl::Status FetchSelection(int layer, const ForwardBatch& batch, size_t index,
                              const std::vector<std::vector<int32_t>>& selection);
  KvMode kv_mode_ = KvMode::kGpu;
  std::unique_ptr<OffloadTier> tier_;
  // Selections per layer parity and batch sequence: [2][sequences][Hkv].
  std::vector<std::vector<std::vector<int32_t>>> offload_selection_[2];
  struct OffloadWorkspace {
    int64_t rows = 0;
    DeviceTensor input, normed, q;  // [rows, hidden], [rows, hidden], [rows, Hq d]
  };
  OffloadWorkspace ows_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_MODEL_H_
