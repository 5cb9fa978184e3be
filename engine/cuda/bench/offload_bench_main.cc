// dsinfer-offload-bench: decode speed of the offload tier on CUDA (issue 8, docs/offload.md)
// at the Llama-3-8B shape (GQA 8, 32 layers, head_dim 128; --model llama2-7b: MHA, 32 KV
// heads) with random weights generated on
// the GPU. The host pool (pinned mapped memory) is filled with random K/V directly — no 256K
// prefill through the model — and the first (warm-up) step derives every layer's labels from
// it, as the engine does. Modes per (context, batch):
//   offload          Double Sparsity at the budget ratio, cross-layer prediction, reuse cache
//   offload-noreuse  the same without the reuse cache: the selection stays on the device,
//                    the gather reads it there (Backend::SelectAndFetch, the engine's path)
//   offload-previous offload-noreuse with previous-step reuse (--offload-reuse-previous):
//                    rows selected again at the next step are copied from the layer's kept
//                    buffer in HBM; the gather decides hits on the device
//   offload-resident offload-noreuse with the first --dense_layers layers dense and their
//                    K/V resident in HBM (the engine's --offload-resident-layers 2)
//   offload-streamed offload-noreuse with the first --dense_layers layers dense and their
//                    K/V streamed from the host every step
//                    The other Double Sparsity modes run those layers sparse on their own
//                    query with nothing on the GPU, as the engine's default
//                    (DoubleSparsity::set_dense_layer_limit; --resident_layers changes it)
//   offload-hostsel  offload-noreuse through host lists instead (SelectTokens + FetchRows:
//                    one device→host copy and host wait per selection), for comparison
//   dense-offload    every row of every layer streamed from the host (FlexGen-style baseline)
//   gpu              gpu-mode Double Sparsity with the pool in device memory (reference;
//                    contexts up to --gpu_max_context)
// The bench drives the backend with Model::Forward's sequence of operations for decode-only
// batches (the offload part copied from Model::OffloadLayer / PredictNext / SelectAndFetch).
// Measured in the same run: contiguous pinned H2D bandwidth (cudaMemcpyAsync) and zero-copy
// gather bandwidth (the gather kernel over random 256-byte pool rows). Per configuration:
// ms/step (host wall clock, the decode latency), bytes fetched from the host per step, the
// PCIe floor = bytes ÷ contiguous H2D bandwidth, ratio to it, speed-up vs dense-offload, reuse hit
// rate, GPU memory in use (cudaMemGetInfo) vs weights + label cache. --json_out writes it all.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/step_timeline.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/layer_ops.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/list_flag.h"
#include "kernels/cuda/offload_gather.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, json_out, "", "write results as JSON to this file");
ABSL_FLAG(std::string, contexts, "32768,131072,262144", "decode contexts");
ABSL_FLAG(std::string, batches, "1,4", "decode batch sizes");
ABSL_FLAG(std::string, modes,
          "offload,offload-noreuse,offload-previous,offload-resident,offload-streamed,"
          "offload-hostsel,dense-offload,gpu",
          "modes to time");
ABSL_FLAG(int64_t, kv_pool_tokens, 262144 + 256,
          "host pool size in tokens (all sequences); configurations that do not fit are skipped");
ABSL_FLAG(int64_t, gpu_max_context, 32768, "gpu mode runs only up to this context");
ABSL_FLAG(int32_t, warmup, 2, "untimed decode steps per configuration (the first builds labels)");
ABSL_FLAG(int32_t, steps, 5, "timed decode steps per configuration");
ABSL_FLAG(double, budget_ratio, 1.0 / 16, "Double Sparsity token budget ratio");
ABSL_FLAG(int32_t, channels, 16, "Double Sparsity label channels r");
ABSL_FLAG(int64_t, reuse_rows, 4096, "reuse-cache slots per (layer, KV head) in mode offload");
ABSL_FLAG(bool, predict, true, "cross-layer prediction in the offload modes");
ABSL_FLAG(int32_t, layers, 32, "layers of the model (32 = Llama-3-8B)");
ABSL_FLAG(int32_t, dense_layers, 2,
          "first layers that stay dense in the Double Sparsity modes (the engine's default 2)");
ABSL_FLAG(int32_t, resident_layers, 0,
          "first layers whose K/V stay in GPU memory in the Double Sparsity offload modes but "
          "offload-resident and offload-streamed (the engine's --offload-resident-layers)");
ABSL_FLAG(bool, timeline, false,
          "after the timed steps, run one more with a per-layer GPU/host timeline (JSON "
          "'timeline', and a summary line per layer)");
ABSL_FLAG(bool, dependent_launch, true,
          "programmatic dependent launch of the forward pass's kernels (kernels/cuda/"
          "dependent_launch.h): off to compare");
ABSL_FLAG(std::string, model, "llama3-8b", "model shape: llama3-8b (GQA 8) | llama2-7b (MHA)");
ABSL_FLAG(int32_t, gather_blocks, dsinfer::kFetchRowsMaxBlocks,
          "the most blocks the offload gather's grid may have (CudaBackendOptions::fetch_blocks)");
ABSL_FLAG(int32_t, gather_reuse_blocks, dsinfer::kFetchRowsReuseMaxBlocks,
          "the same for gathers with previous-step reuse lookups (fetch_reuse_blocks)");

