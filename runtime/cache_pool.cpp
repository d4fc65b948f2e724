// Block allocation for the hybrid cache. A block is allocated whole (all layers) on first use
// and freed when its sequence ends; its form and tier never change while it lives.
#include "hybridserve/cache_pool.hpp"

#include "hybridserve/error.hpp"

namespace hs {

cache_pool::cache_pool(backend& be, const model_config& cfg, int block_size)
    : be_(be), cfg_(cfg), block_size_(block_size) {
  if (block_size <= 0) throw error("cache block size must be positive");
}

cache_pool::~cache_pool() {
  for (auto& [seq, e] : seqs_)
    for (auto id : e.blocks)
      if (blocks_[std::size_t(id)].tier == cache_tier::device)
        be_.device_free(blocks_[std::size_t(id)].data);
  for (auto& sp : spares_)
    for (auto& sd : sp[int(cache_tier::device)]) be_.device_free(sd.data);
}

std::size_t cache_pool::layer_bytes(cache_form f) const {
  const std::size_t eb = std::size_t(be_.elem_bytes()), B = std::size_t(block_size_);
  return f == cache_form::kv ? 2 * B * std::size_t(cfg_.kv_dim()) * eb
                             : B * std::size_t(cfg_.hidden) * eb;
}

std::size_t cache_pool::block_bytes(cache_form f) const {
  return layer_bytes(f) * std::size_t(cfg_.n_layer);
}

char* cache_pool::kv_slice(const cache_block& b, int j, bool v) const {
  return b.data + std::size_t(j) * layer_bytes(cache_form::kv) +
         (v ? layer_bytes(cache_form::kv) / 2 : 0);
}

char* cache_pool::act_slice(const cache_block& b, int j) const {
  return b.data + std::size_t(j) * layer_bytes(cache_form::act);
}

bool cache_pool::fits(cache_tier tier, int64_t bytes, bool with_spares) const {
  const bool device = tier == cache_tier::device;
  if (!device && host_budget_ <= 0) return true;  // the host tier is capped only by a budget
  const int64_t held =
      (device ? dev_bytes_ : host_bytes_) + (with_spares ? spare_bytes_[int(tier)] : 0);
  return held + bytes <= (device ? device_cap_ : host_budget_);
}

char* cache_pool::allocate(cache_tier tier, int64_t bytes, std::shared_ptr<void>& host) {
  if (tier == cache_tier::host) {
    host = be_.host_alloc(std::size_t(bytes));
    return static_cast<char*>(host.get());
  }
  return static_cast<char*>(be_.device_alloc(std::size_t(bytes), "cache block"));
}

char* cache_pool::take(cache_form form, cache_tier tier, std::shared_ptr<void>& host) {
  const int t = int(tier);
  const int64_t bytes = int64_t(block_bytes(form));
  if (!fits(tier, bytes, false)) return nullptr;
  auto& mine = spares_[int(form)][t];
  if (!mine.empty()) {
    spare sp = std::move(mine.back());
    mine.pop_back();
    spare_bytes_[t] -= bytes;
    host = std::move(sp.host);
    return sp.data;
  }
  const cache_form other = form == cache_form::kv ? cache_form::act : cache_form::kv;
  while (!fits(tier, bytes, true) && !spares_[int(other)][t].empty()) drop_spare(other, tier);
  if (!fits(tier, bytes, true)) return nullptr;
  if (tier == cache_tier::host) return allocate(tier, bytes, host);
  try {
    return allocate(tier, bytes, host);
  } catch (const error&) {
    return nullptr;  // device full after all: the caller falls through to the host tier
  }
}

void cache_pool::give_back(cache_form form, cache_tier tier, char* data,
                           std::shared_ptr<void> host) {
  spares_[int(form)][int(tier)].push_back({data, std::move(host)});
  spare_bytes_[int(tier)] += int64_t(block_bytes(form));
}

void cache_pool::drop_spare(cache_form form, cache_tier tier) {
  auto& v = spares_[int(form)][int(tier)];
  if (v.empty()) return;
  if (tier == cache_tier::device) be_.device_free(v.back().data);
  v.pop_back();  // host memory goes with its owner
  spare_bytes_[int(tier)] -= int64_t(block_bytes(form));
}

int64_t cache_pool::prewarm(cache_form form, cache_tier tier, int64_t n) {
  int64_t made = 0;
  const int64_t bytes = int64_t(block_bytes(form));
  for (; made < n && fits(tier, bytes, true); ++made) {
    std::shared_ptr<void> host;
    char* p = nullptr;
    try {  // best effort: what cannot be had now is allocated (or refused) when needed
      p = allocate(tier, bytes, host);
    } catch (const error&) {
      break;
    }
    give_back(form, tier, p, std::move(host));
  }
  return made;
}

int32_t cache_pool::new_block(cache_form form, int32_t first_pos) {
  const int64_t bytes = int64_t(block_bytes(form));
  cache_block b;
  b.form = form;
  b.first_pos = first_pos;
  std::shared_ptr<void> host;
  b.tier = cache_tier::device;
  b.data = take(form, cache_tier::device, host);
  if (!b.data) {
    b.tier = cache_tier::host;
    b.data = take(form, cache_tier::host, host);
    if (!b.data)
      throw error("cache full: a " + std::to_string(bytes) + "-byte block fits neither the " +
                  "device cache cap (" + std::to_string(device_cap_) + " bytes) nor the host " +
                  "budget (" + std::to_string(host_budget_ - host_bytes_) + " bytes left)");
  }
  (b.tier == cache_tier::device ? dev_bytes_ : host_bytes_) += bytes;
  int32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
    blocks_[std::size_t(id)] = b;
    host_mem_[std::size_t(id)] = std::move(host);
  } else {
    id = int32_t(blocks_.size());
    blocks_.push_back(b);
    host_mem_.push_back(std::move(host));
  }
  return id;
}

