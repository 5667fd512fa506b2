// The www/ page in headless Chromium: WebGPU on the software adapter (SwiftShader) and the wasm
// CPU path, user files, file errors, every network request, the Content-Security-Policy.
// Screenshots: target/browser-artifacts/*.png.
//
// Tolerance against the native CLI and the PyTorch golden vectors: |web − native| ≤ 1e-4 · (1 + |x|)
// on predicted log-CPM and log fold change. The CPU path runs the same Rust code as the CLI (only
// the TSV's 5-decimal rounding differs); WebGPU sums in another order on another device, like the
// native GPU backend, which tests/golden.rs holds to 5e-5; the page's TSV rounds to 5 decimals
// (≤ 5e-6). 1e-4 leaves room for both and still catches real errors (≥ 1e-2).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { start, openPage, webgpuAdapter, waitReady, shot, parseTsv, root, CI, artifacts } from './harness.mjs';

const TOLERANCE = 1e-4;
let env;
let native; // the CLI's prediction for the bundled example, or null without a built CLI
let golden; // the PyTorch golden case for the same input

before(async () => {
  env = await start();
  const g = JSON.parse(await readFile(join(root, 'tests/golden/golden_q8_0.json'), 'utf8'));
  golden = g.cases.find((c) => c.name.startsWith('Kang CD14 Mono control (bundled example)'));
  const cli = ['target/release/refcast', 'target/debug/refcast'].map((p) => join(root, p)).find(existsSync);
  if (cli) {
    const out = join(await mkdtemp(join(tmpdir(), 'refcast-')), 'cli.tsv');
    execFileSync(cli, ['predict', '--backend', 'cpu', '--perturbation', 'IFN-beta 6 h', '-o', out], { cwd: root, stdio: 'pipe' });
    native = parseTsv(await readFile(out, 'utf8'));
  } else {
    console.log('# no built refcast CLI (target/*/refcast): comparing with the golden vectors only');
  }
});

after(() => env?.close());

function compare(what, web, want) {
  assert.equal(web.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(web[i] - want[i]) / (1 + Math.abs(want[i]));
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

function checkNumbers(name, tsv) {
  const predicted = tsv.predicted.map(Number);
  const lfc = tsv.log_fold_change.map(Number);
  const worstGolden = compare(`${name} vs PyTorch: log-CPM`, predicted, golden.expected.log_cpm);
  let msg = `${name}: worst relative difference vs PyTorch ${worstGolden.toExponential(1)}`;
  if (native) {
    assert.deepEqual(tsv.gene, native.gene);
    const w1 = compare(`${name} vs CLI: predicted`, predicted, native.predicted.map(Number));
    const w2 = compare(`${name} vs CLI: log_fold_change`, lfc, native.log_fold_change.map(Number));
    assert.deepEqual(tsv.measured, native.measured);
    msg += `, vs the native CLI ${Math.max(w1, w2).toExponential(1)}`;
  }
  console.log(`# ${msg}`);
}

test('WebGPU: the bundled example matches the native CLI and PyTorch; screen; screenshots', async (t) => {
  const { page, context, log } = await openPage(env);
  await page.goto(env.url);
  const adapter = await webgpuAdapter(page);
  if (!adapter) {
    if (CI) assert.fail('no WebGPU adapter in Chromium (CI=true: this must not be skipped)');
    t.skip('no WebGPU adapter in this Chromium');
    return context.close();
  }
  await waitReady(page, 'webgpu');
  const status = await page.textContent('#model-status');
  console.log(`# adapter: ${adapter}; ${status}`);
  await runExample(page);
  console.log(`# ${await page.textContent('#timings')}`);
  await shot(page, 'webgpu-prediction');
  checkNumbers('WebGPU', await download(page));

  await page.click('#screen');
  await page.waitForFunction(() => document.body.dataset.screen === 'done' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  const rows = await page.$$eval('#screen-table tbody tr', (trs) => trs.map((tr) => tr.children[1].textContent));
  assert.equal(rows.length, 18);
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
  assert.match(await page.textContent('#model-status'), /on the CPU.*No WebGPU: navigator\.gpu is missing/);
  await runExample(page);
  await shot(page, 'cpu-prediction');
  checkNumbers('CPU', await download(page));
  assert.deepEqual(log.errors, []);
  await context.close();
});
