// Runs the checks of tests/wasm-simd/src/lib.rs (built for wasm32 with simd128); exits 1 on a
// failure. Usage: node tests/wasm-simd/run.mjs <simdcheck.wasm>
import { readFile } from 'node:fs/promises';

const { instance } = await WebAssembly.instantiate(await readFile(process.argv[2]), { env: { expm1_64: Math.expm1, exp_64: Math.exp } });
const e = instance.exports;
let failed = false;
function check(what, value, ok) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${value}`);
  failed ||= !ok;
}
// The linear unit test's bound: 2e-6 of the sum of |products|.
const lin = e.check_linear();
check('linear kernels, worst error / Σ|products|', lin, lin <= 2e-6);
const int = e.check_integer();
check('integer kernels, results off the plain loop\'s bits', int, int === 0);
const layer = e.check_integer_layer();
check('integer layer at odd sizes, results off the plain loops\' bits or the f64 sum', layer, layer === 0);
for (const s of [1, 1e-6, 5.85]) {
  const w = e.check_expm1(s);
  check(`expm1 · ${s}, worst ulp`, w, w <= (s === 1 ? 2 : 2.5));
}
check('expm1 and GELU edge cases', e.check_edges(), e.check_edges() === 0);
const g = e.check_gelu();
check('GELU values outside (4 + 6|u|) ulp', g, g === 0);
process.exit(failed ? 1 : 0);
