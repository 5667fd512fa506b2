// The www/ page in headless Chromium: WebGPU on the software adapter (SwiftShader) and the wasm
// CPU path, user files, file errors, every network request, the Content-Security-Policy.
// Screenshots: target/browser-artifacts/*.png.
//
// Tolerance against the native CLI and the PyTorch golden vectors: |web − native| ≤ 1e-4 · (1 + |x|)
// on predicted log-CPM and log fold change (a denoised or counterfactual profile against PyTorch:
// 1e-4 · (2 + |decoded| + |control|), the errors of its two decoded rows). The CPU path runs the same Rust code as the CLI (only
// the TSV's 5-decimal rounding differs); WebGPU sums in another order on another device, like the
// native GPU backend, which tests/golden.rs holds to 5e-5; the page's TSV rounds to 5 decimals
// (≤ 5e-6). 1e-4 leaves room for both and still catches real errors (≥ 1e-2).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { start, openPage, webgpuAdapter, requireWebgpu, waitReady, shot, parseTsv, modelDoc, perturbationNamed, root, artifacts } from './harness.mjs';

const TOLERANCE = 1e-4;
// The page's prediction modes ("Predicted profile"); denoised is the default.
const MODES = ['denoised', 'counterfactual', 'decoded'];
let env;
// The bundled model's metadata (genes, perturbations, calibration) and its interferon entry, the
// page's default selection and the perturbation of the golden case the page is compared with.
let doc;
let IFN;
// Per prediction mode (the page's "Predicted profile"): the CLI's prediction for the bundled
// example (absent without a built CLI) and the PyTorch golden case for the same input (absent for
// the counterfactual mode in golden files older than golden_format 2, for the denoised mode in those
// older than golden_format 3).
const native = {};
/** The newest build of the native CLI, when there is one. */
let cli;
const golden = {};

before(async () => {
  env = await start();
  doc = await modelDoc('models/refcast-q8_0.safetensors');
  IFN = perturbationNamed(doc, 'IFN-beta 6 h').name;
  const g = JSON.parse(await readFile(join(root, 'tests/golden/golden_q8_0.json'), 'utf8'));
  for (const mode of MODES) {
    golden[mode] = g.cases.find((c) => (c.prediction ?? 'decoded') === mode && c.name.startsWith('Kang CD14 Mono control (bundled example)'));
  }
  assert.ok(golden.decoded);
  assert.deepEqual(perturbationNamed(doc, 'IFN-beta 6 h').metadata, golden.decoded.perturbation, `'${IFN}' is not the golden case's perturbation`);
  assert.equal(golden.decoded.expected.log_cpm.length, doc.genes.length);
  assert.ok(golden.counterfactual || (g.golden_format ?? 1) < 2, 'golden_format 2 without the counterfactual Kang case');
  assert.ok(golden.denoised || (g.golden_format ?? 1) < 3, 'golden_format 3 without the denoised Kang case');
  // the newest build of the CLI: a release binary left from before a source change must not win
  cli = ['target/release/refcast', 'target/debug/refcast'].map((p) => join(root, p)).filter(existsSync)
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (cli) {
    const dir = await mkdtemp(join(tmpdir(), 'refcast-'));
    for (const mode of MODES) {
      const out = join(dir, `cli-${mode}.tsv`);
      execFileSync(cli, ['predict', '--backend', 'cpu', '--perturbation', IFN, '--mode', mode, '-o', out], { cwd: root, stdio: 'pipe' });
      native[mode] = parseTsv(await readFile(out, 'utf8'));
    }
  } else {
    console.log('# no built refcast CLI (target/*/refcast): comparing with the golden vectors only');
  }
});

after(() => env?.close());

/** |web − want| ≤ TOLERANCE · scale[i], scale[i] = 1 + |want[i]| unless given; returns the worst ratio. */
function compare(what, web, want, scale = want.map((w) => 1 + Math.abs(w))) {
  assert.equal(web.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(web[i] - want[i]) / scale[i];
    assert.ok(err <= TOLERANCE, `${what}[${i}]: page ${web[i]}, expected ${want[i]}`);
    worst = Math.max(worst, err);
  }
  return worst;
}