void cache_pool::free_block(int32_t id) {
  auto& b = blocks_[std::size_t(id)];
  const int64_t bytes = int64_t(block_bytes(b.form));
  (b.tier == cache_tier::device ? dev_bytes_ : host_bytes_) -= bytes;
  give_back(b.form, b.tier, b.data, std::move(host_mem_[std::size_t(id)]));
  host_mem_[std::size_t(id)].reset();
  b = cache_block{};
  free_ids_.push_back(id);
}

void cache_pool::reserve(int64_t seq, int64_t tokens, cache_form form) {
  auto& e = seqs_[seq];
  std::vector<int32_t> added;
  try {
    while (e.reserved < e.length + tokens) {
      added.push_back(new_block(form, int32_t(e.reserved)));
      e.blocks.push_back(added.back());
      e.reserved += block_size_;
    }
  } catch (...) {
    for (auto id : added) {  // all or nothing
      free_block(id);
      e.blocks.pop_back();
      e.reserved -= block_size_;
    }
    if (e.blocks.empty()) seqs_.erase(seq);
    throw;
  }
}

void cache_pool::commit(int64_t seq, int64_t tokens) {
  auto& e = seqs_.at(seq);
  e.length += tokens;
  for (auto id : e.blocks) {
    auto& b = blocks_[std::size_t(id)];
    b.used = int32_t(std::min<int64_t>(block_size_, std::max<int64_t>(0, e.length - b.first_pos)));
  }
}

void cache_pool::release(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (auto id : it->second.blocks) free_block(id);
  seqs_.erase(it);
}

int64_t cache_pool::length(int64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.length;
}

const std::vector<int32_t>& cache_pool::blocks_of(int64_t seq) const {
  return seqs_.at(seq).blocks;
}

cache_usage cache_pool::usage_of(int64_t seq) const {
  cache_usage u;
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return u;
  for (auto id : it->second.blocks) {
    const auto& b = blocks_[std::size_t(id)];
    const int f = int(b.form), t = int(b.tier);
    u.blocks[f][t] += 1;
    u.bytes[f][t] += int64_t(block_bytes(b.form));
    u.tokens[f][t] += b.used;
  }
  return u;
}

cache_usage cache_pool::usage() const {
  cache_usage u;
  for (const auto& [seq, e] : seqs_) {
    const auto s = usage_of(seq);
    for (int f = 0; f < 2; ++f)
      for (int t = 0; t < 2; ++t) {
        u.blocks[f][t] += s.blocks[f][t];
        u.bytes[f][t] += s.bytes[f][t];
        u.tokens[f][t] += s.tokens[f][t];
      }
  }
  return u;
}

std::vector<int64_t> cache_pool::sequences() const {
  std::vector<int64_t> out;
  for (const auto& [s, e] : seqs_) out.push_back(s);
  return out;
}

}  // namespace hs
