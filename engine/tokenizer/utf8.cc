// Strict validation and lossy conversion follow the Unicode "well-formed UTF-8 byte
// sequences" table (Unicode 15, table 3-7); the lossy path replaces exactly the maximal
// subparts that table rejects, which makes its output equal TextDecoder's.
#include "engine/tokenizer/utf8.h"

#include "absl/strings/str_cat.h"

namespace dsinfer {
namespace {

// Length of the well-formed sequence at bytes[pos], or 0 with *bad set to the length of the
// maximal invalid subpart (at least 1).
size_t ScanSequence(std::string_view bytes, size_t pos, size_t* bad) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned char c = b(pos);
  const size_t n = bytes.size();
  if (c < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t i = 1; i < len; ++i) {
    if (pos + i >= n) {
      *bad = i;
      return 0;
    }
    const unsigned char t = b(pos + i);
    const unsigned char l = (i == 1) ? lo : 0x80;
    const unsigned char h = (i == 1) ? hi : 0xBF;
    if (t < l || t > h) {
      *bad = i;
      return 0;
    }
  }
  return len;
}

}  // namespace

absl::Status ValidateUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t bad = 0;
    const size_t len = ScanSequence(text, pos, &bad);
    if (len == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input is not valid UTF-8: bad byte 0x",
          absl::Hex(static_cast<unsigned char>(text[pos]), absl::kZeroPad2), " at offset ", pos));
    }
    pos += len;
  }
  return absl::OkStatus();
}

uint32_t DecodeUtf8(std::string_view text, size_t* pos) {
  const auto b = [&](size_t i) {
    return static_cast<uint32_t>(static_cast<unsigned char>(text[i]));
  };
  const size_t p = *pos;
  const uint32_t c = b(p);
  if (c < 0x80) {
    *pos = p + 1;
    return c;
  }
  if (c < 0xE0) {
    *pos = p + 2;
    return ((c & 0x1F) << 6) | (b(p + 1) & 0x3F);
  }
  if (c < 0xF0) {
    *pos = p + 3;
    return ((c & 0x0F) << 12) | ((b(p + 1) & 0x3F) << 6) | (b(p + 2) & 0x3F);
  }
  *pos = p + 4;
  return ((c & 0x07) << 18) | ((b(p + 1) & 0x3F) << 12) | ((b(p + 2) & 0x3F) << 6) |
         (b(p + 3) & 0x3F);
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string LossyUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t bad = 0;
    const size_t len = ScanSequence(bytes, pos, &bad);
    if (len > 0) {
      out.append(bytes.data() + pos, len);
      pos += len;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += bad;
    }
  }
  return out;
}

bool IsJsWhitespace(uint32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::string_view TrimJsStart(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t next = pos;
    if (!IsJsWhitespace(DecodeUtf8(text, &next))) break;
    pos = next;
  }
  return text.substr(pos);
}

std::string_view TrimJsEnd(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t p = start;
    if (!IsJsWhitespace(DecodeUtf8(text, &p))) break;
    end = start;
  }
  return text.substr(0, end);
}

}  // namespace dsinfer
