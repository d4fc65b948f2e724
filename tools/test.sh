#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs the whole test suite: ctest (tests
# tagged [gpu] report "skipped" without a GPU), then a short run of the protocol fuzzer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
bash tools/build.sh
export LANG=C.UTF-8
(cd build && ctest --output-on-failure -j"${HS_JOBS:-2}" --timeout 600)
bash tools/fuzz.sh "${HS_FUZZ_SECONDS:-20}"
