// The npm package's API in Node on the wasm CPU backend: load (bytes, checksum), info, predict
// against the PyTorch golden vectors, screen, errors, dispose. Needs pkg/ (scripts/build-wasm.sh).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Refcast, RefcastError, predictionToTsv } from '../../js/index.js';
import { assertCloseSum, controlName, counterfactualCases, decodedCases, denoisedCases, exampleOf, perturbationNamed } from './golden.mjs';

const root = new URL('../../', import.meta.url);
const read = (p) => readFile(new URL(p, root));
// The published checksum of the bundled model (the training pipeline writes models/SHA256SUMS).
const SHA256 = (await read('models/SHA256SUMS')).toString().split('\n').find((l) => l.endsWith('  refcast-q8_0.safetensors')).split(/\s+/)[0];

/** The same tolerance as tests/golden.rs: 5e-5 · (1 + |x|). */
const TOLERANCE = 5e-5;
function assertClose(what, got, want) {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    assert.ok(err <= TOLERANCE, `${what}[${i}]: refcast ${got[i]}, PyTorch ${want[i]}`);
    worst = Math.max(worst, err);
  }
  return worst;
}

const modelBytes = await read('models/refcast-q8_0.safetensors');
const golden = JSON.parse(await read('tests/golden/golden_q8_0.json'));
const kang = await read('examples/kang_cd14_mono_ctrl.tsv');
const model = await Refcast.load(modelBytes, { backend: 'auto', sha256: SHA256 });
const kangCase = decodedCases(golden).find((c) => c.name.startsWith('Kang CD14 Mono control (bundled example)'));
// The model's size, from the PyTorch golden vectors rather than from the model under test.
const GENES = kangCase.expected.log_cpm.length;
// Perturbations by name: the interferon entry the examples use, a glucocorticoid, and the model's control.
const IFN = perturbationNamed(model.info(), 'IFN-beta 6 h');
const DEX = perturbationNamed(model.info(), 'dexamethasone');
const CONTROL = controlName(model.info());

test('auto picks the CPU in Node (no navigator.gpu) and says why', () => {
  assert.equal(model.backend, 'cpu');
  assert.match(model.backendReason, /navigator\.gpu|adapter/);
  assert.ok(model.loadMs > 0);
});

test('info lists genes, vocabularies, perturbations and contexts', () => {
  const info = model.info();
  assert.equal(info.genes, GENES);
  assert.equal(model.genes.length, GENES);
  assert.equal(model.ensembl.length, GENES);
  assert.deepEqual(Object.keys(info.metadata).sort(), ['biological', 'perturbation', 'technical']);
  assert.ok(info.perturbations.some((p) => p.name === IFN));
  assert.equal(new Set(info.perturbations.map((p) => p.name)).size, info.perturbations.length, 'perturbation names are unique');
  assert.ok(info.contexts.length > 0);
  assert.equal(info.latent.technical + info.latent.biological + info.latent.perturbation, kangCase.expected.z.length);
});

test('the model card describes the model in words, as refcast info does', () => {
  const card = model.card();
  assert.equal(card.genes, GENES);
  assert.match(card.description, /^A conditional variational autoencoder/);
  assert.equal(card.weights[0].encoding, '8-bit blocks (Q8_0)');
  assert.equal(card.activation, 'GELU (tanh approximation)');
  assert.equal(card.fold_change_units, 'ln fold change');
  assert.equal(card.perturbations.reduce((n, c) => n + c.entries, 0), model.info().perturbations.length);
  assert.ok(card.datasets.length > 0 && card.datasets.every((d) => d.links.every((l) => l.startsWith('https://'))));
});

test('fold changes say their units', async () => {
  const p = await model.predict({ sample: kang, perturbations: [IFN] });
  assert.equal(p.foldChangeUnits, 'ln fold change');
});

