// The terms follow what the engine allocates, so the plan and the running server agree:
// weights as Model::Upload stacks them; the KV pool as KvBlockPool sizes it (whole blocks);
// labels as LabelCache / the CUDA label caches size them (LabelFormat::RowBytes per token and
// KV head, 4-bit rows including their fp16 scale and minimum); fetch buffers as
// OffloadTier::BeginStep sizes them (two buffers, K then V, one row per token of each decode
// sequence's segment — a dense row streams its whole context, and the contexts of one step sum
// to at most the pool); reuse slabs as OffloadTier::Create allocates them; workspace as
// Model::EnsureWorkspace plus logits, the offload workspace and a fixed scratch allowance.
//
// Pure C++ (no CUDA): compiled into dsinfer_engine so that CPU builds and CPU tests have it.
#include "engine/cuda/memory_plan.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

// cuBLAS workspace (32 MiB), flash-decoding partials, Double Sparsity scores and top-k scratch,
// offload plan staging: bounded, measured well below this on Llama-3-8B shapes.
constexpr int64_t kScratchBytes = 256ll << 20;

std::string GiB(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f GiB", static_cast<double>(bytes) / (1ll << 30));
  return text;
}

}  // namespace

absl::Status MemoryPlanRequest::Validate() const {
  if (kv_pool_tokens < 0) return absl::InvalidArgumentError("kv_pool_tokens must be >= 0");
  if (kv_block_tokens <= 0) return absl::InvalidArgumentError("kv_block_tokens must be > 0");
  if (max_context <= 0) return absl::InvalidArgumentError("max_context must be > 0");
  if (max_batch < 1) return absl::InvalidArgumentError("max_batch must be >= 1");
  if (max_rows < 1) return absl::InvalidArgumentError("max_rows must be >= 1");
  if (max_logit_rows < 0) return absl::InvalidArgumentError("max_logit_rows must be >= 0");
  if (labels.r < 0 || (labels.bits != 16 && labels.bits != 4)) {
    return absl::InvalidArgumentError("labels: r must be >= 0 and bits 16 or 4");
  }
  if (reuse_rows < 0) return absl::InvalidArgumentError("reuse_rows must be >= 0");
  if (kept_rows < 0) return absl::InvalidArgumentError("kept_rows must be >= 0");
  if (layer_major_from < 0) return absl::InvalidArgumentError("layer_major_from must be >= 0");
  if (host_reserve_bytes < 0) return absl::InvalidArgumentError("host_reserve_bytes must be >= 0");
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    return absl::InvalidArgumentError("the CUDA backend's dtype is bf16 or f16");
  }
  return absl::OkStatus();
}

int64_t MemoryPlanRequest::PoolTokens() const {
  const int64_t tokens = kv_pool_tokens > 0 ? kv_pool_tokens : 4 * max_context;
  return (tokens + kv_block_tokens - 1) / kv_block_tokens * kv_block_tokens;
}

MemoryPlanRequest MemoryPlanRequestFor(const ModelConfig& config, const ModelOptions& options,
                                       const std::string& model_dir, int64_t max_batch,
                                       int64_t max_rows, int64_t max_logit_rows, DType dtype) {
  MemoryPlanRequest r;
  r.kv_mode = options.kv_mode;
  r.kv_pool_tokens = options.kv_pool_tokens;
  r.kv_block_tokens = options.kv_block_tokens;
  r.max_context = options.max_context;
  if (r.max_context == 0) {
    r.max_context = config.max_position_embeddings > 0 ? config.max_position_embeddings : 4096;
  }
  r.max_batch = max_batch;
  r.max_rows = max_rows;
  r.max_logit_rows = max_logit_rows;
  r.dtype = dtype;
  const AttentionOptions& a = options.attention;
  const bool has_channels =
      !options.channel_config_path.empty() ||
      access((model_dir + "/" + kModelChannelConfigFile).c_str(), F_OK) == 0;
  const bool keeps_labels = a.mode == AttentionMode::kDoubleSparse ||
                            (a.mode == AttentionMode::kAuto && has_channels);
  if (keeps_labels) r.labels = LabelFormat{a.channels, a.label_bits};
  r.reuse_rows = options.offload.reuse_rows;
  if (options.offload.reuse_previous && keeps_labels && options.kv_mode == KvMode::kOffload) {
    r.kept_rows = max_batch * a.BudgetFor(r.max_context);
  }
  r.resident_layers = ResidentLayers(options, config.num_layers);
  return r;
}

