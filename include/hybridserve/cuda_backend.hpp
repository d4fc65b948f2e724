// The CUDA backend: fp16 activations, weights and cache on one GPU (device 0), four
// non-blocking streams ordered by CUDA events, a cuBLAS handle per GEMM stream, kernels from
// kernels/cuda. Plain C++ header (no CUDA types), so CPU-only code may include it; the
// functions are defined only in builds with the CUDA backend (kernels/cuda/cuda_backend.cpp),
// except make_cuda_backend_if_built, which runtime/cuda_backend_stub.cpp provides otherwise.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "hybridserve/backend.hpp"

namespace hs {

/// The CUDA backend with a device byte budget, or nullptr with `why` set when there is no usable
/// CUDA device (no driver, "driver insufficient", zero devices, or start-up failed).
std::unique_ptr<backend> make_cuda_backend_if_built(std::size_t device_budget_bytes,
                                                    std::string& why);
/// The same, but throws hs::error (with the reason) instead of returning nullptr.
std::unique_ptr<backend> make_cuda_backend(std::size_t device_budget_bytes);

/// Diagnostics of a CUDA backend (zeros for any other backend).
struct cuda_backend_stats {
  std::size_t pinned_copies = 0;  // host tensors copied into backend-owned pinned memory
  std::size_t pinned_copy_bytes = 0;
  std::size_t arg_ring_waits = 0;  // times argument staging had to block on unfinished work
};
cuda_backend_stats cuda_stats(const backend& be);

}  // namespace hs
