#!/usr/bin/env bash
# Installs what refcast's tests need on a fresh Debian machine with Rust, Python and Node.
# Idempotent: anything already present is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The software Vulkan adapter (lavapipe) that GPU tests run on where there is no GPU.
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The Python side of the format round-trip test.
if ! python3 -c "import safetensors.numpy, numpy" 2>/dev/null; then
  echo "setup: pip install -r tests/requirements.txt"
  python3 -m pip install -q -r tests/requirements.txt
fi
