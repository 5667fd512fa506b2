// HDF5 samples in JavaScript: an AnnData .h5ad file or a 10x Genomics Cell Ranger .h5 matrix,
// its cells' raw counts summed into pseudobulk samples, written as the counts table (TSV) that
// the runtime reads. The same rules as the command line's reader (src/sample/hdf5.rs): .raw by
// default, else X when it holds whole numbers, or a named layer; all cells, or one sample per
// value of an obs column; genes from the var index or a var column; 10x Gene Expression features
// only. The file is opened by jsfive (public domain, pure JS, reads an ArrayBuffer), passed in
// as `File`, so that this module loads no code itself: the page runs it in a worker.

/** HDF5's signature, the first 8 bytes of a file. */
export const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** Whether `bytes` (a Uint8Array) start with HDF5's signature. */
export function isHdf5(bytes) {
  return bytes.length >= 8 && HDF5_SIGNATURE.every((b, i) => bytes[i] === b);
}

const MAX_GROUPS = 10_000;

class Hdf5SampleError extends Error {}

const clip = (s) => (String(s).length > 40 ? `${String(s).slice(0, 40)}…` : String(s));
// Fixed-length strings come back with their null padding.
const text = (v) => String(v).replace(/\0+$/, '');

function has(group, name) {
  return Array.isArray(group?.keys) && group.keys.includes(name);
}

function get(file, path) {
  const parts = path.split('/');
  let node = file;
  for (const p of parts) {
    if (!has(node, p)) return undefined;
    node = node.get(p);
  }
  return node;
}

const isGroup = (node) => node && Array.isArray(node.keys);

function strings(file, path) {
  const d = get(file, path);
  if (!d || isGroup(d)) throw new Hdf5SampleError(`no dataset ${path}`);
  return Array.from(d.value, text);
}

function numbers(file, path) {
  const d = get(file, path);
  if (!d || isGroup(d)) throw new Hdf5SampleError(`no dataset ${path}`);
  return d.value;
}

/** A dataframe group's index and its columns (sorted). */
function frame(file, group) {
  const g = get(file, group);
  if (!isGroup(g)) throw new Hdf5SampleError(`no group ${group}`);
  const index = g.attrs?._index ?? '_index';
  const names = strings(file, `${group}/${index}`);
  const columns = g.keys.filter((c) => c !== index && c !== '__categories').sort();
  return { names, columns };
}

/** A column as labels: each row's code (-1: missing) and the labels the codes index. */
function labels(file, group, column, columns, limit) {
  const path = `${group}/${column}`;
  if (!columns.includes(column)) {
    throw new Hdf5SampleError(`${group} has no column '${clip(column)}'; its columns: ${columns.length ? columns.map(clip).join(', ') : 'none'}`);
  }
  const node = get(file, path);
  let codes, categories;
  if (isGroup(node)) {
    const encoding = node.attrs?.['encoding-type'];
    if (encoding && encoding !== 'categorical') {
      throw new Hdf5SampleError(`${path} is a ${encoding} column: refcast groups cells by categorical, string or integer columns (in Python: adata.obs["${column}"] = adata.obs["${column}"].astype("category"))`);
    }
    codes = Array.from(numbers(file, `${path}/codes`), Number);
    categories = strings(file, `${path}/categories`);
  } else if (get(file, `${group}/__categories/${column}`)) {
    codes = Array.from(node.value, Number);
    categories = strings(file, `${group}/__categories/${column}`);
  } else {
    const values = Array.from(node.value, (v) => (typeof v === 'string' ? text(v) : v));
    if (values.some((v) => typeof v === 'number' && !Number.isInteger(v))) {
      throw new Hdf5SampleError(`${path} holds decimal numbers, not labels to group cells by`);
    }
    const distinct = [...new Set(values)];
    if (typeof distinct[0] === 'number') distinct.sort((a, b) => a - b);
    const index = new Map(distinct.map((v, i) => [v, i]));
    codes = values.map((v) => index.get(v));
    categories = distinct.map(String);
  }
  if (categories.length > limit) throw new Hdf5SampleError(`${path} has ${categories.length} distinct values, over the limit of ${limit} groups`);
  for (const c of codes) {
    if (c >= categories.length) throw new Hdf5SampleError(`${path}: code ${c} has no category (there are ${categories.length})`);
  }
  return { codes, categories };
}

