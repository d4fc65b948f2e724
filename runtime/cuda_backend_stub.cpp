// Built when the CUDA backend is not: asking for it explains why it is missing.
#include <memory>
#include <string>

#include "hybridserve/backend.hpp"

namespace hs {

std::unique_ptr<backend> make_cuda_backend_if_built(std::size_t, std::string& why) {
  why = "this build has no CUDA backend (nvcc was not found at configure time)";
  return nullptr;
}

}  // namespace hs
