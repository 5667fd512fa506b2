// refcast for JavaScript: predict how a gene-expression sample responds to a perturbation, in the
// browser (WebGPU, or the WebAssembly CPU backend) or in Node. Everything runs locally; the sample
// is never sent anywhere. Types and documentation: index.d.ts; usage: README.md.

import initWasm, { RefcastModel } from '../pkg/refcast.js';
import { isHdf5 } from './hdf5.js';

export { isHdf5, pseudobulkHdf5, readHdf5Sample } from './hdf5.js';

/** An error a front end can show to a person as it is. `kind` says what was wrong. */
export class RefcastError extends Error {
  /**
   * @param {string} kind  format | sample | metadata | request | gpu | usage | network | checksum
   * @param {string} message
   */
  constructor(kind, message, options) {
    super(message, options);
    this.name = 'RefcastError';
    this.kind = kind;
  }
}

function wrap(e) {
  if (e instanceof RefcastError) return e;
  if (e && typeof e === 'object' && typeof e.kind === 'string') return new RefcastError(e.kind, e.message, { cause: e });
  if (e instanceof Error) {
    // A Rust panic ("unreachable") or a JS failure inside the glue.
    return new RefcastError('internal', `refcast failed unexpectedly: ${e.message}`, { cause: e });
  }
  return new RefcastError('internal', `refcast failed unexpectedly: ${String(e)}`);
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

let wasmReady = null;

/**
 * Loads the WebAssembly module once. Called by `Refcast.load`; call it yourself to pass the
 * module from elsewhere (a URL, a `Response`, bytes or a compiled `WebAssembly.Module`).
 */
export function init(source) {
  if (!wasmReady) {
    wasmReady = (async () => {
      let module_or_path = source;
      if (module_or_path === undefined && isNode) {
        // A computed specifier, hidden from bundlers: browser builds must not pull in (or warn
        // about) a Node built-in that only this branch uses.
        const fsModule = 'node:fs/promises';
        const { readFile } = await import(/* webpackIgnore: true */ /* @vite-ignore */ fsModule);
        module_or_path = await readFile(new URL('../pkg/refcast_bg.wasm', import.meta.url));
      }
      await initWasm(module_or_path === undefined ? undefined : { module_or_path });
    })().catch((e) => {
      wasmReady = null;
      throw new RefcastError('usage', `cannot load the refcast WebAssembly module: ${e.message}`, { cause: e });
    });
  }
  return wasmReady;
}

async function sha256Hex(bytes) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) {
    throw new RefcastError('checksum', 'cannot verify the checksum: crypto.subtle is not available (pages must be served over https or from localhost)');
  }
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function fetchBytes(url, onProgress, what = 'the model') {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new RefcastError('network', `cannot download ${what} from ${url}: ${e.message}`, { cause: e });
  }
  if (!response.ok) {
    throw new RefcastError('network', `cannot download ${what} from ${url}: HTTP ${response.status} ${response.statusText}`);
  }
  const total = Number(response.headers.get('content-length')) || 0;
  if (!onProgress || !response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress(loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

async function toBytes(source, what) {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  if (typeof Blob !== 'undefined' && source instanceof Blob) return new Uint8Array(await source.arrayBuffer());
  if (typeof source === 'string') return new TextEncoder().encode(source);
  throw new RefcastError('usage', `${what}: expected text, a File/Blob, an ArrayBuffer or a Uint8Array, got ${source === null ? 'null' : typeof source}`);
}

/** Rejects with a `checksum` error when `sha256` (hex) is given and `bytes` do not have it. */
async function checkSha256(bytes, sha256, what) {
  if (sha256 === undefined) return;
  const got = await sha256Hex(bytes);
  if (got !== String(sha256).trim().toLowerCase()) {
    throw new RefcastError('checksum', `${what}'s SHA-256 is ${got}, expected ${sha256}: the file is damaged or not the one expected`);
  }
}

/** Sample input → the bytes of a TSV/CSV table (or undefined for prompt-only generation). */
async function sampleBytes(sample) {
  if (sample === undefined || sample === null) return undefined;
  if (typeof sample === 'object' && !ArrayBuffer.isView(sample) && !(sample instanceof ArrayBuffer) && Array.isArray(sample.genes)) {
    const { genes, values } = sample;
    if (!values || typeof values.length !== 'number' || values.length !== genes.length) {
      throw new RefcastError('sample', `invalid sample: ${genes.length} genes but ${values?.length ?? 'no'} values`);
    }
    // The kind as a header the library reads (`count`, `log2_cpm`, `tpm`, …); none: `value`.
    const header = sample.kind === undefined ? 'value' : sample.kind === 'counts' ? 'count' : String(sample.kind).replace('-', '_');
    const lines = [`gene\t${header}`];
    for (let i = 0; i < genes.length; i++) {
      const g = String(genes[i]);
      if (/[\t\r\n]/.test(g)) throw new RefcastError('sample', `invalid sample: gene ${i + 1} ('${g}') contains a tab or line break`);
      lines.push(`${g}\t${Number(values[i])}`);
    }
    return new TextEncoder().encode(lines.join('\n'));
  }
  return toBytes(sample, 'sample');
}

/**
 * A sample as the library reads it: its bytes, decompressed, and `extra` options saying how
 * (`gzip`; `tenx`: for a 10x Genomics matrix given as `{ matrix, features, barcodes, groups, name }`,
 * the text of its other files, each decompressed when gzip).
 */
async function readSample(sample) {
  if (sample && typeof sample === 'object' && !ArrayBuffer.isView(sample) && 'matrix' in sample) {
    const files = { matrix: 'matrix.mtx', features: 'features.tsv', barcodes: 'barcodes.tsv' };
    const missing = Object.keys(files).filter((k) => sample[k] === undefined || sample[k] === null);
    if (missing.length) {
      throw new RefcastError('sample', `a 10x Genomics matrix needs matrix.mtx, features.tsv and barcodes.tsv; ${missing.map((k) => files[k]).join(' and ')} missing`);
    }
    const { bytes, gzip } = await gunzipSample(await toBytes(sample.matrix, 'matrix.mtx'));
    const text = async (what, source) => {
      const plain = (await gunzipSample(await toBytes(source, what))).bytes;
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(plain);
      } catch {
        throw new RefcastError('sample', `${what}: not UTF-8 text (is it the file of that name from Cell Ranger's filtered_feature_bc_matrix/?)`);
      }
    };
    const groups = sample.groups === undefined || sample.groups === null ? undefined : await text('the group table', sample.groups);
    const tenx = clean({ features: await text('features.tsv', sample.features), barcodes: await text('barcodes.tsv', sample.barcodes), groups, name: sample.name });
    return { bytes, extra: clean({ gzip: gzip || undefined, tenx }) };
  }
  const { bytes, gzip } = await gunzipSample(await sampleBytes(sample));
  return { bytes, extra: gzip ? { gzip } : {} };
}

/** The most bytes a sample may decompress to: the library's limit on a sample file. */
const MAX_SAMPLE_BYTES = 256 * 1024 * 1024;

/**
 * Sample bytes as the library reads them: gzip (magic 1f 8b) decompressed with the platform's
 * DecompressionStream, at most MAX_SAMPLE_BYTES (a small file may expand to gigabytes); other
 * bytes as they are. `gzip` says which, for the interpretation the library reports.
 */
async function gunzipSample(bytes) {
  if (bytes && isHdf5(bytes)) {
    throw new RefcastError(
      'sample',
      'the sample is an HDF5 file (an AnnData .h5ad or a 10x Genomics .h5): sum its cells into a counts table first with readHdf5Sample(bytes, { groupby }) and pass its text (the page does this in a worker)',
    );
  }
  if (!bytes || bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return { bytes, gzip: false };
  if (typeof DecompressionStream === 'undefined') {
    throw new RefcastError('sample', 'the sample is gzip-compressed and this platform has no DecompressionStream; decompress it first (gunzip)');
  }
  const reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip')).getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    let step;
    try {
      step = await reader.read();
    } catch (e) {
      throw new RefcastError('sample', `the gzip data is corrupt or truncated after ${total} decompressed bytes (${e.message}); copy the file again`, { cause: e });
    }
    if (step.done) break;
    total += step.value.length;
    if (total > MAX_SAMPLE_BYTES) {
      await reader.cancel().catch(() => {});
      throw new RefcastError('sample', `the gzip file (${bytes.length} bytes) decompresses to more than ${MAX_SAMPLE_BYTES} bytes, over the limit for a sample file (a decompression bomb, or a table to split into several files)`);
    }
    chunks.push(step.value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return { bytes: out, gzip: true };
}

function listOf(v) {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

/** A model loaded on a backend. Create with `Refcast.load`. */
export class Refcast {
  #model;
  #queue = Promise.resolve();
  #genes = null;
  #ensembl = null;
  #sets = null; // { id, name, collection }: the gene sets' lists, from loadGeneSets

  /** @private */
  constructor(model, loadMs) {
    this.#model = model;
    /** `'webgpu'` or `'cpu'`: the backend that runs this model. */
    this.backend = model.backend;
    /** The adapter, for people (e.g. "WebGPU: SwiftShader Device (Subzero)"). */
    this.adapter = model.adapter;
    /** Why this backend (e.g. why `auto` fell back to the CPU). */
    this.backendReason = model.backendReason;
    /** Milliseconds from `load` being called to the model being ready. */
    this.loadMs = loadMs;
  }

  /**
   * Loads a model from its bytes or a URL. `options.backend`: `'auto'` (default: WebGPU when
   * `navigator.gpu` gives a hardware adapter, else the CPU, with the reason in `backendReason`),
   * `'webgpu'` or `'cpu'`. `options.cpuKernels`: how the CPU backend multiplies quantized
   * weights: `'f32'` (default) or `'integer'` (the integer path: predicted log-CPM within 0.02 of
   * `'f32'`, at about the same speed in the wasm build). `options.sha256`: the expected checksum (hex); a mismatch rejects with a
   * `checksum` error.
   */
  static async load(source, options = {}) {
    const t0 = performance.now();
    const { backend = 'auto', cpuKernels = 'f32', sha256, onProgress } = options;
    if (!['auto', 'webgpu', 'cpu'].includes(backend)) {
      throw new RefcastError('usage', `unknown backend '${backend}' (expected 'auto', 'webgpu' or 'cpu')`);
    }
    const wasm = init(options.wasm);
    let bytes;
    if (typeof source === 'string' || source instanceof URL) {
      bytes = await fetchBytes(String(source), onProgress);
    } else {
      bytes = await toBytes(source, 'model');
    }
    await checkSha256(bytes, sha256, 'the model');
    await wasm;
    try {
      // The backend policy (auto, software adapters, fallback) is the library's: Engine::open.
      return new Refcast(await RefcastModel.load(bytes, backend, cpuKernels), performance.now() - t0);
    } catch (e) {
      throw wrap(e);
    }
  }

  #run(task) {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => {});
    return next;
  }

  #live() {
    if (!this.#model) throw new RefcastError('usage', 'this model was disposed');
    return this.#model;
  }

  /** Model name, genes, latent widths, metadata vocabularies, perturbations, contexts. */
  info() {
    try {
      return this.#live().info();
    } catch (e) {
      throw wrap(e);
    }
  }

  /**
   * The model described for people: what it is (in words), its weights, training datasets with
   * their links, perturbations grouped by class with their times and doses, contexts; the same
   * card as `refcast info --json`.
   */
  card() {
    try {
      return this.#live().card();
    } catch (e) {
      throw wrap(e);
    }
  }

  /** Gene symbols in model order (index i of every prediction vector is gene i). */
  get genes() {
    this.#genes ??= this.#live().geneSymbols();
    return this.#genes;
  }

  /** Ensembl ids in model order (`null` where unknown). */
  get ensembl() {
    this.#ensembl ??= this.#live().geneEnsembl();
    return this.#ensembl;
  }

  /**
   * Reads the gene sets to score predictions against: a URL or the bytes of
   * `refcast-genesets.safetensors` (published beside the model), built for this model's genes.
   * `options.sha256` checks the file first. Resolves to its collections (`name`, `title`,
   * `method`, `sets`: how many), `sources` and the `pathways` (`{ id, name }`); afterwards `enrichment` scores predictions and
   * `screen` scores each perturbation's pathways and can rank by one (`rankBy`).
   */
  async loadGeneSets(source, options = {}) {
    const model = this.#live();
    const bytes = typeof source === 'string' || source instanceof URL ? await fetchBytes(String(source), options.onProgress, 'the gene sets') : await toBytes(source, 'gene sets');
    await checkSha256(bytes, options.sha256, 'the gene-set file');
    return this.#run(async () => {
      try {
        const { id, name, collection, ...info } = model.loadGeneSets(bytes);
        this.#sets = { id, name, collection };
        // The pathways by name, for choosing one to rank a screen by.
        return { ...info, pathways: id.flatMap((x, i) => (collection[i] === 'progeny' ? [{ id: x, name: name[i] }] : [])) };
      } catch (e) {
        throw wrap(e);
      }
    });
  }

  /** The library's columns of gene-set scores (`set_scores_js`) as one object per set. */
  #setObjects(c) {
    const { id, name, collection } = this.#sets;
    const genes = this.genes;
    const out = new Array(c.set.length);
    for (let i = 0; i < c.set.length; i++) {
      const s = c.set[i];
      const leading = [];
      for (let k = c.leadingOffsets[i]; k < c.leadingOffsets[i + 1]; k++) {
        const g = c.leadingGene[k];
        leading.push({ index: g, gene: genes[g], logFoldChange: c.leadingLogFoldChange[k] });
      }
      out[i] = { collection: collection[s], id: id[s], name: name[s], score: c.score[i], pValue: c.pValue[i], fdr: c.fdr[i], size: c.size[i], leading };
    }
    return out;
  }

  /**
   * Scores a prediction's fold changes against the gene sets `loadGeneSets` read, as the CLI's
   * `--enrichment` does (decoupler's ULM over the genes the sample measured): `prediction` is a
   * `predict` result (`options.row` picks its row, default 0), or one fold change per model gene
   * (`options.measured`: 0/1 per gene, default every gene). Returns `collections` (each with
   * `sets`, highest score first), `pathways` and `terms` (PROGENy and GO biological process, the
   * same lists), the fields' `legend` and the fold changes' units.
   */
  enrichment(prediction, options = {}) {
    checkOptions('enrichment', options, ['row', 'measured']);
    const model = this.#live();
    let lfc = prediction;
    let measured = options.measured;
    if (prediction && !ArrayBuffer.isView(prediction) && !Array.isArray(prediction) && 'rows' in prediction) {
      const row = options.row ?? 0;
      const { genes: n, rows, logFoldChange, references } = prediction;
      if (!Number.isInteger(row) || row < 0 || row >= rows.length) throw new RefcastError('usage', `enrichment: row ${row} asked for, the prediction has ${rows.length} row(s)`);
      if (!logFoldChange) throw new RefcastError('usage', 'enrichment: the prediction has no fold changes (prompt-only predictions have none)');
      lfc = logFoldChange.subarray(row * n, (row + 1) * n);
      measured ??= references?.[rows[row].reference]?.measured;
    }
    try {
      const out = model.enrichment(Float32Array.from(lfc ?? []), measured === undefined ? undefined : Uint8Array.from(measured, (v) => (v ? 1 : 0)));
      out.collections = out.collections.map(({ scores, ...c }) => ({ ...c, sets: this.#setObjects(scores) }));
      out.pathways = out.collections.find((c) => c.name === 'progeny')?.sets ?? [];
      out.terms = out.collections.find((c) => c.name === 'go_bp')?.sets ?? [];
      return out;
    } catch (e) {
      throw wrap(e);
    }
  }

  /**
   * Parses a sample and matches it to the model's genes without predicting: use it to show file
   * errors as soon as a file is chosen. Rejects with a `sample` error naming the line or gene.
   */
  async inspectSample(sample, options = {}) {
    const model = this.#live();
    return this.#run(async () => {
      const { bytes, extra } = await readSample(sample);
      if (!bytes) throw new RefcastError('usage', 'inspectSample needs a sample');
      try {
        return model.inspectSample(bytes, clean({ values: options.values, column: options.column, fileName: options.fileName, ...extra }));
      } catch (e) {
        throw wrap(e);
      }
    });
  }

  /**
   * Predicts the perturbed profile of `request.sample` under each of `request.perturbations`:
   * by default (`mode: 'denoised'`) the sample moved by the decoded change from the model's
   * control, its differences from the model's reconstruction within each gene's noise threshold
   * dropped; `mode: 'counterfactual'` keeps the sample whole (its noise included); `mode: 'decoded'`
   * gives the decoded profile. Without a sample: prompt-only generation from `contexts` (always
   * decoded).
   */
  async predict(request = {}) {
    checkOptions('predict', request, PREDICT_OPTIONS);
    const { sample, perturbation, perturbations, context, contexts, ...rest } = request;
    const model = this.#live();
    const options = clean({
      ...rest,
      perturbations: [...listOf(perturbations), ...listOf(perturbation)],
      contexts: [...listOf(context), ...listOf(contexts)],
    });
    return this.#onSample(sample, 'predictMs', (bytes, extra) => model.predict(bytes, { ...options, ...extra }));
  }

  /** Queues `call` on the sample's bytes; times it under `timing` and tags the backend. */
  #onSample(sample, timing, call) {
    return this.#run(async () => {
      const { bytes, extra } = await readSample(sample);
      const t0 = performance.now();
      try {
        const out = await call(bytes, extra);
        out.timings = { [timing]: performance.now() - t0 };
        out.backend = this.backend;
        return out;
      } catch (e) {
        throw wrap(e);
      }
    });
  }

  /**
   * Runs `request.sample` against every perturbation the model knows (or `request.perturbations`)
   * and ranks them by effect size, or by how well each reverses `request.signature`, with
   * predictions in `request.mode` (default `'denoised'`). `request.onProgress(done, total)`
   * is called as chunks of perturbations finish. After `loadGeneSets`, `rankBy: 'pathway:JAK-STAT'`
   * (or `'go:GO:0051607'`) ranks by that set's activity (`activity`, highest first), and with
   * `pathways: true` each hit carries its pathways' scores (`enrichment`; with `allSets: true`
   * also the GO terms that move most).
   */
  async screen(request = {}) {
    checkOptions('screen', request, SCREEN_OPTIONS);
    const { sample, perturbations, signature, onProgress, ...rest } = request;
    const model = this.#live();
    if (sample === undefined || sample === null) throw new RefcastError('usage', 'screen needs a sample');
    if (onProgress !== undefined && typeof onProgress !== 'function') throw new RefcastError('usage', 'screen: onProgress must be a function');
    const sig = signature instanceof Map ? Object.fromEntries(signature) : signature;
    const options = clean({ ...rest, perturbations: perturbations === undefined ? undefined : listOf(perturbations), signature: sig });
    return this.#onSample(sample, 'screenMs', async (bytes, extra) => {
      const out = await model.screen(bytes, { ...options, ...extra }, onProgress);
      for (const h of out.hits) if (h.enrichment) h.enrichment = this.#setObjects(h.enrichment);
      return out;
    });
  }

  /** Releases the model (on WebGPU: its device and GPU memory). Later calls reject. */
  dispose() {
    const model = this.#model;
    if (!model) return;
    this.#model = null;
    this.#queue.then(() => {
      model.dispose();
      model.free();
    });
  }
}

