// Parsing is two-pass: collect every self_attn q/k/qk key with its layer number, then place
// the layers in order, so a file in any key order loads and a missing layer is reported by
// number rather than as a shape mismatch later.
#include "engine/sparse/channel_config.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

constexpr absl::string_view kLayerPrefix = "model.layers.";
constexpr absl::string_view kMetadataKey = "dsinfer.metadata";
constexpr absl::string_view kPredictionKey = "dsinfer.prediction";
constexpr ChannelStatistic kKinds[] = {ChannelStatistic::kQK, ChannelStatistic::kQ,
                                       ChannelStatistic::kK};

std::string LayerKey(int layer, ChannelStatistic kind) {
  return absl::StrCat(kLayerPrefix, layer, ".self_attn.", ChannelKindKey(kind));
}

std::string KindsPresent(const ChannelConfig& config) {
  std::vector<std::string> names;
  for (ChannelStatistic kind : kKinds) {
    if (config.Has(kind)) names.emplace_back(ChannelKindKey(kind));
  }
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

}  // namespace

nlohmann::json PredictionCalibrationToJson(const PredictionCalibration& p) {
  nlohmann::json recall = nlohmann::json::array();
  for (double r : p.recall) recall.push_back(r < 0 ? nlohmann::json() : nlohmann::json(r));
  nlohmann::json j = {{"prediction_recall", recall},
                      {"own_query_extra", p.own_query_extra},
                      {"threshold", p.threshold},
                      {"budget_ratio", p.budget_ratio},
                      {"tokens", p.tokens}};
  if (!p.measured.is_null()) j["measured"] = p.measured;
  return j;
}

absl::StatusOr<PredictionCalibration> PredictionCalibrationFromJson(const nlohmann::json& j,
                                                                    absl::string_view source) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", why));
  };
  if (!j.is_object()) return bad("must be an object");
  PredictionCalibration p;
  if (j.contains("prediction_recall")) {
    const nlohmann::json& recall = j["prediction_recall"];
    if (!recall.is_array()) return bad("prediction_recall must be a list");
    for (const nlohmann::json& r : recall) {
      if (r.is_null()) {
        p.recall.push_back(-1.0);
        continue;
      }
      if (!r.is_number() || r.get<double>() < 0.0 || r.get<double>() > 1.0) {
        return bad(absl::StrCat("prediction_recall holds ", r.dump(), ", not null or in [0, 1]"));
      }
      p.recall.push_back(r.get<double>());
    }
  }
  if (j.contains("own_query_extra")) {
    const nlohmann::json& layers = j["own_query_extra"];
    if (!layers.is_array()) return bad("own_query_extra must be a list of layers");
    for (const nlohmann::json& l : layers) {
      if (!l.is_number_integer() || l.get<int64_t>() < 0 || l.get<int64_t>() > 65535) {
        return bad(absl::StrCat("own_query_extra holds ", l.dump(), ", not a layer"));
      }
      p.own_query_extra.push_back(l.get<int>());
    }
    std::sort(p.own_query_extra.begin(), p.own_query_extra.end());
    auto dup = std::adjacent_find(p.own_query_extra.begin(), p.own_query_extra.end());
    if (dup != p.own_query_extra.end()) {
      return bad(absl::StrCat("own_query_extra lists layer ", *dup, " twice"));
    }
  }
  const auto number = [&](const char* key, double& out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_number()) return bad(absl::StrCat(key, " must be a number"));
    out = j[key].get<double>();
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(number("threshold", p.threshold));
  RETURN_IF_ERROR(number("budget_ratio", p.budget_ratio));
  if (!(p.threshold > 0.0 && p.threshold <= 1.0)) return bad("threshold must be in (0, 1]");
  if (!(p.budget_ratio > 0.0 && p.budget_ratio <= 1.0)) return bad("budget_ratio must be in (0, 1]");
  if (j.contains("tokens")) {
    if (!j["tokens"].is_number_integer() || j["tokens"].get<int64_t>() < 0) {
      return bad("tokens must be a count");
    }
    p.tokens = j["tokens"].get<int64_t>();
  }
  if (j.contains("measured")) p.measured = j["measured"];
  return p;
}

