// Device buffers kept from one pass to the next: a pass asks for all of its buffers by name at
// once and gets the ones it had last time when they are big enough. Freeing and reallocating
// every pass would make the CUDA backend synchronise the whole device (cudaFree) between passes.
// When a pass needs a buffer to grow and the budget has no room, the pool lets go of what the
// earlier passes held and allocates this pass's set afresh: a prefill pass's wide buffers and a
// decode pass's cache workspace then share the same memory instead of both being reserved.
#pragma once
#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/error.hpp"

namespace hs {

class buffer_pool {
 public:
  explicit buffer_pool(backend& be) : be_(be) {}
  ~buffer_pool() { clear(); }
  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  struct request {
    std::string name;
    std::size_t bytes = 0;
    void** out = nullptr;  // receives the buffer
  };

  /// Device buffers of at least the asked bytes, under their names. Growth adds up to 1/8 more
  /// than asked, as much of it as the budget has left, so a batch whose context creeps up by a
  /// block per pass does not reallocate every pass. Only call between passes: buffers may be
  /// replaced, and the work that used them must be finished. Throws hs::error when even a fresh set
  /// does not fit.
  void acquire(const std::vector<request>& reqs) {
    bool fits = true;
    for (const auto& r : reqs) {
      auto it = bufs_.find(r.name);
      fits = fits && it != bufs_.end() && it->second.bytes >= need(r);
    }
    if (!fits) {
      try {
        for (const auto& r : reqs) grow(r.name, need(r), true);
      } catch (const error&) {
        // No room to grow beside what earlier passes kept: start from nothing, this pass's
        // buffers only, all with slack if they fit so, else all at their exact sizes (slack
        // taken by the first ones must not leave the last without room).
        clear();
        try {
          for (const auto& r : reqs) grow(r.name, need(r), true);
        } catch (const error&) {
          clear();
          for (const auto& r : reqs) grow(r.name, need(r), false);
        }
      }
    }
    for (const auto& r : reqs) *r.out = bufs_.at(r.name).ptr;
  }
  /// Frees every buffer (the work that used them must be finished).
  void clear() {
    for (auto& [n, b] : bufs_)
      if (b.ptr) be_.device_free(b.ptr);
    bufs_.clear();
  }
  /// Bytes held now.
  std::size_t held() const {
    std::size_t n = 0;
    for (const auto& [k, b] : bufs_) n += b.bytes;
    return n;
  }

 private:
  struct buffer {
    void* ptr = nullptr;
    std::size_t bytes = 0;
  };
  static std::size_t need(const request& r) { return std::max<std::size_t>(r.bytes, 64); }
  void grow(const std::string& name, std::size_t bytes, bool slack) {
    auto& b = bufs_[name];
    if (b.ptr && b.bytes >= bytes) return;
    if (b.ptr) be_.device_free(b.ptr);
    b.ptr = nullptr;
    b.bytes = 0;
    std::size_t extra = 0;
    if (slack) {
      const std::size_t used = be_.device_used() + bytes, budget = be_.device_budget();
      extra = std::min(bytes / 8, budget > used ? budget - used : 0);
    }
    const std::size_t want = bytes + extra;
    b.ptr = be_.device_alloc(want, name);
    b.bytes = want;
  }
  backend& be_;
  std::map<std::string, buffer> bufs_;
};

}  // namespace hs
