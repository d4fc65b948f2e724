// Byte-level BPE tokenizer (GPT-2 style) read from a Hugging Face `tokenizer.json`.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "hybridserve/error.hpp"

namespace hs {

/// GPT-2 byte-level BPE: the GPT-2 pre-tokenizer regex (Unicode classes via PCRE2), the
/// byte-to-unicode map, merges applied by rank, added/special tokens matched literally first.
class tokenizer {
 public:
  /// Loads `tokenizer.json`; errors name the file and what is wrong in it.
  static result<std::shared_ptr<const tokenizer>> load(const std::string& tokenizer_json_path);
  /// Builds from the JSON text itself (`source_name` is used in error messages).
  static result<std::shared_ptr<const tokenizer>> from_json_text(const std::string& text,
                                                                 const std::string& source_name);
  ~tokenizer();

  /// Text to ids; special tokens written in the text (e.g. "</s>") become their ids.
  /// Never adds BOS: the caller does that (see model::encode_prompt).
  std::vector<int32_t> encode(const std::string& text) const;
  /// Ids to text. Invalid UTF-8 from partial byte tokens becomes U+FFFD (Python's
  /// errors="replace"). Special tokens are dropped when `skip_special` is true.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  /// The raw bytes one id stands for (special tokens: their content).
  std::string token_bytes(int32_t id) const;

  int32_t vocab_size() const;
  bool is_special(int32_t id) const;
  /// Id of a token string as written in the vocab or added tokens, or -1.
  int32_t token_to_id(const std::string& token) const;

 private:
  tokenizer();
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The vocabulary string GPT-2's byte-level BPE uses for one raw byte (bytes_to_unicode).
std::string byte_level_token(uint8_t byte);

/// Turns a stream of ids into text pieces that are always whole UTF-8 characters: bytes of a
/// character split across tokens are held back until the character is complete.
class stream_decoder {
 public:
  explicit stream_decoder(std::shared_ptr<const tokenizer> tok, bool skip_special = true)
      : tok_(std::move(tok)), skip_special_(skip_special) {}
  /// Returns the newly complete text after `id` (possibly empty).
  std::string push(int32_t id);
  /// Flushes held bytes at the end of the stream (an incomplete tail becomes U+FFFD).
  std::string finish();

 private:
  std::shared_ptr<const tokenizer> tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace hs
