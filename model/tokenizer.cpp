// Byte-level BPE (GPT-2 style) from a Hugging Face tokenizer.json, matching HF `tokenizers`.
#include "hybridserve/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <string_view>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "hybridserve/utf8.hpp"

namespace hs {
namespace {

using json = nlohmann::json;

// The GPT-2 pre-tokenizer split, exactly as HF's ByteLevel pre-tokenizer writes it.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Pieces longer than this are not cached: they are rare and would bloat the cache.
constexpr std::size_t kMaxCachedPiece = 256;
// The cache is dropped wholesale when it grows past this, so memory stays bounded on
// adversarial input without the bookkeeping of an LRU.
constexpr std::size_t kMaxCacheEntries = 1 << 16;
// Ids index dense tables; a corrupt id must not turn into a multi-gigabyte allocation.
constexpr int64_t kMaxTokenId = 1 << 24;

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order, so every byte becomes a visible character in vocab strings.
std::array<char32_t, 256> make_byte_to_cp() {
  std::array<char32_t, 256> map{};
  char32_t next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    map[b] = printable ? static_cast<char32_t>(b) : next_extra++;
  }
  return map;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

// A key that may be absent or null counts as "not given".
const json* find_non_null(const json& obj, const char* key) {
  auto it = obj.find(key);
  return (it == obj.end() || it->is_null()) ? nullptr : &*it;
}

std::string type_of(const json& section) {
  if (!section.is_object()) return section.dump();
  auto it = section.find("type");
  return it == section.end() ? std::string("<no type>") : it->dump();
}

}  // namespace

struct tokenizer::impl {
  struct merge_rule {
    int32_t rank;
    int32_t new_id;
  };
  struct added_token {
    std::string content;
    int32_t id;
  };

  std::string source;  // file name for error messages
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> id_bytes;  // what each id decodes to
  std::vector<char> has_token;        // ids can have holes in odd files
  std::vector<char> special;
  std::unordered_map<uint64_t, merge_rule> merges;
  std::array<char32_t, 256> byte_to_cp = make_byte_to_cp();
  std::array<int32_t, 256> byte_id{};  // vocab id of each byte's single mapped character
  std::vector<added_token> added;      // longest first, so the first hit is the longest match
  std::array<std::vector<std::size_t>, 256> added_by_first_byte;
  std::unordered_map<std::string, int32_t> added_ids;
  int32_t unk_id = -1;
  bool add_prefix_space = false;
  bool use_regex = true;
  bool ignore_merges = false;
  pcre2_code* regex = nullptr;

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  ~impl() { pcre2_code_free(regex); }

  void build(const std::string& text);
  void parse_vocab(const json& model);
  void parse_added(const json& root);
  void parse_merges(const json& model);
  void compile_regex();