namespace dsinfer {
namespace {

using Clock = std::chrono::steady_clock;

// The random-weight model and its workspace for `rows` decode rows.
struct BenchModel : RandomWeightModel {
  using RandomWeightModel::RandomWeightModel;
  DeviceTensor residual, normed, qkv, attn, delta, gate_up, mlp, last, logits;
  DeviceTensor p_input, p_normed, p_q;  // prediction
  int32_t* ids = nullptr;
  std::vector<DeviceTensor*> workspace;

  absl::Status Init(int64_t rows) {
    RETURN_IF_ERROR(RandomWeightModel::Init());
    const ModelConfig& c = config;
    const int64_t h = c.hidden_size;
    CudaBackend* b = backend;
    auto keep = [&](DeviceTensor& t, absl::StatusOr<DeviceTensor> a) -> absl::Status {
      if (!a.ok()) return a.status();
      t = *a;
      workspace.push_back(&t);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(keep(residual, b->AllocateF32(rows, h)));
    RETURN_IF_ERROR(keep(normed, b->Allocate(rows, h)));
    RETURN_IF_ERROR(keep(qkv, b->Allocate(rows, c.q_size() + 2 * c.kv_size())));
    RETURN_IF_ERROR(keep(attn, b->Allocate(rows, c.q_size())));
    RETURN_IF_ERROR(keep(delta, b->Allocate(rows, h)));
    RETURN_IF_ERROR(keep(gate_up, b->Allocate(rows, 2 * c.intermediate_size)));
    RETURN_IF_ERROR(keep(mlp, b->Allocate(rows, c.intermediate_size)));
    RETURN_IF_ERROR(keep(last, b->Allocate(rows, h)));
    RETURN_IF_ERROR(keep(logits, b->AllocateF32(rows, c.vocab_size)));
    RETURN_IF_ERROR(keep(p_input, b->AllocateF32(rows, h)));
    RETURN_IF_ERROR(keep(p_normed, b->Allocate(rows, h)));
    RETURN_IF_ERROR(keep(p_q, b->Allocate(rows, c.q_size())));
    CUDA_RETURN_IF_ERROR(cudaMalloc(&ids, rows * sizeof(int32_t)));
    return absl::OkStatus();
  }
  ~BenchModel() {
    for (DeviceTensor* t : workspace) backend->Free(*t);
    cudaFree(ids);
  }
};

DeviceTensor Rows(DeviceTensor t, int64_t n) {
  t.rows = n;
  return t;
}

// One mode's engine state: the pool, Double Sparsity, and (offload modes) the tier.
struct Engine {
  KvMode mode = KvMode::kGpu;
  KvBlockPool* pool = nullptr;
  DoubleSparsity* ds = nullptr;
  OffloadTier* tier = nullptr;
  bool device_selection = false;  // Model::DeviceSelection
  // Resident layers (KvPoolOptions::resident_layers): the engine keeps them in one pool; here
  // they are a device pool of their own, addressed through `resident_batch` (its sequence
  // ids, the same block ids).
  int resident_layers = 0;
  KvBlockPool* resident = nullptr;
  const ForwardBatch* resident_batch = nullptr;
  std::vector<std::vector<std::vector<int32_t>>> selection[2];  // [parity][seq][head]
  StepTimeline* timeline = nullptr;  // --timeline: marks of one extra step
};

// Marks `what` for `layer` on the backend stream (or the copy stream) when a timeline is on.
absl::Status MarkStep(Engine& e, CudaBackend& b, const char* what, int layer,
                      bool copy_stream = false) {
  if (e.timeline == nullptr) return absl::OkStatus();
  return e.timeline->Mark(what, layer, copy_stream ? b.offload_copy_stream() : b.stream());
}

// Model::FetchSelection.
absl::Status FetchSelection(CudaBackend& b, Engine& e, int layer, const ForwardBatch& batch,
                            size_t j, const std::vector<std::vector<int32_t>>& selection) {
  const BatchSequence& s = batch.sequences[j];
  const int32_t position = batch.positions[s.first_row];
  std::vector<std::vector<int32_t>> rows(selection.size());
  for (size_t h = 0; h < selection.size(); ++h) {
    rows[h] = selection[h];
    if (!rows[h].empty() && rows[h].back() == position) rows[h].pop_back();
  }
  ASSIGN_OR_RETURN(FetchPlan plan, e.tier->Plan(layer, j, s.kv, std::move(rows), true));
  e.ds->AddFetch(s.kv, plan.counts);
  return b.FetchRows(plan, *e.pool, s.kv, *e.tier);
}

// Model::SelectAndFetch: sequences `js` (queries in rows q_rows of q) together.
absl::Status SelectAndFetch(CudaBackend& b, Engine& e, int layer, const ForwardBatch& batch,
                            const std::vector<size_t>& js, const std::vector<int64_t>& q_rows,
                            const DeviceTensor& q, bool written) {
  if (!e.device_selection) {
    for (size_t i = 0; i < js.size(); ++i) {
      auto& sel = e.selection[layer % 2][js[i]];
      RETURN_IF_ERROR(b.SelectTokens(layer, batch, js[i], *e.ds, q, q_rows[i], written, sel));
      RETURN_IF_ERROR(FetchSelection(b, e, layer, batch, js[i], sel));
    }
    return absl::OkStatus();
  }
  return SelectAndFetchOnDevice(b, *e.tier, *e.ds, *e.pool, layer, batch, js, q_rows, q, written);
}

// Model::OffloadLayer + PredictNext for decode-only batches.
absl::Status OffloadLayer(BenchModel& m, Engine& e, int layer, const ForwardBatch& batch,
                          const DeviceTensor& residual, const DeviceTensor& qkv,
                          DeviceTensor& attn) {
  CudaBackend& b = *m.backend;
  const int hkv = m.config.num_heads_kv;
  if (layer < e.resident_layers) {  // dense (resident_layers <= dense_layers): in place
    return b.Attention(layer, m.attention, *e.resident_batch, *e.resident, qkv, attn);
  }
  std::vector<size_t> own;  // sparse rows selecting with this layer's own query
  std::vector<int64_t> own_rows;
  for (size_t j = 0; j < batch.sequences.size(); ++j) {
    const BatchSequence& s = batch.sequences[j];
    const int32_t position = batch.positions[s.first_row];
    if (!e.ds->IsSparse(j, layer)) {
      std::vector<std::vector<int32_t>> all(hkv, std::vector<int32_t>(position));
      for (auto& h : all) std::iota(h.begin(), h.end(), 0);
      ASSIGN_OR_RETURN(FetchPlan plan, e.tier->Plan(layer, j, s.kv, std::move(all), false));
      e.ds->AddFetch(s.kv, plan.counts);
      RETURN_IF_ERROR(b.FetchRows(plan, *e.pool, s.kv, *e.tier));
      continue;
    }
    if (!e.tier->HasPending(layer, j)) {
      own.push_back(j);
      own_rows.push_back(s.first_row);
    }
  }
  if (!own.empty()) RETURN_IF_ERROR(SelectAndFetch(b, e, layer, batch, own, own_rows, qkv, true));
  const int next = layer + 1;
  if (next < m.config.num_layers && !e.tier->options().OwnQuery(next)) {
    std::vector<size_t> targets;
    std::vector<int64_t> rows;
    std::vector<int32_t> positions;
    for (size_t j = 0; j < batch.sequences.size(); ++j) {
      if (!e.ds->IsSparse(j, next)) continue;
      targets.push_back(j);
      rows.push_back(batch.sequences[j].first_row);
      positions.push_back(batch.positions[batch.sequences[j].first_row]);
    }
    if (!targets.empty()) {
      const int64_t n = static_cast<int64_t>(targets.size());
      DeviceTensor input = Rows(m.p_input, n), normed = Rows(m.p_normed, n), q = Rows(m.p_q, n);
      RETURN_IF_ERROR(b.GatherRows(residual, rows, input));
      RETURN_IF_ERROR(b.RmsNorm(input, m.layers[next].input_norm, m.config.rms_norm_eps, normed));
      DeviceTensor q_proj = m.layers[next].qkv_proj;
      q_proj.rows = m.config.q_size();
      RETURN_IF_ERROR(b.Linear(normed, q_proj, q));
      RETURN_IF_ERROR(b.RopeQueries(m.attention, positions, q));
      std::vector<int64_t> q_rows(targets.size());
      std::iota(q_rows.begin(), q_rows.end(), 0);
      RETURN_IF_ERROR(SelectAndFetch(b, e, next, batch, targets, q_rows, q, false));
      // The selection of layer + 1 done (backend stream); its gather done (copy stream).
      RETURN_IF_ERROR(MarkStep(e, b, "selected_next", layer));
      RETURN_IF_ERROR(MarkStep(e, b, "gathered_next", layer, /*copy_stream=*/true));
    }
  }
  for (size_t j = 0; j < batch.sequences.size(); ++j) {
    const bool sparse = e.ds->IsSparse(j, layer);
    RETURN_IF_ERROR(b.GatheredAttention(layer, m.attention, batch, j,
                                        sparse ? &e.selection[layer % 2][j] : nullptr, *e.tier, j,
                                        *e.pool, *e.ds, qkv, attn));
  }
  return MarkStep(e, b, "attended", layer);
}

// One line per layer of a --timeline step: when the backend stream began the layer, finished
// selecting layer + 1 and finished this layer's attention, and when the copy stream finished
// gathering layer + 1 (GPU ms from the step's start; the host's issue time in brackets); then
// the gathers' busy time (each from the later of the previous gather's end and its selection)
// against the step.
void PrintTimeline(const nlohmann::json& marks) {
  std::map<int, std::map<std::string, std::pair<double, double>>> at;  // layer → what → times
  double end = 0.0;
  for (const nlohmann::json& m : marks) {
    at[m["layer"].get<int>()][m["what"].get<std::string>()] = {m["gpu_ms"].get<double>(),
                                                              m["host_ms"].get<double>()};
    end = std::max(end, m["gpu_ms"].get<double>());
  }
  std::printf("timeline (ms from the step's start, GPU [host issue]):\n%5s %16s %16s %16s %16s\n",
              "layer", "layer start", "selected l+1", "gathered l+1", "attended");
  const auto cell = [](const std::map<std::string, std::pair<double, double>>& l,
                       const char* what) {
    const auto it = l.find(what);
    return it == l.end() ? std::string("-")
                         : absl::StrFormat("%7.3f [%6.3f]", it->second.first, it->second.second);
  };
  double busy = 0.0, last_end = 0.0;
  for (const auto& [layer, l] : at) {
    if (layer < 0) continue;
    std::printf("%5d %16s %16s %16s %16s\n", layer, cell(l, "layer").c_str(),
                cell(l, "selected_next").c_str(), cell(l, "gathered_next").c_str(),
                cell(l, "attended").c_str());
    const auto sel = l.find("selected_next"), gat = l.find("gathered_next");
    if (sel != l.end() && gat != l.end()) {
      busy += gat->second.first - std::max(last_end, sel->second.first);
      last_end = gat->second.first;
    }
  }
  std::printf("gathers busy %.3f ms of the step's %.3f ms\n", busy, end);
}

// Model::Forward for a decode-only batch, ending with a GPU argmax.
absl::Status Step(BenchModel& m, Engine& e, const ForwardBatch& batch) {
  CudaBackend& b = *m.backend;
  const int64_t n = batch.rows();
  RETURN_IF_ERROR(e.ds->BeginStep(batch, *e.pool));
  if (e.tier != nullptr) {
    e.tier->ReleaseMissing(*e.pool);
    std::vector<int64_t> segments(batch.sequences.size()), sparse(segments.size());
    for (size_t j = 0; j < segments.size(); ++j) {
      segments[j] = e.ds->FetchRows(j, batch, e.resident_layers);
      sparse[j] = e.ds->SparseFetchRows(j, batch);
    }
    RETURN_IF_ERROR(e.tier->BeginStep(segments, sparse));
    for (auto& p : e.selection) p.assign(batch.sequences.size(), {});
    RETURN_IF_ERROR(b.BeginOffloadStep(m.attention, batch, *e.pool));
  }
  DeviceTensor residual = Rows(m.residual, n), normed = Rows(m.normed, n), qkv = Rows(m.qkv, n),
               attn = Rows(m.attn, n), delta = Rows(m.delta, n), gate_up = Rows(m.gate_up, n),
               mlp = Rows(m.mlp, n);
  const float eps = m.config.rms_norm_eps;
  RETURN_IF_ERROR(b.BeginStep(batch, *e.pool, false, nullptr));
  RETURN_IF_ERROR(b.Embedding(m.embed, batch.token_ids, residual));
  std::vector<size_t> all(batch.sequences.size());
  std::iota(all.begin(), all.end(), 0);
  for (int i = 0; i < m.config.num_layers; ++i) {
    const BenchModel::Layer& l = m.layers[i];
    RETURN_IF_ERROR(MarkStep(e, b, "layer", i));
    RETURN_IF_ERROR(b.NormLinear(residual, l.input_norm, eps, l.qkv_proj, normed, qkv));
    if (i < e.resident_layers) {
      RETURN_IF_ERROR(b.RopeAndStoreKv(i, m.attention, *e.resident_batch, *e.resident, qkv));
    } else {
      RETURN_IF_ERROR(b.RopeAndStoreKv(i, m.attention, batch, *e.pool, qkv));
    }
    if (e.ds->StoresLabels()) RETURN_IF_ERROR(b.StoreLabels(i, batch, *e.ds, qkv));
    if (e.tier != nullptr) {
      RETURN_IF_ERROR(OffloadLayer(m, e, i, batch, residual, qkv, attn));
    } else if (e.ds->AnySparse(i)) {
      RETURN_IF_ERROR(b.SparseAttention(i, batch, all, *e.pool, *e.ds, qkv, attn));
    } else {
      RETURN_IF_ERROR(b.Attention(i, m.attention, batch, *e.pool, qkv, attn));
    }
    RETURN_IF_ERROR(FinishLayer(b, l, eps, attn, delta, residual, normed, gate_up, mlp));
  }
  RETURN_IF_ERROR(b.RmsNorm(residual, m.final_norm, eps, normed));
  RETURN_IF_ERROR(MarkStep(e, b, "layers_done", m.config.num_layers));
  RETURN_IF_ERROR(b.EndStep());
  DeviceTensor last = Rows(m.last, n), logits = Rows(m.logits, n);
  RETURN_IF_ERROR(b.GatherRows(normed, batch.logit_rows, last));
  RETURN_IF_ERROR(b.Linear(last, m.lm_head, logits));
  RETURN_IF_ERROR(
      LaunchArgmax(logits.dtype, logits.data, n, logits.cols, logits.cols, m.ids, b.stream()));
  RETURN_IF_ERROR(b.Synchronize());
  return CountDeviceReuse(b, e.tier, *e.ds, batch);
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> MakePool(CudaBackend& b, const ModelConfig& c,
                                                      int64_t tokens, HostMemory& memory,
                                                      PinnedHostMemory* pinned) {
  KvPoolOptions o;
  o.layers = c.num_layers;
  o.kv_heads = c.num_heads_kv;
  o.head_dim = c.head_dim;
  o.block_tokens = 16;
  o.num_blocks = (tokens + 15) / 16;
  o.dtype = DType::kBF16;
  ASSIGN_OR_RETURN(auto pool, KvBlockPool::Create(o, memory));
  const int64_t elems = o.num_blocks * o.block_tokens * o.kv_heads * o.head_dim;
  // Random K/V, written by the GPU (over PCIe into mapped memory for the host pool).
  for (int l = 0; l < c.num_layers; ++l) {
    void* k = pinned != nullptr ? pinned->DevicePointer(pool->KBase(l)) : pool->KBase(l);
    void* v = pinned != nullptr ? pinned->DevicePointer(pool->VBase(l)) : pool->VBase(l);
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, k, elems, 100 + l, 1.0f, b.stream()));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, v, elems, 200 + l, 1.0f, b.stream()));
  }
  RETURN_IF_ERROR(b.Synchronize());
  return pool;
}

