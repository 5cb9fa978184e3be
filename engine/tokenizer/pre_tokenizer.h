// tokenizer.json pre-tokenizers: split a normalized section of text into pieces that the BPE
// model encodes independently. Implemented: Sequence, Split (String/Regex pattern; behaviours
// Isolated, Removed, MergedWithPrevious, MergedWithNext; invert), ByteLevel (optional GPT-2
// regex and prefix space) and Metaspace (replacement, prepend_scheme, split). Unknown types
// fail at load time.
//
// ByteLevel does not rewrite text into GPT-2's byte alphabet here: it only marks the pipeline
// as byte-level (see byte_level()), and the BPE model, whose vocabulary was converted to raw
// bytes at load time, merges the raw bytes directly.
#ifndef DSINFER_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define DSINFER_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` (valid UTF-8) by their split. `section_index` is the position of the
  // section among the added-token split of the input (Metaspace's prepend_scheme "first"
  // depends on it). On error `pieces` is unspecified.
  virtual absl::Status Split(std::vector<std::string>* pieces, int section_index) const = 0;
  // Whether the pipeline works on bytes in GPT-2's byte-level alphabet.
  virtual bool byte_level() const { return false; }
};

// Builds the pre-tokenizer described by tokenizer.json's "pre_tokenizer" value; nullptr for
// JSON null. INVALID_ARGUMENT names an unknown type or a malformed field.
absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& config);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
