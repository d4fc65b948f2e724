// Device buffers kept from one pass to the next: a pass asks for each of its buffers by name and
// gets the one it had last time when it is big enough. Freeing and reallocating every pass would
// make the CUDA backend synchronise the whole device (cudaFree) between passes.
#pragma once
#include <map>
#include <string>

#include "hybridserve/backend.hpp"

namespace hs {

class buffer_pool {
 public:
  explicit buffer_pool(backend& be) : be_(be) {}
  ~buffer_pool() { clear(); }
  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  /// A device buffer of at least `bytes` under `name`. Grows by 1/4 more than asked, so a batch
  /// whose context creeps up by a block per pass does not reallocate every pass. Only call
  /// between passes' uses: a grown buffer replaces the old one at once.
  void* get(const std::string& name, std::size_t bytes) {
    auto& b = bufs_[name];
    if (b.ptr && b.bytes >= bytes) return b.ptr;
    if (b.ptr) be_.device_free(b.ptr);
    b.ptr = nullptr;
    const std::size_t want = std::max<std::size_t>(bytes + bytes / 4, 64);
    b.ptr = be_.device_alloc(want, name);
    b.bytes = want;
    return b.ptr;
  }
  /// Frees every buffer (the work that used them must be finished).
  void clear() {
    for (auto& [n, b] : bufs_)
      if (b.ptr) be_.device_free(b.ptr);
    bufs_.clear();
  }

 private:
  struct buffer {
    void* ptr = nullptr;
    std::size_t bytes = 0;
  };
  backend& be_;
  std::map<std::string, buffer> bufs_;
};

}  // namespace hs