int64_t UsedBytes() {
  size_t f = 0, t = 0;
  cudaMemGetInfo(&f, &t);
  return static_cast<int64_t>(t - f);
}

double Gb(double bytes) { return bytes / 1e9; }

// Bytes the kernel reports as transparent huge pages (/proc/meminfo AnonHugePages); 0 if unread.
int64_t AnonHugePagesBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "AnonHugePages:") return kb * 1024;
  }
  return 0;
}

// The zero-copy gather kernel's bandwidth over 2M random rows of `region_rows` rows of K and
// V (device addresses of mapped host memory), the best of three after one warm-up. `ascending`:
// the rows in ascending order (as a flattened selection plan issues them), else shuffled.
absl::StatusOr<double> GatherBps(CudaBackend& b, const void* k, const void* v, int64_t region_rows,
                                 int64_t row_bytes, bool ascending) {
  const int64_t n = std::min<int64_t>(int64_t{1} << 21, region_rows);
  // The region seen as a 1-head pool of row_bytes rows in blocks of 16 (identity table).
  std::mt19937_64 rng(3);
  std::vector<int32_t> table(static_cast<size_t>(region_rows / 16));
  std::iota(table.begin(), table.end(), 0);
  std::vector<CudaFetchRow> rows(n);
  for (int64_t i = 0; i < n; ++i) {
    rows[i].token = static_cast<int32_t>(rng() % (table.size() * 16));
  }
  if (ascending) {
    std::sort(rows.begin(), rows.end(),
              [](const CudaFetchRow& a, const CudaFetchRow& b) { return a.token < b.token; });
  }
  for (int64_t i = 0; i < n; ++i) rows[i].dst = static_cast<int32_t>(i);
  void *d_rows = nullptr, *d_table = nullptr, *d_out = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&d_rows, rows.size() * sizeof(CudaFetchRow)));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&d_table, table.size() * 4));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&d_out, static_cast<size_t>(n) * row_bytes * 2));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(d_rows, rows.data(), rows.size() * sizeof(CudaFetchRow),
                                  cudaMemcpyHostToDevice));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(d_table, table.data(), table.size() * 4, cudaMemcpyHostToDevice));
  CudaFetchJob job;
  job.pool_k = k;
  job.pool_v = v;
  job.block_table = static_cast<const int32_t*>(d_table);
  job.block_tokens = 16;
  job.out_k = d_out;
  job.out_v = static_cast<char*>(d_out) + n * row_bytes;
  job.rows = static_cast<const CudaFetchRow*>(d_rows);
  job.num_rows = n;
  job.kv_heads = 1;
  job.row_bytes = static_cast<int32_t>(row_bytes);
  cudaEvent_t e0, e1;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e0));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e1));
  float best = 1e30f;
  for (int i = 0; i < 4; ++i) {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(e0, b.stream()));
    // The gather alone, at the engine's grid (--gather_blocks).
    RETURN_IF_ERROR(LaunchFetchRows(job, b.stream(), absl::GetFlag(FLAGS_gather_blocks)));
    CUDA_RETURN_IF_ERROR(cudaEventRecord(e1, b.stream()));
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, e0, e1));
    if (i > 0) best = std::min(best, ms);
  }
  for (void* p : {d_rows, d_table, d_out}) CUDA_RETURN_IF_ERROR(cudaFree(p));
  CUDA_RETURN_IF_ERROR(cudaEventDestroy(e0));
  CUDA_RETURN_IF_ERROR(cudaEventDestroy(e1));
  return 2.0 * n * row_bytes / (best * 1e-3);
}

