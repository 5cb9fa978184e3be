// tokenizer.json normalizers: the text transformations applied to each stretch of input
// between added tokens, before pre-tokenization. Implemented: Sequence, Prepend and Replace
// (String or Regex pattern), which is what Llama-family files use. Lowercase and Unicode
// normalization forms (NFC, NFKC, Precompiled, ...) are rejected at load time rather than
// silently skipped, because skipping them would change ids.
#ifndef DSINFER_ENGINE_TOKENIZER_NORMALIZER_H_
#define DSINFER_ENGINE_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Returns the normalized form of `text` (valid UTF-8 in, valid UTF-8 out).
  virtual absl::StatusOr<std::string> Normalize(std::string text) const = 0;
};

// Builds the normalizer described by tokenizer.json's "normalizer" value; nullptr for JSON
// null. INVALID_ARGUMENT names an unknown type or a malformed field.
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& config);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_NORMALIZER_H_
