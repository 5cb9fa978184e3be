// Split follows the reference: Isolated keeps the gaps and the matches as separate pieces,
// Removed keeps only the non-empty gaps, invert keeps only the matches. The merged behaviours
// follow Hugging Face tokenizers (the reference lacks them). Metaspace also follows Hugging
// Face (split on the replacement character, merged with the next piece).
#include "engine/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/pattern.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

// GPT-2's pattern, used by ByteLevel when use_regex is true.
constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  absl::Status Split(std::vector<std::string>* pieces, int /*section_index*/) const override {
    std::vector<std::string> out;
    out.reserve(pieces->size() * 2);
    for (const std::string& piece : *pieces) {
      ASSIGN_OR_RETURN(auto matches, pattern_.FindAll(piece));
      const auto emit = [&](size_t b, size_t e) {
        if (e > b) out.emplace_back(piece.data() + b, e - b);
      };
      if (invert_) {
        for (const auto& [b, e] : matches) emit(b, e);
        continue;
      }
      size_t prev = 0;     // end of the last emitted text
      size_t pending = 0;  // MergedWithNext: start of the match waiting for its gap
      bool has_pending = false;
      for (const auto& [b, e] : matches) {
        switch (behavior_) {
          case SplitBehavior::kIsolated:
            emit(prev, b);
            emit(b, e);
            break;
          case SplitBehavior::kRemoved:
            emit(prev, b);
            break;
          case SplitBehavior::kMergedWithPrevious:
            emit(prev, e);
            break;
          case SplitBehavior::kMergedWithNext:
            emit(has_pending ? pending : prev, b);
            pending = b;
            has_pending = true;
            break;
        }
        prev = e;
      }
      emit(has_pending ? pending : prev, piece.size());
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<PreTokenizer> regex_split)
      : add_prefix_space_(add_prefix_space), regex_split_(std::move(regex_split)) {}

  absl::Status Split(std::vector<std::string>* pieces, int section_index) const override {
    if (add_prefix_space_) {
      for (std::string& piece : *pieces) {
        if (piece.empty() || piece[0] != ' ') piece.insert(0, 1, ' ');
      }
    }
    if (regex_split_ != nullptr) return regex_split_->Split(pieces, section_index);
    return absl::OkStatus();
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<PreTokenizer> regex_split_;  // GPT-2 pattern, matches only; or null
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  absl::Status Split(std::vector<std::string>* pieces, int section_index) const override {
    std::vector<std::string> out;
    for (std::string& piece : *pieces) {
      std::string text = absl::StrReplaceAll(piece, {{" ", replacement_}});
      const bool prepend = scheme_ == PrependScheme::kAlways ||
                           (scheme_ == PrependScheme::kFirst && section_index == 0);
      if (prepend && text.compare(0, replacement_.size(), replacement_) != 0) {
        text.insert(0, replacement_);
      }
      if (!split_ || replacement_.empty()) {
        out.push_back(std::move(text));
        continue;
      }
      // Each piece starts at a replacement character (merged with what follows it).
      size_t start = 0;
      size_t pos = text.find(replacement_, 1);
      while (pos != std::string::npos) {
        if (pos > start) out.push_back(text.substr(start, pos - start));
        start = pos;
        pos = text.find(replacement_, pos + replacement_.size());
      }
      if (start < text.size()) out.push_back(text.substr(start));
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {
    for (const auto& step : steps_) byte_level_ = byte_level_ || step->byte_level();
  }
  absl::Status Split(std::vector<std::string>* pieces, int section_index) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->Split(pieces, section_index));
    return absl::OkStatus();
  }
  bool byte_level() const override { return byte_level_; }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
  bool byte_level_ = false;
};

absl::StatusOr<bool> BoolField(const nlohmann::json& config, const char* key, bool fallback,
                               absl::string_view where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"", key, "\" must be a boolean"));
  }
  return it->get<bool>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& config) {
  if (config.is_null()) return nullptr;
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pre_tokenizer must be an object with a string \"type\", got ", config.dump()));
  }
  const std::string type = config["type"].get<std::string>();
  if (type == "Sequence") {
    auto it = config.find("pretokenizers");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError(
          "pre_tokenizer Sequence: \"pretokenizers\" must be an array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const auto& child : *it) {
      ASSIGN_OR_RETURN(auto step, PreTokenizerFromJson(child));
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split") {
    ASSIGN_OR_RETURN(Pattern pattern, Pattern::FromJson(config.value("pattern", nlohmann::json()),
                                                        "pre_tokenizer Split"));
    ASSIGN_OR_RETURN(bool invert, BoolField(config, "invert", false, "pre_tokenizer Split"));
    const nlohmann::json behavior = config.value("behavior", nlohmann::json("Isolated"));
    SplitBehavior b;
    if (behavior == "Isolated") {
      b = SplitBehavior::kIsolated;
    } else if (behavior == "Removed") {
      b = SplitBehavior::kRemoved;
    } else if (behavior == "MergedWithPrevious") {
      b = SplitBehavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      b = SplitBehavior::kMergedWithNext;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("pre_tokenizer Split: unsupported behavior ", behavior.dump(),
                       " (implemented: Isolated, Removed, MergedWithPrevious, MergedWithNext)"));
    }
    return std::make_unique<SplitPreTokenizer>(std::move(pattern), b, invert);
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(bool add_prefix_space,
                     BoolField(config, "add_prefix_space", true, "pre_tokenizer ByteLevel"));
    ASSIGN_OR_RETURN(bool use_regex,
                     BoolField(config, "use_regex", true, "pre_tokenizer ByteLevel"));
    std::unique_ptr<PreTokenizer> regex_split;
    if (use_regex) {
      ASSIGN_OR_RETURN(Pattern pattern,
                       Pattern::FromJson({{"Regex", kGpt2Pattern}}, "pre_tokenizer ByteLevel"));
      regex_split = std::make_unique<SplitPreTokenizer>(std::move(pattern),
                                                        SplitBehavior::kIsolated, /*invert=*/true);
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex_split));
  }
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (auto it = config.find("replacement"); it != config.end() && !it->is_null()) {
      if (!it->is_string()) {
        return absl::InvalidArgumentError(
            "pre_tokenizer Metaspace: \"replacement\" must be a string");
      }
      replacement = it->get<std::string>();
    }
    PrependScheme scheme = PrependScheme::kAlways;
    if (auto it = config.find("prepend_scheme"); it != config.end() && !it->is_null()) {
      if (*it == "always") {
        scheme = PrependScheme::kAlways;
      } else if (*it == "first") {
        scheme = PrependScheme::kFirst;
      } else if (*it == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("pre_tokenizer Metaspace: unknown prepend_scheme ", it->dump()));
      }
    } else {
      ASSIGN_OR_RETURN(bool add,
                       BoolField(config, "add_prefix_space", true, "pre_tokenizer Metaspace"));
      scheme = add ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    ASSIGN_OR_RETURN(bool split, BoolField(config, "split", true, "pre_tokenizer Metaspace"));
    return std::make_unique<MetaspacePreTokenizer>(replacement, scheme, split);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported pre_tokenizer type \"", type,
                   "\" (implemented: Sequence, Split, ByteLevel, Metaspace)"));
}

}  // namespace dsinfer
