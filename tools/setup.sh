#!/usr/bin/env bash
# Installs what hybridserve needs to build and test on Debian 12 (idempotent; run as root or with sudo).
# Usage: tools/setup.sh            -> build dependencies
set -euo pipefail
pkgs=(build-essential cmake ninja-build make pkg-config git ca-certificates
      libcaf-dev libtomlplusplus-dev catch2 nlohmann-json3-dev libopenblas-dev
      libcli11-dev libpcre2-dev libedit-dev
      libcpp-httplib-dev curl prometheus   # HTTP API; curl and promtool check it (tests/http)
      wamerican)  # /usr/share/dict/words: the built-in model's dictionary-word test
# The openai npm client of tests/http needs node with npm (Node 20 where it is preinstalled);
# Debian's own only where there is no node at all.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
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
# Only promtool is wanted from the prometheus package: don't leave its server running.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "setup: done"
