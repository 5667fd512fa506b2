#!/usr/bin/env bash
# The browser side's tests: builds pkg/ if a source changed, then the wasm SIMD kernels' checks
# on wasm32 (scripts/test-wasm-simd.sh), the npm package's tests in Node (node:test, wasm CPU
# backend), then the www/ page and a Vite-built app in headless Chromium
# (WebGPU on the software adapter, and the CPU path). Under CI=true a Chromium without WebGPU
# fails the run.
# Screenshots: target/browser-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-wasm.sh --if-needed
bash scripts/test-wasm-simd.sh
node --test tests/node/
node --test --test-concurrency=1 tests/browser/
