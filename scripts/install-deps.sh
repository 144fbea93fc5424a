#!/usr/bin/env bash
# Installs what spurious-bench needs on Debian 12 (root or sudo). Skips apt when everything is there.
set -euo pipefail
pkgs=(cmake make g++ libcli11-dev nlohmann-json3-dev libssl-dev libgtest-dev libbenchmark-dev python3-numpy python3-matplotlib)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
