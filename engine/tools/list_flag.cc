#include "engine/tools/list_flag.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace dsinfer {

absl::StatusOr<std::vector<int64_t>> ParsePositiveIntList(absl::string_view text,
                                                          absl::string_view flag,
                                                          bool allow_empty) {
  std::vector<int64_t> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(item, &v) || v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": not a positive integer: ", item));
    }
    out.push_back(v);
  }
  if (out.empty() && !allow_empty) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": empty"));
  }
  return out;
}

}  // namespace dsinfer