/** Clicks Download and returns the TSV the page produced. */
async function download(page) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  return parseTsv(await readFile(await file.path(), 'utf8'));
}

async function runExample(page) {
  await page.click('#example-kang');
  await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 60_000 });
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.result === 'prediction' || !document.getElementById('run-error').hidden, null, {
    timeout: 180_000,
  });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
}

/** Logs the cold start (navigation → model ready; first prediction, which compiles the GPU
 * pipelines on WebGPU) against a warm prediction. */
async function coldStart(page, name) {
  const first = await page.evaluate(() => ({ ...document.body.dataset }));
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.runs === '2', null, { timeout: 180_000 });
  const second = Number(await page.evaluate(() => document.body.dataset.predictMs));
  console.log(
    `# ${name} cold start: page ready with the model ${first.readyAt} ms after navigation (model load ${first.loadMs} ms), ` +
      `first prediction ${first.predictMs} ms, next one ${second} ms`,
  );
}

function checkNumbers(name, all, mode) {
  const keep = all.perturbation ? all.perturbation.map((p) => p === IFN) : all.gene.map(() => true);
  const tsv = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.filter((_, i) => keep[i])]));
  assert.equal(tsv.gene.length, doc.genes.length, `${name}: one row per gene of the model for ${IFN}`);
  assert.deepEqual(tsv.gene, doc.genes.map((g) => g.symbol), `${name}: the model's genes, in its order`);
  const predicted = tsv.predicted.map(Number);
  const lfc = tsv.log_fold_change.map(Number);
  // Decoded profiles are measured against the predicted control by default (the CLI's numbers
  // below check them); denoised and counterfactual ones against the sample, which stands for the control.
  if (mode !== 'decoded') compare(`${name}: log_fold_change = predicted − reference`, lfc, predicted.map((p, g) => p - Number(tsv.reference[g])));
  const found = [];
  const g = golden[mode];
  if (g) {
    // A denoised or counterfactual profile carries the errors of its two decoded rows.
    const e = g.expected;
    const scale = mode === 'decoded' ? undefined : e.log_cpm.map((_, i) => 2 + Math.abs(e.decoded_log_cpm[i]) + Math.abs(e.control_log_cpm[i]));
    found.push(`vs PyTorch ${compare(`${name} vs PyTorch: log-CPM`, predicted, e.log_cpm, scale).toExponential(1)}`);
  }
  if (native[mode]) {
    const n = native[mode];
    assert.deepEqual(tsv.gene, n.gene);
    const w1 = compare(`${name} vs CLI: predicted`, predicted, n.predicted.map(Number));
    const w2 = compare(`${name} vs CLI: log_fold_change`, lfc, n.log_fold_change.map(Number));
    assert.deepEqual(tsv.measured, n.measured);
    found.push(`vs the native CLI ${Math.max(w1, w2).toExponential(1)}`);
  }
  console.log(`# ${name}, ${mode}: worst relative difference ${found.join(', ') || '(no golden case or CLI to compare with)'}`);
}

/**
 * The familiarity line of the bundled Kang example: without a calibration, one quiet line with the
 * reconstruction R²; with one, the verdict (the example was trained on, so inside, as the golden
 * vectors say where they carry a report), a caution when outside.
 */