test('predict on the bundled example matches PyTorch (golden vectors)', async () => {
  const c = kangCase;
  const p = await model.predict({ sample: kang, perturbations: [c.perturbation], conditionOn: c.condition_on, mode: 'decoded' });
  assert.equal(p.mode, 'decoded');
  assert.equal(p.genes, GENES);
  assert.ok(p.logCpm instanceof Float32Array && p.logFoldChange instanceof Float32Array);
  assert.equal(p.rows.length, 1);
  assertClose('z', p.latents, c.expected.z);
  assertClose('log-CPM', p.logCpm, c.expected.log_cpm);
  assertClose('reference', p.reference.logCpm, c.reference.log_cpm);
  // Decoded fold changes are against the predicted control by default, against the sample on request.
  assert.equal(p.baseline, 'control');
  const control = await model.predict({ sample: kang, perturbations: [CONTROL], conditionOn: c.condition_on, mode: 'decoded' });
  for (let g = 0; g < GENES; g++) assert.ok(Math.abs(p.logFoldChange[g] - (p.logCpm[g] - control.logCpm[g])) < 1e-5);
  const vsSample = await model.predict({ sample: kang, perturbations: [c.perturbation], conditionOn: c.condition_on, mode: 'decoded', baseline: 'reference' });
  assert.equal(vsSample.baseline, 'reference');
  for (let g = 0; g < GENES; g++) assert.ok(Math.abs(vsSample.logFoldChange[g] - (p.logCpm[g] - p.reference.logCpm[g])) < 1e-5);
  assert.equal(p.reference.valueKind, 'counts');
  assert.ok(p.reference.matched > 5000);
});

test('the default mode is denoised: the sample moved by the decoded change, its deviations from the reconstruction shrunk by at most 1', async () => {
  const c = kangCase;
  const p = await model.predict({ sample: kang, perturbations: [c.perturbation] });
  assert.equal(p.mode, 'denoised');
  assert.equal(p.baseline, 'reference', 'the sample stands for the control');
  assert.deepEqual(await model.predict({ sample: kang, perturbations: [c.perturbation], mode: 'denoised' }).then((q) => q.logCpm), p.logCpm);
  const d = await model.predict({ sample: kang, perturbations: [c.perturbation, CONTROL], mode: 'decoded' });
  const G = p.genes;
  const [a, b] = [d.logCpm.subarray(0, G), d.logCpm.subarray(G, 2 * G)];
  const ref = p.reference.logCpm;
  // max(0, a + soft(ref − b, τ)), 0 ≤ τ ≤ 1 per gene: the sample's deviation from its
  // reconstruction, ref − b, shrunk towards 0 by at most τ. So each value lies between the decoded
  // profile (a: all of it dropped) and the counterfactual one (a + ref − b: all of it kept), and
  // within 1 of the latter (equal to it for a model without thresholds). The same CPU code as the
  // decoded rows: one fifth of the PyTorch tolerance.
  for (let g = 0; g < G; g++) {
    const [kept, v] = [a[g] + (ref[g] - b[g]), p.logCpm[g]];
    const tol = 0.2 * TOLERANCE * (2 + Math.abs(a[g]) + Math.abs(b[g]));
    const [lo, hi] = [Math.max(0, Math.min(a[g], kept)), Math.max(0, Math.max(a[g], kept))];
    assert.ok(v >= lo - tol && v <= hi + tol, `gene ${g}: ${v} outside [${lo}, ${hi}] (decoded ${a[g]}, control ${b[g]}, sample ${ref[g]})`);
    assert.ok(Math.abs(v - Math.max(0, kept)) <= 1 + tol, `gene ${g}: ${v}, more than 1 from the counterfactual ${Math.max(0, kept)}`);
    assert.equal(p.logFoldChange[g], Math.fround(v - ref[g]), `fold change of gene ${g}`);
  }
  assert.ok(p.logCpm.every((v) => v >= 0));
  assertClose('z: the perturbation row', p.latents, c.expected.z);
});

