#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build, and run the built-in
# default model. Arguments are passed to `hybridserve generate` (default: a short prompt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
bash tools/build.sh
if [ $# -eq 0 ]; then set -- -p "The" -n 32 --seed 1; fi
exec ./build/hybridserve generate "$@"
