// UTF-8 validation with Python-compatible replacement (Unicode "maximal subpart" practice).
#include "hybridserve/utf8.hpp"

#include <cstdint>

namespace hs::utf8 {
namespace {

// What one step of the left-to-right scan found at a position.
enum class unit_kind {
  valid,      // a whole well-formed character
  invalid,    // a maximal ill-formed subpart: becomes exactly one U+FFFD
  truncated,  // a well-formed-so-far prefix of a character that runs into the end of input
};

struct unit {
  unit_kind kind;
  std::size_t len;
};

// Bounds of the second byte depend on the lead byte (Unicode Table 3-7); they are what rules
// out overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points past U+10FFFF
// (F4 90..BF). Later continuation bytes are always 80..BF.
struct lead_info {
  std::size_t need;  // total length of the character, 0 for a byte that can never start one
  uint8_t lo, hi;    // allowed range of the second byte
};

lead_info classify_lead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b >= 0xE1 && b <= 0xEC) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};  // 80..C1 (continuations, C0/C1 overlong leads) and F5..FF
}

// Scans the unit that starts at `i`. The length of an invalid unit is the lead byte plus the
// continuation bytes that were acceptable before the first unacceptable one: this is exactly
// the "maximal subpart" that Python (and the Unicode standard) replaces with one U+FFFD.
unit scan_unit(const std::string& s, std::size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  const lead_info li = classify_lead(b0);
  if (li.need == 0) return {unit_kind::invalid, 1};
  if (li.need == 1) return {unit_kind::valid, 1};
  std::size_t k = 1;
  for (; k < li.need; ++k) {
    if (i + k >= s.size()) return {unit_kind::truncated, k};
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t lo = k == 1 ? li.lo : 0x80;
    const uint8_t hi = k == 1 ? li.hi : 0xBF;
    if (b < lo || b > hi) return {unit_kind::invalid, k};
  }
  return {unit_kind::valid, k};
}

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

std::string sanitize(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const unit u = scan_unit(bytes, i);
    if (u.kind == unit_kind::valid) {
      out.append(bytes, i, u.len);
    } else {
      // A truncated tail is one maximal subpart too (Python: b"\xe2\x82" -> one U+FFFD).
      out += kReplacement;
    }
    i += u.len;
  }
  return out;
}

std::size_t complete_prefix(const std::string& bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const unit u = scan_unit(bytes, i);
    // Only a well-formed-so-far tail can still become a character; invalid bytes are final
    // (they are U+FFFD whatever follows), so they count as complete.
    if (u.kind == unit_kind::truncated) return i;
    i += u.len;
  }
  return bytes.size();
}

void append_codepoint(std::string& out, char32_t cp) {
  // Surrogates and values past U+10FFFF have no UTF-8 form; write U+FFFD rather than
  // produce bytes that every later consumer would reject.
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace hs::utf8
