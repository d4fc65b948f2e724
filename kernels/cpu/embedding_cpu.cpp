// Token (or position) embedding lookup with on-the-fly conversion to float32.
#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

void embedding_cpu(const tensor_view& table, const int32_t* ids, int64_t M, float* out) {
  const int64_t H = table.cols();
  for (int64_t i = 0; i < M; ++i) convert_rows_to_f32(table, ids[i], 1, out + i * H);
}

}  // namespace hs::cpu