async function checkFamiliarity(page) {
  const verdict = await page.evaluate(() => document.body.dataset.familiarity);
  const text = await page.textContent('#familiarity');
  if (!doc.familiarity) {
    assert.equal(verdict, 'uncalibrated');
    assert.match(text, /the model reconstructs \d+ % of its profile \(R²\); the model has no familiarity calibration/);
    return;
  }
  const want = golden.denoised?.expected.familiarity ?? golden.counterfactual?.expected.familiarity ?? golden.decoded.expected.familiarity;
  if (want) assert.equal(verdict, want.outside ? 'outside' : 'inside', text);
  if (verdict === 'outside') assert.match(text, /^Caution: Sample “.+” looks unlike anything the model was trained on: .+; predictions for it are extrapolations\.$/);
  else {
    assert.equal(verdict, 'inside');
    assert.match(text, /^Sample “.+” resembles the training data \(nearest: .+, distance \d+\.\d\); the model reconstructs \d+ % of its profile \(R²\)\.$/);
  }
}

/**
 * After the default (denoised) runs: the page's decoded and counterfactual modes, each run (the
 * page's `runs`-th and next run) and checked; the default is selected again after.
 */
async function checkOtherModes(page, name, runs) {
  assert.equal(await page.isChecked('#mode-denoised'), true, 'the denoised mode is the default');
  assert.equal(await page.isHidden('#baseline-select'), true, 'denoised: the sample is the control');
  for (const [i, mode] of ['decoded', 'counterfactual'].entries()) {
    await page.check(`#mode-${mode}`);
    await page.click('#run');
    await page.waitForFunction((n) => document.body.dataset.runs === String(n), runs + i, { timeout: 180_000 });
    assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
    assert.equal(await page.evaluate(() => document.body.dataset.mode), mode);
    if (mode === 'decoded') assert.equal(await page.isVisible('#baseline-select'), true, 'decoded: relative to the control or the sample');
    else assert.equal(await page.isHidden('#baseline-select'), true, `${mode}: the sample is the control`);
    checkNumbers(name, await download(page), mode);
  }
  await page.check('#mode-denoised');
}

