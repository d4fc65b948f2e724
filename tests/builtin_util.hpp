// Helpers of the built-in model's tests (issue 7): where it is, its golden fixture, and the
// dictionary-word measure of generated text.
#pragma once
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace hs::test {

/// The committed built-in model, models/builtin of this source tree.
inline std::string builtin_dir() {
  return std::string(HS_SOURCE_DIR) + "/models/builtin";
}

inline std::string builtin_fixture(const std::string& file) {
  return std::string(HS_FIXTURES_DIR) + "/builtin/" + file;
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

/// (prompt, expected prompt + continuation) of tests/fixtures/builtin/greedy.json: greedy
/// continuations computed by Hugging Face transformers at training time (see its "origin").
struct golden_case {
  std::string prompt, text;
};
inline std::vector<golden_case> golden_cases(int* max_new_tokens = nullptr) {
  const auto j = read_json_file(builtin_fixture("greedy.json"));
  if (max_new_tokens) *max_new_tokens = j.at("max_new_tokens").get<int>();
  std::vector<golden_case> out;
  for (const auto& c : j.at("cases"))
    out.push_back({c.at("prompt").get<std::string>(), c.at("text").get<std::string>()});
  return out;
}

/// The word list: Debian's wamerican, /usr/share/dict/words (tools/setup.sh installs it), or
/// the file $HS_DICT_WORDS names (a host without apt, e.g. one with an unpacked package).
inline std::string dict_words_path() {
  const char* env = std::getenv("HS_DICT_WORDS");
  return env && *env ? env : "/usr/share/dict/words";
}

/// Lower-cased entries of a word list; empty when the file cannot be read.
inline std::unordered_set<std::string> load_word_list(const std::string& path) {
  std::unordered_set<std::string> words;
  std::ifstream in(path);
  for (std::string w; std::getline(in, w);) {
    for (auto& ch : w) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (!w.empty()) words.insert(w);
  }
  return words;
}

/// Words of `text`: split at whitespace and hyphens (and the UTF-8 em/en dash), leading and
/// trailing characters other than ASCII letters and digits stripped, lower-cased. Pieces that
/// end up empty or hold a digit (numbers, "1964") are not words and are left out.
inline std::vector<std::string> text_words(const std::string& text) {
  std::string t = text;
  for (const char* dash : {"\xE2\x80\x94", "\xE2\x80\x93"})
    for (std::size_t p; (p = t.find(dash)) != std::string::npos;) t.replace(p, 3, " ");
  for (auto& ch : t)
    if (ch == '-') ch = ' ';
  std::vector<std::string> out;
  std::istringstream in(t);
  auto alnum = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) != 0; };
  for (std::string w; in >> w;) {
    std::size_t b = 0, e = w.size();
    while (b < e && !alnum(w[b])) ++b;
    while (e > b && !alnum(w[e - 1])) --e;
    w = w.substr(b, e - b);
    bool digit = false;
    for (auto& ch : w) {
      digit = digit || std::isdigit(static_cast<unsigned char>(ch));
      ch = char(std::tolower(static_cast<unsigned char>(ch)));
    }
    if (!w.empty() && !digit) out.push_back(w);
  }
  return out;
}

/// Share of the words of `texts` found in `dict`, and the words that were not.
struct word_share {
  std::size_t words = 0, found = 0;
  std::vector<std::string> missing;
  double share() const { return words ? double(found) / double(words) : 0.0; }
  std::string describe() const {
    std::string s = std::to_string(found) + "/" + std::to_string(words) + " words in the list (" +
                    std::to_string(share()) + "); not found:";
    for (const auto& w : missing) s += " " + w;
    return s;
  }
};
inline word_share dictionary_share(const std::vector<std::string>& texts,
                                   const std::unordered_set<std::string>& dict) {
  word_share r;
  for (const auto& t : texts)
    for (const auto& w : text_words(t)) {
      ++r.words;
      if (dict.count(w))
        ++r.found;
      else
        r.missing.push_back(w);
    }
  return r;
}

}  // namespace hs::test
