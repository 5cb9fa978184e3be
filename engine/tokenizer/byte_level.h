// GPT-2's byte-level alphabet: each of the 256 byte values is written as one printable code
// point (printable Latin-1 bytes as themselves, the rest shifted to U+0100..). tokenizer.json
// stores byte-level vocabularies in that alphabet; the tokenizer converts them back to raw
// bytes once at load time so that encoding works on the text's own bytes and decoding is a
// concatenation, with no per-call character mapping.
#ifndef DSINFER_ENGINE_TOKENIZER_BYTE_LEVEL_H_
#define DSINFER_ENGINE_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsinfer {

// The code point that stands for byte `b`.
uint32_t ByteToUnicode(uint8_t b);

// Converts a string in the byte-level alphabet to the raw bytes it stands for; nullopt when
// it contains a code point outside the alphabet (such a token is not byte-level, e.g. an
// added token). `text` must be valid UTF-8.
std::optional<std::string> ByteLevelToBytes(std::string_view text);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_BYTE_LEVEL_H_
