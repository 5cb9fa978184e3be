// Streaming detokenization: feed generated ids one at a time, get back only text that is
// final. The decoder keeps a short window of ids and decodes it twice — the part already
// emitted (the "prefix") and the whole window — and emits the difference, but only when the
// window's text does not end in U+FFFD: an incomplete UTF-8 sequence (a multi-byte character
// split over byte-level or "<0xNN>" byte-fallback tokens) stays pending until its last byte
// arrives. Decoding the prefix together with the new ids keeps context-dependent decoders
// right: SentencePiece's leading-space strip applies to the first token of the stream only.
// This is the scheme of Hugging Face tokenizers' DecodeStream; the concatenation of all
// pieces plus Flush() equals Tokenizer::Decode of all ids.
#ifndef DSINFER_ENGINE_TOKENIZER_INCREMENTAL_DECODER_H_
#define DSINFER_ENGINE_TOKENIZER_INCREMENTAL_DECODER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace dsinfer {

class IncrementalDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Adds one id; returns the text that became final (possibly empty, never half a UTF-8
  // character). INVALID_ARGUMENT for an id outside the vocabulary; the decoder is then
  // unchanged.
  absl::StatusOr<std::string> Push(int32_t id);

  // Ends the stream: returns whatever is still pending (an incomplete byte sequence comes out
  // as U+FFFD) and resets the decoder for a new stream.
  absl::StatusOr<std::string> Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // the window: prefix ids followed by pending ids
  size_t prefix_count_ = 0;   // how many of ids_ form the already-emitted prefix
  std::string prefix_text_;   // Decode(ids_[0, prefix_count_))
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_INCREMENTAL_DECODER_H_
