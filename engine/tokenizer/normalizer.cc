// Each normalizer type is a small class; the factory is the only place that knows the JSON
// names. Sequence applies its children in order, like the reference.
#include "engine/tokenizer/normalizer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/pattern.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  absl::StatusOr<std::string> Normalize(std::string text) const override {
    for (const auto& step : steps_) {
      ASSIGN_OR_RETURN(text, step->Normalize(std::move(text)));
    }
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::StatusOr<std::string> Normalize(std::string text) const override {
    return absl::StrCat(prefix_, text);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::StatusOr<std::string> Normalize(std::string text) const override {
    return pattern_.ReplaceAll(text, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

absl::StatusOr<std::string> StringField(const nlohmann::json& config, const char* key,
                                        absl::string_view where) {
  auto it = config.find(key);
  if (it == config.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"", key, "\" must be a string"));
  }
  return it->get<std::string>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& config) {
  if (config.is_null()) return nullptr;
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("normalizer must be an object with a string \"type\", got ", config.dump()));
  }
  const std::string type = config["type"].get<std::string>();
  if (type == "Sequence") {
    auto it = config.find("normalizers");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError("normalizer Sequence: \"normalizers\" must be an array");
    }
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const auto& child : *it) {
      ASSIGN_OR_RETURN(auto step, NormalizerFromJson(child));
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, StringField(config, "prepend", "normalizer Prepend"));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::string content, StringField(config, "content", "normalizer Replace"));
    ASSIGN_OR_RETURN(Pattern pattern, Pattern::FromJson(config.value("pattern", nlohmann::json()),
                                                        "normalizer Replace"));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported normalizer type \"", type,
                                                 "\" (implemented: Sequence, Prepend, Replace)"));
}

}  // namespace dsinfer
