// F16/BF16/F32 -> F32, the conversion the CPU path does as each layer is used.
#include <cstring>

#include "hybridserve/error.hpp"
#include "hybridserve/half.hpp"
#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

namespace {
void convert_range(const tensor_view& t, int64_t begin, int64_t n, float* out) {
  switch (t.type) {
    case dtype::f32:
      std::memcpy(out, static_cast<const float*>(t.data) + begin, std::size_t(n) * 4);
      return;
    case dtype::f16: {
      const auto* p = static_cast<const uint16_t*>(t.data) + begin;
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(p[i]);
      return;
    }
    case dtype::bf16: {
      const auto* p = static_cast<const uint16_t*>(t.data) + begin;
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(p[i]);
      return;
    }
    default:
      throw error("tensor '" + t.name + "' of dtype " + dtype_name(t.type) +
                  " cannot be converted to float");
  }
}
}  // namespace

void convert_to_f32(const tensor_view& t, float* out) {
  convert_range(t, 0, t.numel(), out);
}

void convert_rows_to_f32(const tensor_view& t, int64_t row0, int64_t n_rows, float* out) {
  const int64_t cols = t.cols();
  convert_range(t, row0 * cols, n_rows * cols, out);
}

}  // namespace hs::cpu