test('the counterfactual mode: the sample moved by the decoded change from the control', async () => {
  const c = kangCase;
  const p = await model.predict({ sample: kang, perturbations: [c.perturbation], mode: 'counterfactual' });
  assert.equal(p.mode, 'counterfactual');
  assert.equal(p.baseline, 'reference', 'the sample stands for the control');
  const d = await model.predict({ sample: kang, perturbations: [c.perturbation, CONTROL], mode: 'decoded' });
  const G = p.genes;
  const [a, b] = [d.logCpm.subarray(0, G), d.logCpm.subarray(G, 2 * G)];
  const ref = p.reference.logCpm;
  const want = Array.from(ref, (r, g) => Math.max(0, Math.fround(r + Math.fround(a[g] - b[g]))));
  // The same CPU code: one fifth of the PyTorch tolerance.
  assertCloseSum('counterfactual log-CPM', p.logCpm, want, a, b, 0.2);
  for (let g = 0; g < G; g++) {
    assert.equal(p.logFoldChange[g], Math.fround(p.logCpm[g] - ref[g]), `fold change of gene ${g}`);
    const counts = Math.expm1(p.logCpm[g]) * (p.reference.librarySize / 1e6);
    assert.ok(Math.abs(p.counts[g] - counts) <= 1e-4 * Math.max(1, counts), `counts of gene ${g}`);
  }
  assert.ok(p.logCpm.every((v) => v >= 0));
  assertClose('z: the perturbation row', p.latents, c.expected.z);
  assert.deepEqual(await model.predict({ sample: kang, perturbations: [c.perturbation], mode: 'COUNTERFACTUAL' }).then((q) => q.logCpm), p.logCpm, 'modes are read case-insensitively');
  // Familiarity: the R² of the decoded control profile against the sample over its measured
  // genes. A model without a calibration (format 1) gives no nearest context and no verdict; a
  // calibrated one (format 2) gives the nearest centroid and distance of the golden vectors
  // (PyTorch, same reference) and says outside exactly when a calibrated threshold is crossed.
  const wantR2 = squaredPearson(ref, b, p.reference.measured);
  const calibration = model.info().familiarity;
  const wantPlace = golden.cases.find((g) => g.name.startsWith('Kang CD14 Mono control (bundled example)') && g.expected.familiarity)?.expected.familiarity;
  for (const q of [p, d]) {
    assert.equal(q.familiarity.length, 1);
    const f = q.familiarity[0];
    assert.equal(f.reference, p.reference.name);
    assert.ok(Math.abs(f.reconstructionR2 - wantR2) < 1e-4, `reconstruction R² ${f.reconstructionR2}, want ${wantR2}`);
    assert.ok(wantR2 > 0.5 && wantR2 <= 1, `R² ${wantR2}`);
    if (calibration === null) {
      assert.deepEqual([f.nearestContext, f.distance, f.outside, f.reasons], [null, null, null, []]);
      assert.match(f.summary, /the model reconstructs \d+ % of its profile \(R²\); the model has no familiarity calibration/);
      continue;
    }
    assert.ok(calibration.contexts.includes(f.nearestContext), `nearest context '${f.nearestContext}' is not one of the calibration's`);
    assert.ok(Number.isFinite(f.distance) && f.distance >= 0, `distance ${f.distance}`);
    if (wantPlace) {
      assert.equal(f.nearestContext, wantPlace.nearest_context);
      assert.ok(Math.abs(f.distance - wantPlace.distance) <= 1e-3 * (1 + wantPlace.distance), `distance ${f.distance}, PyTorch ${wantPlace.distance}`);
    }
    const outside = f.distance > calibration.maxDistance || f.reconstructionR2 < calibration.minReconstructionR2;
    assert.equal(f.outside, outside, `outside: distance ${f.distance} (max ${calibration.maxDistance}), R² ${f.reconstructionR2} (min ${calibration.minReconstructionR2})`);
    assert.equal(f.reasons.length > 0, outside, `reasons: ${f.reasons}`);
    assert.match(
      f.summary,
      outside ? /looks unlike anything the model was trained on: .*; predictions for it are extrapolations/ : /resembles the training data \(nearest: .+, distance \d+\.\d\); the model reconstructs \d+ % of its profile \(R²\)/,
    );
  }
  if (calibration === null) assert.deepEqual(model.info().covariates, []);
  else assert.deepEqual(model.info().covariates.map((c) => c.name), ['library_size']);
  const prompt = await model.predict({ context: 'PBMC B (10x 3\', Kang 2018)', perturbation: c.perturbation });
  assert.deepEqual(prompt.familiarity, []);
});

function squaredPearson(x, y, keep) {
  const idx = [];
  for (let g = 0; g < x.length; g++) if (keep[g]) idx.push(g);
  const mean = (v) => idx.reduce((a, g) => a + v[g], 0) / idx.length;
  const [mx, my] = [mean(x), mean(y)];
  let [sxy, sxx, syy] = [0, 0, 0];
  for (const g of idx) {
    sxy += (x[g] - mx) * (y[g] - my);
    sxx += (x[g] - mx) ** 2;
    syy += (y[g] - my) ** 2;
  }
  return (sxy * sxy) / (sxx * syy);
}

test('counterfactual golden cases (when the golden file has them) match PyTorch', async () => {
  const bundled = counterfactualCases(golden, 'golden_q8_0.json').filter((c) => c.name.includes('(bundled example)'));
  for (const c of bundled) {
    const p = await model.predict({ sample: await read(exampleOf(c)), perturbations: [c.perturbation], conditionOn: c.condition_on, mode: 'counterfactual' });
    assertClose(`${c.name}: z`, p.latents, c.expected.z);
    assertCloseSum(`${c.name}: log-CPM`, p.logCpm, c.expected.log_cpm, c.expected.decoded_log_cpm, c.expected.control_log_cpm);
  }
});