absl::StatusOr<CudaMemoryPlan> ComputeMemoryPlan(const ModelConfig& config,
                                                 const MemoryPlanRequest& request) {
  RETURN_IF_ERROR(request.Validate());
  if (config.num_layers <= 0 || config.hidden_size <= 0 || config.num_heads_kv <= 0 ||
      config.head_dim <= 0 || config.vocab_size <= 0) {
    return absl::InvalidArgumentError("memory plan: the model config has no shape");
  }
  CudaMemoryPlan plan;
  plan.request = request;
  plan.pool_tokens = request.PoolTokens();
  const int64_t e = static_cast<int64_t>(DTypeSize(request.dtype));
  const int64_t layers = config.num_layers, kv_heads = config.num_heads_kv;
  const int64_t h = config.hidden_size, inter = config.intermediate_size;
  const int64_t q = config.q_size(), kv = config.kv_size();
  const int64_t qkv = q + 2 * kv;
  const bool on_host = request.kv_mode != KvMode::kGpu;

  // Weights: fused q|k|v, o, fused gate|up, down, two norms per layer; embedding (and an
  // untied LM head); the final norm.
  const int64_t per_layer = qkv * h + q * h + 3 * inter * h + 2 * h;
  const int64_t embed = config.vocab_size * h;
  plan.weight_bytes =
      (per_layer * layers + embed * (config.tie_word_embeddings ? 1 : 2) + h) * e;

  // The KV pool: K and V of every layer for every pool token (in the offload modes on the
  // host, but for the resident layers).
  const int64_t layer_pool_bytes = plan.pool_tokens * 2 * kv * e;
  const int64_t resident = on_host ? std::min<int64_t>(request.resident_layers, layers) : layers;
  plan.gpu_kv_bytes = resident * layer_pool_bytes;
  plan.host_kv_bytes = (layers - resident) * layer_pool_bytes;
  if (on_host) plan.host_reserve_bytes = request.host_reserve_bytes;

  // Labels, on the GPU in gpu and offload modes; dense-offload forces every sequence dense,
  // so it keeps none.
  if (request.labels.r > 0 && request.kv_mode != KvMode::kDenseOffload) {
    plan.label_bytes = layers * kv_heads * request.labels.RowBytes() * plan.pool_tokens;
  }

  // The offload tier's device buffers.
  const int64_t row_bytes = config.head_dim * e;  // one (token, KV head) row of K or of V
  if (on_host) {
    const int64_t rows = std::min(plan.pool_tokens, request.max_batch * request.max_context);
    plan.fetch_buffer_bytes = 2 * (2 * rows * kv_heads * row_bytes);
    plan.reuse_bytes = layers * 2 * request.reuse_rows * kv_heads * row_bytes;
    if (request.kept_rows > 0) {
      // As OffloadTier::KeptBufferBytes at the cap the engine gets (max_kept_rows =
      // kept_rows), for every layer that may fetch sparse rows and the one free buffer.
      const int64_t kept = std::min(plan.pool_tokens, request.kept_rows) * kv_heads;
      const int64_t buffers = layers - resident + 1;
      plan.reuse_bytes += buffers * (2 * kept * row_bytes + (kept * 4 + 255) / 256 * 256);
    }
  }

  // Workspace: the fp32 residual and the 16-bit activations of Model::EnsureWorkspace per row,
  // the LM head's input and fp32 logits per logit row, the offload path's predicted-query
  // workspace per decode row, and scratch.
  const int64_t per_row = 4 * h + e * (2 * h + qkv + q + 3 * inter);
  plan.workspace_bytes = request.max_rows * per_row +
                         request.max_logit_rows * (e * h + 4 * config.vocab_size) +
                         (on_host ? request.max_batch * e * (2 * h + q) : 0) + kScratchBytes;

  // Layer-major prefill: two one-layer staging pools (the pool's blocks; alternate layers, so
  // that one is copied out beside the other's work) and the residual stream of the longest
  // prompt, fp32.
  if (request.layer_major_from > 0) {
    plan.layer_major_bytes = 2 * layer_pool_bytes + request.max_context * h * 4;
  }
  return plan;
}

