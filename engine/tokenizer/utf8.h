// UTF-8 helpers for the tokenizer. Every text that enters the tokenizer is validated once,
// strictly (no overlongs, no surrogates, nothing above U+10FFFF), so that the later stages can
// walk code points without re-checking. Byte sequences produced by decoding (byte-fallback
// and byte-level tokens) may be invalid; they are turned into text with the WHATWG "maximal
// subpart" replacement rule, the one JavaScript's TextDecoder (our reference) uses.
#ifndef DSINFER_ENGINE_TOKENIZER_UTF8_H_
#define DSINFER_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace dsinfer {

// OK when `text` is well-formed UTF-8; otherwise INVALID_ARGUMENT naming the byte offset.
absl::Status ValidateUtf8(std::string_view text);

// Length in bytes of the code point starting at text[pos] (text must be valid UTF-8).
inline size_t Utf8CharLen(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at text[*pos] (valid UTF-8) and advances *pos past it.
uint32_t DecodeUtf8(std::string_view text, size_t* pos);

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(uint32_t cp, std::string* out);

// Converts arbitrary bytes to valid UTF-8, replacing each maximal invalid subpart with U+FFFD.
std::string LossyUtf8(std::string_view bytes);

// Whether `cp` is whitespace in the JavaScript sense (the `\s` class and String.trim()), which
// is what the reference implementation uses for regex `\s` and added-token lstrip/rstrip.
bool IsJsWhitespace(uint32_t cp);

// `text` without leading (TrimJsStart) or trailing (TrimJsEnd) JavaScript whitespace.
std::string_view TrimJsStart(std::string_view text);
std::string_view TrimJsEnd(std::string_view text);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_UTF8_H_