test('WebGPU: the bundled example matches the native CLI and PyTorch; screen; screenshots', async (t) => {
  const { page, context, log } = await openPage(env);
  // SwiftShader is a fallback adapter, which 'auto' passes over for the CPU: ask for WebGPU.
  await page.goto(`${env.url}?backend=webgpu`);
  const adapter = await requireWebgpu(page, t);
  if (!adapter) return context.close();
  await waitReady(page, 'webgpu');
  const status = await page.textContent('#model-status');
  console.log(`# adapter: ${adapter}; ${status}`);
  await runExample(page);
  console.log(`# ${await page.textContent('#timings')}`);
  await shot(page, 'webgpu-prediction');
  assert.equal(await page.evaluate(() => document.body.dataset.mode), 'denoised');
  await checkFamiliarity(page);
  checkNumbers('WebGPU', await download(page), 'denoised');
  await coldStart(page, 'WebGPU');
  await checkOtherModes(page, 'WebGPU', 3);

  await page.click('#screen');
  await page.waitForFunction(() => document.body.dataset.screen === 'done' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  const rows = await page.$$eval('#screen-table tbody tr', (trs) => trs.map((tr) => tr.children[1].textContent));
  assert.equal(rows.length, doc.perturbations.length);
  assert.deepEqual([...rows].sort(), doc.perturbations.map((p) => p.name).sort(), 'every known perturbation, once');
  console.log(`# ${await page.textContent('#screen-timings')}`);
  await page.locator('#screen-results').screenshot({ path: join(artifacts, 'webgpu-screen.png') });
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('WebGPU turned off: auto falls back to the wasm CPU backend, same numbers', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  assert.equal(await page.evaluate(() => 'gpu' in navigator), false);
  await waitReady(page, 'cpu');
  assert.match(await page.textContent('#model-status'), /on the CPU.*Not on the GPU: no usable GPU \(navigator\.gpu is missing/);
  await runExample(page);
  await shot(page, 'cpu-prediction');
  assert.equal(await page.evaluate(() => document.body.dataset.mode), 'denoised');
  await checkFamiliarity(page);
  checkNumbers('CPU', await download(page), 'denoised');
  await coldStart(page, 'CPU');
  await checkOtherModes(page, 'CPU', 3);
  assert.deepEqual(log.errors, []);
  await context.close();
});

/** A user's own file: the example as CSV, its sample column named with a marker to look for. */
async function userFile(marker) {
  const text = await readFile(join(root, 'examples/kang_cd14_mono_ctrl.tsv'), 'utf8');
  const lines = text.trim().split('\n');
  return Buffer.from([`gene,${marker}`, ...lines.slice(1).map((l) => l.replace('\t', ','))].join('\n'));
}

test('a user file through the file input; no request after the model load carries it or leaves the origin', async () => {
  const marker = `patient_${Math.random().toString(36).slice(2, 10)}`;
  const { page, context, log } = await openPage(env);
  const response = await page.goto(env.url);
  assert.match(response.headers()['content-security-policy'], /connect-src 'self'/);
  await waitReady(page);
  const loadedAt = Date.now();
  const atLoad = log.requests.length;
  await page.setInputFiles('#sample-file', { name: `${marker}.csv`, mimeType: 'text/csv', buffer: await userFile(marker) });
  await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 60_000 });
  assert.match(await page.textContent('#sample-status'), new RegExp(`sample “${marker}”.*read as raw counts`));
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.result === 'prediction', null, { timeout: 180_000 });
  assert.match(await page.textContent('#timings'), new RegExp(marker));
  await page.click('#screen');
  await page.waitForFunction(() => document.body.dataset.screen === 'done', null, { timeout: 180_000 });
  await download(page);
  await shot(page, 'user-file');

  const lines = log.requests.map((r) => `${r.method} ${r.url}${r.body ? ` (${r.body.length} bytes of body)` : ''}`);
  await writeFile(join(artifacts, 'network-user-file.txt'), lines.join('\n') + '\n');
  for (const r of log.requests) {
    const url = new URL(r.url);
    assert.ok(url.protocol === 'blob:' || url.protocol === 'data:' || url.origin === env.origin, `request to another origin: ${r.url}`);
    assert.equal(r.method, 'GET', `${r.method} ${r.url}`);
    assert.equal(r.body, null, `a request with a body: ${r.url}`);
    assert.ok(!JSON.stringify([r.url, r.headers]).includes(marker), `the sample's name left in ${r.url}`);
  }
  const after = log.requests.slice(atLoad).filter((r) => r.at >= loadedAt);
  assert.deepEqual(
    after.filter((r) => !r.url.startsWith('blob:')).map((r) => r.url),
    [],
    'the page made requests after the model was loaded',
  );
  assert.deepEqual(log.sockets, []);
  const loaded = log.requests.slice(0, atLoad).map((r) => new URL(r.url).pathname);
  assert.ok(loaded.includes('/models/refcast-q8_0.safetensors') && loaded.includes('/pkg/refcast_bg.wasm'), loaded.join(' '));
  console.log(`# ${log.requests.length} requests in all, ${after.length} after the model load (download blob only)`);
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('a malformed file: the error is shown next to the input, naming the line and gene', async () => {
  const { page, context } = await openPage(env);
  await page.goto(env.url);
  await waitReady(page);
  const bad = Buffer.from('gene\tcount\nISG15\t12\nMX1\tn/a\nIFI6\t4\n');
  await page.setInputFiles('#sample-file', { name: 'broken.tsv', mimeType: 'text/tab-separated-values', buffer: bad });
  await page.waitForSelector('#sample-error:not([hidden])');
  const message = await page.textContent('#sample-error');
  assert.match(message, /broken\.tsv: invalid sample: line 3, column 2 \(gene 'MX1'\): 'n\/a' is not a number/);
  assert.equal(await page.isDisabled('#run'), true);
  // The error sits in the sample section, beside the drop zone.
  assert.equal(await page.$eval('#sample-error', (e) => e.closest('section').id), 'sample-section');
  await page.locator('#sample-section').screenshot({ path: join(artifacts, 'malformed-file.png') });

  const dup = Buffer.from('gene,count\nISG15,1\nMX1,2\nisg15,3\n');
  await page.setInputFiles('#sample-file', { name: 'dup.csv', mimeType: 'text/csv', buffer: dup });
  await page.waitForFunction(() => document.getElementById('sample-error').textContent.includes('dup.csv'));
  assert.match(await page.textContent('#sample-error'), /line 4: gene 'isg15' appears twice \(first on line 2\)/);
  await context.close();
});

test('the Content-Security-Policy is enforced: no inline script or handler, no string eval, no other origin', async () => {
  const { page, context } = await openPage(env);
  await page.goto(env.url);
  await waitReady(page);
  // Another origin that is really there: the same server under "localhost" instead of 127.0.0.1.
  const other = env.url.replace('127.0.0.1', 'localhost');
  const result = await page.evaluate(async (other) => {
    const violations = [];
    document.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.effectiveDirective} ${e.blockedURI}`));
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true;';
    document.head.append(s);
    const div = document.createElement('div');
    div.setAttribute('onclick', 'window.handlerRan = true;');
    document.body.append(div);
    div.click();
    div.remove();
    setTimeout('window.timerStringRan = true;', 0);
    const tryFetch = (u) => fetch(u).then(() => 'loaded', (e) => `blocked: ${e.message}`);
    const fetched = await tryFetch(`${other}examples/kang_cd14_mono_ctrl.tsv`);
    const img = await new Promise((done) => {
      const i = new Image();
      i.onload = () => done('loaded');
      i.onerror = () => done('blocked');
      i.src = `${other}favicon.png`;
    });
    const sent = navigator.sendBeacon?.(`${other}beacon`, 'ISG15\t12') ?? false;
    await new Promise((r) => setTimeout(r, 200));
    return { inlineRan: window.inlineRan === true, handlerRan: window.handlerRan === true, timerStringRan: window.timerStringRan === true, fetched, img, sent, violations };
  }, other);
  assert.equal(result.inlineRan, false);
  assert.equal(result.handlerRan, false);
  assert.equal(result.timerStringRan, false);
  assert.match(result.fetched, /^blocked/);
  assert.equal(result.img, 'blocked');
  // sendBeacon only queues (it may say true); CSP stops the request, which the violation shows.
  assert.ok(result.violations.some((v) => v.startsWith('connect-src') && v.includes('/beacon')), `beacon not blocked: ${result.violations}`);
  const directives = result.violations.map((v) => v.split(' ')[0]);
  for (const d of ['script-src-elem', 'script-src-attr', 'script-src', 'connect-src', 'img-src']) assert.ok(directives.includes(d), `no ${d} violation: ${result.violations}`);
  console.log(`# violations reported: ${result.violations.join('; ')}`);
  await context.close();
});

test('auto passes over a software WebGPU adapter (SwiftShader) for the faster CPU backend, and says so', async () => {
  const { page, context } = await openPage(env);
  await page.goto(env.url);
  if (!(await webgpuAdapter(page))) return context.close(); // covered by the WebGPU-off test
  await waitReady(page, 'cpu');
  assert.match(await page.textContent('#model-status'), /Not on the GPU: the only GPU adapter, .+, emulates a GPU on the CPU and is slower than the CPU backend/);
  await context.close();
});

const isControl = (p) => Object.values(p.metadata).some((v) => String(v).toLowerCase() === 'none');
const literally = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const CHECKS = '#perturbations input[type=checkbox]';
/** The perturbation checkboxes a user can see now (not filtered out, not in a closed group). */
const visibleChecks = (page) => page.$$eval(CHECKS, (xs) => xs.filter((x) => x.checkVisibility()).map((x) => x.value));
const checked = (page) => page.$$eval(`${CHECKS}:checked`, (xs) => xs.map((x) => x.value));
const openGroups = (page) => page.$$eval('#perturbations details[open] .pert-class', (xs) => xs.map((x) => x.textContent));

test('the perturbation list: default selection, search as you type, keyboard, clearing; groups when the model has classes', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  const names = doc.perturbations.map((p) => p.name);
  assert.deepEqual((await page.$$eval(CHECKS, (xs) => xs.map((x) => x.value))).sort(), [...names].sort(), 'one checkbox per known perturbation');
  assert.deepEqual(await checked(page), [IFN], 'IFN-beta 6 h is the default selection');
  assert.match(await page.textContent('#pert-selected'), new RegExp(`^Selected \\(1\\): ${literally(IFN)}\\.$`));
  const control = doc.perturbations.find(isControl).name;
  assert.equal(await page.$eval(CHECKS, (x) => x.value), control, 'the control comes first');
  // A group per class (entries without one under "other"), or one flat list without classes.
  const entries = doc.perturbations.filter((p) => !isControl(p));
  const classOf = (p) => String(p.metadata.perturbation_class ?? '').trim().replace(/^unknown$/i, '') || 'other';
  const classes = entries.some((p) => 'perturbation_class' in p.metadata) ? new Set(entries.map(classOf)) : new Set();
  assert.equal(await page.locator('#perturbations details').count(), classes.size, 'a group per class, or one flat list');
  for (const id of ['example-kang', 'example-airway', 'example-tcell']) assert.equal(await page.isVisible(`#${id}`), true, id);

  // Case-insensitive substring of the name; the count says how many match.
  await page.fill('#pert-search', 'iNfLuEnZa');
  const flu = names.filter((n) => n.toLowerCase().includes('influenza'));
  assert.ok(flu.length > 1);
  assert.deepEqual((await visibleChecks(page)).sort(), [...flu].sort());
  assert.match(await page.textContent('#pert-count'), new RegExp(`^${flu.length} of ${names.length.toLocaleString('en')} perturbations match “iNfLuEnZa”\\.$`));
  await page.fill('#pert-search', 'no such perturbation');
  assert.deepEqual(await visibleChecks(page), []);
  assert.match(await page.textContent('#pert-count'), /^No perturbation matches “no such perturbation”\.$/);
  // Keyboard: type, ArrowDown to the first match, Space checks it; Escape clears the search.
  await page.fill('#pert-search', '');
  await page.focus('#pert-search');
  await page.keyboard.type(control);
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.value), control);
  await page.keyboard.press('Space');
  assert.deepEqual(await checked(page), [control, IFN]);
  await page.focus('#pert-search');
  await page.keyboard.press('Escape');
  assert.equal(await page.inputValue('#pert-search'), '');
  assert.match(await page.textContent('#pert-count'), new RegExp(`^${names.length.toLocaleString('en')} perturbations`));
  assert.ok((await visibleChecks(page)).includes(IFN), 'the selection stays in view after a search');
  assert.match(await page.textContent('#pert-selected'), /^Selected \(2\): /);
  // Clearing the selection leaves Predict off until something is chosen again.
  await page.click('#example-kang');
  await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 60_000 });
  assert.equal(await page.isDisabled('#run'), false);
  await page.click('#pert-clear');
  assert.deepEqual(await checked(page), []);
  assert.equal(await page.isDisabled('#run'), true);
  assert.equal(await page.isDisabled('#pert-clear'), true);
  assert.match(await page.textContent('#pert-selected'), /^Nothing selected/);
  await page.check(`${CHECKS}[value="${IFN}"]`);
  assert.equal(await page.isDisabled('#run'), false);
  assert.deepEqual(log.errors, []);
  await context.close();
});

