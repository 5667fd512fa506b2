// Both shipped encodings (Q8_0, Q4_0) on the wasm CPU backend against the PyTorch golden vectors,
// one reference at a time (the direct quantized dot products) and four in one batch (the decoded
// panels and register tiles). Needs pkg/ (scripts/build-wasm.sh).

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
