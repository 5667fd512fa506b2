// Bad input a web page can hit, through the npm package's API: each case must fail with a
// RefcastError of the right kind whose message names the line, gene, field or limit.
// The native side's larger table is tests/bad_input.rs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Refcast, RefcastError } from '../../js/index.js';

const root = new URL('../../', import.meta.url);
const read = (p) => readFile(new URL(p, root));
const model = await Refcast.load(await read('models/refcast-q8_0.safetensors'), { backend: 'cpu' });
const kang = (await read('examples/kang_cd14_mono_ctrl.tsv')).toString();
const genes = model.genes;
// Enough real genes (three eighths of the model's, above the 20% a sample must match) that only
// the deliberate defect can fail; ISG15 is left out, as the defects below add it.
const BODY = Math.ceil((3 * genes.length) / 8);
const bodyGenes = genes.filter((g) => g !== 'ISG15').slice(0, BODY);
const body = (v) => bodyGenes.map((g) => `${g}\t${v}`).join('\n');
// The line after the body (line 1 is the header).
const AFTER = BODY + 2;
// The trained range of the perturbation prior's time, as the model states it.
const time = model.info().metadata.perturbation.numeric.find((f) => f.name === 'time_hours');

const samples = [
  ['an empty file', '', /the file is empty/],
  ['a header only', 'gene\tcount\n', /header \(line 1\) but no gene rows/],
  ['a wrong delimiter', 'gene;count\nISG15;3\n', /line 1: no tab or comma/],
  ['a non-numeric value', `gene\tcount\n${body(5)}\nISG15\tabc\n`, new RegExp(`line ${AFTER}, column 2 \\(gene 'ISG15'\\): 'abc' is not a number`)],
  ['NaN', `gene\tcount\n${body(5)}\nISG15\tNaN\n`, new RegExp(`line ${AFTER}.*NaN is not a finite number`)],
  ['Inf', `gene\tcount\n${body(5)}\nISG15\tInf\n`, new RegExp(`line ${AFTER}.*Inf is not a finite number`)],
  ['a negative count', `gene\tcount\n${body(5)}\nISG15\t-3\n`, new RegExp(`line ${AFTER}: gene 'ISG15'.*negative count`)],
  ['a duplicate gene', `gene\tcount\n${body(5)}\n${bodyGenes[0]}\t4\n`, new RegExp(`line ${AFTER}: gene '${bodyGenes[0]}' appears twice \\(first on line 2\\)`)],
  ['a ragged row', `gene\tcount\n${genes[0]}\t4\t5\n`, /line 2: 3 fields, expected 2/],
  ['no gene in common', 'gene\tcount\nNOT_A_GENE\t3\nALSO_NOT\t4\n', /no gene of sample .* vocabulary/],
  ['too few genes', `gene\tcount\n${genes[0]}\t3\n`, new RegExp(`matches only 1 of the model's ${genes.length} genes; at least \\d+ \\(20%\\)`)],
  ['log-CPM out of range', `gene\tlog_cpm\n${body(50.5)}\n`, /log-CPM 50\.5: above 13\.9/],
  ['a bidirectional override', 'gene\tcount\nIS\u202eG15\t3\n', /line 2: contains the control character U\+202E/],
];

for (const [what, text, message] of samples) {
  test(`sample: ${what}`, async () => {
    await assert.rejects(model.inspectSample(text), (e) => {
      assert.ok(e instanceof RefcastError, `${what}: ${e}`);
      assert.equal(e.kind, 'sample');
      assert.match(e.message, message);
      return true;
    });
  });
}

const metadata = [
  ['an unknown perturbation, with the nearest name', { perturbations: [{ perturbation: 'dexamethazone' }] }, /perturbation 'dexamethazone' is not known.*did you mean 'dexamethasone'/],
  [
    'a time outside the trained range',
    { perturbations: [{ perturbation: 'IFN-beta', time_hours: 3 * time.max }] },
    new RegExp(`time_hours = ${3 * time.max} is outside the range the model was trained on, \\[${time.min}, ${time.max}\\] h`),
  ],
  ['an unknown cell type in the context', { perturbations: ['IFN-beta 6 h'], context: { cell_type: 'CD14 Monoo' } }, /cell_type 'CD14 Monoo' is not known.*did you mean 'CD14 Mono'/],
  ['an unknown field', { perturbations: [{ perturbaton: 'IFN-beta' }] }, /unknown metadata field 'perturbaton'.*did you mean 'perturbation'/],
];

for (const [what, options, message] of metadata) {
  test(`metadata: ${what}`, async () => {
    await assert.rejects(model.predict({ sample: kang, ...options }), { kind: 'metadata', message });
  });
}

test('model: a truncated file and a wrong checksum', async () => {
  const bytes = await read('models/refcast-q8_0.safetensors');
  await assert.rejects(Refcast.load(bytes.subarray(0, 1000), { backend: 'cpu' }), (e) => e instanceof RefcastError && /header length .* past the end|truncated/.test(e.message));
  await assert.rejects(Refcast.load(bytes, { backend: 'cpu', sha256: 'ab'.repeat(32) }), { kind: 'checksum', message: /SHA-256/ });
});