test('denoised golden cases (when the golden file has them) match PyTorch in the default mode', async () => {
  const bundled = denoisedCases(golden, 'golden_q8_0.json').filter((c) => c.name.includes('(bundled example)'));
  for (const c of bundled) {
    const p = await model.predict({ sample: await read(exampleOf(c)), perturbations: [c.perturbation], conditionOn: c.condition_on });
    assert.equal(p.mode, 'denoised');
    assertClose(`${c.name}: z`, p.latents, c.expected.z);
    assertCloseSum(`${c.name}: log-CPM`, p.logCpm, c.expected.log_cpm, c.expected.decoded_log_cpm, c.expected.control_log_cpm);
  }
});

test('prompt-only generation matches PyTorch, whatever the mode', async () => {
  const c = golden.cases.find((c) => c.name.startsWith('prompt-only'));
  const p = await model.predict({ context: { ...c.technical, ...c.biological }, perturbation: c.perturbation });
  assert.equal(p.logFoldChange, null);
  assert.equal(p.reference, null);
  assert.equal(p.mode, 'decoded', 'without a sample there is nothing to anchor to');
  assertClose('log-CPM', p.logCpm, c.expected.log_cpm);
  const d = await model.predict({ context: { ...c.technical, ...c.biological }, perturbation: c.perturbation, mode: 'decoded' });
  assert.deepEqual(d.logCpm, p.logCpm);
});

test('seeded sampling matches PyTorch and is reproducible', async () => {
  const c = decodedCases(golden).find((c) => c.mode === 'sample' && !c.reference);
  const req = { context: { ...c.technical, ...c.biological }, perturbation: c.perturbation, numSamples: c.sample_index + 1, seed: c.seed };
  const p = await model.predict(req);
  const n = p.genes;
  assertClose('log-CPM', p.logCpm.subarray(c.sample_index * n, (c.sample_index + 1) * n), c.expected.log_cpm);
  const again = await model.predict(req);
  assert.deepEqual(again.logCpm, p.logCpm);
});

test('several perturbations and the {genes, values} sample form', async () => {
  const lines = new TextDecoder().decode(kang).trim().split('\n').slice(1).map((l) => l.split('\t'));
  const sample = { genes: lines.map((l) => l[0]), values: Float64Array.from(lines, (l) => Number(l[1])) };
  const p = await model.predict({ sample, perturbations: [IFN, CONTROL, DEX] });
  assert.equal(p.rows.length, 3);
  assert.deepEqual(p.rows.map((r) => r.perturbation), [0, 1, 2]);
  assert.equal(p.perturbations[2].metadata.perturbation, 'dexamethasone');
  const tsv = predictionToTsv(p, model.genes).split('\n');
  assert.equal(tsv[0], 'perturbation\tdraw\tgene\treference\tpredicted\tlog_fold_change\tcounts\tsigma\tmeasured');
  assert.equal(tsv.length, 3 * GENES + 2);
});

test('a matrix of samples predicts in one batch (columns), row for row like one column at a time', async () => {
  const lines = new TextDecoder().decode(kang).trim().split('\n').slice(1).map((l) => l.split('\t'));
  // Three samples: the example, the example with every third gene unmeasured, the example doubled.
  const matrix = ['gene\tA\tB\tC', ...lines.map((l, i) => `${l[0]}\t${l[1]}\t${i % 3 ? l[1] : 0}\t${2 * Number(l[1])}`)].join('\n');
  const perturbations = [IFN, DEX];
  const all = await model.predict({ sample: matrix, columns: 'all', perturbations });
  assert.equal(all.rows.length, 6);
  assert.deepEqual(all.rows.map((r) => [r.reference, r.perturbation]), [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]);
  assert.deepEqual(all.references.map((r) => r.name), ['A', 'B', 'C']);
  assert.equal(all.reference.name, 'A');
  const picked = await model.predict({ sample: matrix, columns: ['C', 0], perturbations: perturbations[0] });
  assert.deepEqual(picked.references.map((r) => r.name), ['C', 'A']);
  const G = all.genes;
  for (const [c, name] of ['A', 'B', 'C'].entries()) {
    const one = await model.predict({ sample: matrix, column: name, perturbations });
    for (let p = 0; p < 2; p++) {
      const row = all.logCpm.subarray((c * 2 + p) * G, (c * 2 + p + 1) * G);
      // Batched and single rows take other summation orders in the linear layers.
      assertClose(`column ${name}, perturbation ${p}`, row, one.logCpm.subarray(p * G, (p + 1) * G));
    }
  }
  await assert.rejects(model.predict({ sample: matrix, column: 0, columns: 'all', perturbation: 'none' }), { kind: 'usage', message: /either column or columns/ });
  await assert.rejects(model.predict({ sample: matrix, columns: 'every', perturbation: 'none' }), { kind: 'usage', message: /'all' or a list/ });
  await assert.rejects(model.predict({ sample: matrix, columns: [0, 5], perturbation: 'none' }), { kind: 'usage', message: /column 5 asked for, the sample has 3/ });
  await assert.rejects(model.predict({ columns: 'all', perturbation: 'none' }), { kind: 'usage', message: /without a sample/ });
});

