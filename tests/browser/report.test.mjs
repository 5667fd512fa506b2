// The CLI's offline HTML reports (`predict --report`, `screen --report`) in headless Chromium:
// opened from disk, they draw their plots (the canvas holds many pixels in several colours, not
// one flat colour), raise no error and no Content-Security-Policy violation, and request nothing
// but the file itself. Screenshots: target/browser-artifacts/report-*.png.
//
// The reports come from the newest built CLI (target/release/refcast or target/debug/refcast;
// scripts/test.sh builds the debug one); without one the test fails under CI=true.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { start, openPage, ink, root, CI, artifacts } from './harness.mjs';

let env;
let cli;
let dir;

before(async () => {
  // The newest build: a release binary left from before a source change must not win.
  cli = ['target/release/refcast', 'target/debug/refcast'].map((p) => join(root, p)).filter(existsSync)
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!cli && CI) throw new Error('no built refcast CLI (target/release/refcast or target/debug/refcast): build it first (cargo build)');
  dir = await mkdtemp(join(tmpdir(), 'refcast-report-'));
  env = await start();
});

after(async () => {
  await env?.close();
});

/** Opens a report from disk and returns what its canvases hold, with the page's log. */
async function open(file, name) {
  const { page, context, log } = await openPage(env);
  await page.addInitScript(() => {
    window.violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.violations.push(`${e.effectiveDirective} ${e.blockedURI}`));
  });
  const url = pathToFileURL(file).href;
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.rendered === 'true', null, { timeout: 30_000 });
  const canvases = await page.$$eval('canvas', ink);
  // The first screen only: a screen's report lists every perturbation, a page tens of thousands of pixels tall.
  await page.screenshot({ path: join(artifacts, `report-${name}.png`) });
  const violations = await page.evaluate(() => window.violations);
  const text = await page.textContent('body');
  await context.close();
  return { url, canvases, violations, log, text };
}

function assertDrawn(canvas, what) {
  assert.ok(canvas.width > 100 && canvas.height > 100, `${what}: ${canvas.width}×${canvas.height}`);
  // A blank canvas has no inked pixel; a flat one has a single colour. A plot has axes, labels and
  // points or bars in several colours (antialiasing adds more).
  assert.ok(canvas.inked > 2000, `${what}: only ${canvas.inked} pixels drawn`);
  assert.ok(canvas.colours >= 4, `${what}: ${canvas.colours} colours`);
}

function assertOffline(r) {
  assert.deepEqual(r.log.errors, []);
  assert.deepEqual(r.violations, [], 'no Content-Security-Policy violation');
  assert.deepEqual(r.log.requests.map((q) => q.url).filter((u) => u !== r.url), [], 'the report requests nothing but itself');
  assert.deepEqual(r.log.sockets, []);
}

test('a prediction report draws its volcano plots offline', async (t) => {
  if (!cli) return t.skip('no built refcast CLI');
  const file = join(dir, 'prediction.html');
  execFileSync(cli, ['predict', '--backend', 'cpu', '-p', 'IFN-beta 6 h', '-p', 'dexamethasone', '-o', join(dir, 'p.tsv'), '--report', file], { cwd: root, stdio: 'pipe' });
  const r = await open(file, 'prediction');
  assertOffline(r);
  assert.equal(r.canvases.length, 2, 'one volcano plot per perturbation');
  r.canvases.forEach((c, i) => assertDrawn(c, `volcano ${i + 1}`));
  assert.match(r.text, /ln fold change/);
  assert.match(r.text, /Top up-regulated/);
});

test('a screen report draws its chart and explains its columns offline', async (t) => {
  if (!cli) return t.skip('no built refcast CLI');
  const file = join(dir, 'screen.html');
  execFileSync(cli, ['screen', '--backend', 'cpu', '--top', '3', '--report', file], { cwd: root, stdio: 'pipe' });
  const r = await open(file, 'screen');
  assertOffline(r);
  assert.equal(r.canvases.length, 1);
  assertDrawn(r.canvases[0], 'bar chart');
  assert.match(r.text, /What the columns mean/);
  assert.match(r.text, /effect_size/);
});
