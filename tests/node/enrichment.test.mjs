// Gene-set enrichment through the npm package (wasm CPU backend) against the CLI's
// `--enrichment` file for the same prediction: every set of both collections, the ranking, and a
// screen ranked by a pathway. Needs pkg/ (scripts/build-wasm.sh) and a built CLI
// (target/release/refcast or target/debug/refcast; scripts/test.sh builds it first).
//
// Tolerances, from what the CLI writes and what differs between the two builds: the score (a
// t-value) is written with 4 decimals (±5e-5) and the wasm build's fold changes differ from the
// native build's in the last float bits (other SIMD sums), so |Δt| ≤ 1e-4 · (1 + |t|) (measured:
// 4.9e-5); p-values and FDRs are written with 3 significant digits (±5e-4 relative), so ≤ 1e-3
// relative (measured: 4.9e-4); leading genes are the same genes in the same order up to ties
// (PRNP and SDF4 of GO:0043954 both at −0.80 traded places between the builds), their fold
// changes written with 2 decimals, so within 0.006 position by position.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Refcast, RefcastError } from '../../js/index.js';
import { perturbationNamed } from './golden.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (p) => readFile(join(root, p));
const sums = (await read('models/SHA256SUMS')).toString();
const sha = (name) => sums.split('\n').find((l) => l.endsWith(`  ${name}`)).split(/\s+/)[0];

const model = await Refcast.load(await read('models/refcast-q8_0.safetensors'), { backend: 'cpu', sha256: sha('refcast-q8_0.safetensors') });
const IFN = perturbationNamed(model.info(), 'IFN-beta 6 h');
const SAMPLE = 'examples/kang_cd14_mono_ctrl.tsv';

// The newest build of the CLI: a release binary left from before a source change must not win.
const cli = ['target/release/refcast', 'target/debug/refcast'].map((p) => join(root, p)).filter(existsSync).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];

/** The CLI's `--enrichment` file for the sample under `IFN`, as a Map `collection:set` → fields. */
async function cliEnrichment() {
  assert.ok(cli, 'no built refcast CLI (target/release/refcast or target/debug/refcast): run cargo build first');
  const out = join(await mkdtemp(join(tmpdir(), 'refcast-')), 'enrichment.tsv');
  execFileSync(cli, ['predict', '--backend', 'cpu', '-s', SAMPLE, '-p', IFN, '-o', '/dev/null', '--enrichment', out], { cwd: root, stdio: 'pipe' });
  const [head, ...lines] = (await readFile(out, 'utf8')).trim().split('\n');
  assert.equal(head, 'collection\tset\tname\tscore\tp_value\tfdr\tsize\tleading_genes');
  return new Map(lines.map((l) => l.split('\t')).map((f) => [`${f[0]}:${f[1]}`, f]));
}

test('enrichment needs gene sets, and refuses a file that is not one', async () => {
  const fresh = await Refcast.load(await read('models/refcast-q8_0.safetensors'), { backend: 'cpu' });
  const p = await fresh.predict({ sample: await read(SAMPLE), perturbations: [IFN] });
  assert.throws(() => fresh.enrichment(p), (e) => e instanceof RefcastError && e.kind === 'usage' && /call loadGeneSets first/.test(e.message));
  await assert.rejects(fresh.screen({ sample: await read(SAMPLE), perturbations: [IFN], rankBy: 'pathway:JAK-STAT' }), (e) => e.kind === 'usage' && /rankBy 'pathway:JAK-STAT' needs gene sets/.test(e.message));
  await assert.rejects(fresh.loadGeneSets(await read('models/refcast-q8_0.safetensors')), (e) => e.kind === 'format' && /no 'refcast_genesets' entry/.test(e.message));
  await assert.rejects(fresh.loadGeneSets(await read(SAMPLE)), (e) => e.kind === 'format' && /not a safetensors file/.test(e.message));
  await assert.rejects(fresh.loadGeneSets(await read('models/refcast-genesets.safetensors'), { sha256: '0'.repeat(64) }), (e) => e.kind === 'checksum');
  fresh.dispose();
});

test('the gene-set file: PROGENy pathways and GO biological process', async () => {
  const info = await model.loadGeneSets(await read('models/refcast-genesets.safetensors'), { sha256: sha('refcast-genesets.safetensors') });
  assert.deepEqual(info.collections.map((c) => c.name), ['progeny', 'go_bp']);
  assert.equal(info.collections[0].sets, 14);
  assert.ok(info.collections[1].sets > 4000, `${info.collections[1].sets} GO terms`);
  assert.ok(Array.isArray(info.sources) && info.sources.some((s) => /progeny/.test(s.package)));
});

