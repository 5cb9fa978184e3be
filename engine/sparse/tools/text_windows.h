// Text windows for the Double Sparsity tools: a text file through the model's tokenizer, cut
// into consecutive windows, each BOS + the next window - 1 tokens of the text (so every
// window starts like a fresh prompt). dsinfer-eval scores them; dsinfer-calibrate
// --prediction measures cross-layer prediction on them.
#ifndef DSINFER_ENGINE_SPARSE_TOOLS_TEXT_WINDOWS_H_
#define DSINFER_ENGINE_SPARSE_TOOLS_TEXT_WINDOWS_H_

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"

namespace dsinfer {

// Up to `windows` windows of `window` tokens; fewer when the text runs out (at least
// `min_windows`, else INVALID_ARGUMENT).
inline absl::StatusOr<std::vector<std::vector<int32_t>>> TextWindows(
    const std::string& model_dir, const std::string& path, int64_t window, int windows,
    int min_windows) {
  auto tokenizer = Tokenizer::LoadFromDir(model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto ids = (*tokenizer)->Encode(buffer.str(), /*add_special_tokens=*/false);
  if (!ids.ok()) return ids.status();
  auto bos = (*tokenizer)->Encode("", /*add_special_tokens=*/true);
  if (!bos.ok() || bos->empty()) {
    return absl::FailedPreconditionError("the tokenizer adds no BOS token");
  }
  const int64_t body = window - 1;
  const int64_t fit = body > 0 ? static_cast<int64_t>(ids->size()) / body : 0;
  if (window < 2 || windows < 1 || fit < min_windows) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has ", ids->size(),
                                                   " tokens: too few for ", min_windows,
                                                   " windows of ", window));
  }
  std::vector<std::vector<int32_t>> out;
  for (int64_t w = 0; w < std::min<int64_t>(windows, fit); ++w) {
    std::vector<int32_t> v = {bos->front()};
    v.insert(v.end(), ids->begin() + w * body, ids->begin() + (w + 1) * body);
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_TOOLS_TEXT_WINDOWS_H_
