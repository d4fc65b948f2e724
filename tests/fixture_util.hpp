// Test helpers: fixture paths and typed access to expected.safetensors.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hybridserve/kernels_cpu.hpp"
#include "hybridserve/safetensors.hpp"

namespace hs::test {

inline std::string fixture(const std::string& model) {
  return std::string(HS_FIXTURES_DIR) + "/" + model;
}

inline std::vector<float> floats(const tensor_store& s, const std::string& name) {
  const auto& t = s.get(name);
  std::vector<float> out(std::size_t(t.numel()));
  hs::cpu::convert_to_f32(t, out.data());
  return out;
}

inline std::vector<int32_t> ints(const tensor_store& s, const std::string& name) {
  const auto& t = s.get(name);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < t.numel(); ++i)
    out.push_back(int32_t(static_cast<const int64_t*>(t.data)[i]));
  return out;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= m)) m = d;  // NaN propagates as "not <="
  }
  return m;
}

/// A scratch folder under /tmp, removed with its files at scope exit.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/hs_test_XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~temp_dir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string file(const std::string& n) const { return path + "/" + n; }
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Serialises a safetensors file from a header object and a data blob (no validation: tests
/// use it to build broken files on purpose).
inline std::string safetensors_bytes(const nlohmann::json& header, const std::string& data) {
  const std::string h = header.dump();
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = char((n >> (8 * i)) & 0xff);
  return out + h + data;
}

}  // namespace hs::test