// The page's module with the model's list as a model with ~1,200 perturbations and their classes
// would give it: the model's own entries (given classes) and 1,200 compounds the model does not know.
const LONG_LIST = `
import { Refcast } from '/js/index.js?real';
export * from '/js/index.js?real';
const CLASSES = { none: 'none', 'IFN-beta': 'interferon', dexamethasone: 'glucocorticoid' };
const KINDS = ['kinase inhibitor', 'HDAC inhibitor', 'TCR activation'];
const info = Refcast.prototype.info;
Refcast.prototype.info = function () {
  const i = info.call(this);
  const known = i.perturbations.map((p) => ({ ...p, metadata: { ...p.metadata, perturbation_class: CLASSES[p.metadata.perturbation] ?? 'infection' } }));
  const extra = Array.from({ length: 1200 }, (_, k) => ({
    name: 'compound ' + String(k).padStart(4, '0') + ' 0.37 µM 24 h',
    metadata: { perturbation: 'compound ' + k, perturbation_class: KINDS[k % 3], time_hours: 24, dose_um: 0.37 },
  }));
  return { ...i, perturbations: [...known, ...extra] };
};
`;

test('a long list with classes: collapsible groups in order, the control first, search opens the matches, a prediction', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.route((url) => url.pathname === '/js/index.js' && !url.search, (route) => route.fulfill({ contentType: 'text/javascript', body: LONG_LIST }));
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  const total = (await page.$$eval(CHECKS, (xs) => xs.length));
  assert.equal(total, doc.perturbations.length + 1200);
  const groups = await page.$$eval('#perturbations details .pert-class', (xs) => xs.map((x) => x.textContent));
  const want = ['HDAC inhibitor', 'TCR activation', 'glucocorticoid', 'infection', 'interferon', 'kinase inhibitor'];
  assert.deepEqual(groups, want.sort((a, b) => a.localeCompare(b, 'en', { sensitivity: 'base' })));
  const control = doc.perturbations.find(isControl).name;
  const interferon = doc.perturbations.filter((p) => p.metadata.perturbation === 'IFN-beta').map((p) => p.name);
  assert.deepEqual(await visibleChecks(page), [control, ...interferon], 'the control, then the open group of the selection');
  assert.deepEqual(await openGroups(page), ['interferon']);
  assert.match(await page.textContent('#pert-count'), new RegExp(`^${total.toLocaleString('en')} perturbations in 6 groups\\.$`));
  assert.match(await page.textContent('#perturbations details[open] summary'), /^interferon \(\d+, 1 selected\)$/);
  await shot(page, 'perturbation-groups');

  // A search opens the groups with matches and hides the others; the selection stays.
  await page.fill('#pert-search', 'COMPOUND 0042 ');
  assert.deepEqual(await visibleChecks(page), ['compound 0042 0.37 µM 24 h']);
  assert.deepEqual(await openGroups(page), ['kinase inhibitor']);
  assert.equal(await page.locator('#perturbations details:not([hidden])').count(), 1);
  assert.match(await page.textContent('#pert-count'), new RegExp(`^1 of ${total.toLocaleString('en')} perturbations match`));
  await page.focus('#pert-search');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Space');
  await page.fill('#pert-search', '');
  assert.deepEqual(await openGroups(page), ['interferon'], 'the groups as they were before the search');
  assert.match(await page.textContent('#pert-selected'), new RegExp(`^Selected \\(2\\): ${literally(IFN)}; compound 0042`));
  assert.match(await page.textContent('#perturbations details:has(input[value^="compound 0042"]) summary'), /^kinase inhibitor \(400, 1 selected\)$/);
  // Groups open and close from the keyboard, and stay so across a search.
  await page.focus('#perturbations details:has(input[value^="compound 0042"]) summary');
  await page.keyboard.press('Enter');
  assert.deepEqual(await openGroups(page), ['interferon', 'kinase inhibitor']);
  await page.fill('#pert-search', 'IFN');
  await page.fill('#pert-search', '');
  assert.deepEqual(await openGroups(page), ['interferon', 'kinase inhibitor']);

  // The made-up compound is not the model's: unchecked, the page predicts as ever.
  await page.uncheck(`${CHECKS}[value^="compound 0042"]`);
  await runExample(page);
  assert.equal(await page.isVisible('#results'), true);
  assert.ok((await page.$$eval('#top-up tbody tr', (trs) => trs.length)) > 0);
  assert.deepEqual(log.errors, []);
  await context.close();
});

