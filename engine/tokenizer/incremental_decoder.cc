// After each emission the window is cut to the ids that produced the newest text, so a decode
// costs O(window) and the window stays a few tokens long in steady state. The text of the
// window is re-decoded from scratch each step (rather than cached per token) because decoders
// such as Strip or ByteFallback depend on neighbouring tokens.
#include "engine/tokenizer/incremental_decoder.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

}  // namespace

absl::StatusOr<std::string> IncrementalDecoder::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", id, " is outside the vocabulary [0, ", tokenizer_->vocab_size(), ")"));
  }
  ids_.push_back(id);
  ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(ids_, skip_special_tokens_));
  if (text.size() <= prefix_text_.size() || absl::EndsWith(text, kReplacement))
    return std::string();
  if (!absl::StartsWith(text, prefix_text_)) {
    // Should not happen with the supported decoders; emit nothing rather than wrong text and
    // resynchronise on the full window.
    return absl::InternalError("incremental decode: window text does not extend its prefix");
  }
  std::string fresh = text.substr(prefix_text_.size());
  // The new prefix is the ids after the old prefix: they produced `fresh`.
  ids_.erase(ids_.begin(), ids_.begin() + prefix_count_);
  prefix_count_ = ids_.size();
  ASSIGN_OR_RETURN(prefix_text_, tokenizer_->Decode(ids_, skip_special_tokens_));
  return fresh;
}

absl::StatusOr<std::string> IncrementalDecoder::Flush() {
  ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(ids_, skip_special_tokens_));
  std::string rest = text.size() > prefix_text_.size() && absl::StartsWith(text, prefix_text_)
                         ? text.substr(prefix_text_.size())
                         : std::string();
  ids_.clear();
  prefix_count_ = 0;
  prefix_text_.clear();
  return rest;
}

}  // namespace dsinfer
