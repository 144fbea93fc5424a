#!/usr/bin/env bash
# Installs what spurious-bench needs on Debian 12 (root or sudo). Skips apt when everything is there.
# Also makes .venv (gitignored): Debian's python3 plus the PyPI `safetensors` and `pandas` packages, with which the
# tests read the models, features and records we write (tests/artifacts/).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake make g++ libcli11-dev nlohmann-json3-dev libssl-dev libgtest-dev libbenchmark-dev python3-numpy
      python3-matplotlib python3-venv python3-pip chromium libopenmpi-dev openmpi-bin)
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
if ! .venv/bin/python -c 'import safetensors, pandas, numpy, matplotlib' 2>/dev/null; then
  echo "install-deps: making .venv with safetensors and pandas (PyPI) over Debian's numpy and matplotlib"
  /usr/bin/python3 -m venv --system-site-packages .venv
  # numpy pinned to Debian's: a PyPI numpy 2 would shadow it and break Debian's matplotlib and scipy.
  numpy_version=$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')
  .venv/bin/pip install -q --disable-pip-version-check 'safetensors>=0.4' 'pandas>=1.5,<2.2' "numpy==$numpy_version"
fi
