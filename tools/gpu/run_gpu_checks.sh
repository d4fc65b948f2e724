#!/usr/bin/env bash
# On a GPU host (see README "GPU"): build with CUDA, run the [gpu] tests and, when asked, the
# benchmarks; logs go to $OUT (or ./gpu-out), a short table is printed last.
# Usage: tools/gpu/run_gpu_checks.sh [tests|bench|all]   (default: all)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what="${1:-all}"
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
if [ -f .gpukit/unpack.sh ]; then source .gpukit/unpack.sh >"$out/kit.log" 2>&1; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${KIT:-/usr}/usr" \
  ${KIT_CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=90 >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j16 >"$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
status=0
if [ "$what" = tests ] || [ "$what" = all ]; then
  (cd build-gpu && ctest --output-on-failure -j4 --timeout 600) >"$out/ctest.log" 2>&1 || status=1
  tail -25 "$out/ctest.log"
fi
exit $status
