#!/usr/bin/env bash
# Sets up what is missing, then runs every test of refcast.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --locked --all-targets
# (That includes tests/bad_input.rs: the bad-input table, checksums, atomic output, the fuzz smoke
# test; and tests/long_run.rs: 2,000-prediction runs, device faults, threads. The 10,000-run
# variants and cargo-fuzz are run by hand, see SECURITY.md.)
# Benchmark harness, smoke mode (seconds; peers that are not installed are skipped): bench/run.py.
python3 bench/run.py --smoke
# The wasm build, the npm package (Node) and the www/ page in headless Chromium: scripts/test-web.sh.
bash scripts/test-web.sh
