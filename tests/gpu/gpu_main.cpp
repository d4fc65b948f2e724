// Runner of the [gpu] tests: exits 77 (ctest's skip code here) when no CUDA device is present.
#define CATCH_CONFIG_RUNNER
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdio>

int main(int argc, char* argv[]) {
  int n = 0;
  // Without a GPU (or a driver), this fails with "insufficient driver" or "no device".
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("no CUDA device: [gpu] tests skipped\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