/** A cells × genes matrix at `path`: { each(add) } calling add(cell, gene, value). */
function matrix(file, path, cells, genes, attrs, byCellDefault) {
  const node = get(file, path);
  if (isGroup(node)) {
    const a = attrs ?? node.attrs ?? {};
    const encoding = a['encoding-type'] ?? (a.h5sparse_format ? `${a.h5sparse_format}_matrix` : undefined);
    const byCell = encoding === 'csr_matrix' ? true : encoding === 'csc_matrix' ? false : byCellDefault;
    if (byCell === undefined) throw new Hdf5SampleError(`${path} is a group of encoding '${encoding ?? 'none'}', not a CSR or CSC matrix`);
    const data = numbers(file, `${path}/data`);
    const indices = numbers(file, `${path}/indices`);
    const indptr = Array.from(numbers(file, `${path}/indptr`), Number);
    const [major, minor] = byCell ? [cells, genes] : [genes, cells];
    if (indptr.length !== major + 1) throw new Hdf5SampleError(`${path}: indptr has ${indptr.length} entries for ${major} ${byCell ? 'cells' : 'genes'}`);
    if (indptr[major] !== data.length || data.length !== indices.length) {
      throw new Hdf5SampleError(`${path}: data holds ${data.length} values and indices ${indices.length}, but indptr ends at ${indptr[major]}`);
    }
    return (add) => {
      for (let m = 0; m < major; m++) {
        for (let k = indptr[m]; k < indptr[m + 1]; k++) {
          const i = Number(indices[k]);
          if (!(i >= 0 && i < minor)) throw new Hdf5SampleError(`${path}: index ${i} (value ${k + 1}) is outside the ${minor} ${byCell ? 'genes' : 'cells'}`);
          if (byCell) add(m, i, Number(data[k]));
          else add(i, m, Number(data[k]));
        }
      }
    };
  }
  if (!node) throw new Hdf5SampleError(`no dataset ${path}`);
  const shape = node.shape ?? [];
  if (shape[0] !== cells || shape[1] !== genes) throw new Hdf5SampleError(`${path}: its shape [${shape}] is not obs × var (${cells} × ${genes})`);
  const values = node.value;
  return (add) => {
    for (let c = 0; c < cells; c++) for (let g = 0; g < genes; g++) add(c, g, Number(values[c * genes + g]));
  };
}

/**
 * Sums the cells into samples. `each` walks the matrix; `groupOf[cell]` is a sample index or -1;
 * `keep[gene]` says whether a feature is a gene. Throws on a value that is not a raw count.
 */
function sum({ each, what, cellNames, featureNames, keep, groupOf, groupNames, hint }) {
  const column = [];
  const genes = [];
  featureNames.forEach((name, f) => {
    column.push(keep[f] ? genes.length : -1);
    if (keep[f]) genes.push(name);
  });
  const sums = groupNames.map(() => new Float64Array(genes.length));
  const used = new Uint8Array(cellNames.length);
  each((c, g, v) => {
    if (!(Number.isFinite(v) && v >= 0 && Number.isInteger(v))) {
      throw new Hdf5SampleError(`${what} holds ${v} for cell '${clip(cellNames[c])}', gene '${clip(featureNames[g])}': not a raw count (finite, ≥ 0, whole); ${hint}`);
    }
    const s = groupOf[c];
    if (v !== 0 && s >= 0 && column[g] >= 0) {
      sums[s][column[g]] += v;
      used[c] = 1;
    }
  });
  // Groups without a counted cell (an unused category) are not samples.
  const samples = groupNames.map((name, s) => ({ name, values: sums[s] })).filter((s) => s.values.some((v) => v > 0));
  if (!samples.length) throw new Hdf5SampleError(`${what}: the cells chosen hold no counts`);
  const rows = [`gene\t${samples.map((s) => s.name.replace(/[\t\n\r]/g, ' ')).join('\t')}`];
  genes.forEach((gene, g) => rows.push(`${gene}\t${samples.map((s) => s.values[g]).join('\t')}`));
  return { text: `${rows.join('\n')}\n`, samples: samples.map((s) => s.name), cells: used.reduce((a, b) => a + b, 0) };
}