std::string CudaMemoryPlan::DeviceSummary() const {
  const MemoryPlanRequest& r = request;
  std::string s = absl::StrCat("GPU (kv mode ", KvModeName(r.kv_mode), "): weights ",
                               GiB(weight_bytes), " (the checkpoint)");
  if (gpu_kv_bytes > 0 && r.kv_mode == KvMode::kGpu) {
    absl::StrAppend(&s, " + KV pool ", GiB(gpu_kv_bytes), " (--kv-pool-tokens ", pool_tokens,
                    "; 0 = 4 x --max-context; --kv-mode offload keeps it in host memory)");
  } else if (gpu_kv_bytes > 0) {
    absl::StrAppend(&s, " + KV of the first ", r.resident_layers, " layers ", GiB(gpu_kv_bytes),
                    " (--offload-resident-layers; --kv-pool-tokens ", pool_tokens, ")");
  }
  if (label_bytes > 0) {
    absl::StrAppend(&s, " + label cache ", GiB(label_bytes), " (", pool_tokens,
                    " pool tokens x ", r.labels.RowBytes(),
                    " B per layer and KV head; --channels ", r.labels.r, " --label-bits ",
                    r.labels.bits, ", --kv-pool-tokens)");
  }
  if (fetch_buffer_bytes > 0) {
    absl::StrAppend(&s, " + fetch buffers ", GiB(fetch_buffer_bytes),
                    " (2 x the K/V rows of one step's decode contexts; --kv-pool-tokens, "
                    "--max-context x --max-batch)");
  }
  if (reuse_bytes > 0 && r.kept_rows > 0) {
    absl::StrAppend(&s, " + kept buffers ", GiB(reuse_bytes),
                    " (--offload-reuse-previous: a layer's budget rows of ", r.max_batch,
                    " sequences, per sparse layer)");
  } else if (reuse_bytes > 0) {
    absl::StrAppend(&s, " + reuse slabs ", GiB(reuse_bytes), " (--offload-reuse-rows ",
                    r.reuse_rows, ")");
  }
  if (layer_major_bytes > 0) {
    absl::StrAppend(&s, " + layer-major prefill ", GiB(layer_major_bytes),
                    " (two layers of the pool and a --max-context prompt's hidden states; "
                    "--layer-major-from ",
                    r.layer_major_from, ")");
  }
  absl::StrAppend(&s, " + workspace ", GiB(workspace_bytes), " (", r.max_rows,
                  " rows per step; --max-batch, --prefill-chunk) = ", GiB(device_needed()),
                  " needed; ", GiB(available.device_free_bytes), " free of ",
                  GiB(available.device_total_bytes));
  return s;
}

std::string CudaMemoryPlan::HostSummary() const {
  if (host_needed() == 0) return "host: nothing pinned (kv mode gpu)";
  return absl::StrCat("host (pinned): KV pool ", GiB(host_kv_bytes), " (--kv-pool-tokens ",
                      pool_tokens, "; 0 = 4 x --max-context) + reserve ",
                      GiB(host_reserve_bytes), " (left for the process and the OS) = ",
                      GiB(host_needed()), " needed; MemAvailable ",
                      GiB(available.host_available_bytes));
}

std::string CudaMemoryPlan::ToString() const {
  return absl::StrCat(DeviceSummary(), "; ", HostSummary());
}

absl::StatusOr<CudaMemoryPlan> PlanMemory(const ModelConfig& config,
                                          const MemoryPlanRequest& request,
                                          const MemoryAvailable& available,
                                          absl::string_view where) {
  ASSIGN_OR_RETURN(CudaMemoryPlan plan, ComputeMemoryPlan(config, request));
  plan.available = available;
  if (!plan.device_fits()) {
    std::string advice =
        request.kv_mode == KvMode::kGpu
            ? "Lower --kv-pool-tokens or --max-context, use --kv-mode offload, or a larger GPU"
            : "Lower --kv-pool-tokens, --max-context, --max-batch or --offload-reuse-rows, or "
              "use a larger GPU";
    return absl::ResourceExhaustedError(absl::StrCat("the model does not fit ", where, ": ",
                                                     plan.DeviceSummary(), ". ", advice));
  }
  if (!plan.host_fits()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the KV pool does not fit in host memory: ", plan.HostSummary(),
        ". Lower --kv-pool-tokens or --max-context, or use --kv-mode gpu if the GPU holds it"));
  }
  return plan;
}

absl::StatusOr<int64_t> ParseMemAvailable(absl::string_view meminfo) {
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    if (!absl::ConsumePrefix(&line, "MemAvailable:")) continue;
    line = absl::StripAsciiWhitespace(line);
    const bool kib = absl::ConsumeSuffix(&line, "kB");
    line = absl::StripAsciiWhitespace(line);
    int64_t value = 0;
    if (!absl::SimpleAtoi(line, &value) || value < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad MemAvailable line: ", line));
    }
    return kib ? value * 1024 : value;
  }
  return absl::NotFoundError("no MemAvailable line in /proc/meminfo");
}

absl::StatusOr<int64_t> HostAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  if (!in) return absl::UnavailableError("cannot read /proc/meminfo");
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<int64_t> bytes = ParseMemAvailable(text.str());
  if (!bytes.ok()) return absl::UnavailableError(bytes.status().message());
  return bytes;
}

}  // namespace dsinfer