const TCELL = 'examples/tcell_D1_unstimulated_24h.tsv';

test('the T-cell example button loads its file, and the page predicts from it', { skip: !existsSync(join(root, TCELL)) && `${TCELL} is not there yet` }, async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  await page.click('#example-tcell');
  await page.waitForFunction(() => document.body.dataset.ready === 'yes' || !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.equal(await page.isHidden('#sample-error'), true, await page.textContent('#sample-error'));
  assert.match(await page.textContent('#sample-status'), /^tcell_D1_unstimulated_24h\.tsv: sample “.+”, [\d,]+ genes read as raw counts/);
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.result === 'prediction' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  assert.match(await page.textContent('#timings'), /from tcell_D1_unstimulated_24h\.tsv/);
  assert.ok((await page.$$eval('#top-up tbody tr', (trs) => trs.length)) > 0);
  assert.equal(await page.isVisible('#familiarity'), true);
  assert.ok(log.requests.some((r) => new URL(r.url).pathname === `/${TCELL}`));
  assert.deepEqual(log.errors, []);
  await context.close();
});

const LNCAP = 'tests/data/lncap_untreated_lane1.tsv';

test('a sample of a tissue absent from training (LNCaP) gets the caution beside its results, in plain words', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  await page.setInputFiles('#sample-file', { name: 'lncap.tsv', mimeType: 'text/tab-separated-values', buffer: await readFile(join(root, LNCAP)) });
  await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 60_000 });
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.result === 'prediction' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  const verdict = await page.evaluate(() => document.body.dataset.familiarity);
  const text = await page.textContent('#familiarity');
  if (!doc.familiarity) {
    assert.equal(verdict, 'uncalibrated', text);
  } else {
    assert.equal(verdict, 'outside', text);
    assert.match(text, /^Caution: Sample “.+” looks unlike anything the model was trained on: .+; predictions for it are extrapolations\.$/);
    assert.equal(await page.getAttribute('#familiarity', 'class'), 'familiarity-outside');
    assert.equal(await page.isVisible('#familiarity'), true);
  }
  await shot(page, 'outside-sample');
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('ranking every perturbation (decoded): the library’s screen, as the native CLI ranks it, the control against itself', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(`${env.url}?backend=cpu`);
  await waitReady(page, 'cpu');
  await page.click('#example-kang');
  await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 60_000 });
  await page.check('#mode-decoded');
  // A context, while both latents come from the sample: it changes nothing, and the page says so.
  await page.selectOption('#context-select', { index: 1 });
  await page.click('#screen');
  await page.waitForFunction(() => document.body.dataset.screen === 'done' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  assert.match(await page.textContent('#screen-timings'), /Note: cell_type, tissue have no effect: the biological latent comes from the sample/);
  const rows = await page.$$eval('#screen-table tbody tr', (trs) => trs.map((tr) => [tr.children[1].textContent, Number(tr.children[2].textContent)]));
  assert.match(await page.textContent('#screen-effect'), /vs predicted control/);
  assert.deepEqual(log.errors, []);
  await context.close();
  assert.deepEqual(rows.map(([n]) => n).sort(), doc.perturbations.map((p) => p.name).sort());
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i - 1][1] >= rows[i][1], 'ranked by effect size');
  assert.equal(Object.fromEntries(rows)[doc.perturbations.find(isControl).name], 0, 'the control against itself');
  if (!cli) return console.log('# no built refcast CLI: the ranking is not compared with it');
  const out = execFileSync(cli, ['screen', '--backend', 'cpu', '--mode', 'decoded', '--top', String(rows.length)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  const native = Object.fromEntries(out.trim().split('\n').slice(1).map((l) => l.split('\t')).map((f) => [f[1], Number(f[2])]));
  // The table shows 3 decimals; the CLI's 4.
  for (const [name, effect] of rows) assert.ok(Math.abs(effect - native[name]) <= 1.1e-3, `${name}: ${effect} in the page, ${native[name]} from the CLI`);
});
