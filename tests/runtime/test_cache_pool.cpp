// cache_pool: freed blocks are kept and reused (no pinning or cudaFree per pass), spare memory
// stays within the device cap and host budget, and prewarm pins ahead of use.
#include <catch2/catch.hpp>
#include <set>

#include "hybridserve/cache_pool.hpp"
#include "hybridserve/engine.hpp"
#include "hybridserve/synthetic_model.hpp"

namespace {
hs::model_config tiny() {
  auto c = hs::synthetic_config("tiny");
  REQUIRE(c.ok());
  return *c;
}
}  // namespace

TEST_CASE("cache pool: released blocks are reused, not reallocated", "[cache]") {
  auto be = hs::make_backend("cpu", std::size_t(1) << 30);
  hs::cache_pool pool(*be, tiny(), 4);
  const auto kv = int64_t(pool.block_bytes(hs::cache_form::kv));
  pool.set_device_cap(2 * kv);
  pool.reserve(1, 16, hs::cache_form::kv);  // 4 blocks: 2 on the device, 2 on the host
  std::set<char*> first;
  for (auto id : pool.blocks_of(1)) first.insert(pool.block(id).data);
  const auto used = be->device_used();
  pool.release(1);
  CHECK(pool.device_bytes() == 0);
  CHECK(pool.host_bytes() == 0);
  CHECK(pool.spare_bytes(hs::cache_tier::device) == 2 * kv);
  CHECK(pool.spare_bytes(hs::cache_tier::host) == 2 * kv);
  CHECK(be->device_used() == used);  // kept, not freed
  pool.reserve(2, 16, hs::cache_form::kv);
  std::set<char*> second;
  for (auto id : pool.blocks_of(2)) second.insert(pool.block(id).data);
  CHECK(second == first);
  CHECK(pool.spare_bytes(hs::cache_tier::device) == 0);
  CHECK(pool.spare_bytes(hs::cache_tier::host) == 0);
  CHECK(be->device_used() == used);
}

TEST_CASE("cache pool: spares of the other form make room within the device cap", "[cache]") {
  auto be = hs::make_backend("cpu", std::size_t(1) << 30);
  hs::cache_pool pool(*be, tiny(), 4);
  const auto kv = int64_t(pool.block_bytes(hs::cache_form::kv));
  const auto act = int64_t(pool.block_bytes(hs::cache_form::act));
  pool.set_device_cap(2 * kv);
  pool.reserve(1, 8, hs::cache_form::kv);
  pool.release(1);  // 2 KV spares fill the cap
  const auto base = int64_t(be->device_used()) - 2 * kv;
  pool.reserve(2, 8, hs::cache_form::act);
  for (auto id : pool.blocks_of(2)) CHECK(pool.block(id).tier == hs::cache_tier::device);
  // Held device memory (in use + spare) never exceeds the cap.
  CHECK(pool.device_bytes() + pool.spare_bytes(hs::cache_tier::device) <= 2 * kv);
  CHECK(int64_t(be->device_used()) - base <= 2 * kv);
  CHECK(pool.device_bytes() == 2 * act);
}

TEST_CASE("cache pool: prewarm pins host blocks ahead, within the host budget", "[cache]") {
  auto be = hs::make_backend("cpu", std::size_t(1) << 30);
  hs::cache_pool pool(*be, tiny(), 4);
  const auto act = int64_t(pool.block_bytes(hs::cache_form::act));
  pool.set_device_cap(0);
  pool.set_host_budget(3 * act);
  CHECK(pool.prewarm(hs::cache_form::act, hs::cache_tier::host, 5) == 3);  // budget stops it
  CHECK(pool.spare_bytes(hs::cache_tier::host) == 3 * act);
  pool.reserve(1, 12, hs::cache_form::act);  // takes the three spares
  CHECK(pool.spare_bytes(hs::cache_tier::host) == 0);
  CHECK(pool.host_bytes() == 3 * act);
  CHECK_THROWS_WITH(pool.reserve(2, 1, hs::cache_form::act), Catch::Contains("cache full"));
}
