#!/usr/bin/env bash
# Sets up what is missing, then runs every test of refcast.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --locked --all-targets
# (That includes tests/bad_input.rs: the bad-input table, checksums, atomic output, the fuzz smoke
# test; and tests/long_run.rs: 2,000-prediction runs, device faults, threads. The 10,000-run
# variants and cargo-fuzz are run by hand, see SECURITY.md.)
# The training pipeline: the exporter's Q4_0 quantizer against GGML's rounding, the Rust CLI
# against PyTorch on exported Q8_0/Q4_0 files, then the whole train -> evaluate path on tiny
# synthetic data (training/smoke.py), both with the CLI that cargo test just built.
python3 -m training.test_quantize
REFCAST_BIN="$PWD/target/debug/refcast" python3 -m training.test_runtime
REFCAST_BIN="$PWD/target/debug/refcast" python3 -m training smoke
# The Python package (python/): a release wheel (the tests' screens of every perturbation and
# 1,000 predictions need the CPU backend at speed; the tests compare it with the debug CLI, so
# also the profiles' numbers), installed into a fresh venv that sees the system's anndata and
# scanpy. See python/README.md.
bash python/build-wheel.sh --release
rm -rf target/pyenv && python3 -m venv --system-site-packages target/pyenv
target/pyenv/bin/python -m pip install -q --no-deps --force-reinstall target/wheels/refcast-0.1.0-*.whl
(cd python/tests && REFCAST_BIN="$PWD/../../target/debug/refcast" ../../target/pyenv/bin/python -m pytest -q -p no:cacheprovider .)
# Benchmark harness, smoke mode (seconds; peers that are not installed are skipped): bench/run.py.
python3 bench/run.py --smoke
# The wasm build, the npm package (Node) and the www/ page in headless Chromium: scripts/test-web.sh.
bash scripts/test-web.sh
