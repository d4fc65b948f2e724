#!/usr/bin/env bash
# Builds the protocol fuzzer with clang (ASan + UBSan + libFuzzer) in build-fuzz/ and runs it.
# Usage: tools/fuzz.sh [SECONDS] [extra libFuzzer flags...]     (default 20 seconds)
# Installs clang and its sanitizer runtimes when missing (Debian 12: clang-14, whose libFuzzer
# lives in libclang-rt-14-dev, which --no-install-recommends leaves out). The rest of the
# project's dependencies come from tools/setup.sh.
# Crashes are written to build-fuzz/fuzz-artifacts/; new inputs to build-fuzz/tests/fuzz/corpus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-20}"
[ $# -gt 0 ] && shift
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# True when the compiler $1 can link a libFuzzer program with both sanitizers.
fuzzer_works() {
  command -v "$1" >/dev/null 2>&1 || return 1
  local dir ok=0
  dir="$(mktemp -d)"
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$dir/t.cpp"
  "$1" -fsanitize=fuzzer,address,undefined "$dir/t.cpp" -o "$dir/t" >/dev/null 2>&1 || ok=1
  rm -rf "$dir"
  return $ok
}

tools/setup.sh  # idempotent: configuring needs every dependency of the project
CC=clang CXX=clang++
if ! fuzzer_works "$CXX"; then
  echo "fuzz: installing clang and its sanitizer runtimes"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # `clang` and `libclang-rt-dev` are Debian 12's unversioned names for clang-14 and
  # libclang-rt-14-dev; the versioned ones are the fallback where the others are absent.
  $sudo apt-get install -y -qq --no-install-recommends clang libclang-rt-dev ||
    $sudo apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
  command -v "$CXX" >/dev/null 2>&1 || { CC=clang-14 CXX=clang++-14; }
  fuzzer_works "$CXX" || { echo "fuzz: $CXX cannot link -fsanitize=fuzzer" >&2; exit 1; }
fi
export CC CXX

# A build dir of its own: the sanitizer flags must not leak into build/, and CUDA is of no use.
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHS_WITH_CUDA=OFF -DHS_BUILD_TESTS=ON >/dev/null
cmake --build build-fuzz --target fuzz_protocol -j "$(nproc)" || {
  echo "fuzz: could not build fuzz_protocol (is tests/fuzz added in tests/CMakeLists.txt?)" >&2
  exit 1
}

mkdir -p build-fuzz/tests/fuzz/corpus build-fuzz/fuzz-artifacts
echo "fuzz: running fuzz_protocol for ${seconds} s"
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
  build-fuzz/tests/fuzz/fuzz_protocol -max_total_time="$seconds" -max_len=8192 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -dict=tests/fuzz/protocol.dict \
  -artifact_prefix=build-fuzz/fuzz-artifacts/ "$@" \
  build-fuzz/tests/fuzz/corpus tests/fuzz/corpus
