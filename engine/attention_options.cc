#include "engine/attention_options.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace dsinfer {

absl::Status AttentionOptions::Validate(int head_dim) const {
  if (token_budget < 0) {
    return absl::InvalidArgumentError(absl::StrCat("token_budget must be >= 0, got ", token_budget));
  }
  if (token_budget == 0 && !(token_budget_ratio > 0.0 && token_budget_ratio <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_budget_ratio must be in (0, 1], got ", token_budget_ratio));
  }
  // `auto` on a model whose head_dim is below `channels` simply stays dense there; an
  // explicit double_sparse request must be satisfiable.
  const bool bounded = head_dim > 0 && mode == AttentionMode::kDoubleSparse;
  if (channels < 1 || (bounded && channels > head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("channels must be in [1, ",
                                                   head_dim > 0 ? head_dim : 256, "], got ", channels));
  }
  if (label_bits != 16 && label_bits != 4) {
    return absl::InvalidArgumentError(absl::StrCat("label_bits must be 16 or 4, got ", label_bits));
  }
  if (sink < 0) return absl::InvalidArgumentError(absl::StrCat("sink must be >= 0, got ", sink));
  if (recent < 0) return absl::InvalidArgumentError(absl::StrCat("recent must be >= 0, got ", recent));
  if (dense_layers < 0) {
    return absl::InvalidArgumentError(absl::StrCat("dense_layers must be >= 0, got ", dense_layers));
  }
  if (dense_below < 0) {
    return absl::InvalidArgumentError(absl::StrCat("dense_below must be >= 0, got ", dense_below));
  }
  return absl::OkStatus();
}

int64_t AttentionOptions::BudgetFor(int64_t context) const {
  const int64_t k = token_budget > 0 ? token_budget
                                     : static_cast<int64_t>(std::ceil(token_budget_ratio * context));
  return std::clamp<int64_t>(k, 1, std::max<int64_t>(context, 1));
}

absl::StatusOr<AttentionMode> ParseAttentionMode(absl::string_view name) {
  if (name == "auto") return AttentionMode::kAuto;
  if (name == "dense") return AttentionMode::kDense;
  if (name == "double_sparse") return AttentionMode::kDoubleSparse;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown attention mode '", name, "' (auto, dense, double_sparse)"));
}

absl::string_view AttentionModeName(AttentionMode mode) {
  switch (mode) {
    case AttentionMode::kAuto:
      return "auto";
    case AttentionMode::kDense:
      return "dense";
    case AttentionMode::kDoubleSparse:
      return "double_sparse";
  }
  return "?";
}

absl::StatusOr<ChannelStatistic> ParseChannelStatistic(absl::string_view name) {
  if (name == "qk") return ChannelStatistic::kQK;
  if (name == "q") return ChannelStatistic::kQ;
  if (name == "k") return ChannelStatistic::kK;
  return absl::InvalidArgumentError(absl::StrCat("unknown channel statistic '", name, "' (qk, q, k)"));
}

absl::string_view ChannelStatisticName(ChannelStatistic statistic) {
  switch (statistic) {
    case ChannelStatistic::kQK:
      return "qk";
    case ChannelStatistic::kQ:
      return "q";
    case ChannelStatistic::kK:
      return "k";
  }
  return "?";
}

absl::StatusOr<GroupAggregation> ParseGroupAggregation(absl::string_view name) {
  if (name == "sum") return GroupAggregation::kSum;
  if (name == "max") return GroupAggregation::kMax;
  return absl::InvalidArgumentError(absl::StrCat("unknown GQA aggregation '", name, "' (sum, max)"));
}

}  // namespace dsinfer
