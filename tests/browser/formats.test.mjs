// The page in headless Chromium reads a gzip-compressed sample dropped on it: the browser's
// DecompressionStream decompresses it, the status line says what the file was read as, and the
// prediction runs; the three files of a 10x Genomics matrix dropped together are summed over their
// cells. The files are made from the bundled samples (tests/data/formats/make.py).
// An AnnData .h5ad file dropped on it is read in a worker (jsfive, js/hdf5.js): its cells summed
// into the Kang pseudobulk (tests/data/formats/make_h5.py), all together or by an obs column.

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

test('an .h5ad file: its cells summed in a worker, all together or by an obs column; the prediction runs', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  const buffer = await readFile(join(root, 'tests/data/formats/kang.h5ad'));
  await page.setInputFiles('#sample-file', { name: 'kang.h5ad', mimeType: 'application/octet-stream', buffer });
  await page.waitForFunction(() => document.body.dataset.ready === 'yes' || !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.equal(await page.isHidden('#sample-error'), true, await page.textContent('#sample-error'));
  const status = await page.textContent('#sample-status');
  // The Kang pseudobulk's 12,542 genes and its library of 5,852,250 counts.
  assert.match(status, /^kang\.h5ad: sample “kang”, 12,542 genes read as raw counts \(library size 5,852,250\)\./);
  assert.match(status, /The file was an AnnData file, 6 cells of raw\/X summed into 1 pseudobulk sample \(in this page\)\./);
  assert.deepEqual(await page.$$eval('#groupby-select option', (o) => o.map((x) => x.value)), ['', 'group', 'n_counts']);
  assert.deepEqual(await page.$$eval('#layer-select option', (o) => o.map((x) => x.value)), ['', 'counts', 'raw', 'X']);
  await page.selectOption('#groupby-select', 'group');
  await page.waitForFunction(() => /by obs column 'group'/.test(document.getElementById('sample-status').textContent), null, { timeout: 60_000 });
  assert.deepEqual(await page.$$eval('#column-select option', (o) => o.map((x) => x.textContent)), ['a', 'b']);
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.result === 'prediction' || !document.getElementById('run-error').hidden, null, { timeout: 180_000 });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  await shot(page, 'sample-h5ad');
  // Normalized X is refused with the matrices to choose instead.
  await page.selectOption('#layer-select', 'X');
  await page.waitForFunction(() => !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.match(await page.textContent('#sample-error'), /^kang\.h5ad: X holds 0\.00947\d* for cell '[ACGT]+-1', gene '\w+': not a raw count .* Choose the matrix that holds raw counts: the layer counts, raw$/);
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('an HDF5 file that is neither AnnData nor 10x: the error says what it holds', async () => {
  const { page, context } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  const buffer = await readFile(join(root, 'tests/data/formats/not_anndata.h5'));
  await page.setInputFiles('#sample-file', { name: 'not_anndata.h5', mimeType: 'application/octet-stream', buffer });
  await page.waitForFunction(() => !document.getElementById('sample-error').hidden, null, { timeout: 60_000 });
  assert.match(await page.textContent('#sample-error'), /^not_anndata\.h5: an HDF5 file that is neither an AnnData \.h5ad .* its top level holds: values$/);
  await context.close();
});