test('the last sample read is kept: a buffer changed in place, other options or another sample are read anew', async () => {
  const bytes = new Uint8Array(kang);
  const before = await model.predict({ sample: bytes, perturbations: [IFN] });
  const again = await model.predict({ sample: bytes, perturbations: [IFN] });
  assert.deepEqual(again.logCpm, before.logCpm);
  assert.deepEqual(again.reference.logCpm, before.reference.logCpm);
  // Double one gene's count in the same buffer: the prediction must see it.
  const text = new TextDecoder().decode(bytes);
  const line = text.indexOf('\nISG15\t') + 1;
  const count = Number(text.slice(line + 6, text.indexOf('\n', line)));
  const edited = `${text.slice(0, line)}ISG15\t${String(2 * count).padStart(String(count).length, '0')}${text.slice(text.indexOf('\n', line))}`;
  assert.equal(edited.length, text.length, 'an edit of the same length, so the buffer can take it');
  bytes.set(new TextEncoder().encode(edited));
  const changed = await model.predict({ sample: bytes, perturbations: [IFN] });
  const isg15 = model.genes.indexOf('ISG15');
  assert.ok(changed.reference.logCpm[isg15] > before.reference.logCpm[isg15] + 0.5, `ISG15 ${before.reference.logCpm[isg15]} → ${changed.reference.logCpm[isg15]}`);
  // As read afresh: after another sample, the edited bytes give the same prediction.
  await model.predict({ sample: kang, perturbations: [IFN] });
  const fresh = await model.predict({ sample: edited, perturbations: [IFN] });
  assert.deepEqual(fresh.logCpm, changed.logCpm);
  // Other read options read the same bytes anew; a library size applies to the kept sample
  // without changing it.
  const counts = `gene\tcount\n${model.genes.slice(0, 4000).map((g, i) => `${g}\t${i % 7}`).join('\n')}\n`;
  assert.equal((await model.inspectSample(counts, { fileName: 'tumour_02.tsv' })).name, 'tumour_02');
  assert.equal((await model.inspectSample(counts)).name, 'count');
  const logCpm = `gene\tlog_cpm\n${model.genes.slice(0, 4000).map((g, i) => `${g}\t${(i % 5) / 2}`).join('\n')}\n`;
  const deep = await model.predict({ sample: logCpm, perturbations: [IFN], librarySize: 3e7 });
  const plain = await model.predict({ sample: logCpm, perturbations: [IFN] });
  assert.equal(deep.reference.librarySize, 3e7);
  assert.notEqual(plain.reference.librarySize, 3e7);
  // A sample that fails to read leaves no stale sample behind.
  await assert.rejects(model.predict({ sample: 'gene\tcount\nISG15\t-3\n', perturbations: [IFN] }), { kind: 'sample' });
  assert.deepEqual((await model.predict({ sample: bytes, perturbations: [IFN] })).logCpm, changed.logCpm);
});

