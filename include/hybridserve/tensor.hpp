// A non-owning view of a tensor in host memory (memory-mapped file or owned buffer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hs {

enum class dtype { f32, f16, bf16, i64, i32, u8 };

std::size_t dtype_size(dtype t);
const char* dtype_name(dtype t);  // safetensors spelling: "F32", "F16", ...
/// Parses a safetensors dtype name; returns false for names we do not support.
bool parse_dtype(const std::string& name, dtype& out);

/// Row-major tensor view. `data == nullptr` means "absent" (e.g. a bias the model lacks).
struct tensor_view {
  std::string name;
  dtype type = dtype::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::size_t nbytes = 0;

  bool present() const { return data != nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? numel() : numel() / shape[0]; }
};

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace hs
