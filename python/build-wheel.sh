#!/usr/bin/env bash
# Builds the refcast wheel into target/wheels: copies the bundled model, the gene sets published
# beside it and their SHA256SUMS lines into the package (refcast/models/, not in git), then runs
# maturin with the arguments given (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p refcast/models
cp -p ../models/refcast-q8_0.safetensors ../models/refcast-genesets.safetensors refcast/models/
grep -E '[ *]refcast-(q8_0|genesets)\.safetensors$' ../models/SHA256SUMS > refcast/models/SHA256SUMS
# Through the interpreter: a console script installed by `python3 -m pip` may have no pyenv shim yet.
exec python3 -m maturin build --locked --out ../target/wheels "$@"
