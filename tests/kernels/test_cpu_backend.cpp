// The CPU backend's streams really run concurrently and events order them.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <thread>

#include "hybridserve/cpu_backend.hpp"

TEST_CASE("a copy on the h2d stream does not hold back the compute stream", "[backend]") {
  auto be = hs::make_cpu_backend(std::size_t(1) << 30);
  const std::size_t big = std::size_t(512) << 20;  // ~0.1 s of memcpy
  auto host = be->host_alloc(big);
  std::memset(host.get(), 1, big);
  void* dev = be->device_alloc(big, "big");
  void* x = be->device_alloc(64, "x");
  void* y = be->device_alloc(64, "y");
  be->copy(hs::stream::h2d, dev, host.get(), big);
  be->copy(hs::stream::h2d, dev, host.get(), big);
  const auto copied = be->record(hs::stream::h2d);
  be->add(hs::stream::compute, x, y, 16);
  const auto computed = be->record(hs::stream::compute);
  while (!computed->done()) std::this_thread::yield();
  CHECK_FALSE(copied->done());  // compute finished while the copies were still running
  // And an event makes compute wait for the copy.
  be->wait(hs::stream::compute, copied);
  be->add(hs::stream::compute, x, y, 16);
  const auto after = be->record(hs::stream::compute);
  while (!after->done()) std::this_thread::yield();
  CHECK(copied->done());
  be->synchronize();
  be->device_free(dev);
  be->device_free(x);
  be->device_free(y);
  CHECK(be->device_used() == 0);
}

TEST_CASE("device memory is budgeted", "[backend]") {
  auto be = hs::make_cpu_backend(1000);
  void* a = be->device_alloc(600, "a");
  CHECK_THROWS_WITH(be->device_alloc(600, "the second buffer"),
                    Catch::Contains("the second buffer") && Catch::Contains("1000"));
  be->device_free(a);
  void* b = be->device_alloc(1000, "b");
  CHECK(be->device_peak() == 1000);
  be->device_free(b);
}

TEST_CASE("on_done runs after the event, without blocking the caller", "[backend]") {
  auto be = hs::make_cpu_backend(std::size_t(1) << 30);
  const std::size_t big = std::size_t(512) << 20;  // ~0.1 s: far longer than the check
  auto host = be->host_alloc(big);
  void* dev = be->device_alloc(big, "big");
  be->copy(hs::stream::h2d, dev, host.get(), big);
  std::atomic<bool> fired{false};
  be->on_done(be->record(hs::stream::h2d), [&] { fired = true; });
  CHECK_FALSE(fired.load());  // returned at once, the copy is still running
  be->synchronize();
  CHECK(fired.load());
  be->device_free(dev);
}
