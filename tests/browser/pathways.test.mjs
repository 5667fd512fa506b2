// The page's pathways and processes in headless Chromium (WebGPU on the software adapter,
// SwiftShader): the gene-set file is fetched beside the bundled model and checked against
// models/SHA256SUMS, a sample dropped on the page is predicted, and the ranked bar chart of
// pathway and GO scores is drawn beside the volcano plot with each set's leading genes; the
// screen ranks perturbations by a pathway's activity. Screenshot:
// target/browser-artifacts/pathways-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { start, openPage, requireWebgpu, ink, dropFiles, waitReady, shot, modelDoc, perturbationNamed, root, artifacts } from './harness.mjs';

let env;
let IFN;
before(async () => {
  env = await start();
  IFN = perturbationNamed(await modelDoc('models/refcast-q8_0.safetensors'), 'IFN-beta 6 h').name;
});
after(() => env?.close());

test('IFN-beta on the dropped Kang sample: pathway bars with JAK-STAT first, GO terms with leading genes', async (t) => {
  const { page, context, log } = await openPage(env);
  await page.goto(`${env.url}?backend=webgpu`);
  if (!(await requireWebgpu(page, t))) return context.close();
  await waitReady(page, 'webgpu');
  assert.equal(await page.evaluate(() => document.body.dataset.geneSets), 'loaded');
  // The gene sets came from beside the model, as the model did.
  assert.ok(log.requests.some((r) => new URL(r.url).pathname === '/models/refcast-genesets.safetensors'), 'the gene-set file was fetched');
  await dropFiles(page, [{ name: 'kang_cd14_mono_ctrl.tsv', bytes: await readFile(join(root, 'examples/kang_cd14_mono_ctrl.tsv')) }]);
  await page.waitForFunction(() => document.body.dataset.ready === 'yes' || !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.equal(await page.isHidden('#sample-error'), true, await page.textContent('#sample-error'));
  assert.match(await page.textContent('#sample-status'), /^kang_cd14_mono_ctrl\.tsv: sample/);
  assert.match(await page.textContent('#pert-selected'), new RegExp(IFN.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.sets === 'drawn' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));

  const data = await page.evaluate(() => ({ ...document.body.dataset }));
  assert.equal(data.topPathway, 'JAK-STAT');
  assert.match(data.topTerm, /vir(us|al)|interferon/, `top GO term: ${data.topTerm}`);
  // The chart is drawn beside the volcano plot: not blank, bars in both colours, text.
  const [bars] = await page.$$eval('#set-bars', ink);
  assert.ok(bars.width > 100 && bars.height > 200, `${bars.width}×${bars.height}`);
  assert.ok(bars.inked > 5000, `only ${bars.inked} pixels drawn`);
  assert.ok(bars.colours >= 4, `${bars.colours} colours`);
  const [volcano, chart] = await Promise.all([page.locator('#volcano').boundingBox(), page.locator('#set-bars').boundingBox()]);
  assert.ok(chart.y > volcano.y + volcano.height && chart.y - (volcano.y + volcano.height) < 250 && Math.abs(chart.x - volcano.x) < 5, `the bar chart sits under the volcano plot, in its column: ${JSON.stringify({ volcano, chart })}`);
  // The table: JAK-STAT first with its leading genes and their ln fold changes; GO terms too.
  const rows = await page.$$eval('#set-table tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.equal(rows[0][0], 'JAK-STAT pathway (PROGENy)');
  assert.ok(Number(rows[0][1]) > 10, rows[0].join(' | '));
  assert.match(rows[0][3], /^[A-Z0-9-]+ [+−]\d\.\d\d(, [A-Z0-9-]+ [+−]\d\.\d\d){4,}/);
  assert.ok(rows.some((r) => /\(GO:\d{7}\)$/.test(r[0]) && /virus/.test(r[0]) && /IFIT|RSAD2|ISG15|MX1|OAS/.test(r[3])), 'an antiviral GO term with interferon genes leading');
  // The words a biologist reads: the log base and what the score means.
  const caption = await page.textContent('#sets figcaption');
  assert.match(caption, /natural\s+log; divide by 0\.693 for log2/);
  assert.match(caption, /t-value/);
  assert.match(caption, /false discovery rate/);
  const legend = await page.$$eval('#set-legend dt', (dts) => dts.map((d) => d.textContent));
  assert.deepEqual(legend, ['collection', 'set', 'name', 'score', 'p_value', 'fdr', 'size', 'leading_genes']);
  await page.locator('#results').scrollIntoViewIfNeeded();
  await shot(page, 'pathways-kang-ifnb');
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('the screen ranks perturbations by JAK-STAT activity', async () => {
  // The CPU path: a screen of every perturbation on SwiftShader takes minutes.
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  await page.waitForFunction(() => document.body.dataset.geneSets === 'loaded', null, { timeout: 60_000 });
  await page.click('#example-kang');
  await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 60_000 });
  const options = await page.$$eval('#rank-by option', (os) => os.map((o) => o.value));
  assert.equal(options.length, 15, options.join(', '));
  await page.selectOption('#rank-by', 'pathway:JAK-STAT');
  await page.click('#screen');
  await page.waitForFunction(() => document.body.dataset.screen === 'done' || !document.getElementById('run-error').hidden, null, { timeout: 300_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  assert.match(await page.textContent('#screen-h'), /ranked by how much it activates the JAK-STAT pathway/);
  assert.equal(await page.textContent('#screen-activity'), 'JAK-STAT activity (t)');
  const rows = await page.$$eval('#screen-table tbody tr', (trs) => trs.slice(0, 20).map((tr) => [...tr.cells].map((c) => c.textContent)));
  const activity = rows.map((r) => Number(r[3]));
  activity.forEach((a, i) => i && assert.ok(activity[i - 1] >= a, `row ${i + 1}: ${a} after ${activity[i - 1]}`));
  assert.ok(activity[0] > 10, rows[0].join(' | '));
  assert.match(rows.slice(0, 10).map((r) => r[1]).join('; '), /IFN|interferon/i, 'an interferon among the top 10');
  assert.ok(await page.$$eval('#screen-legend dt', (dts) => dts.some((d) => d.textContent === 'activity')));
  // The ranking's first screen only: the whole table is tens of thousands of pixels tall.
  await page.evaluate(() => document.getElementById('screen-results').scrollIntoView({ block: 'start' }));
  await page.screenshot({ path: join(artifacts, 'pathways-screen-jak-stat.png') });
  assert.deepEqual(log.errors, []);
  await context.close();
});
