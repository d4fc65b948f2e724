#!/usr/bin/env bash
# On a GPU host (see README "GPU"): build with CUDA, run every test including the [gpu] ones,
# then the benchmarks; logs go to $OUT (or ./gpu-out); a short table is printed last.
# Usage: tools/gpu/run_gpu_checks.sh [tests|smoke|bench|all|profile]   (default: all)
#   tests: build + ctest;  smoke: + a small bench;  bench: + W1..W5 of BENCH.md;  all: everything
#   profile: build + a short W1 (gen 4) under Nsight Systems when nsys exists (summaries in $OUT)
# http_clients is left to CI: GPU hosts have no node/npm (tools/setup.sh installs them on CI).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what="${1:-all}"
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
if [ -f .gpukit/unpack.sh ]; then source .gpukit/unpack.sh >"$out/kit.log" 2>&1; fi
# The built-in model's dictionary test reads Debian's word list; the kit carries wamerican.
if [ ! -f /usr/share/dict/words ] && [ -f "${KIT:-/opt/kit}/usr/share/dict/american-english" ]; then
  export HS_DICT_WORDS="${KIT:-/opt/kit}/usr/share/dict/american-english"
fi
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
echo "$gpu" | tee "$out/gpu.txt"
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${KIT:-/usr}/usr" \
  ${KIT_CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=90 >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j16 >"$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
declare -a table
status=0
if [ "$what" != bench ] && [ "$what" != profile ]; then
  (cd build-gpu && ctest --output-on-failure -j4 --timeout 600 -E '^http_clients$') >"$out/ctest.log" 2>&1 || status=1
  grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/ctest.log" | tail -8
  table+=("ctest: $(grep -E 'tests passed' "$out/ctest.log" | tail -1)")
  # What the reference implementation itself gives in fp16/bf16 on this GPU (where the host has
  # torch + transformers): the yardstick for the fixtures' 3e-2 teacher-forced bound.
  if python3 -c "import torch, transformers" >/dev/null 2>&1; then
    python3 tools/analysis/hf_fp16_check.py >"$out/hf_fp16.txt" 2>/dev/null
    grep "worst" "$out/hf_fp16.txt"
  fi
fi
hs=build-gpu/hybridserve
bench() {  # name, args...
  local name=$1; shift
  echo "== $name: hybridserve bench $*" | tee -a "$out/bench.log"
  timeout 900 "$hs" bench --backend cuda "$@" >"$out/bench-$name.txt" 2>"$out/bench-$name.err"
  local rc=$?
  grep -A6 "^run " "$out/bench-$name.txt" | tee -a "$out/bench.log"
  [ $rc -eq 0 ] || { echo "$name failed (rc $rc)"; tail -5 "$out/bench-$name.err"; }
  table+=("$name: $(grep -E '^hybrid' "$out/bench-$name.txt" | head -1)")
  table+=("$name: $(grep -E '^kv-only' "$out/bench-$name.txt" | head -1)")
}
case "$what" in
  profile)
    if command -v nsys >/dev/null; then
      nsys profile -t cuda,osrt -o "$out/w1-short" --force-overwrite true --stats=false \
        "$hs" bench --backend cuda --shape opt-13b --batch 128 --prompt 512 --gen 4 \
        --device-budget 24GiB >"$out/profile-run.txt" 2>&1
      tail -4 "$out/profile-run.txt"
      for r in cuda_api_sum cuda_gpu_kern_sum cuda_gpu_mem_time_sum cuda_gpu_mem_size_sum osrt_sum; do
        nsys stats -r "$r" -f csv -o "$out/$r" "$out/w1-short.nsys-rep" >/dev/null 2>&1
        echo "-- $r"; head -14 "$out/${r}_$r.csv" 2>/dev/null | cut -c1-200
      done
    else
      echo "nsys not found"
    fi ;;
  smoke) bench smoke --shape opt-6.7b --batch 32 --prompt 128 --gen 8 --device-budget 8GiB --kv-only ;;
  bench|all)
    bench W1 --shape opt-13b --batch 128 --prompt 512 --gen 32 --device-budget 24GiB --kv-only --trace-pass 0 --trace-pass 2 --trace-pass 20
    [ "${HS_BENCH_ALL:-0}" = 1 ] && {
      bench W2 --shape opt-13b --batch 128 --prompt 512 --gen 128 --device-budget 24GiB
      bench W3 --shape opt-30b --batch 32 --prompt 512 --gen 32 --device-budget 24GiB
      bench W4 --shape llama-2-13b --batch 128 --prompt 512 --gen 32 --device-budget 24GiB
      bench W5 --shape llama-3-8b --batch 128 --prompt 512 --gen 32 --device-budget 16GiB
    } ;;
esac
echo
echo "=== summary ($gpu, $(date -u +%Y-%m-%d))"
for row in "${table[@]}"; do echo "$row"; done
exit $status
