// safetensors reader: 8-byte little-endian header length, JSON header, raw tensor bytes.
// Every offset is checked against the mapped size before a view is handed out, so a corrupt
// or truncated checkpoint is an error naming the file and tensor, never a read past the map.
#include "hybridserve/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "hybridserve/error.hpp"

namespace hs {

std::size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::f32:
      return 4;
    case dtype::f16:
      return 2;
    case dtype::bf16:
      return 2;
    case dtype::i64:
      return 8;
    case dtype::i32:
      return 4;
    case dtype::u8:
      return 1;
  }
  return 0;
}

const char* dtype_name(dtype t) {
  switch (t) {
    case dtype::f32:
      return "F32";
    case dtype::f16:
      return "F16";
    case dtype::bf16:
      return "BF16";
    case dtype::i64:
      return "I64";
    case dtype::i32:
      return "I32";
    case dtype::u8:
      return "U8";
  }
  return "?";
}

bool parse_dtype(const std::string& name, dtype& out) {
  static const std::pair<const char*, dtype> table[] = {{"F32", dtype::f32},   {"F16", dtype::f16},
                                                        {"BF16", dtype::bf16}, {"I64", dtype::i64},
                                                        {"I32", dtype::i32},   {"U8", dtype::u8}};
  for (const auto& [n, t] : table) {
    if (name == n) {
      out = t;
      return true;
    }
  }
  return false;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

// A read-only mapping of one file; unmapped on destruction.
struct tensor_store::mapping {
  std::string path;
  void* base = nullptr;
  std::size_t size = 0;
  ~mapping() {
    if (base && size) munmap(base, size);
  }
};

tensor_store::tensor_store() = default;
tensor_store::~tensor_store() = default;

void tensor_store::add_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw error(path + ": cannot stat: " + std::strerror(e));
  }
  auto m = std::make_unique<mapping>();
  m->path = path;
  m->size = std::size_t(st.st_size);
  if (m->size < 8) {
    ::close(fd);
    throw error(path + ": truncated safetensors file (" + std::to_string(m->size) +
                " bytes, the 8-byte header length alone is missing)");
  }
  m->base = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m->base == MAP_FAILED) {
    m->base = nullptr;
    throw error(path + ": mmap failed: " + std::strerror(errno));
  }
  const auto* bytes = static_cast<const unsigned char*>(m->base);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > m->size - 8) {
    throw error(path + ": header length " + std::to_string(header_len) +
                " is longer than the file (" + std::to_string(m->size) + " bytes)");
  }
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const std::exception& e) {
    throw error(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw error(path + ": header is not a JSON object");
  const std::size_t data_begin = 8 + header_len;
  const std::size_t data_size = m->size - data_begin;

  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string where = path + ": tensor '" + it.key() + "'";
    const auto& t = it.value();
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") ||
        !t.contains("data_offsets"))
      throw error(where + ": entry needs dtype, shape and data_offsets");
    tensor_view v;
    v.name = it.key();
    if (!t["dtype"].is_string() || !parse_dtype(t["dtype"].get<std::string>(), v.type))
      throw error(where + ": unsupported dtype " + t["dtype"].dump() +
                  " (supported: F32, F16, BF16, I64, I32, U8)");
    if (!t["shape"].is_array()) throw error(where + ": shape is not an array");
    for (const auto& d : t["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw error(where + ": shape " + t["shape"].dump() + " has a bad dimension");
      v.shape.push_back(d.get<int64_t>());
    }
    const auto& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw error(where + ": data_offsets must be two non-negative integers");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] out of range (data section is " + std::to_string(data_size) +
                  " bytes; file truncated?)");
    const uint64_t expect = uint64_t(v.numel()) * dtype_size(v.type);
    if (end - begin != expect)
      throw error(where + ": holds " + std::to_string(end - begin) + " bytes but shape " +
                  shape_string(v.shape) + " of " + dtype_name(v.type) + " needs " +
                  std::to_string(expect));
    v.data = bytes + data_begin + begin;
    v.nbytes = std::size_t(expect);
    if (tensors_.count(v.name)) throw error(where + ": appears in more than one file");
    const std::string key = v.name;  // `v` is moved below
    tensors_.emplace(key, entry{std::move(v), path});
  }
  maps_.push_back(std::move(m));
}

void tensor_store::add_checkpoint_dir(const std::string& dir) {
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  struct stat st {};
  if (::stat(single.c_str(), &st) == 0) return add_file(single);
  if (::stat(index.c_str(), &st) != 0)
    throw error(dir + ": no model.safetensors or model.safetensors.index.json");
  std::ifstream in(index);
  if (!in) throw error(index + ": cannot open");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw error(index + ": not valid JSON: " + e.what());
  }
  if (!j.contains("weight_map") || !j["weight_map"].is_object())
    throw error(index + ": missing object 'weight_map'");
  std::set<std::string> shards;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw error(index + ": weight_map['" + it.key() + "'] not a string");
    const auto f = it.value().get<std::string>();
    if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
      throw error(index + ": shard name '" + f + "' must be a file in the same folder");
    shards.insert(f);
  }
  for (const auto& f : shards) add_file(dir + "/" + f);
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    auto t = tensors_.find(it.key());
    if (t == tensors_.end())
      throw error(index + ": tensor '" + it.key() + "' is listed but not in shard " +
                  it.value().get<std::string>());
  }
}

void tensor_store::add_owned(const std::string& name, dtype type, std::vector<int64_t> shape,
                             std::shared_ptr<void> storage, std::size_t nbytes) {
  tensor_view v;
  v.name = name;
  v.type = type;
  v.shape = std::move(shape);
  v.data = storage.get();
  v.nbytes = nbytes;
  owned_.push_back(std::move(storage));
  tensors_[name] = entry{std::move(v), "<synthetic>"};  // `name` is the caller's, not v's
}

const tensor_view& tensor_store::get(const std::string& name,
                                     const std::vector<int64_t>& shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string files;
    for (const auto& m : maps_) files += (files.empty() ? "" : ", ") + m->path;
    throw error("missing tensor '" + name + "' in " + (files.empty() ? "<synthetic>" : files));
  }
  if (!shape.empty() && it->second.view.shape != shape)
    throw error(it->second.source + ": tensor '" + name + "' has shape " +
                shape_string(it->second.view.shape) + ", expected " + shape_string(shape));
  return it->second.view;
}

tensor_view tensor_store::optional(const std::string& name,
                                   const std::vector<int64_t>& shape) const {
  if (!has(name)) return tensor_view{name, dtype::f32, shape, nullptr, 0};
  return get(name, shape);
}

std::vector<std::string> tensor_store::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : tensors_) out.push_back(k);
  return out;
}

const std::string& tensor_store::source_of(const std::string& name) const {
  return tensors_.at(name).source;
}

std::size_t tensor_store::total_bytes() const {
  std::size_t n = 0;
  for (const auto& [k, v] : tensors_) n += v.view.nbytes;
  return n;
}

}  // namespace hs