  void encode_segment(std::string_view seg, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  std::vector<int32_t> bpe(std::string_view piece) const;
  void check_id(int32_t id) const;
};

void tokenizer::impl::build(const std::string& text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw error(source + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw error(source + ": top level is not a JSON object");
  try {
    const json* model = find_non_null(root, "model");
    if (!model || !model->is_object()) throw error(source + ": missing \"model\" object");
    // Old files leave model.type out; a BPE model is the one that has merges.
    const json* mtype = find_non_null(*model, "type");
    if (mtype ? *mtype != "BPE" : !model->contains("merges"))
      throw error(source + ": unsupported model type " + type_of(*model) + " (only BPE)");

    const json* pre = find_non_null(root, "pre_tokenizer");
    if (!pre || !pre->is_object() || pre->value("type", "") != "ByteLevel")
      throw error(source + ": unsupported pre_tokenizer " + (pre ? type_of(*pre) : "null") +
                  " (only ByteLevel)");
    // Defaults are those of HF's ByteLevel when a key is left out.
    add_prefix_space = pre->value("add_prefix_space", true);
    use_regex = pre->value("use_regex", true);

    // A normalizer would change the text before splitting; silently skipping it would give
    // wrong ids, so refuse instead.
    if (const json* norm = find_non_null(root, "normalizer"))
      throw error(source + ": unsupported normalizer " + type_of(*norm));
    if (const json* dec = find_non_null(root, "decoder");
        dec && dec->value("type", "") != "ByteLevel")
      throw error(source + ": unsupported decoder " + type_of(*dec) + " (only ByteLevel)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json* v = find_non_null(*model, key);
      if (v && !(v->is_string() && v->get<std::string>().empty()))
        throw error(source + ": unsupported model." + key + " " + v->dump());
    }
    ignore_merges = model->value("ignore_merges", false);

    parse_vocab(*model);
    parse_added(root);
    parse_merges(*model);
    if (const json* unk = find_non_null(*model, "unk_token")) {
      auto it = vocab.find(unk->get<std::string>());
      if (it != vocab.end()) unk_id = it->second;
    }
  } catch (const json::exception& e) {
    // nlohmann's messages say what is wrong but not where; add the file.
    throw error(source + ": malformed tokenizer: " + e.what());
  }
  compile_regex();
}

void tokenizer::impl::parse_vocab(const json& model) {
  const json* v = find_non_null(model, "vocab");
  if (!v || !v->is_object()) throw error(source + ": model.vocab missing or not an object");
  int64_t max_id = -1;
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it.value().is_number_integer())
      throw error(source + ": vocab entry \"" + it.key() + "\" has a non-integer id");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxTokenId)
      throw error(source + ": vocab id " + std::to_string(id) + " of \"" + it.key() +
                  "\" is out of range");
    vocab.emplace(it.key(), static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  // Added tokens may lie past the vocab; parse_added grows these tables.
  const std::size_t n = static_cast<std::size_t>(max_id + 1);
  id_bytes.assign(n, {});
  has_token.assign(n, 0);
  special.assign(n, 0);

  std::unordered_map<std::string, char> char_to_byte;
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8::append_codepoint(ch, byte_to_cp[b]);
    char_to_byte.emplace(ch, static_cast<char>(b));
    auto it = vocab.find(ch);
    byte_id[b] = it == vocab.end() ? -1 : it->second;
  }
  for (const auto& [tok, id] : vocab) {
    has_token[id] = 1;
    // Mapped characters are all below U+0800, so one or two bytes long. As in HF's ByteLevel
    // decoder, a token with any other character is kept as its own UTF-8.
    std::string bytes;
    bool mapped = true;
    for (std::size_t i = 0; i < tok.size() && mapped;) {
      const std::size_t len = static_cast<unsigned char>(tok[i]) < 0x80 ? 1 : 2;
      auto it = char_to_byte.find(tok.substr(i, len));
      mapped = it != char_to_byte.end();
      if (mapped) bytes += it->second;
      i += len;
    }
    id_bytes[id] = mapped ? bytes : tok;
  }
}

void tokenizer::impl::parse_added(const json& root) {
  const json* list = find_non_null(root, "added_tokens");
  if (!list) return;
  if (!list->is_array()) throw error(source + ": added_tokens is not a list");
  for (const json& t : *list) {
    const int64_t id = t.at("id").get<int64_t>();
    std::string content = t.at("content").get<std::string>();
    if (id < 0 || id >= kMaxTokenId)
      throw error(source + ": added token " + content + " has out-of-range id " +
                  std::to_string(id));
    const auto i = static_cast<std::size_t>(id);
    if (i >= id_bytes.size()) {
      id_bytes.resize(i + 1);
      has_token.resize(i + 1, 0);
      special.resize(i + 1, 0);
    }
    // Added tokens win over a vocab entry with the same id, as in HF.
    id_bytes[i] = content;
    has_token[i] = 1;
    special[i] = t.value("special", false) ? 1 : 0;
    added_ids[content] = static_cast<int32_t>(id);
    if (!content.empty()) added.push_back({std::move(content), static_cast<int32_t>(id)});
  }
  std::stable_sort(added.begin(), added.end(), [](const added_token& a, const added_token& b) {
    return a.content.size() > b.content.size();
  });
  for (std::size_t k = 0; k < added.size(); ++k)
    added_by_first_byte[static_cast<unsigned char>(added[k].content[0])].push_back(k);
}

void tokenizer::impl::parse_merges(const json& model) {
  const json* list = find_non_null(model, "merges");
  if (!list) return;
  if (!list->is_array()) throw error(source + ": model.merges is not a list");
  auto lookup = [&](const std::string& tok, std::size_t rank) {
    auto it = vocab.find(tok);
    if (it == vocab.end())
      throw error(source + ": merges[" + std::to_string(rank) + "] uses \"" + tok +
                  "\", which is not in the vocab");
    return it->second;
  };
  for (std::size_t rank = 0; rank < list->size(); ++rank) {
    const json& m = (*list)[rank];
    std::string a, b;
    if (m.is_string()) {
      // Old format "a b": HF requires exactly one space (tokens cannot contain one here).
      const std::string s = m.get<std::string>();
      const auto sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw error(source + ": merges[" + std::to_string(rank) + "] is not \"a b\": " + s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      throw error(source + ": merges[" + std::to_string(rank) + "] is neither \"a b\" nor [a, b]");
    }
    const int32_t ia = lookup(a, rank), ib = lookup(b, rank), inew = lookup(a + b, rank);
    // The first (lowest-rank) occurrence of a pair is the one that counts.
    merges.emplace(pair_key(ia, ib), merge_rule{static_cast<int32_t>(rank), inew});
  }
}

void tokenizer::impl::compile_regex() {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // MATCH_INVALID_UTF lets encode() take arbitrary bytes: ill-formed sequences simply never
  // match, and encode_segment turns the gaps into pieces of their own.
  regex = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!regex) throw error(source + ": cannot compile pre-tokenizer regex: " + pcre2_message(err));
  // JIT is only a speed-up; pcre2_match uses the interpreter when it is unavailable.
  pcre2_jit_compile(regex, PCRE2_JIT_COMPLETE);
}

void tokenizer::impl::check_id(int32_t id) const {
  const auto v = static_cast<int64_t>(id_bytes.size());
  if (id < 0 || id >= v)
    throw error("token id " + std::to_string(id) + " out of range [0, " + std::to_string(v) +
                ") of tokenizer " + source);
  if (!has_token[id])
    throw error("token id " + std::to_string(id) + " has no token in tokenizer " + source);
}

std::vector<int32_t> tokenizer::impl::bpe(std::string_view piece) const {
  if (ignore_merges) {
    // Llama-3-style files: a piece that is a whole vocab entry is taken as is.
    std::string mapped;
    for (char c : piece) utf8::append_codepoint(mapped, byte_to_cp[static_cast<unsigned char>(c)]);
    auto it = vocab.find(mapped);
    if (it != vocab.end()) return {it->second};
  }
  struct symbol {
    int32_t id;
    int prev, next;
    bool alive;
  };
  std::vector<symbol> syms;
  syms.reserve(piece.size());
  for (char c : piece) {
    int32_t id = byte_id[static_cast<unsigned char>(c)];
    // Byte-level vocabs cover all 256 bytes; otherwise HF uses unk or drops the character.
    if (id < 0) id = unk_id;
    if (id < 0) continue;
    const int i = static_cast<int>(syms.size());
    syms.push_back({id, i - 1, -1, true});
    if (i > 0) syms[i - 1].next = i;
  }

  // HF's algorithm: a queue of candidate merges ordered by rank, then by position (leftmost
  // first); entries made stale by earlier merges are skipped when popped.
  struct candidate {
    int32_t rank, new_id;
    int pos;
    bool operator<(const candidate& o) const {  // reversed: priority_queue is a max-heap
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<candidate> queue;
  auto push_pair = [&](int pos) {
    const int nx = syms[pos].next;
    if (nx < 0) return;
    auto it = merges.find(pair_key(syms[pos].id, syms[nx].id));
    if (it != merges.end()) queue.push({it->second.rank, it->second.new_id, pos});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) push_pair(i);
  while (!queue.empty()) {
    const candidate top = queue.top();
    queue.pop();
    symbol& left = syms[top.pos];
    if (!left.alive || left.next < 0) continue;
    symbol& right = syms[left.next];
    auto it = merges.find(pair_key(left.id, right.id));
    if (it == merges.end() || it->second.rank != top.rank) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  std::vector<int32_t> ids;
  for (const symbol& s : syms)
    if (s.alive) ids.push_back(s.id);
  return ids;
}

void tokenizer::impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache.find(std::string(piece));
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // BPE runs outside the lock so that threads encoding different text do not serialise.
  std::vector<int32_t> ids = bpe(piece);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(std::string(piece), std::move(ids));
  }
}

void tokenizer::impl::encode_segment(std::string_view seg, std::vector<int32_t>& out) const {
  if (seg.empty()) return;
  std::string prefixed;
  if (add_prefix_space && seg.front() != ' ') {
    prefixed = " ";
    prefixed += seg;
    seg = prefixed;
  }
  if (!use_regex) return encode_piece(seg, out);

  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(regex, nullptr), &pcre2_match_data_free);
  if (!md) throw error("tokenizer " + source + ": out of memory for regex match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(seg.data());
  std::size_t off = 0;
  while (off < seg.size()) {
    // The whole segment is the subject (not a substring) so that \s+(?!\S) sees what follows.
    int rc = pcre2_match(regex, subject, seg.size(), off, 0, md.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(regex, subject, seg.size(), off, PCRE2_NO_JIT, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      encode_piece(seg.substr(off), out);  // only ill-formed bytes are left
      return;
    }
    if (rc < 0)
      throw error("tokenizer " + source + ": pre-tokenizer regex failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    // Every well-formed character matches some branch, so a gap is ill-formed bytes: keep
    // them as a piece of their own (byte-level BPE can encode any byte).
    if (ov[0] > off) encode_piece(seg.substr(off, ov[0] - off), out);
    encode_piece(seg.substr(ov[0], ov[1] - ov[0]), out);
    off = ov[1];
  }
}

tokenizer::tokenizer() : impl_(std::make_unique<impl>()) {}
tokenizer::~tokenizer() = default;

result<std::shared_ptr<const tokenizer>> tokenizer::load(const std::string& tokenizer_json_path) {
  using loaded = result<std::shared_ptr<const tokenizer>>;
  std::ifstream in(tokenizer_json_path, std::ios::binary);
  if (!in) return loaded::failure(tokenizer_json_path + ": cannot open tokenizer file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return loaded::failure(tokenizer_json_path + ": read error");
  return from_json_text(text.str(), tokenizer_json_path);
}

result<std::shared_ptr<const tokenizer>> tokenizer::from_json_text(const std::string& text,
                                                                   const std::string& source_name) {
  return capture([&]() -> std::shared_ptr<const tokenizer> {
    std::shared_ptr<tokenizer> tok(new tokenizer());
    tok->impl_->source = source_name;
    tok->impl_->build(text);
    return tok;
  });
}

std::vector<int32_t> tokenizer::encode(const std::string& text) const {
  std::vector<int32_t> out;
  const impl& m = *impl_;
  // Added tokens are cut out first by leftmost-longest literal match; the text between them
  // is pre-tokenized separately, as HF does.
  std::size_t seg_start = 0, i = 0;
  while (i < text.size()) {
    const impl::added_token* hit = nullptr;
    for (std::size_t k : m.added_by_first_byte[static_cast<unsigned char>(text[i])]) {
      const auto& cand = m.added[k];
      if (text.compare(i, cand.content.size(), cand.content) == 0) {
        hit = &cand;
        break;  // the list is longest first
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    m.encode_segment(std::string_view(text).substr(seg_start, i - seg_start), out);
    out.push_back(hit->id);
    i += hit->content.size();
    seg_start = i;
  }
  m.encode_segment(std::string_view(text).substr(seg_start), out);
  return out;
}

std::string tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    impl_->check_id(id);
    if (skip_special && impl_->special[id]) continue;
    bytes += impl_->id_bytes[id];
  }
  // Sanitize once over the whole byte string: a character split across tokens is whole here.
  return utf8::sanitize(bytes);
}

std::string tokenizer::token_bytes(int32_t id) const {
  impl_->check_id(id);
  return impl_->id_bytes[id];
}

int32_t tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->id_bytes.size());
}

bool tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->special[id];
}

int32_t tokenizer::token_to_id(const std::string& token) const {
  auto a = impl_->added_ids.find(token);
  if (a != impl_->added_ids.end()) return a->second;
  auto v = impl_->vocab.find(token);
  return v == impl_->vocab.end() ? -1 : v->second;
}

std::string stream_decoder::push(int32_t id) {
  // Validates the id even when it is skipped, so a bad id fails here as it would in decode().
  std::string bytes = tok_->token_bytes(id);
  if (!(skip_special_ && tok_->is_special(id))) pending_ += bytes;
  // Everything up to the last possibly-unfinished character is final: sanitizing it now gives
  // the same text decode() would, because no ill-formed subpart spans that boundary.
  const std::size_t n = utf8::complete_prefix(pending_);
  std::string out = utf8::sanitize(pending_.substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string stream_decoder::finish() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

std::string byte_level_token(uint8_t byte) {
  static const std::array<char32_t, 256> map = make_byte_to_cp();
  std::string out;
  utf8::append_codepoint(out, map[byte]);
  return out;
}

}  // namespace hs
