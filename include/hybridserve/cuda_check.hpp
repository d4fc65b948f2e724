// Checking macros for CUDA runtime and cuBLAS calls: a failure becomes an hs::error naming the
// statement, file, line and the library's own error text (library code never exits or prints).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "hybridserve/error.hpp"

namespace hs::cuda::detail {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* stmt, const char* file, int line) {
  // Clears a non-sticky error (e.g. a failed cudaMalloc) so the next check starts clean.
  (void)cudaGetLastError();
  throw hs::error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                  ") in `" + stmt + "` at " + file + ":" + std::to_string(line));
}

[[noreturn]] inline void throw_cublas(cublasStatus_t s, const char* stmt, const char* file,
                                      int line) {
  throw hs::error(std::string("cuBLAS error ") + cublasGetStatusName(s) + " (" +
                  cublasGetStatusString(s) + ") in `" + stmt + "` at " + file + ":" +
                  std::to_string(line));
}

}  // namespace hs::cuda::detail

/// Evaluates a cudaError_t expression once; throws hs::error unless it is cudaSuccess.
#define HS_CUDA_TRY(expr)                                                      \
  do {                                                                         \
    const cudaError_t hs_cuda_err_ = (expr);                                   \
    if (hs_cuda_err_ != cudaSuccess)                                           \
      ::hs::cuda::detail::throw_cuda(hs_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

/// Evaluates a cublasStatus_t expression once; throws hs::error unless CUBLAS_STATUS_SUCCESS.
#define HS_CUBLAS_TRY(expr)                                                       \
  do {                                                                            \
    const cublasStatus_t hs_cublas_st_ = (expr);                                  \
    if (hs_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                   \
      ::hs::cuda::detail::throw_cublas(hs_cublas_st_, #expr, __FILE__, __LINE__); \
  } while (0)

/// After a <<<...>>> launch: reports a bad launch configuration (does not synchronize).
#define HS_CUDA_CHECK_LAUNCH() HS_CUDA_TRY(cudaGetLastError())
