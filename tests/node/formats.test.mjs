// The input formats through the npm package: gzip decompressed by the platform's
// DecompressionStream (bounded), featureCounts, Salmon, kallisto, log2-CPM and TPM tables, each
// read as the native library reads it (tests/formats.rs), with its one-line interpretation; a 10x
// matrix given as its three files, summed over its cells. Files are made from the bundled samples
// by tests/data/formats/make.py; the HDF5 files (AnnData, 10x .h5) by make_h5.py, read with
// readHdf5Sample (jsfive) into the Kang pseudobulk's counts.
//
// Tolerance: a log2-CPM table written with 4 decimals gives the counts' log-CPM within 3.5e-5
// (in natural log); 1e-4 is asserted. Gzip and the tools' tables give the counts themselves.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { Refcast, RefcastError, readHdf5Sample } from '../../js/index.js';

const root = new URL('../../', import.meta.url);
const read = (p) => readFile(new URL(p, root));
const model = await Refcast.load(await read('models/refcast-q8_0.safetensors'), { backend: 'cpu' });
const plain = await model.inspectSample(await read('examples/airway_N61311_untreated.tsv'), { fileName: 'airway.tsv' });

function maxDiff(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const files = [
  ['gzip', 'tests/data/formats/airway.tsv.gz', 'airway', 'counts', /^read as a TSV table \(gzip-compressed\); values: counts \(from the header 'count'\)$/, 0],
  ['featureCounts', 'tests/data/formats/airway_featurecounts.txt.gz', 'N61311', 'counts', /^read as featureCounts output \(annotation columns .* skipped\) \(gzip-compressed\); values: counts \(the tool's read counts\)$/, 0],
  ['Salmon', 'tests/data/formats/salmon/N61311/quant.genes.sf.gz', 'N61311', 'counts', /^read as a Salmon quantification \(its NumReads column\) \(gzip-compressed\)/, 0],
  ['kallisto', 'tests/data/formats/kallisto/N61311/abundance.tsv.gz', 'N61311', 'counts', /^read as a kallisto abundance table \(its est_counts column\)/, 0],
  ['log2-CPM', 'tests/data/formats/airway_log2cpm.tsv', 'N61311', 'log2-cpm', /values: log2\(1 \+ CPM\) \(from the values: only this base brings every sample's CPM to a sum near 10⁶/, 1e-4],
  ['log10-CPM, gzip', 'tests/data/formats/airway_log10cpm.tsv.gz', 'N61311', 'log10-cpm', /\(gzip-compressed\); values: log10\(1 \+ CPM\) \(from the values/, 1e-4],
];

for (const [what, path, name, kind, interpretation, tolerance] of files) {
  test(`${what}: read as the native library reads it, and said so`, async () => {
    const r = await model.inspectSample(await read(path), { fileName: path });
    assert.equal(r.name, name);
    assert.equal(r.valueKind, kind);
    assert.match(r.interpretation, interpretation);
    assert.deepEqual(r.measured, plain.measured);
    assert.ok(maxDiff(r.logCpm, plain.logCpm) <= tolerance, `${what}: ${maxDiff(r.logCpm, plain.logCpm)}`);
  });
}

test('TPM from the header: rescaled over the model genes, and said so', async () => {
  const r = await model.inspectSample(await read('tests/data/formats/airway_tpm.tsv.gz'), { fileName: 'airway_tpm.tsv.gz' });
  assert.equal(r.valueKind, 'tpm');
  assert.match(r.interpretation, /values: TPM \(from the header 'tpm'\), rescaled to sum to 10⁶ over the model's genes$/);
});

test('a prediction carries the interpretation', async () => {
  const sample = new Blob([await read('tests/data/formats/airway.tsv.gz')]);
  const p = await model.predict({ sample, perturbations: ['dexamethasone'], fileName: 'airway.tsv.gz' });
  assert.match(p.interpretation, /\(gzip-compressed\)/);
  assert.equal(p.reference.interpretation, p.interpretation);
});

const refused = [
  ['a gzip bomb', () => gzipSync(Buffer.alloc(256 * 1024 * 1024 + 1, 48), { level: 1 }), 'x.tsv.gz', /decompresses to more than 268435456 bytes.*decompression bomb/],
  ['a truncated gzip file', async () => (await read('tests/data/formats/airway.tsv.gz')).subarray(0, 50_000), 'airway.tsv.gz', /gzip data is corrupt or truncated/],
  ['an AnnData file given as it is', () => Buffer.from('\x89HDF\r\n\x1a\n\0\0\0\0', 'latin1'), 'pbmc.h5ad', /an HDF5 file \(an AnnData \.h5ad or a 10x Genomics \.h5\): sum its cells .* readHdf5Sample/],
  ['an Excel workbook', () => Buffer.from('PK\x03\x04\x14\0', 'latin1'), 'counts.xlsx', /Excel \.xlsx/],
  ['a log table of no single base', () => `gene\tS\n${model.genes.slice(0, 6000).map((g) => `${g}\t0.5`).join('\n')}\n`, 'x.tsv', /no single log base.*base 2: .*--values log2-cpm/],
];

for (const [what, make, fileName, message] of refused) {
  test(`refused: ${what}`, async () => {
    await assert.rejects(model.inspectSample(await make(), { fileName }), (e) => {
      assert.ok(e instanceof RefcastError, `${what}: ${e}`);
      assert.equal(e.kind, 'sample');
      assert.match(e.message, message);
      return true;
    });
  });
}

test('a 10x Genomics matrix (matrix.mtx, features.tsv, barcodes.tsv; gzip): its cells summed by the library, as the CLI sums a directory', async () => {
  const dir = 'tests/data/formats/kang_10x/';
  const files = { matrix: await read(`${dir}matrix.mtx.gz`), features: await read(`${dir}features.tsv.gz`), barcodes: await read(`${dir}barcodes.tsv.gz`) };
  const kang = await model.inspectSample(await read('examples/kang_cd14_mono_ctrl.tsv'));
  // The matrix splits each of the example's counts over 6 cells (make.py): the sum is the example.
  const r = await model.inspectSample({ ...files, name: 'kang_10x' });
  assert.equal(r.name, 'kang_10x');
  assert.equal(r.valueKind, 'counts');
  assert.match(r.interpretation, /^read as a 10x Genomics matrix, 6 cells summed into one pseudobulk sample \(gzip-compressed\)/);
  assert.deepEqual(r.measured, kang.measured);
  assert.equal(maxDiff(r.logCpm, kang.logCpm), 0);
  const grouped = await model.inspectSample({ ...files, groups: await read('tests/data/formats/kang_groups.tsv') });
  assert.deepEqual(grouped.columns, ['a', 'b']);
  const p = await model.predict({ sample: { ...files, name: 'kang_10x' }, perturbations: ['IFN-beta 6 h'] });
  assert.equal(p.reference.name, 'kang_10x');
  await assert.rejects(model.inspectSample({ matrix: files.matrix, features: files.features }), (e) => e.kind === 'sample' && /needs matrix\.mtx, features\.tsv and barcodes\.tsv; barcodes\.tsv missing/.test(e.message));
  await assert.rejects(model.inspectSample({ ...files, barcodes: new Uint8Array([0xff, 0xfe, 0x41]) }), (e) => e.kind === 'sample' && /barcodes\.tsv: not UTF-8 text/.test(e.message));
});

test('HDF5 files: their cells summed by readHdf5Sample give the pseudobulk counts table exactly', async () => {
  const kang = await model.inspectSample(await read('examples/kang_cd14_mono_ctrl.tsv'), { fileName: 'kang.tsv' });
  for (const [file, options, description] of [
    ['kang.h5ad', {}, 'an AnnData file, 6 cells of raw/X summed into 1 pseudobulk sample'],
    ['kang.h5ad', { layer: 'counts' }, 'an AnnData file, 6 cells of layers/counts summed into 1 pseudobulk sample'],
    ['kang.h5ad', { geneNames: 'feature_name' }, 'an AnnData file, 6 cells of raw/X summed into 1 pseudobulk sample'],
    ['kang_dense_old.h5ad', {}, 'an AnnData file, 6 cells of X summed into 1 pseudobulk sample'],
    ['kang_10x.h5', {}, 'a 10x Genomics matrix, 6 cells summed into one pseudobulk sample'],
  ]) {
    const r = await readHdf5Sample(await read(`tests/data/formats/${file}`), { fileName: file, ...options });
    assert.equal(r.description, description, file);
    const s = await model.inspectSample(r.text, { fileName: file });
    assert.equal(s.librarySize, kang.librarySize, `${file}: the counts' sum`);
    assert.deepEqual(s.logCpm, kang.logCpm, `${file}: the same reference as the counts table`);
  }
  const by = await readHdf5Sample(await read('tests/data/formats/kang.h5ad'), { groupby: 'group' });
  assert.deepEqual(by.samples, ['a', 'b']);
  assert.deepEqual(by.obsColumns, ['group', 'n_counts']);
  assert.deepEqual(by.layers, ['counts', 'raw', 'X']);
  for (const [file, options, message] of [
    ['kang.h5ad', { layer: 'X' }, /X holds 0\.00947\d* for cell .* not a raw count .* Choose the matrix that holds raw counts: the layer counts, raw$/],
    ['kang.h5ad', { groupby: 'cell_type' }, /obs has no column 'cell_type'; its columns: group, n_counts$/],
    ['not_anndata.h5', {}, /neither an AnnData \.h5ad .* its top level holds: values$/],
  ]) {
    await assert.rejects(readHdf5Sample(await read(`tests/data/formats/${file}`), options), message);
  }
});