absl::string_view ChannelKindKey(ChannelStatistic kind) {
  switch (kind) {
    case ChannelStatistic::kQK:
      return "qk_proj";
    case ChannelStatistic::kQ:
      return "q_proj";
    case ChannelStatistic::kK:
      return "k_proj";
  }
  return "?";
}

absl::StatusOr<ChannelConfig> ParseChannelConfig(absl::string_view text, absl::string_view source) {
  nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  ChannelConfig config;
  std::array<std::map<int, std::vector<std::vector<int32_t>>>, 3> by_layer;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    if (key == kMetadataKey) {
      config.metadata = it.value();
      continue;
    }
    if (key == kPredictionKey) {
      ASSIGN_OR_RETURN(config.prediction,
                       PredictionCalibrationFromJson(it.value(), absl::StrCat(source, ": ", key)));
      continue;
    }
    int kind_index = -1;
    for (ChannelStatistic kind : kKinds) {
      if (absl::EndsWith(key, absl::StrCat(".self_attn.", ChannelKindKey(kind)))) {
        kind_index = static_cast<int>(kind);
      }
    }
    if (kind_index < 0) continue;  // other projections' orderings: not used by attention
    absl::string_view rest = key;
    int layer = -1;
    if (!absl::ConsumePrefix(&rest, kLayerPrefix) ||
        !absl::SimpleAtoi(rest.substr(0, rest.find('.')), &layer) || layer < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": key '", key, "' is not model.layers.{i}.self_attn.*"));
    }
    const nlohmann::json& heads = it.value();
    if (!heads.is_array() || heads.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": '", key, "' must be a non-empty list of per-head lists"));
    }
    std::vector<std::vector<int32_t>> orderings;
    for (size_t h = 0; h < heads.size(); ++h) {
      const nlohmann::json& list = heads[h];
      if (!list.is_array() || list.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": '", key, "' head ", h,
                                                       " must be a non-empty list of channels"));
      }
      std::vector<int32_t> order;
      for (const nlohmann::json& v : list) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 65535) {
          return absl::InvalidArgumentError(absl::StrCat(source, ": '", key, "' head ", h,
                                                         " holds ", v.dump(),
                                                         ", not a channel index"));
        }
        order.push_back(v.get<int32_t>());
      }
      std::vector<int32_t> sorted = order;
      std::sort(sorted.begin(), sorted.end());
      auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end()) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": '", key, "' head ", h,
                                                       " lists channel ", *dup, " twice"));
      }
      orderings.push_back(std::move(order));
    }
    by_layer[kind_index][layer] = std::move(orderings);
  }
  for (ChannelStatistic kind : kKinds) {
    auto& layers = by_layer[static_cast<int>(kind)];
    auto& out = config.Mutable(kind);
    for (auto& [layer, heads] : layers) {
      if (layer != static_cast<int>(out.size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": '", LayerKey(static_cast<int>(out.size()), kind), "' is missing"));
      }
      out.push_back(std::move(heads));
    }
  }
  if (!config.Has(ChannelStatistic::kQK) && !config.Has(ChannelStatistic::kQ) &&
      !config.Has(ChannelStatistic::kK)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no model.layers.{i}.self_attn.{q,k,qk}_proj entries"));
  }
  return config;
}

absl::StatusOr<ChannelConfig> LoadChannelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read channel config ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseChannelConfig(buffer.str(), path);
}

