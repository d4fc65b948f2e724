// The CPU backend: "device memory" is a host arena with a byte budget, each stream is a worker
// thread with a FIFO of work, events are completion flags. Copies therefore really overlap
// compute, and everything above the backend runs on machines without a GPU.
#pragma once
#include <memory>

#include "hybridserve/backend.hpp"

namespace hs {

std::unique_ptr<backend> make_cpu_backend(std::size_t device_budget_bytes);

}  // namespace hs
