// A compiled tokenizer regex (PCRE2, JIT when available) with the matching semantics of the
// reference implementation (JavaScript `RegExp` with the `u` flag, as transformers.js runs the
// patterns from tokenizer.json). PCRE2 has a different meaning for a few escapes, so the
// pattern is rewritten before compiling:
//   - `\s`/`\S` become JavaScript's whitespace set (which, unlike PCRE2's Unicode `\s`, holds
//     U+FEFF and not U+0085), `\d` becomes [0-9] and `\w` [A-Za-z0-9_];
//   - Llama-3's `(?i:'s|'t|...)` becomes the explicit-case form transformers.js uses (so the
//     long s U+017F and the Kelvin sign do not match as they would under Unicode folding).
// `\p{L}`, `\p{N}`, look-ahead and the rest keep their meaning. A compiled pattern is
// immutable and safe to use from several threads; each call allocates its own match data.
#ifndef DSINFER_ENGINE_TOKENIZER_REGEX_H_
#define DSINFER_ENGINE_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace dsinfer {

class TokenizerRegex {
 public:
  // Compiles `pattern` (tokenizer.json's Regex syntax). INVALID_ARGUMENT names the pattern
  // and PCRE2's message when it does not compile.
  static absl::StatusOr<std::unique_ptr<TokenizerRegex>> Compile(std::string_view pattern);
  ~TokenizerRegex();
  TokenizerRegex(const TokenizerRegex&) = delete;
  TokenizerRegex& operator=(const TokenizerRegex&) = delete;

  // All non-overlapping matches in `text` (valid UTF-8), left to right, as [begin, end) byte
  // ranges. An empty match advances by one code point, as JavaScript's matchAll does.
  // INTERNAL when PCRE2 fails (e.g. a resource limit); nothing is returned partially.
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> FindAll(std::string_view text) const;

  // The pattern after the rewrite described above (for tests and error messages).
  const std::string& translated() const { return translated_; }

 private:
  TokenizerRegex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string translated_;
};

// Rewrites a tokenizer.json pattern into PCRE2 syntax with JavaScript semantics (see above).
absl::StatusOr<std::string> TranslateRegexToPcre2(std::string_view pattern);

// Escapes `literal` so that it matches itself in a PCRE2 pattern.
std::string EscapeRegexLiteral(std::string_view literal);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_REGEX_H_
