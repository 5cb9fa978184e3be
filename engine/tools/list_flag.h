// List-valued flags ("--contexts 4096,32768"): one parser for the benchmarks' integer lists, so
// that a mistyped item is an error naming the flag, not an item skipped or an exception.
#ifndef DSINFER_ENGINE_TOOLS_LIST_FLAG_H_
#define DSINFER_ENGINE_TOOLS_LIST_FLAG_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dsinfer {

// "1,4,16" → {1, 4, 16}: comma-separated positive integers, empty items skipped. An item that
// is not a positive integer (in int64) is INVALID_ARGUMENT "--<flag>: not a positive integer:
// <item>"; so is a list with no item, unless allow_empty.
absl::StatusOr<std::vector<int64_t>> ParsePositiveIntList(absl::string_view text,
                                                          absl::string_view flag,
                                                          bool allow_empty = false);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOOLS_LIST_FLAG_H_