/** The options each call takes (the wasm side checks them again, with their types). */
const PREDICT_OPTIONS = ['sample', 'perturbations', 'perturbation', 'context', 'contexts', 'conditionOn', 'numSamples', 'seed', 'values', 'column', 'columns', 'fileName', 'librarySize', 'mode', 'baseline', 'top'];
const SCREEN_OPTIONS = ['sample', 'context', 'perturbations', 'signature', 'values', 'column', 'fileName', 'librarySize', 'mode', 'baseline', 'conditionOn', 'onProgress', 'rankBy', 'pathways', 'allSets'];

function checkOptions(call, request, known) {
  const unknown = Object.keys(request).filter((k) => !known.includes(k));
  if (unknown.length) throw new RefcastError('usage', `${call}: unknown option(s) ${unknown.join(', ')}`);
}

function clean(o) {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * The full prediction as TSV, in the columns of the `refcast predict` CLI: `gene, reference,
 * predicted, log_fold_change, counts, sigma, measured` (with `perturbation` and `draw` first when
 * there are several rows).
 */
export function predictionToTsv(prediction, genes) {
  const { genes: n, rows, logCpm, logFoldChange, counts, sigma, reference, perturbations } = prediction;
  const many = rows.length > 1;
  const out = [];
  out.push((many ? 'perturbation\tdraw\t' : '') + 'gene\treference\tpredicted\tlog_fold_change\tcounts\tsigma\tmeasured');
  for (let r = 0; r < rows.length; r++) {
    const prefix = many ? `${perturbations[rows[r].perturbation].name}\t${rows[r].sample}\t` : '';
    for (let g = 0; g < n; g++) {
      const i = r * n + g;
      out.push(
        prefix +
          [
            genes[g],
            reference ? reference.logCpm[g].toFixed(5) : '',
            logCpm[i].toFixed(5),
            logFoldChange ? logFoldChange[i].toFixed(5) : '',
            counts[i].toFixed(3),
            sigma[g].toFixed(5),
            reference ? reference.measured[g] : '',
          ].join('\t'),
      );
    }
  }
  return out.join('\n') + '\n';
}

export default Refcast;
