// The {"String": ...} / {"Regex": ...} pattern objects that Replace and Split steps of
// tokenizer.json use. A String pattern is a literal; a Regex one is compiled with the
// reference's semantics (see regex.h). Both answer "where are the matches".
#ifndef DSINFER_ENGINE_TOKENIZER_PATTERN_H_
#define DSINFER_ENGINE_TOKENIZER_PATTERN_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/regex.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

class Pattern {
 public:
  // `where` names the step for error messages ("normalizer Replace").
  static absl::StatusOr<Pattern> FromJson(const nlohmann::json& pattern, absl::string_view where);

  // Non-overlapping matches, left to right, as byte ranges.
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> FindAll(std::string_view text) const;

  // `text` with every match replaced by `content`.
  absl::StatusOr<std::string> ReplaceAll(std::string_view text, std::string_view content) const;

 private:
  std::string literal_;
  std::shared_ptr<const TokenizerRegex> regex_;  // null for a String pattern
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_PATTERN_H_
