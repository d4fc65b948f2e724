// nn.Linear on OpenBLAS: y[M, N] = x[M, K] @ w[N, K]^T + b.
#include <cblas.h>

#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

void linear_cpu(const float* x, const float* w, const float* b, float* y, int64_t M, int64_t N,
                int64_t K) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, x, int(K), w,
              int(K), 0.0f, y, int(N));
  if (b) add_bias_cpu(y, b, M, N);
}

}  // namespace hs::cpu
