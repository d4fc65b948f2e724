// UTF-8 helpers shared by the tokenizer and the streaming decoders.
#pragma once
#include <cstddef>
#include <string>

namespace hs::utf8 {

/// Replaces every maximal ill-formed subsequence with U+FFFD, as Python's
/// `bytes.decode("utf-8", errors="replace")` does.
std::string sanitize(const std::string& bytes);

/// Length of the longest prefix of `bytes` that does not end inside an incomplete (but so far
/// valid) multi-byte character. Bytes after it may still become a character.
std::size_t complete_prefix(const std::string& bytes);

/// Appends the UTF-8 encoding of a code point.
void append_codepoint(std::string& out, char32_t cp);

}  // namespace hs::utf8
