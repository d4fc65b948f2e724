// The byte budget of a backend's device memory: every allocation is checked against it and
// recorded, so used/peak figures and the over-budget message are the same on every backend.
#pragma once
#include <algorithm>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "hybridserve/error.hpp"

namespace hs {

class budget_ledger {
 public:
  explicit budget_ledger(std::size_t budget) : budget_(budget) {}

  /// Calls raw(bytes) for the memory once the budget allows it; throws hs::error naming
  /// `what`, the bytes needed and the bytes left otherwise. `raw` may throw too.
  template <class RawAlloc>
  void* allocate(std::size_t bytes, const std::string& what, RawAlloc&& raw) {
    std::lock_guard<std::mutex> lk(m_);
    const std::size_t left = budget_ - used_;
    if (bytes > left)
      throw error("device budget exhausted: " + what + " needs " + std::to_string(bytes) +
                  " bytes, " + std::to_string(left) + " of " + std::to_string(budget_) + " left");
    void* p = raw(bytes, left);
    allocs_[p] = bytes;
    used_ += bytes;
    peak_ = std::max(peak_, used_);
    return p;
  }
  /// Forgets p and calls raw_free(p); unknown pointers are ignored. Never throws.
  template <class RawFree>
  void release(void* p, RawFree&& raw_free) noexcept {
    if (!p) return;
    std::lock_guard<std::mutex> lk(m_);
    auto it = allocs_.find(p);
    if (it == allocs_.end()) return;
    used_ -= it->second;
    allocs_.erase(it);
    raw_free(p);
  }
  /// Frees everything still recorded (backend teardown).
  template <class RawFree>
  void release_all(RawFree&& raw_free) noexcept {
    std::lock_guard<std::mutex> lk(m_);
    for (auto& [p, n] : allocs_) raw_free(p);
    allocs_.clear();
    used_ = 0;
  }
  std::size_t budget() const { return budget_; }
  std::size_t used() const {
    std::lock_guard<std::mutex> lk(m_);
    return used_;
  }
  std::size_t peak() const {
    std::lock_guard<std::mutex> lk(m_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lk(m_);
    peak_ = used_;
  }

 private:
  std::size_t budget_;
  mutable std::mutex m_;
  std::size_t used_ = 0, peak_ = 0;
  std::unordered_map<void*, std::size_t> allocs_;
};

}  // namespace hs
