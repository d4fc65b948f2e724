// The pass buffer pool against a CPU backend with a small byte budget: reuse, growth with
// slack, the fresh set when earlier buffers leave no room, and a clear error when nothing fits.
#include <catch2/catch.hpp>

#include "hybridserve/buffer_pool.hpp"
#include "hybridserve/cpu_backend.hpp"
#include "hybridserve/error.hpp"

TEST_CASE("buffer pool: reuse, slack, a fresh set when the budget is short", "[engine]") {
  auto be = hs::make_cpu_backend(1000);
  hs::buffer_pool pool(*be);
  void *a = nullptr, *b = nullptr, *c = nullptr;
  pool.acquire({{"a", 400, &a}, {"b", 400, &b}});  // 450 + 450 with 1/8 slack
  REQUIRE(a);
  REQUIRE(b);
  CHECK(pool.held() == 900);
  void* a0 = a;
  pool.acquire({{"a", 440, &a}});  // within its slack: the same buffer
  CHECK(a == a0);
  // c cannot grow beside a and b: a fresh set of a and c, with slack (112 + 787).
  pool.acquire({{"a", 100, &a}, {"c", 700, &c}});
  REQUIRE(c);
  CHECK(pool.held() == 899);
  CHECK(be->device_used() == 899);
  // With slack (506 + 562) it would not fit, exactly (450 + 500) it does.
  pool.acquire({{"a", 450, &a}, {"c", 500, &c}});
  CHECK(pool.held() == 950);
  CHECK(be->device_used() == 950);
  // More than the budget: an error naming the budget; clear() gives everything back.
  CHECK_THROWS_WITH(pool.acquire({{"a", 600, &a}, {"b", 600, &b}}),
                    Catch::Contains("device budget exhausted"));
  pool.clear();
  CHECK(be->device_used() == 0);
}

TEST_CASE("buffer pool: slack takes only what the budget has left", "[engine]") {
  auto be = hs::make_cpu_backend(1000);
  hs::buffer_pool pool(*be);
  void *a = nullptr, *b = nullptr;
  pool.acquire({{"a", 800, &a}});  // 800 + 100 (1/8)
  CHECK(pool.held() == 900);
  pool.acquire({{"a", 800, &a}, {"b", 96, &b}});  // b: 96 + 4 (all that is left, not 12)
  REQUIRE(b);
  CHECK(pool.held() == 1000);
  CHECK(be->device_used() == 1000);
  void* b0 = b;
  pool.acquire({{"a", 850, &a}, {"b", 100, &b}});  // both within what they hold: no new buffers
  CHECK(b == b0);
  CHECK(pool.held() == 1000);
}