/** The sample's name when the cells are not grouped: the file's name without its extension. */
function sampleName(fileName) {
  const base = String(fileName ?? '').split(/[\\/]/).pop() || 'pseudobulk';
  return base.replace(/\.[^.]*$/, '') || 'pseudobulk';
}

/**
 * Reads an opened HDF5 file (a jsfive `File`, or anything with its `keys`, `get(name)`,
 * `attrs`, `value` and `shape`) as pseudobulk counts.
 *
 * @param file the opened file
 * @param {{fileName?: string, groupby?: string, layer?: string, geneNames?: string}} options
 * @returns {{text: string, description: string, samples: string[], obsColumns: string[]}} the
 *   counts table as TSV, what the file was read as (one line, like the library's
 *   interpretation), the samples' names and, for AnnData, the obs columns to group by
 */
export function pseudobulkHdf5(file, options = {}) {
  const { fileName, groupby, layer, geneNames } = options;
  if (has(file, 'matrix') && isGroup(file.get('matrix'))) {
    if (groupby || layer || geneNames) throw new Hdf5SampleError('a 10x Genomics .h5 matrix has no obs columns or layers: all its cells make one sample');
    const ids = strings(file, 'matrix/features/id');
    const types = strings(file, 'matrix/features/feature_type');
    const barcodes = strings(file, 'matrix/barcodes');
    const shape = Array.from(numbers(file, 'matrix/shape'), Number);
    if (shape[0] !== ids.length || shape[1] !== barcodes.length) {
      throw new Hdf5SampleError(`/matrix: the matrix's shape is [${shape}], but it lists ${ids.length} features and ${barcodes.length} barcodes`);
    }
    const each = matrix(file, 'matrix', barcodes.length, ids.length, {}, true);
    const name = sampleName(fileName);
    const r = sum({
      each, what: '/matrix', cellNames: barcodes, featureNames: ids, keep: types.map((t) => t === 'Gene Expression'),
      groupOf: new Int32Array(barcodes.length), groupNames: [name], hint: 'a 10x Genomics matrix holds raw counts: is the file damaged?',
    });
    return { text: r.text, samples: r.samples, obsColumns: [], description: `a 10x Genomics matrix, ${r.cells} cells summed into one pseudobulk sample` };
  }
  if (has(file, 'loom') || (has(file, 'matrix') && has(file, 'row_attrs'))) {
    throw new Hdf5SampleError('a loom file, which refcast does not read: convert it with anndata.read_loom(...).write_h5ad(...), or use the Python package');
  }
  if (!(has(file, 'X') && has(file, 'obs') && has(file, 'var'))) {
    throw new Hdf5SampleError(`an HDF5 file that is neither an AnnData .h5ad (X, obs and var at its top level) nor a 10x Genomics .h5 matrix (/matrix); its top level holds: ${(file.keys ?? []).slice(0, 12).join(', ') || 'nothing'}`);
  }
  const hasRaw = has(file, 'raw') && has(file.get('raw'), 'X');
  const layers = has(file, 'layers') ? file.get('layers').keys : [];
  const choices = (not) => {
    const c = layers.filter((l) => `layers/${l}` !== not).map((l) => `the layer ${clip(l)}`);
    if (hasRaw && not !== 'raw/X') c.push('raw');
    if (not !== 'X') c.push('X');
    return c.length ? c.join(', ') : 'the file has no other (write the raw counts into a layer, e.g. adata.layers["counts"])';
  };
  let path, varGroup;
  if (!layer) [path, varGroup] = hasRaw ? ['raw/X', 'raw/var'] : ['X', 'var'];
  else if (layer === 'X') [path, varGroup] = ['X', 'var'];
  else if (layer === 'raw' && hasRaw) [path, varGroup] = ['raw/X', 'raw/var'];
  else if (layers.includes(layer)) [path, varGroup] = [`layers/${layer}`, 'var'];
  else throw new Hdf5SampleError(`no layer '${clip(layer)}' in the file; name one of: ${choices('')}`);
  const obs = frame(file, 'obs');
  const v = frame(file, varGroup);
  let genes = v.names;
  if (geneNames) {
    let [g, cols] = [varGroup, v.columns];
    if (varGroup === 'raw/var' && !cols.includes(geneNames)) {
      const main = frame(file, 'var');
      if (main.columns.includes(geneNames) && main.names.join('\n') === v.names.join('\n')) [g, cols] = ['var', main.columns];
    }
    const { codes, categories } = labels(file, g, geneNames, cols, Infinity);
    genes = codes.map((c, i) => {
      if (c < 0) throw new Hdf5SampleError(`${g}/${geneNames}: gene ${i + 1} has no name`);
      return categories[c];
    });
  }
  const each = matrix(file, path, obs.names.length, genes.length, undefined, undefined);
  const node = get(file, path);
  if (isGroup(node)) {
    const shape = Array.from(node.attrs?.shape ?? node.attrs?.h5sparse_shape ?? [], Number);
    if (shape[0] !== obs.names.length || shape[1] !== genes.length) {
      throw new Hdf5SampleError(`${path}: its shape [${shape}] is not obs × var (${obs.names.length} × ${genes.length})`);
    }
  }
  let groupOf = new Int32Array(obs.names.length);
  let groupNames = [sampleName(fileName)];
  if (groupby) {
    const { codes, categories } = labels(file, 'obs', groupby, obs.columns, MAX_GROUPS);
    groupOf = Int32Array.from(codes);
    groupNames = categories;
  }
  const r = sum({
    each, what: path, cellNames: obs.names, featureNames: genes, keep: genes.map(() => true), groupOf, groupNames,
    hint: `${path} looks normalized. Choose the matrix that holds raw counts: ${choices(path)}`,
  });
  const n = r.samples.length;
  const by = groupby ? ` by obs column '${groupby}'` : '';
  return { text: r.text, samples: r.samples, obsColumns: obs.columns, description: `an AnnData file, ${r.cells} cells of ${path} summed into ${n} pseudobulk sample${n === 1 ? '' : 's'}${by}` };
}

