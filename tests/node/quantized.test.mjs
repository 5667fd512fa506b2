// Both shipped encodings (Q8_0, Q4_0) on the wasm CPU backend against the PyTorch golden vectors,
// one reference at a time (the direct quantized dot products) and four in one batch (the decoded
// panels and register tiles); the integer kernels (`cpuKernels: 'integer'`) against the f32 ones
// within their error budget. Needs pkg/ (scripts/build-wasm.sh).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Refcast } from '../../js/index.js';
import { assertCloseSum, counterfactualCases, decodedCases, denoisedCases, exampleOf } from './golden.mjs';

const root = new URL('../../', import.meta.url);
const read = (p) => readFile(new URL(p, root));

/** The same tolerance as tests/golden.rs: 5e-5 · (1 + |x|). */
function assertClose(what, got, want) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    assert.ok(err <= 5e-5, `${what}[${i}]: refcast ${got[i]}, PyTorch ${want[i]}`);
  }
}

for (const encoding of ['q8_0', 'q4_0']) {
  const golden = JSON.parse(await read(`tests/golden/golden_${encoding}.json`));
  const model = await Refcast.load(await read(`models/refcast-${encoding}.safetensors`), { backend: 'cpu' });
  const bundled = decodedCases(golden).filter((c) => c.mode === 'mean' && c.name.includes('(bundled example)'));
  // At least the airway and Kang examples, one case each; every case's example is a known file.
  const files = bundled.map(exampleOf);
  assert.equal(new Set(files).size, bundled.length, `golden_${encoding}.json: one decoded case per bundled example`);
  for (const f of ['examples/airway_N61311_untreated.tsv', 'examples/kang_cd14_mono_ctrl.tsv']) assert.ok(files.includes(f), `golden_${encoding}.json: no decoded case for ${f}`);

  test(`${encoding}: the bundled examples match PyTorch`, async () => {
    for (const c of bundled) {
      const sample = await read(exampleOf(c));
      const p = await model.predict({ sample, perturbations: [c.perturbation], conditionOn: c.condition_on, mode: 'decoded' });
      assertClose(`${c.name}: z`, p.latents, c.expected.z);
      assertClose(`${c.name}: log-CPM`, p.logCpm, c.expected.log_cpm);
    }
  });

  for (const [mode, cases] of [['counterfactual', counterfactualCases], ['denoised', denoisedCases]]) {
    test(`${encoding}: ${mode} golden cases (when the file has them) match PyTorch`, async () => {
      for (const c of cases(golden, `golden_${encoding}.json`).filter((c) => c.name.includes('(bundled example)'))) {
        const sample = await read(exampleOf(c));
        const p = await model.predict({ sample, perturbations: [c.perturbation], conditionOn: c.condition_on, mode });
        assert.equal(p.mode, mode);
        assertClose(`${c.name}: z`, p.latents, c.expected.z);
        assertCloseSum(`${c.name}: log-CPM`, p.logCpm, c.expected.log_cpm, c.expected.decoded_log_cpm, c.expected.control_log_cpm);
      }
    });
  }

  test(`${encoding}: prompt-only generation matches PyTorch`, async () => {
    const c = golden.cases.find((c) => c.name.startsWith('prompt-only'));
    const p = await model.predict({ context: { ...c.technical, ...c.biological }, perturbation: c.perturbation });
    assertClose('log-CPM', p.logCpm, c.expected.log_cpm);
  });

  test(`${encoding}: four references in one batch match PyTorch`, async () => {
    // Four rows reach the panel path of every linear layer (encoder and decoder).
    const c = bundled.find((c) => c.name.startsWith('Kang'));
    const lines = new TextDecoder().decode(await read(exampleOf(c))).trim().split('\n').slice(1).map((l) => l.split('\t'));
    const matrix = ['gene\tA\tB\tC\tD', ...lines.map((l) => `${l[0]}\t${l[1]}\t${l[1]}\t${l[1]}\t${l[1]}`)].join('\n');
    const p = await model.predict({ sample: matrix, columns: 'all', perturbations: [c.perturbation], conditionOn: c.condition_on, mode: 'decoded' });
    assert.equal(p.rows.length, 4);
    const G = p.genes;
    for (let r = 0; r < 4; r++) assertClose(`reference ${r}: log-CPM`, p.logCpm.subarray(r * G, (r + 1) * G), c.expected.log_cpm);
  });
}

// The integer path's budget (CpuKernels::INTEGER_ERROR_BOUND, asserted natively by tests/int8.rs):
// max |Δ| predicted log-CPM against the f32 kernels ≤ 0.02 (ln units). 16-bit input blocks cost a
// few 1e-4 on the shipped models; a wrong index or scale would cost ≥ 0.1.
const INTEGER_ERROR_BOUND = 0.02;

for (const encoding of ['q8_0', 'q4_0']) {
  test(`${encoding}: the integer kernels stay within their error budget of the f32 kernels`, async () => {
    const bytes = await read(`models/refcast-${encoding}.safetensors`);
    const f32 = await Refcast.load(bytes, { backend: 'cpu' });
    const integer = await Refcast.load(bytes, { backend: 'cpu', cpuKernels: 'integer' });
    assert.equal(integer.adapter, 'CPU (WebAssembly, integer kernels)');
    assert.equal(f32.adapter, 'CPU (WebAssembly)');
    // One reference (the four-weight-row kernel) and five in a batch (one weight row against
    // up to four input rows, and a tail of one), in the default and decoded modes, against a few
    // perturbations.
    const sample = await read('examples/kang_cd14_mono_ctrl.tsv');
    const lines = new TextDecoder().decode(sample).trim().split('\n').slice(1).map((l) => l.split('\t'));
    // Counts moved by up to ±30 %, rounded: five samples that differ.
    const noisy = (v, i, r) => Math.round(Number(v) * (1 + 0.3 * Math.sin(i * (r + 1))));
    const five = ['gene\tA\tB\tC\tD\tE', ...lines.map(([g, v], i) => [g, ...[0, 1, 2, 3, 4].map((r) => noisy(v, i, r))].join('\t'))].join('\n');
    const perturbations = f32.info().perturbations.filter((_, i) => i % 400 === 1).map((p) => p.metadata);
    let worst = 0;
    let moved = 0;
    for (const [what, request] of [['one reference', { sample }], ['five references', { sample: five, columns: 'all' }]]) {
      for (const mode of ['denoised', 'decoded']) {
        const a = await f32.predict({ ...request, perturbations, mode });
        const b = await integer.predict({ ...request, perturbations, mode });
        assert.equal(a.logCpm.length, b.logCpm.length, `${what}, ${mode}`);
        for (let i = 0; i < a.logCpm.length; i++) {
          const d = Math.abs(a.logCpm[i] - b.logCpm[i]);
          assert.ok(Number.isFinite(b.logCpm[i]), `${what}, ${mode}: value ${i} is ${b.logCpm[i]}`);
          worst = Math.max(worst, d);
          moved += d > 0;
        }
      }
    }
    assert.ok(worst <= INTEGER_ERROR_BOUND, `integer kernels off the f32 ones by ${worst}`);
    // The integer path really ran: its rounding moves many values a little.
    assert.ok(moved > 1000, `only ${moved} values differ from the f32 kernels'`);
  });
}

test('an unknown cpuKernels is refused with the choices', async () => {
  await assert.rejects(
    Refcast.load(await read('models/refcast-q8_0.safetensors'), { backend: 'cpu', cpuKernels: 'int4' }),
    (e) => e.kind === 'usage' && e.message.includes("unknown CPU kernels 'int4' (expected f32 or integer)"),
  );
});
