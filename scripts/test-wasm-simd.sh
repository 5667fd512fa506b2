#!/usr/bin/env bash
# The wasm SIMD kernels on wasm32 (cargo test runs natively, where they do not exist): builds
# tests/wasm-simd (the kernel files compiled into a small module, simd128 as in build-wasm.sh)
# and runs its checks in Node. Needs only what build-wasm.sh needs: the wasm32 target and Node.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="$(pwd)/${CARGO_TARGET_DIR:-target}"
case "${CARGO_TARGET_DIR:-}" in /*) target_dir="$CARGO_TARGET_DIR" ;; esac
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128" \
  cargo build --locked --release --target wasm32-unknown-unknown \
  --manifest-path tests/wasm-simd/Cargo.toml --target-dir "$target_dir"
node tests/wasm-simd/run.mjs "$target_dir/wasm32-unknown-unknown/release/simdcheck.wasm"