test('screen ranks every perturbation', async () => {
  const s = await model.screen({ sample: kang });
  assert.equal(s.hits.length, model.info().perturbations.length);
  assert.equal(s.familiarity.length, 1);
  const p = await model.predict({ sample: kang, perturbations: [IFN] });
  assert.ok(Math.abs(s.familiarity[0].reconstructionR2 - p.familiarity[0].reconstructionR2) < 1e-5, 'screen and predict agree on R²');
  for (let i = 1; i < s.hits.length; i++) assert.ok(s.hits[i - 1].effectSize >= s.hits[i].effectSize, 'ranked by effect size');
  assert.ok(!('score' in s.hits[0]), 'no score column repeating effectSize');
  assert.deepEqual(s.legend.map((c) => c.column), ['rank', 'perturbation', 'effect_size', 'reversal', 'top_up', 'top_down', 'measured', 'measured_context', 'measured_distance']);
  // Where the model measured each perturbation: IFN-beta in Kang's monocytes, near this sample;
  // T-cell activation only elsewhere (an extrapolation here), with a warning that says so.
  const ifn = s.hits.find((h) => h.name === IFN).coverage;
  assert.equal(ifn.measured, 'nearby');
  assert.match(ifn.context, /^PBMC \(Kang 2018\)/);
  assert.ok(ifn.distance <= ifn.maxDistance && ifn.warning === null);
  const tcr = s.hits.find((h) => h.name === 'anti-CD3/CD28 24 h').coverage;
  assert.equal(tcr.measured, 'elsewhere');
  assert.match(tcr.warning, /measured only in training contexts unlike this sample \(nearest: T cells/);
  assert.ok(s.hits.every((h) => ['nearby', 'elsewhere'].includes(h.coverage.measured)), 'every shipped entry was measured somewhere');
  const at168 = await model.predict({ sample: kang, perturbations: [{ ...model.info().perturbations.find((q) => q.name === IFN).metadata, time_hours: 168 }] });
  assert.equal(at168.coverage.length, 1);
  assert.equal(at168.coverage[0].measured, 'never');
  assert.deepEqual(at168.coverage[0].measuredAs, [IFN]);
  assert.match(at168.coverage[0].warning, /was never measured at this time and dose \(the model measured it as 'IFN-beta 6 h'\)/);
  assert.ok(at168.warnings.some((w) => /time_hours=168 is a combination the model was never trained on/.test(w)), at168.warnings.join('\n'));
  assert.match(s.legend.find((c) => c.column === 'effect_size').meaning, /ln fold change/);
  assert.ok(s.hits[0].topUp.length > 0 && typeof s.hits[0].topUp[0].gene === 'string');
  assert.deepEqual([s.mode, s.baseline, s.signatureUnknown], ['denoised', 'reference', []]);
  const sig = await model.screen({ sample: kang, signature: { ISG15: -1, IFI6: -1, MX1: -1, CD14: 1, LYZ: 1 } });
  assert.ok(sig.hits.every((h) => typeof h.reversal === 'number'));
  // The three signature forms: weights, up/down sets, a list (an up set); unknown genes are listed.
  const sets = await model.screen({ sample: kang, signature: { up: ['CD14', 'LYZ', 'NOPE1'], down: ['ISG15', 'IFI6', 'MX1'] } });
  assert.deepEqual(sets.signatureUnknown, ['NOPE1']);
  assert.ok(sets.hits[0].reversal > 0);
  for (let i = 1; i < sets.hits.length; i++) assert.ok(sets.hits[i - 1].reversal >= sets.hits[i].reversal, 'ranked by reversal');
  const list = await model.screen({ sample: kang, signature: ['ISG15', 'IFI6', 'MX1'] });
  const upSet = await model.screen({ sample: kang, signature: { up: ['ISG15', 'IFI6', 'MX1'] } });
  assert.deepEqual(list.hits.map((h) => [h.name, h.reversal]), upSet.hits.map((h) => [h.name, h.reversal]));
  // In the counterfactual mode the control changes nothing. Decoded, effects are measured against
  // the predicted control by default (the control again changes nothing); against the sample, the
  // control carries the model's reconstruction error of the sample. In the denoised mode (the
  // default) the control's effect is the noise dropped from the sample: per gene its deviation
  // from the reconstruction, clamped to the gene's threshold (≤ 1), so no more than either.
  const control = (r) => r.hits.find((h) => h.name === CONTROL).effectSize;
  const counterfactual = await model.screen({ sample: kang, mode: 'counterfactual' });
  assert.equal(counterfactual.baseline, 'reference');
  const decoded = await model.screen({ sample: kang, mode: 'decoded' });
  assert.equal(decoded.baseline, 'control');
  const versusSample = await model.screen({ sample: kang, mode: 'decoded', baseline: 'reference' });
  assert.ok(control(counterfactual) < 1e-4 && control(decoded) < 1e-4 && control(versusSample) > 1e-2, `control: ${control(counterfactual)}, ${control(decoded)}, ${control(versusSample)}`);
  assert.ok(control(s) <= Math.min(1, control(versusSample)) + 1e-4, `denoised control: ${control(s)}, decoded against the sample ${control(versusSample)}`);
  assert.deepEqual((await model.screen({ sample: kang, mode: 'denoised' })).hits.map((h) => [h.name, h.effectSize]), s.hits.map((h) => [h.name, h.effectSize]));
  // Progress comes after each chunk, ending at the total.
  const seen = [];
  await model.screen({ sample: kang, onProgress: (done, total) => seen.push([done, total]) });
  const total = model.info().perturbations.length;
  assert.ok(seen.length >= 1 && seen.at(-1)[0] === total && seen.every(([d, t], i) => t === total && (i === 0 || d > seen[i - 1][0])), JSON.stringify(seen));
});

test('info marks the controls and the default perturbation; a generic column takes the file name; a log-CPM sample takes a library size', async () => {
  const info = model.info();
  const controls = info.perturbations.filter((p) => p.control).map((p) => p.name);
  assert.ok(controls.includes(CONTROL), controls.join(', '));
  assert.equal(info.defaultPerturbation, info.perturbations.find((p) => !p.control).name);
  const text = `gene\tcount\n${model.genes.slice(0, 4000).map((g, i) => `${g}\t${i % 7}`).join('\n')}\n`;
  assert.equal((await model.inspectSample(text, { fileName: 'tumour_01.tsv' })).name, 'tumour_01');
  assert.equal((await model.inspectSample(text)).name, 'count');
  const logCpm = `gene\tlog_cpm\n${model.genes.slice(0, 4000).map((g, i) => `${g}\t${(i % 7) / 2}`).join('\n')}\n`;
  const p = await model.predict({ sample: logCpm, perturbations: [IFN], librarySize: 2e6 });
  assert.equal(p.reference.librarySize, 2e6);
  await assert.rejects(model.predict({ sample: text, perturbations: [IFN], librarySize: 2e6 }), { kind: 'sample', message: /gives counts/ });
});

test('settings without effect come back as warnings', async () => {
  const cellType = model.info().metadata.biological.categorical.find((f) => f.name === 'cell_type');
  const quiet = await model.predict({ sample: kang, perturbations: [IFN] });
  assert.deepEqual(quiet.warnings, []);
  // The biological latent comes from the sample by default: a cell type given for its prior does nothing.
  const p = await model.predict({ sample: kang, perturbations: [IFN], context: { cell_type: cellType.values[1] } });
  assert.ok(p.warnings.some((w) => /^cell_type has no effect: the biological latent comes from the sample/.test(w)), p.warnings.join('; '));
  const s = await model.screen({ sample: kang, context: { cell_type: cellType.values[1] } });
  assert.ok(s.warnings.some((w) => /cell_type has no effect/.test(w)), s.warnings.join('; '));
});

test('as in the CLI: summary rows are named, a perturbation field in a context is warned about', async () => {
  const htseq = `${kang.toString()}__no_feature\t500000\n__ambiguous\t1000\n`;
  const withRows = await model.predict({ sample: htseq, perturbations: [IFN] });
  assert.match(withRows.interpretation, /; __no_feature and __ambiguous: read-counter summary rows, left out of the genes and the library size$/);
  // Left out of the library size too: the same reference as the file without them.
  const plain = await model.predict({ sample: kang, perturbations: [IFN] });
  assert.equal(withRows.reference.librarySize, plain.reference.librarySize);
  // A time is a perturbation's field: in a context it reaches no prior.
  const p = await model.predict({ sample: kang, perturbations: [IFN], context: { time_hours: 24 } });
  assert.ok(p.warnings.includes('time_hours has no effect in a context: it is a perturbation\'s field; give it with the perturbation'), p.warnings.join('; '));
  const s = await model.screen({ sample: kang, context: { time_hours: 24 } });
  assert.ok(s.warnings.some((w) => /^time_hours has no effect in a context/.test(w)), s.warnings.join('; '));
});

test('errors quote long cells and numbers short', async () => {
  const longGene = `gene\tcount\nISG15\t3\n${'G'.repeat(200000)}\t2\n`;
  await assert.rejects(model.inspectSample(longGene), (e) => {
    assert.equal(e.kind, 'sample');
    assert.match(e.message, /line 3: a gene name of 200000 bytes \('G{40}…'\), over the limit of 1024 bytes/);
    assert.ok(e.message.length < 300, e.message.length);
    return true;
  });
  await assert.rejects(model.inspectSample(`gene\tcount\nISG15\t3\nMX1\t-${'9'.repeat(300)}\n`), (e) => {
    assert.match(e.message, /gene 'MX1' in sample 'count' has a negative count \(-1\.000000e300\)/);
    assert.ok(e.message.length < 300, e.message.length);
    return true;
  });
});

test('a compressed file given as the model is named as such', async () => {
  const { gzipSync } = await import('node:zlib');
  await assert.rejects(Refcast.load(gzipSync(modelBytes.subarray(0, 4096)), { backend: 'cpu' }), { message: /this file is gzip-compressed, not a refcast model \(\.safetensors\)/ });
});

test('sample errors name the line and gene', async () => {
  await assert.rejects(model.predict({ sample: 'gene\tcount\nISG15\t3\nMX1\tabc\n', perturbations: [IFN] }), (e) => {
    assert.ok(e instanceof RefcastError);
    assert.equal(e.kind, 'sample');
    assert.match(e.message, /line 3.*MX1.*'abc' is not a number/);
    return true;
  });
  await assert.rejects(model.inspectSample('just one column\n'), { kind: 'sample', message: /line 1/ });
  await assert.rejects(model.inspectSample(`gene\tcount\n${model.genes[0]}\t3\n`), { kind: 'sample', message: new RegExp(`matches only 1 of the model's ${GENES} genes`) });
  await assert.rejects(model.inspectSample('gene\tcount\nNOT_A_GENE\t3\n'), { kind: 'sample', message: /no gene of sample 'count'.*NOT_A_GENE/ });
});

test('metadata and usage errors are clear', async () => {
  await assert.rejects(model.predict({ sample: kang, perturbations: ['IFN-betta'] }), { kind: 'metadata', message: /IFN-betta/ });
  await assert.rejects(model.predict({ sample: kang, perturbations: [] }), { kind: 'usage', message: /no perturbation/ });
  await assert.rejects(model.predict({ sample: kang, perturbations: ['none'], context: 'nowhere' }), { kind: 'metadata', message: /unknown context 'nowhere'/ });
  await assert.rejects(model.predict({ sample: kang, perturbation: 'none', conditon: [] }), { kind: 'usage', message: /unknown option.*conditon/ });
  await assert.rejects(model.predict({ perturbation: 'none', conditionOn: ['technical'] }), { kind: 'request', message: /needs a reference sample/ });
  await assert.rejects(model.predict({ sample: kang, perturbation: 'none', numSamples: 2, seed: -1 }), { kind: 'usage', message: /seed/ });
  await assert.rejects(model.predict({ sample: kang, perturbation: 'none', mode: 'raw' }), { kind: 'usage', message: /unknown prediction mode 'raw'.*denoised, counterfactual or decoded/ });
  await assert.rejects(model.screen({ sample: kang, mode: 'anchored' }), { kind: 'usage', message: /unknown prediction mode 'anchored'/ });
});

test('calls queue instead of failing when not awaited one by one', async () => {
  const [a, b] = await Promise.all([
    model.predict({ sample: kang, perturbation: IFN }),
    model.predict({ sample: kang, perturbation: IFN }),
  ]);
  assert.deepEqual(a.logCpm, b.logCpm);
});

test('load rejects a wrong checksum, a damaged file and a bad backend name', async () => {
  await assert.rejects(Refcast.load(modelBytes, { backend: 'cpu', sha256: '00'.repeat(32) }), { kind: 'checksum', message: /SHA-256/ });
  await assert.rejects(Refcast.load(modelBytes.subarray(0, 1000), { backend: 'cpu' }), { kind: 'format' });
  await assert.rejects(Refcast.load(new TextEncoder().encode('hello'), { backend: 'cpu' }), { kind: 'format' });
  await assert.rejects(Refcast.load(modelBytes, { backend: 'gpu' }), { kind: 'usage', message: /unknown backend/ });
  await assert.rejects(Refcast.load(modelBytes, { backend: 'webgpu' }), { kind: 'gpu', message: /WebGPU/ });
});

test('dispose releases the model; later calls reject', async () => {
  const m = await Refcast.load(modelBytes, { backend: 'cpu' });
  const pending = m.predict({ sample: kang, perturbation: IFN });
  m.dispose();
  await pending; // a call made before dispose still completes
  await assert.rejects(m.predict({ sample: kang, perturbation: 'none' }), { kind: 'usage', message: /disposed/ });
  assert.throws(() => m.info(), { kind: 'usage' });
});
