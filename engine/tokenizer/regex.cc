// PCRE2 is used in UTF mode without UCP: the escapes whose meaning UCP would change are
// rewritten to explicit classes first, and `\p{..}` works in UTF mode regardless. Subjects are
// validated by the tokenizer before they get here, so matching passes PCRE2_NO_UTF_CHECK
// (a 1 MB subject would otherwise be re-validated on every match).
#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/utf8.h"

namespace dsinfer {
namespace {

// JavaScript's \s: WhiteSpace plus LineTerminator (ECMA-262 §22.2.2.9).
constexpr char kJsSpaceSet[] =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";

}  // namespace

struct TokenizerRegex::Impl {
  pcre2_code* code = nullptr;
  ~Impl() {
    if (code != nullptr) pcre2_code_free(code);
  }
};

TokenizerRegex::~TokenizerRegex() = default;

absl::StatusOr<std::string> TranslateRegexToPcre2(std::string_view pattern_view) {
  // absl::string_view is not std::string_view in Debian's Abseil build.
  const std::string pattern(pattern_view);
  // The same textual substitutions transformers.js applies before `new RegExp(.., "gu")`.
  std::string p = absl::StrReplaceAll(
      pattern,
      {{"(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))"},
       {"\\#", "#"},
       {"\\&", "&"},
       {"\\~", "~"}});
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      const char* inside = nullptr;
      bool negated = false;
      switch (e) {
        case 's':
          inside = kJsSpaceSet;
          break;
        case 'S':
          inside = kJsSpaceSet;
          negated = true;
          break;
        case 'd':
          inside = "0-9";
          break;
        case 'D':
          inside = "0-9";
          negated = true;
          break;
        case 'w':
          inside = "A-Za-z0-9_";
          break;
        case 'W':
          inside = "A-Za-z0-9_";
          negated = true;
          break;
        default:
          break;
      }
      if (inside == nullptr) {
        out.push_back('\\');
        out.push_back(e);
      } else if (!in_class) {
        absl::StrAppend(&out, negated ? "[^" : "[", inside, "]");
      } else if (!negated) {
        out.append(inside);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("regex '", pattern, "': negated class escape \\", std::string(1, e),
                         " inside [...] is not supported"));
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

std::string EscapeRegexLiteral(std::string_view literal) {
  // \Q..\E quotes everything except a literal "\E", which is spliced in separately.
  std::string out = "\\Q";
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'E') {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out.push_back(literal[i]);
    }
  }
  out += "\\E";
  return out;
}

absl::StatusOr<std::unique_ptr<TokenizerRegex>> TokenizerRegex::Compile(
    std::string_view pattern_view) {
  const std::string pattern(pattern_view);
  absl::StatusOr<std::string> translated = TranslateRegexToPcre2(pattern);
  if (!translated.ok()) return translated.status();
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated->data()), translated->size(), PCRE2_UTF,
                    &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat(
        "regex '", pattern, "' does not compile: ", reinterpret_cast<const char*>(message),
        " at offset ", error_offset));
  }
  // JIT is an optimisation only: when it is unavailable pcre2_match interprets.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  auto regex = std::unique_ptr<TokenizerRegex>(new TokenizerRegex());
  regex->impl_ = std::make_unique<Impl>();
  regex->impl_->code = code;
  regex->translated_ = *std::move(translated);
  return regex;
}

absl::StatusOr<std::vector<std::pair<size_t, size_t>>> TokenizerRegex::FindAll(
    std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  // The default JIT stack (32 KiB) is enough for these patterns only on short inputs; a
  // larger one keeps long whitespace runs or 1 MB words from failing with a stack error.
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  if (stack != nullptr) pcre2_jit_stack_assign(context, nullptr, stack);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  int failure = 0;
  while (pos <= text.size()) {
    const int rc =
        pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data, context);
    if (rc < 0) {
      if (rc != PCRE2_ERROR_NOMATCH) failure = rc;
      break;
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      pos = end;
    } else {
      if (begin >= text.size()) break;
      pos = begin + Utf8CharLen(static_cast<unsigned char>(text[begin]));
    }
  }
  pcre2_match_context_free(context);
  if (stack != nullptr) pcre2_jit_stack_free(stack);
  pcre2_match_data_free(data);
  if (failure != 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(failure, message, sizeof(message));
    return absl::InternalError(absl::StrCat("regex '", translated_, "' failed at byte ", pos, ": ",
                                            reinterpret_cast<const char*>(message)));
  }
  return matches;
}

}  // namespace dsinfer
