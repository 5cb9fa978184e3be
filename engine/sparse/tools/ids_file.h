// Token-id files for the Double Sparsity tools: ids separated by whitespace and/or commas.
#ifndef DSINFER_ENGINE_SPARSE_TOOLS_IDS_FILE_H_
#define DSINFER_ENGINE_SPARSE_TOOLS_IDS_FILE_H_

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace dsinfer {

inline absl::StatusOr<std::vector<int32_t>> ReadIdsFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::vector<int32_t> ids;
  for (absl::string_view piece :
       absl::StrSplit(buffer.str(), absl::ByAnyChar(", \t\r\n"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id) || id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '", piece, "' is not a token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_TOOLS_IDS_FILE_H_
