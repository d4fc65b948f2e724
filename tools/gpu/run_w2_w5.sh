#!/usr/bin/env bash
# On a GPU host: build (if needed) and run BENCH.md's W2-W5 (or those named: run_w2_w5.sh W5 W3)
# one after another, each under its own time limit, logs in $OUT (or ./gpu-out); prints each
# run's table rows as it finishes. W1 (hybrid only) too when named; $HS_BENCH_EXTRA is added to
# every run's arguments (e.g. HS_BENCH_EXTRA="--trace-pass 0 --ring-slots 3"); $HS_REPEAT runs
# each workload that many times (default 1).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
if [ -f .gpukit/unpack.sh ]; then source .gpukit/unpack.sh >"$out/kit.log" 2>&1; fi
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${KIT:-/usr}/usr" \
  ${KIT_CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=90 >"$out/configure.log" 2>&1 || exit 1
cmake --build build-gpu -j16 --target hybridserve >"$out/build.log" 2>&1 || exit 1
want="${*:-W5 W4 W3 W2}"
run() {  # name, seconds, args...
  local name=$1 limit=$2; shift 2
  [[ " $want " == *" $name "* ]] || return 0
  echo "== $name: hybridserve bench --backend cuda $*"
  local t=""
  [ -x /usr/bin/time ] && t="/usr/bin/time -f peak-host-rss-KiB=%M"
  for i in $(seq 1 "${HS_REPEAT:-1}"); do
    local f="$out/bench-$name-$i"
    # shellcheck disable=SC2086
    timeout "$limit" $t build-gpu/hybridserve bench --backend cuda "$@" ${HS_BENCH_EXTRA:-} >"$f.txt" 2>"$f.err"
    echo "rc $?"; grep -h peak-host-rss "$f.err"; grep -E "^(hybrid|kv-only)" "$f.txt"; grep -E "^why" "$f.txt" | cut -c1-400
    grep -oE "\[pass [0-9]+\].*" "$f.txt" | head -12
  done
}
run W1 300 --shape opt-13b --batch 128 --prompt 512 --gen 32 --device-budget 24GiB
run W5 150 --shape llama-3-8b --batch 128 --prompt 512 --gen 32 --device-budget 16GiB
run W4 150 --shape llama-2-13b --batch 128 --prompt 512 --gen 32 --device-budget 24GiB
run W3 200 --shape opt-30b --batch 32 --prompt 512 --gen 32 --device-budget 24GiB
run W2 200 --shape opt-13b --batch 128 --prompt 512 --gen 128 --device-budget 24GiB
