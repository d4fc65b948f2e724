// Paged cache memory: blocks of `block_size` tokens covering every layer, each in one form
// (kv or act) on one tier (device or host). Owned by the cache accountant.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/cost_model.hpp"

namespace hs {

/// Per-layer slice layout of a block (eb = backend element bytes, B = block_size):
///   kv:  [n_layer][2][B][kv_dim]  K slice then V slice, each token-major
///   act: [n_layer][B][hidden]     the layer inputs (residual stream before the norm)
struct cache_block {
  cache_form form = cache_form::kv;
  cache_tier tier = cache_tier::device;
  char* data = nullptr;
  int32_t first_pos = 0;  // position of the block's first token
  int32_t used = 0;       // tokens written
};

struct cache_usage {
  int64_t blocks[2][2] = {};  // [form][tier]
  int64_t bytes[2][2] = {};
  int64_t tokens[2][2] = {};
};

/// Block storage and per-sequence block tables. Not thread-safe: one actor owns it.
/// Freed blocks are kept for reuse (per form and tier) instead of being returned: pinning host
/// memory runs at a few GB/s and cudaFreeHost/cudaFree synchronise the device, so neither may
/// happen per pass. Spare memory still counts against the device cap and the host budget; a
/// spare of the other form is returned when a new block needs its room.
class cache_pool {
 public:
  cache_pool(backend& be, const model_config& cfg, int block_size);
  ~cache_pool();

  int block_size() const { return block_size_; }
  std::size_t layer_bytes(cache_form f) const;  // one layer's slice of one block
  std::size_t block_bytes(cache_form f) const;  // all layers
  /// K (or V when v = true) of layer j for block b; kv form only.
  char* kv_slice(const cache_block& b, int j, bool v) const;
  /// Activation rows of layer j; act form only.
  char* act_slice(const cache_block& b, int j) const;

  /// Caps on device bytes per form (what the plan allows); host is capped by host_budget.
  void set_device_cap(int64_t bytes) { device_cap_ = bytes; }
  void set_host_budget(int64_t bytes) { host_budget_ = bytes; }

  /// Appends blocks so `seq` can hold `tokens` more tokens; new blocks take `form`, on the
  /// device while the cap allows, else on the host. Throws hs::error when neither has room.
  void reserve(int64_t seq, int64_t tokens, cache_form form);
  /// Marks `tokens` more tokens of `seq` written (after the step that wrote them).
  void commit(int64_t seq, int64_t tokens);
  void release(int64_t seq);
  /// Allocates up to `n` spare blocks of `form` on `tier` ahead of use (engine start: the host
  /// tier of the first plan is pinned before the first request instead of during it), within
  /// the cap/budget. Returns how many were made.
  int64_t prewarm(cache_form form, cache_tier tier, int64_t n);
  int64_t spare_bytes(cache_tier tier) const { return spare_bytes_[int(tier)]; }
  bool has(int64_t seq) const { return seqs_.count(seq) != 0; }
  int64_t length(int64_t seq) const;
  const std::vector<int32_t>& blocks_of(int64_t seq) const;
  const cache_block& block(int32_t id) const { return blocks_[std::size_t(id)]; }

  cache_usage usage() const;
  cache_usage usage_of(int64_t seq) const;
  int64_t device_bytes() const { return dev_bytes_; }
  int64_t host_bytes() const { return host_bytes_; }
  std::vector<int64_t> sequences() const;

 private:
  int32_t new_block(cache_form form, int32_t first_pos);
  void free_block(int32_t id);
  // Storage of one block: a spare when there is one, else fresh memory within the limit
  // (spares of the other form are returned to make room). Null when the tier is full.
  char* take(cache_form form, cache_tier tier, std::shared_ptr<void>& host);
  // Whether `bytes` more fit the tier's limit (device cap, host budget when set), counting what
  // is in use and, with_spares, the spares held too.
  bool fits(cache_tier tier, int64_t bytes, bool with_spares) const;
  // Fresh block memory on `tier` (host memory owned by `host`); throws hs::error.
  char* allocate(cache_tier tier, int64_t bytes, std::shared_ptr<void>& host);
  void give_back(cache_form form, cache_tier tier, char* data, std::shared_ptr<void> host);
  void drop_spare(cache_form form, cache_tier tier);

  backend& be_;
  model_config cfg_;
  int block_size_;
  int64_t device_cap_ = 0, host_budget_ = 0;
  int64_t dev_bytes_ = 0, host_bytes_ = 0;
  std::vector<cache_block> blocks_;
  std::vector<int32_t> free_ids_;
  std::vector<std::shared_ptr<void>> host_mem_;  // index = block id (host tier)
  struct spare {
    char* data;
    std::shared_ptr<void> host;  // owner of host-tier memory
  };
  std::vector<spare> spares_[2][2];  // [form][tier]
  int64_t spare_bytes_[2] = {};      // [tier]
  struct seq_entry {
    std::vector<int32_t> blocks;
    int64_t length = 0;    // committed tokens
    int64_t reserved = 0;  // capacity of its blocks
  };
  std::map<int64_t, seq_entry> seqs_;
};

}  // namespace hs