test('a prediction scored as the CLI scores it (every set), IFN-beta → JAK-STAT first', async () => {
  const p = await model.predict({ sample: await read(SAMPLE), perturbations: [IFN] });
  const e = model.enrichment(p);
  const want = await cliEnrichment();
  const all = e.collections.flatMap((c) => c.sets);
  assert.equal(all.length, want.size, 'the same sets are scored');
  let worst = { t: 0, p: 0, q: 0 };
  for (const s of all) {
    const f = want.get(`${s.collection}:${s.id}`);
    assert.ok(f, `${s.collection}:${s.id} is not in the CLI's file`);
    assert.equal(s.name, f[2]);
    assert.equal(s.size, Number(f[6]));
    const dt = Math.abs(s.score - Number(f[3])) / (1 + Math.abs(s.score));
    assert.ok(dt <= 1e-4, `${s.id}: t ${s.score}, CLI ${f[3]}`);
    for (const [key, got, col] of [['p', s.pValue, 4], ['q', s.fdr, 5]]) {
      const w = Number(f[col]);
      const rel = w === 0 ? got : Math.abs(got - w) / w;
      assert.ok(rel <= 1e-3 || (w === 0 && got < 1e-300), `${s.id}: ${key} ${got}, CLI ${f[col]}`);
      worst[key] = Math.max(worst[key], w === 0 ? 0 : rel);
    }
    worst.t = Math.max(worst.t, dt);
    const cliLeading = f[7] ? f[7].split(',').map((x) => x.split(':')) : [];
    // The same genes, in the same order up to ties: position by position the fold changes agree
    // within the written precision, so two genes whose changes differ in the last float bits
    // between the builds may trade places.
    assert.deepEqual(s.leading.map((g) => g.gene).sort(), cliLeading.map(([g]) => g).sort(), `${s.id}: leading genes`);
    s.leading.forEach((g, i) => assert.ok(Math.abs(g.logFoldChange - Number(cliLeading[i][1])) <= 0.006, `${s.id}: leading gene ${i + 1}, ${g.gene} ${g.logFoldChange} against the CLI's ${cliLeading[i].join(' ')}`));
  }
  console.log(`# ${all.length} sets; worst |Δt|/(1+|t|) ${worst.t.toExponential(2)}, p ${worst.p.toExponential(2)}, FDR ${worst.q.toExponential(2)} (relative)`);
  // Each collection highest score first; the interferon programme on top.
  for (const c of e.collections) c.sets.forEach((s, i) => i && assert.ok(c.sets[i - 1].score >= s.score));
  assert.equal(e.pathways[0].id, 'JAK-STAT');
  assert.ok(e.pathways[0].fdr < 1e-10);
  assert.ok(e.terms.slice(0, 10).some((s) => /virus/.test(s.name)), e.terms.slice(0, 10).map((s) => s.name).join('; '));
  assert.equal(e.foldChangeUnits, 'ln fold change');
  assert.deepEqual(e.legend.map((l) => l.column), ['collection', 'set', 'name', 'score', 'p_value', 'fdr', 'size', 'leading_genes']);
  assert.match(e.legend.find((l) => l.column === 'score').meaning, /t-value.*ln fold change/);
  // The same numbers from the fold changes given directly.
  const direct = model.enrichment(p.logFoldChange, { measured: p.reference.measured });
  assert.deepEqual(direct.pathways.map((s) => s.score), e.pathways.map((s) => s.score));
  assert.throws(() => model.enrichment(p.logFoldChange.subarray(1)), (e) => e.kind === 'request' && /fold changes for a model of/.test(e.message));
});

test('a screen ranked by a pathway: activity is the prediction\'s score, highest first', async () => {
  const sample = await read(SAMPLE);
  const names = model.info().perturbations.map((p) => p.name);
  const some = [IFN, ...names.filter((n) => n !== IFN).filter((_, i) => i % 150 === 0)];
  const s = await model.screen({ sample, perturbations: some, rankBy: 'pathway:jak-stat', pathways: true });
  assert.equal(s.rankedBy, 'progeny:JAK-STAT');
  assert.equal(s.hits[0].name, IFN);
  s.hits.forEach((h, i) => i && assert.ok(s.hits[i - 1].activity >= h.activity));
  assert.ok(s.legend.some((l) => l.column === 'activity'));
  assert.match(s.legend[0].meaning, /ranked by activity/);
  const hit = s.hits[0];
  assert.equal(hit.enrichment.length, 14, 'every pathway per perturbation');
  assert.ok(hit.enrichment.some((p) => p.id === 'JAK-STAT' && Math.abs(p.score - hit.activity) <= 1e-4 * (1 + Math.abs(p.score))));
  // Without pathways: true, the ranking's activity but no set objects.
  const plain = await model.screen({ sample, perturbations: some.slice(0, 2), rankBy: 'pathway:JAK-STAT' });
  assert.equal(plain.hits[0].enrichment, undefined, 'set scores only when asked for');
  assert.ok(Number.isFinite(plain.hits[0].activity), `activity ${plain.hits[0].activity}`);
  const e = model.enrichment(await model.predict({ sample, perturbations: [IFN] }));
  const jak = e.pathways.find((p) => p.id === 'JAK-STAT').score;
  // The screen predicts in other batch sizes than one prediction: the same within float sums.
  assert.ok(Math.abs(hit.activity - jak) <= 1e-4 * (1 + Math.abs(jak)), `screen ${hit.activity}, predict ${jak}`);
  await assert.rejects(model.screen({ sample, perturbations: some, rankBy: 'pathway:JAK' }), (e) => e.kind === 'request' && /no gene set 'pathway:JAK'; give pathway:NAME \(Androgen, EGFR/.test(e.message));
});