/** What an AnnData file offers to choose from: its obs columns and its matrices of counts. */
export function hdf5Choices(file) {
  try {
    if (!(has(file, 'X') && has(file, 'obs') && has(file, 'var'))) return { obsColumns: [], layers: [] };
    const layers = has(file, 'layers') ? [...file.get('layers').keys] : [];
    if (has(file, 'raw') && has(file.get('raw'), 'X')) layers.push('raw');
    layers.push('X');
    return { obsColumns: frame(file, 'obs').columns, layers };
  } catch {
    return { obsColumns: [], layers: [] };
  }
}

/**
 * Reads an HDF5 sample's bytes (AnnData .h5ad, 10x Genomics .h5) with jsfive, the package's
 * dependency (imported when first needed), and sums its cells as `pseudobulkHdf5` does: pass
 * the result's `text` as the sample of `predict`, `screen` or `inspectSample`. In a page, call it
 * in a worker (as www/hdf5-worker.js does): a large file takes seconds.
 *
 * @param {Uint8Array|ArrayBuffer} bytes
 * @param {{fileName?: string, groupby?: string, layer?: string, geneNames?: string}} options
 */
export async function readHdf5Sample(bytes, options = {}) {
  const jsfive = await import('jsfive');
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let file;
  try {
    file = new jsfive.File(u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength), options.fileName ?? '');
  } catch (e) {
    throw new Hdf5SampleError(`not a readable HDF5 file (${e?.message ?? e})`);
  }
  return { ...pseudobulkHdf5(file, options), ...hdf5Choices(file) };
}
