#!/usr/bin/env bash
# Builds the WebAssembly module and its JS glue into pkg/ (the npm package's pkg/ files):
# cargo (wasm32-unknown-unknown, release, no CLI) → wasm-bindgen --target web → wasm-opt -Oz.
#   bash scripts/build-wasm.sh              always rebuild
#   bash scripts/build-wasm.sh --if-needed  only when a source is newer than pkg/refcast_bg.wasm
# Needs: the wasm32 target, wasm-bindgen-cli at Cargo.lock's wasm-bindgen version and the npm
# devDependencies (binaryen's wasm-opt); scripts/setup.sh installs all three.
set -euo pipefail
cd "$(dirname "$0")/.."

out=pkg
wasm="$out/refcast_bg.wasm"
if [ "${1:-}" = "--if-needed" ] && [ -f "$wasm" ] && [ -f "$out/refcast.js" ]; then
  newer=$(find src shaders build.rs Cargo.toml Cargo.lock -newer "$wasm" -type f -print -quit)
  if [ -z "$newer" ]; then
    echo "build-wasm: $wasm is up to date"
    exit 0
  fi
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "build-wasm: wasm-bindgen $want is needed (found '${have:-none}'); run: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
wasm_opt=node_modules/.bin/wasm-opt
if [ ! -x "$wasm_opt" ]; then
  echo "build-wasm: $wasm_opt is missing; run: npm ci" >&2
  exit 1
fi

target_dir="${CARGO_TARGET_DIR:-target}"
t0=$(date +%s)
# 128-bit SIMD: every browser with WebGPU and Node ≥ 20 runs it, and the CPU kernels' dot
# products and element-wise loops vectorise with it (about twice the speed of scalar code).
# Whole-program LTO in one codegen unit for this build alone: about 7 % smaller than the native
# release profile's thin LTO. The dependencies (wgpu's browser backend, JSON, safetensors: none on
# the hot path, which is refcast's own CPU kernels, still at opt-level 3) are optimised for size,
# and the panic locations inside them name the crate, not this machine's registry folder. All
# three keep the module inside its 1 MiB budget.
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
remap=""
for dir in "$registry"/*/; do
  [ -d "$dir" ] && remap="$remap --remap-path-prefix=${dir%/}="
done
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:-} -C target-feature=+simd128$remap" \
CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  cargo build --locked --lib --release --target wasm32-unknown-unknown --no-default-features \
  --config 'profile.release.package."*".opt-level="z"'
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
wasm-bindgen --target web --out-dir "$out.tmp" --out-name refcast --no-typescript \
  "$target_dir/wasm32-unknown-unknown/release/refcast.wasm"
raw=$(stat -c %s "$out.tmp/refcast_bg.wasm")
# Rust ≥ 1.82 emits these features by default (and SIMD as asked above); every browser with
# WebGPU and Node ≥ 20 has them.
"$wasm_opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd \
  "$out.tmp/refcast_bg.wasm" -o "$out.tmp/refcast_bg.opt.wasm"
mv "$out.tmp/refcast_bg.opt.wasm" "$out.tmp/refcast_bg.wasm"
rm -rf "$out" && mv "$out.tmp" "$out"
size=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "build-wasm: $wasm: $size bytes ($gz gzip; $raw before wasm-opt) in $(( $(date +%s) - t0 )) s"
if [ "$size" -gt 1048576 ]; then
  echo "build-wasm: $wasm is over the 1 MiB budget" >&2
  exit 1
fi
