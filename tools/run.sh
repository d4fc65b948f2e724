#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build, and serve the built-in
# default model (TCP message protocol on 127.0.0.1:7070; see config/default.toml). Arguments
# replace the default command, e.g. `tools/run.sh generate -p "Hello"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
bash tools/build.sh
if [ $# -eq 0 ]; then set -- serve; fi
exec ./build/hybridserve "$@"
