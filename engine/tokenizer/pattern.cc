// An empty String pattern matches nowhere (rather than between every character) so that a
// malformed file cannot blow a text up; tokenizer.json files never contain one.
#include "engine/tokenizer/pattern.h"

#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<Pattern> Pattern::FromJson(const nlohmann::json& pattern, absl::string_view where) {
  Pattern p;
  if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
    p.literal_ = pattern["String"].get<std::string>();
    return p;
  }
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
    absl::StatusOr<std::unique_ptr<TokenizerRegex>> regex =
        TokenizerRegex::Compile(pattern["Regex"].get<std::string>());
    if (!regex.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", regex.status().message()));
    }
    p.regex_ = *std::move(regex);
    return p;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where, ": pattern must be {\"String\": ...} or {\"Regex\": ...}, got ", pattern.dump()));
}

absl::StatusOr<std::vector<std::pair<size_t, size_t>>> Pattern::FindAll(
    std::string_view text) const {
  if (regex_ != nullptr) return regex_->FindAll(text);
  std::vector<std::pair<size_t, size_t>> matches;
  if (literal_.empty()) return matches;
  size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
    matches.emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
  return matches;
}

absl::StatusOr<std::string> Pattern::ReplaceAll(std::string_view text,
                                                std::string_view content) const {
  ASSIGN_OR_RETURN(auto matches, FindAll(text));
  if (matches.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size() + matches.size() * content.size());
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    out.append(text.data() + prev, begin - prev);
    out.append(content);
    prev = end;
  }
  out.append(text.data() + prev, text.size() - prev);
  return out;
}

}  // namespace dsinfer