absl::Status ValidateChannelConfig(const ChannelConfig& config, int layers, int heads_q,
                                   int heads_kv, int head_dim) {
  for (ChannelStatistic kind : kKinds) {
    const auto& per_layer = config.Get(kind);
    if (per_layer.empty()) continue;
    if (static_cast<int>(per_layer.size()) != layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "channel config has ", per_layer.size(), " layers of ", ChannelKindKey(kind),
          " but the model has ", layers,
          static_cast<int>(per_layer.size()) > layers
              ? absl::StrCat(" ('", LayerKey(layers, kind), "' is one too many)")
              : absl::StrCat(" ('", LayerKey(static_cast<int>(per_layer.size()), kind),
                             "' is missing)")));
    }
    const int heads = kind == ChannelStatistic::kK ? heads_kv : heads_q;
    for (int l = 0; l < layers; ++l) {
      if (static_cast<int>(per_layer[l].size()) != heads) {
        return absl::InvalidArgumentError(
            absl::StrCat("channel config '", LayerKey(l, kind), "' has ", per_layer[l].size(),
                         " heads, the model has ", heads));
      }
      for (int h = 0; h < heads; ++h) {
        const auto& order = per_layer[l][h];
        if (static_cast<int>(order.size()) > head_dim) {
          return absl::InvalidArgumentError(absl::StrCat("channel config '", LayerKey(l, kind),
                                                         "' head ", h, " lists ", order.size(),
                                                         " channels, head_dim is ", head_dim));
        }
        for (int32_t c : order) {
          if (c >= head_dim) {
            return absl::InvalidArgumentError(absl::StrCat("channel config '", LayerKey(l, kind),
                                                           "' head ", h, ": channel ", c,
                                                           " >= head_dim ", head_dim));
          }
        }
      }
    }
  }
  if (config.prediction.has_value()) {
    const PredictionCalibration& p = *config.prediction;
    if (!p.recall.empty() && static_cast<int>(p.recall.size()) != layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("channel config's ", kPredictionKey, " has prediction_recall for ",
                       p.recall.size(), " layers, the model has ", layers));
    }
    for (int l : p.own_query_extra) {
      if (l >= layers) {
        return absl::InvalidArgumentError(
            absl::StrCat("channel config's ", kPredictionKey, " exempts layer ", l,
                         ", the model has ", layers, " layers"));
      }
    }
  }
  return absl::OkStatus();
}

std::string ChannelConfigToJson(const ChannelConfig& config) {
  nlohmann::json doc = nlohmann::json::object();
  for (ChannelStatistic kind : kKinds) {
    const auto& per_layer = config.Get(kind);
    for (size_t l = 0; l < per_layer.size(); ++l) {
      doc[LayerKey(static_cast<int>(l), kind)] = per_layer[l];
    }
  }
  if (!config.metadata.is_null()) doc[std::string(kMetadataKey)] = config.metadata;
  if (config.prediction.has_value()) {
    doc[std::string(kPredictionKey)] = PredictionCalibrationToJson(*config.prediction);
  }
  return doc.dump();
}

absl::StatusOr<std::string> SetPredictionCalibration(absl::string_view text,
                                                     const PredictionCalibration& prediction) {
  RETURN_IF_ERROR(ParseChannelConfig(text).status());
  // Edit the parsed document, not a ChannelConfig: keys this loader ignores (other
  // projections) and the metadata stay as they are.
  nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  doc[std::string(kPredictionKey)] = PredictionCalibrationToJson(prediction);
  return doc.dump();
}

absl::Status WriteChannelConfig(const ChannelConfig& config, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  out << ChannelConfigToJson(config) << "\n";
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> KvHeadChannels(const ChannelConfig& config,
                                                    ChannelStatistic kind, int layer, int heads_q,
                                                    int heads_kv, int r) {
  if (!config.Has(kind)) {
    return absl::InvalidArgumentError(absl::StrCat("channel config has no ", ChannelKindKey(kind),
                                                   " entries (it has: ", KindsPresent(config),
                                                   "); choose another channel statistic"));
  }
  const auto& per_layer = config.Get(kind);
  if (layer < 0 || layer >= static_cast<int>(per_layer.size())) {
    return absl::InvalidArgumentError(absl::StrCat("channel config has no layer ", layer));
  }
  const auto& heads = per_layer[layer];
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(heads_kv) * r);
  const bool per_kv_head = kind == ChannelStatistic::kK;
  const int group = per_kv_head ? 1 : heads_q / heads_kv;
  for (int kv = 0; kv < heads_kv; ++kv) {
    std::map<int32_t, double> fused;
    for (int g = 0; g < group; ++g) {
      const auto& order = heads.at(static_cast<size_t>(kv * group + g));
      if (static_cast<int>(order.size()) < r) {
        return absl::InvalidArgumentError(absl::StrCat(
            "channel config '", LayerKey(layer, kind), "' head ", kv * group + g, " orders only ",
            order.size(), " channels, fewer than the ", r, " requested"));
      }
      for (size_t rank = 0; rank < order.size(); ++rank) fused[order[rank]] += 1.0 / (1.0 + rank);
    }
    std::vector<std::pair<int32_t, double>> ranked(fused.begin(), fused.end());
    std::stable_sort(ranked.begin(), ranked.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    for (int j = 0; j < r; ++j) out.push_back(ranked[j].first);
  }
  return out;
}

}  // namespace dsinfer
