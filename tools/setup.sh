#!/usr/bin/env bash
# Installs what hybridserve needs to build and test on Debian 12 (idempotent; run as root or with sudo).
# Usage: tools/setup.sh            -> build dependencies
set -euo pipefail
pkgs=(build-essential cmake ninja-build make pkg-config git ca-certificates
      libcaf-dev libtomlplusplus-dev catch2 nlohmann-json3-dev libopenblas-dev
      libcli11-dev libpcre2-dev libedit-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} packages already installed"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
