// tokenizer.json decoders: turn the model's token strings back into text. Implemented:
// Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel and Metaspace — the steps Llama-family
// files use. A decoder works on a list of strings, like the reference, because Strip and
// Metaspace act on each element (Strip only sees one element after Fuse).
//
// Byte-level vocabularies are stored as raw bytes (see bpe_model.h), so ByteLevel here only
// joins the strings and repairs invalid UTF-8; ByteFallback turns runs of "<0xNN>" tokens into
// the text of their bytes. Invalid byte sequences become U+FFFD per maximal subpart.
#ifndef DSINFER_ENGINE_TOKENIZER_DECODER_H_
#define DSINFER_ENGINE_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Transforms the list of token strings in place.
  virtual absl::Status DecodeChain(std::vector<std::string>* tokens) const = 0;
};

// Builds the decoder described by tokenizer.json's "decoder" value; nullptr for JSON null
// (the tokenizer then joins tokens with spaces, as the reference does). INVALID_ARGUMENT names
// an unknown type or a malformed field.
absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& config);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_DECODER_H_
