#!/usr/bin/env bash
# Installs what refcast's tests need on a fresh Debian machine with Rust, Python and Node.
# Idempotent: anything already present is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

# Whether every `name==version` (or `name[extra,...]==version`) line of a requirements file is
# installed at that version (extras: the package itself is checked).
pinned_versions_installed() {
  python3 - "$1" <<'EOF'
import importlib.metadata as md, re, sys
for line in open(sys.argv[1]):
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
    if m:
        try:
            if md.version(m[1]) != m[2]:
                sys.exit(1)
        except md.PackageNotFoundError:
            sys.exit(1)
EOF
}

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

# The training pipeline's packages (torch, scanpy, ...), for its Python smoke test: exactly the
# versions and hashes of training/requirements.lock. --no-deps is by design: the lock leaves out the
# CUDA packages that torch does not need on a CPU (its header says why). 2.6 GB of wheels, 1.5-5
# minutes on 2 cores (by load); --no-compile and --no-cache-dir save 3 minutes of byte-compiling
# and 2.6 GB of cache. Skipped when every locked package is installed at its locked version (a check
# that takes well under a second, where importing torch and scanpy takes 10-30 s).
if ! pinned_versions_installed training/requirements.lock; then
  echo "setup: pip install --require-hashes --no-deps -r training/requirements.lock (2.6 GB, a few minutes)"
  python3 -m pip install -q --no-cache-dir --no-compile --require-hashes --no-deps -r training/requirements.lock
fi

# decoupler, the reference the enrichment test compares with (tests/requirements-decoupler.txt says
# why --no-deps: its remaining dependencies come from the training lock above).
if ! pinned_versions_installed tests/requirements-decoupler.txt; then
  echo "setup: pip install --require-hashes --no-deps -r tests/requirements-decoupler.txt"
  python3 -m pip install -q --require-hashes --no-deps -r tests/requirements-decoupler.txt
fi

# The Python package's build and tests (python/): maturin, pytest and ray[data] at
# python/requirements-dev.txt's versions.
if ! pinned_versions_installed python/requirements-dev.txt; then
  echo "setup: pip install -r python/requirements-dev.txt"
  python3 -m pip install -q -r python/requirements-dev.txt
fi

# The browser side (scripts/build-wasm.sh, scripts/test-web.sh): the wasm32 target, wasm-bindgen-cli
# at exactly Cargo.lock's wasm-bindgen version, Debian's Chromium for the real-browser tests, and
# the npm devDependencies (playwright-core, binaryen's wasm-opt).
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
wasm_bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$wasm_bindgen" ]; then
  echo "setup: cargo install wasm-bindgen-cli --version $wasm_bindgen (a few minutes)"
  cargo install -q wasm-bindgen-cli --version "$wasm_bindgen"
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: apt-get install chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