absl::Status Run() {
  // The list flags first, so that a mistyped item fails before any GPU work.
  ASSIGN_OR_RETURN(const std::vector<int64_t> contexts,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_contexts), "contexts"));
  ASSIGN_OR_RETURN(const std::vector<int64_t> batches,
                   ParsePositiveIntList(absl::GetFlag(FLAGS_batches), "batches"));
  const auto t_start = Clock::now();
  CudaBackendOptions backend_options;
  backend_options.fetch_blocks = absl::GetFlag(FLAGS_gather_blocks);
  backend_options.fetch_reuse_blocks = absl::GetFlag(FLAGS_gather_reuse_blocks);
  ASSIGN_OR_RETURN(auto backend, CudaBackend::Create(backend_options));
  CudaBackend& b = *backend;
  b.set_dependent_launch(absl::GetFlag(FLAGS_dependent_launch));
  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
  nlohmann::json out;
  out["gpu"] = prop.name;
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model != "llama3-8b" && model != "llama2-7b") {
    return absl::InvalidArgumentError(absl::StrCat("--model: unknown shape ", model));
  }
  ModelConfig c = BenchModelShape(model);
  out["model"] = model;
  c.num_layers = absl::GetFlag(FLAGS_layers);
  const int64_t row_bytes = c.head_dim * 2;
  const int64_t token_bytes = 2 * c.num_layers * c.kv_size() * 2;  // K+V, all layers
  const int64_t pool_tokens = absl::GetFlag(FLAGS_kv_pool_tokens);
  const std::vector<std::string> modes = absl::StrSplit(absl::GetFlag(FLAGS_modes), ',');
  const int warmup = absl::GetFlag(FLAGS_warmup), steps = absl::GetFlag(FLAGS_steps);
  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());

  const int64_t used_before_weights = UsedBytes();
  BenchModel m(&b, c);
  RETURN_IF_ERROR(m.Init(max_batch));
  RETURN_IF_ERROR(b.Synchronize());
  std::printf("gpu %s; %s shape; weights %.2f GB; host pool %lld tokens = %.1f GB pinned\n",
              prop.name, model.c_str(), Gb(m.weight_bytes), static_cast<long long>(pool_tokens),
              Gb(pool_tokens * token_bytes));
  out["weight_bytes"] = m.weight_bytes;

  // The host pool: pinned mapped memory, random K/V written by the GPU.
  PinnedHostMemory pinned(/*zero_fill=*/false);
  const auto t_pin = Clock::now();
  ASSIGN_OR_RETURN(auto host_pool, MakePool(b, c, pool_tokens, pinned, &pinned));
  const double pin_s = std::chrono::duration<double>(Clock::now() - t_pin).count();
  std::printf("host pool pinned and filled in %.1f s\n", pin_s);
  out["host_pool"] = {{"tokens", pool_tokens}, {"bytes", pool_tokens * token_bytes},
                      {"pin_and_fill_s", pin_s}};

  // Ceiling 1: contiguous pinned H2D bandwidth (1 GiB from the pool into device memory).
  cudaEvent_t e0, e1;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e0));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e1));
  double h2d_bps = 0, gather_bps = 0;
  {
    const size_t bytes = std::min<size_t>(size_t{1} << 30, pool_tokens * token_bytes / 2);
    void* dst = nullptr;
    CUDA_RETURN_IF_ERROR(cudaMalloc(&dst, bytes));
    float best = 1e30f;
    for (int i = 0; i < 4; ++i) {
      CUDA_RETURN_IF_ERROR(cudaEventRecord(e0, b.stream()));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(dst, host_pool->KBase(0), bytes, cudaMemcpyHostToDevice, b.stream()));
      CUDA_RETURN_IF_ERROR(cudaEventRecord(e1, b.stream()));
      CUDA_RETURN_IF_ERROR(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, e0, e1));
      if (i > 0) best = std::min(best, ms);
    }
    h2d_bps = bytes / (best * 1e-3);
    CUDA_RETURN_IF_ERROR(cudaFree(dst));
    // Ceiling 2: the zero-copy gather kernel over random rows (K and V of one token and head
    // each: 2 × 256 bytes) scattered over the whole layer-0 region, as a selection over a long
    // context reads them.
    const int64_t region_rows = host_pool->options().num_blocks * 16 * c.num_heads_kv;
    ASSIGN_OR_RETURN(gather_bps,
                     GatherBps(b, pinned.DevicePointer(host_pool->KBase(0)),
                               pinned.DevicePointer(host_pool->VBase(0)), region_rows, row_bytes,
                               /*ascending=*/false));
  }
  // The same gather over one 256K-token layer (512 MiB of K, 512 MiB of V) in each kind of
  // pinned pages, side by side (PinnedPages: the driver's vs registered huge pages).
  for (PinnedPages pages : {PinnedPages::kDriver, PinnedPages::kHuge}) {
    const char* name = pages == PinnedPages::kDriver ? "driver" : "huge";
    const int64_t layer_bytes = int64_t{262144} * c.num_heads_kv * row_bytes;
    PinnedHostMemory region(/*zero_fill=*/false, pages);
    const int64_t huge_before = AnonHugePagesBytes();
    ASSIGN_OR_RETURN(void* k, region.Allocate(layer_bytes));
    ASSIGN_OR_RETURN(void* v, region.Allocate(layer_bytes));
    const int64_t huge = AnonHugePagesBytes() - huge_before;
    ASSIGN_OR_RETURN(const double bps,
                     GatherBps(b, region.DevicePointer(k), region.DevicePointer(v),
                               layer_bytes / row_bytes, row_bytes, /*ascending=*/false));
    ASSIGN_OR_RETURN(const double ascending_bps,
                     GatherBps(b, region.DevicePointer(k), region.DevicePointer(v),
                               layer_bytes / row_bytes, row_bytes, /*ascending=*/true));
    std::printf("zero-copy gather over a 256K-token layer, %s pages: shuffled rows %.1f GB/s, "
                "ascending rows %.1f GB/s (registered %.2f GB, AnonHugePages +%.2f GB)\n",
                name, Gb(bps), Gb(ascending_bps), Gb(region.bytes_registered()), Gb(huge));
    out["gather_256k_layer"][name] = {{"bytes_per_s", bps},
                                      {"ascending_bytes_per_s", ascending_bps},
                                      {"registered_bytes", region.bytes_registered()},
                                      {"anon_huge_pages_delta", huge}};
    region.Free(k);
    region.Free(v);
  }
  std::printf("contiguous pinned H2D %.1f GB/s; zero-copy gather of random %lld-byte rows %.1f GB/s\n",
              Gb(h2d_bps), static_cast<long long>(row_bytes), Gb(gather_bps));
  out["h2d_bytes_per_s"] = h2d_bps;
  out["gather_blocks"] = absl::GetFlag(FLAGS_gather_blocks);
  out["gather_reuse_blocks"] = absl::GetFlag(FLAGS_gather_reuse_blocks);
  out["dependent_launch"] = absl::GetFlag(FLAGS_dependent_launch);
  out["gather_bytes_per_s"] = gather_bps;

  std::printf("\n%-16s %8s %5s %10s %12s %10s %8s %9s %8s %10s %10s\n", "mode", "context", "batch",
              "ms/step", "host MB/step", "floor ms", "x floor", "vs dense", "reuse", "GPU GB",
              "w+labels");
  std::map<std::pair<int64_t, int64_t>, double> dense_ms;
  // Dense-offload first, so the others can report their speed-up against it.
  std::vector<std::string> ordered;
  for (const char* want : {"dense-offload", "offload", "offload-noreuse", "offload-previous",
                           "offload-resident", "offload-streamed", "offload-hostsel", "gpu"}) {
    if (std::find(modes.begin(), modes.end(), want) != modes.end()) ordered.push_back(want);
  }
  for (int64_t context : contexts) {
    for (int64_t batch_size : batches) {
      for (const std::string& mode : ordered) {
        nlohmann::json r;
        r["mode"] = mode;
        r["context"] = context;
        r["batch"] = batch_size;
        const int64_t need = batch_size * (context + warmup + steps + 16);
        const bool gpu = mode == "gpu";
        if (gpu && context > absl::GetFlag(FLAGS_gpu_max_context)) continue;
        if (!gpu && need > pool_tokens) {
          std::printf("%-16s %8lld %5lld   skipped: needs %lld pool tokens (--kv_pool_tokens)\n",
                      mode.c_str(), static_cast<long long>(context),
                      static_cast<long long>(batch_size), static_cast<long long>(need));
          r["skipped"] = "host pool too small";
          out["runs"].push_back(r);
          continue;
        }
        std::unique_ptr<KvBlockPool> device_pool;
        if (gpu) {
          ASSIGN_OR_RETURN(device_pool, MakePool(b, c, need, b.kv_memory(), nullptr));
        }
        KvBlockPool& pool = gpu ? *device_pool : *host_pool;
        DoubleSparsity ds(c.num_layers, c.num_heads_q, c.num_heads_kv, c.head_dim);
        AttentionOptions o;
        o.mode = mode == "dense-offload" ? AttentionMode::kDense : AttentionMode::kDoubleSparse;
        o.channels = absl::GetFlag(FLAGS_channels);
        o.token_budget_ratio = absl::GetFlag(FLAGS_budget_ratio);
        o.dense_layers = absl::GetFlag(FLAGS_dense_layers);
        RETURN_IF_ERROR(ds.SetDefaults(o));
        RETURN_IF_ERROR(ds.SetChannelConfig(RandomChannelConfig(c, 17)));
        ds.set_force_dense(mode == "dense-offload");
        // Resident layers (at most the dense layers, which they keep dense): offload-resident
        // all of them, the other Double Sparsity offload modes --resident_layers (default
        // none). As the engine, dense layers without their K/V on the GPU run sparse, but in
        // offload-streamed, which streams them.
        int resident = 0;
        if (!gpu && mode != "dense-offload") {
          if (mode == "offload-resident") {
            resident = o.dense_layers;
          } else if (mode != "offload-streamed") {
            resident = std::clamp(absl::GetFlag(FLAGS_resident_layers), 0, o.dense_layers);
          }
          if (mode != "offload-streamed") ds.set_dense_layer_limit(resident);
        }
        std::unique_ptr<OffloadTier> tier;
        if (!gpu) {
          OffloadOptions oo;
          oo.predict = absl::GetFlag(FLAGS_predict);
          oo.reuse_rows = mode == "offload" ? absl::GetFlag(FLAGS_reuse_rows) : 0;
          oo.reuse_previous = mode == "offload-previous";
          // As the engine: the resident layers (below), kept buffers capped at one step's budgets.
          oo.resident_layers = resident;
          oo.max_kept_rows = batch_size * o.BudgetFor(context + warmup + steps);
          ASSIGN_OR_RETURN(tier, OffloadTier::Create(c.num_layers, c.num_heads_kv, c.head_dim,
                                                     DType::kBF16, oo, b.offload_buffer_memory()));
        }
        Engine e;
        e.mode = gpu ? KvMode::kGpu : KvMode::kOffload;
        e.pool = &pool;
        e.ds = &ds;
        e.tier = tier.get();
        e.device_selection = mode == "offload-noreuse" || mode == "offload-previous" ||
                             mode == "offload-resident" || mode == "offload-streamed";
        std::vector<KvBlockPool::SequenceId> seqs;
        for (int64_t s = 0; s < batch_size; ++s) {
          seqs.push_back(pool.AddSequence());
          RETURN_IF_ERROR(pool.Reserve(seqs.back(), context + warmup + steps + 1));
        }
        std::unique_ptr<KvBlockPool> resident_pool;
        std::vector<KvBlockPool::SequenceId> resident_seqs;
        if (resident > 0) {
          ModelConfig rc = c;
          rc.num_layers = resident;
          ASSIGN_OR_RETURN(resident_pool, MakePool(b, rc, pool_tokens, b.kv_memory(), nullptr));
          for (auto seq : seqs) {
            ASSIGN_OR_RETURN(const auto rs, resident_pool->AddSequenceWithBlocks(pool.BlockTable(seq)));
            resident_seqs.push_back(rs);
          }
        }
        e.resident_layers = resident;
        e.resident = resident_pool.get();
        r["dense_layers"] = o.dense_layers;
        r["resident_layers"] = resident;
        std::vector<int32_t> ids(batch_size);
        for (int64_t s = 0; s < batch_size; ++s) ids[s] = static_cast<int32_t>((s * 977) % c.vocab_size);
        std::vector<double> ms;
        FetchCounters before;
        for (int step = 0; step < warmup + steps; ++step) {
          ForwardBatch batch, resident_batch;
          for (int64_t s = 0; s < batch_size; ++s) {
            batch.Add(seqs[s], &ids[s], 1, context + step, false);
            if (resident > 0) resident_batch.Add(resident_seqs[s], &ids[s], 1, context + step, false);
          }
          e.resident_batch = &resident_batch;
          if (step == warmup && tier != nullptr) before = tier->totals();
          // nsys --capture-range=cudaProfilerApi profiles the timed steps only.
          if (step == warmup) CUDA_RETURN_IF_ERROR(cudaProfilerStart());
          const auto t0 = Clock::now();
          RETURN_IF_ERROR(Step(m, e, batch));
          const double t = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          if (step >= warmup) ms.push_back(t);
        }
        CUDA_RETURN_IF_ERROR(cudaProfilerStop());
        std::sort(ms.begin(), ms.end());
        const double step_ms = ms[ms.size() / 2];
        FetchCounters timed;
        if (tier != nullptr) {
          timed = tier->totals();
          timed.rows_requested -= before.rows_requested;
          timed.rows_from_host -= before.rows_from_host;
          timed.rows_reused -= before.rows_reused;
          timed.bytes_from_host -= before.bytes_from_host;
          timed.rows_looked_up -= before.rows_looked_up;
        }
        // After the timed steps' counters are read: the timeline step's bytes are not theirs.
        if (absl::GetFlag(FLAGS_timeline) && tier != nullptr) {
          ForwardBatch batch, resident_batch;
          // The next position, as a timed step would (a new token: the previous one's labels
          // caught up, tables grown), for which the sequences reserved one more token.
          const int step = warmup + steps;
          for (int64_t s = 0; s < batch_size; ++s) {
            batch.Add(seqs[s], &ids[s], 1, context + step, false);
            if (resident > 0) {
              resident_batch.Add(resident_seqs[s], &ids[s], 1, context + step, false);
            }
          }
          e.resident_batch = &resident_batch;
          StepTimeline timeline;
          RETURN_IF_ERROR(timeline.Begin(b.stream()));
          e.timeline = &timeline;
          const auto t0 = Clock::now();
          const absl::Status stepped = Step(m, e, batch);
          const double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          e.timeline = nullptr;
          RETURN_IF_ERROR(stepped);
          ASSIGN_OR_RETURN(r["timeline"], timeline.Read());
          PrintTimeline(r["timeline"]);
          std::printf("the timeline step's host wall time (to its logits): %.3f ms\n", wall);
          r["timeline_step_wall_ms"] = wall;
        }
        const double bytes_step = static_cast<double>(timed.bytes_from_host) / steps;
        // The PCIe floor of the bytes actually fetched, at the contiguous H2D rate (issue 8's
        // definition; scattered rows gathered in a shuffled order run slower, see the gather
        // lines above the table).
        const double floor_ms = bytes_step / h2d_bps * 1e3;
        const double hit = timed.rows_looked_up > 0
                               ? static_cast<double>(timed.rows_reused) / timed.rows_looked_up
                               : 0.0;
        const int64_t used = UsedBytes() - used_before_weights;
        const int64_t label_bytes = mode == "dense-offload"
                                        ? 0
                                        : batch_size * (context + warmup + steps) * c.num_layers *
                                              c.num_heads_kv * o.channels * 2;
        if (mode == "dense-offload") dense_ms[{context, batch_size}] = step_ms;
        const auto dense = dense_ms.find({context, batch_size});
        const double speedup = dense != dense_ms.end() ? dense->second / step_ms : 0.0;
        r["ms_per_step"] = step_ms;
        r["bytes_from_host_per_step"] = bytes_step;
        r["pcie_floor_ms"] = floor_ms;
        r["ratio_to_floor"] = floor_ms > 0 ? step_ms / floor_ms : 0.0;
        r["speedup_vs_dense_offload"] = speedup;
        r["reuse_hit_rate"] = hit;
        r["gpu_bytes_in_use"] = used;
        r["weight_bytes"] = m.weight_bytes;
        r["label_bytes"] = label_bytes;
        r["tier_device_bytes"] = tier != nullptr ? tier->buffer_bytes() + tier->reuse_bytes() : 0;
        r["offload_state_device_bytes"] = b.offload_device_bytes();
        r["gpu_pool_bytes"] = gpu ? need * token_bytes : 0;
        std::printf("%-16s %8lld %5lld %10.2f %12.1f %10.2f %8.2f %9.2f %8.3f %10.2f %10.2f\n",
                    mode.c_str(), static_cast<long long>(context),
                    static_cast<long long>(batch_size), step_ms, bytes_step / 1e6, floor_ms,
                    floor_ms > 0 ? step_ms / floor_ms : 0.0, speedup, hit, Gb(used),
                    Gb(m.weight_bytes + label_bytes));
        std::fflush(stdout);
        out["runs"].push_back(r);
        for (auto s : seqs) {
          pool.Release(s);
          ds.labels().Release(s);
          if (tier != nullptr) tier->Release(s);
        }
        RETURN_IF_ERROR(b.Synchronize());
      }
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  out["total_s"] = std::chrono::duration<double>(Clock::now() - t_start).count();
  const std::string path = absl::GetFlag(FLAGS_json_out);
  if (!path.empty()) std::ofstream(path) << out.dump(2) << "\n";
  std::printf("total %.1f s\n", out["total_s"].get<double>());
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsinfer

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(argc, argv,
                                     "dsinfer-offload-bench [--contexts ...] [--json_out FILE]");
  const absl::Status s = dsinfer::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "dsinfer-offload-bench: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
