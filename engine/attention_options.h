// Attention options of DESIGN §1 (dsinfer's choices), settable per server and per request:
// which attention runs (dense or Double Sparsity) and the Double Sparsity parameters. The
// engine resolves `auto` per sequence and layer from the context length and dense_layers.
#ifndef DSINFER_ENGINE_ATTENTION_OPTIONS_H_
#define DSINFER_ENGINE_ATTENTION_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsinfer {

enum class AttentionMode { kAuto, kDense, kDoubleSparse };
enum class ChannelStatistic { kQK, kQ, kK };
enum class GroupAggregation { kSum, kMax };

struct AttentionOptions {
  AttentionMode mode = AttentionMode::kAuto;
  // Token budget: a count when token_budget > 0, else token_budget_ratio × context length.
  int64_t token_budget = 0;
  double token_budget_ratio = 1.0 / 16;
  int channels = 16;        // r: label channels per KV head
  int label_bits = 16;      // 16 (fp16 labels) or 4 (4-bit with per-token scale and minimum)
  ChannelStatistic statistic = ChannelStatistic::kQK;
  GroupAggregation aggregation = GroupAggregation::kSum;
  int sink = 4;             // first tokens always kept
  int recent = 64;          // last tokens always kept (the current token is always kept too)
  int dense_layers = 2;     // the first layers always run dense
  int64_t dense_below = 4096;  // `auto` stays dense for contexts shorter than this

  // INVALID_ARGUMENT naming the field. head_dim (when > 0) bounds `channels` for an explicit
  // double_sparse mode.
  absl::Status Validate(int head_dim = 0) const;
  // The token budget k for a context of `context` tokens (at least 1, at most context).
  int64_t BudgetFor(int64_t context) const;
};

absl::StatusOr<AttentionMode> ParseAttentionMode(absl::string_view name);
absl::string_view AttentionModeName(AttentionMode mode);
absl::StatusOr<ChannelStatistic> ParseChannelStatistic(absl::string_view name);
absl::string_view ChannelStatisticName(ChannelStatistic statistic);
absl::StatusOr<GroupAggregation> ParseGroupAggregation(absl::string_view name);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_ATTENTION_OPTIONS_H_
