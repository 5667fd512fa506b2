// The page in headless Chromium reads a gzip-compressed sample dropped on it: the browser's
// DecompressionStream decompresses it, the status line says what the file was read as, and the
// prediction runs; the three files of a 10x Genomics matrix dropped together are summed over their
// cells. The files are made from the bundled samples (tests/data/formats/make.py).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { start, openPage, dropFiles, waitReady, shot, root } from './harness.mjs';

let env;
before(async () => {
  env = await start();
});
after(() => env?.close());

test('a .tsv.gz file: decompressed in the page, read as counts, and said so; the prediction runs', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  const buffer = await readFile(join(root, 'tests/data/formats/airway.tsv.gz'));
  await page.setInputFiles('#sample-file', { name: 'airway.tsv.gz', mimeType: 'application/gzip', buffer });
  await page.waitForFunction(() => document.body.dataset.ready === 'yes' || !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.equal(await page.isHidden('#sample-error'), true, await page.textContent('#sample-error'));
  const status = await page.textContent('#sample-status');
  assert.match(status, /^airway\.tsv\.gz: sample “airway”, [\d,]+ genes read as raw counts \(library size [\d,]+\)\./);
  assert.match(status, /The file was read as a TSV table \(gzip-compressed\); values: counts \(from the header 'count'\)\./);
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.result === 'prediction' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  assert.match(await page.textContent('#timings'), /from airway\.tsv\.gz/);
  await shot(page, 'sample-tsv-gz');
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('a truncated .tsv.gz file: the error says so beside the input', async () => {
  const { page, context } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  const buffer = (await readFile(join(root, 'tests/data/formats/airway.tsv.gz'))).subarray(0, 50_000);
  await page.setInputFiles('#sample-file', { name: 'airway.tsv.gz', mimeType: 'application/gzip', buffer });
  await page.waitForFunction(() => !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.match(await page.textContent('#sample-error'), /^airway\.tsv\.gz: the gzip data is corrupt or truncated/);
  await context.close();
});

test('a 10x Genomics matrix (its three files dropped together): summed over its cells, said so, predicted', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  const dir = join(root, 'tests/data/formats/kang_10x');
  const names = ['matrix.mtx.gz', 'features.tsv.gz', 'barcodes.tsv.gz'];
  await dropFiles(page, await Promise.all(names.map(async (name) => ({ name, bytes: await readFile(join(dir, name)) }))));
  await page.waitForFunction(() => document.body.dataset.ready === 'yes' || !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.equal(await page.isHidden('#sample-error'), true, await page.textContent('#sample-error'));
  const status = await page.textContent('#sample-status');
  assert.match(status, /^matrix\.mtx\.gz \+ features\.tsv\.gz \+ barcodes\.tsv\.gz: sample “10x_pseudobulk”, [\d,]+ genes read as raw counts/);
  assert.match(status, /The file was read as a 10x Genomics matrix, 6 cells summed into one pseudobulk sample \(gzip-compressed\)/);
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.sets === 'drawn' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  // The cells sum to the Kang example (make.py), so IFN-beta moves JAK-STAT first here too.
  assert.equal(await page.evaluate(() => document.body.dataset.topPathway), 'JAK-STAT');
  await shot(page, 'sample-10x');
  // Two of the three files: the library's message says which is missing.
  await dropFiles(page, await Promise.all(names.slice(0, 2).map(async (name) => ({ name, bytes: await readFile(join(dir, name)) }))));
  await page.waitForFunction(() => !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.match(await page.textContent('#sample-error'), /needs matrix\.mtx, features\.tsv and barcodes\.tsv; barcodes\.tsv missing/);
  assert.deepEqual(log.errors, []);
  await context.close();
});
