// The refcast page: everything runs in this tab. The only requests are for the page's own files
// and the model; the sample is read from the user's disk and stays in memory here.

import { Refcast, predictionToTsv } from '/js/index.js';
import { isHdf5 } from '/js/hdf5.js';
import { $, el, fmt, ms, show } from './dom.js';
import { clearSelection, describeSelection, fillPerturbations, filterPerturbations, selectedPerturbations } from './picker.js';
import { drawSetBars, fillSetTable, shownTerms } from './pathways.js';
import { drawVolcano } from './volcano.js';

const params = new URLSearchParams(location.search);

const state = {
  model: null,
  info: null, // model.info() of the loaded model
  modelSource: null,
  sample: null, // { data, name, cells? }: data is the file's bytes, or a 10x matrix's files ({ matrix, features, barcodes, name }); cells: what an HDF5 file was read as
  hdf5: null, // { bytes, name } of a dropped HDF5 file, read again when its choices change
  prediction: null,
  predictionSample: null,
  loading: null,
  geneSets: null, // model.loadGeneSets() of the loaded model, or null
  geneSetsNote: '', // why there are no pathway scores, in words
};

// ---------------------------------------------------------------------------------------------
// Model

/** The SHA-256 of a bundled model, from the manifest published beside it (models/SHA256SUMS). */
async function bundledChecksum(path) {
  const slash = path.lastIndexOf('/');
  const response = await fetch(`${path.slice(0, slash + 1)}SHA256SUMS`);
  if (!response.ok) throw new Error(`cannot read the model checksums (${response.status})`);
  const name = path.slice(slash + 1);
  const line = (await response.text()).split('\n').find((l) => l.trim().endsWith(`  ${name}`));
  if (!line) throw new Error(`no checksum for ${name} in SHA256SUMS`);
  return line.split(/\s+/)[0];
}

async function loadModel() {
  const select = $('model-select');
  let source;
  let sha256;
  let label;
  let size = null; // bytes: the file's, or as many as the download brought
  if (select.value === 'file') {
    const f = $('model-file').files[0];
    if (!f) {
      $('model-file').click();
      return;
    }
    source = f;
    label = f.name;
    size = f.size;
  } else {
    source = select.value;
    sha256 = await bundledChecksum(select.value);
    label = select.selectedOptions[0].textContent;
  }
  const backend = $('backend-select').value;
  state.model?.dispose();
  state.model = null;
  state.info = null;
  setReady();
  show($('model-error'), '');
  show($('model-status'), `Loading ${label}…`);
  const task = (async () => {
    const model = await Refcast.load(source, {
      backend,
      sha256,
      onProgress: (loaded, total) => {
        size = total || loaded;
        if (total) show($('model-status'), `Downloading the model: ${Math.round((100 * loaded) / total)}%`);
      },
    });
    return model;
  })();
  state.loading = task;
  try {
    const model = await task;
    if (state.loading !== task) return model.dispose();
    state.model = model;
    const info = model.info();
    state.info = info;
    const where = model.backend === 'webgpu' ? 'GPU' : 'CPU';
    // The numbers come from the loaded model and file, so they hold for whichever model this is.
    const facts = [
      `${info.genes.toLocaleString('en')} genes`,
      `${info.perturbations.length.toLocaleString('en')} perturbations`,
      ...(size ? [`${(size / 1e6).toFixed(1)} MB`] : []),
    ];
    show(
      $('model-status'),
      `Ready: ${info.name}, ${facts.join(', ')}, on the ${where} (${model.adapter}); loaded in ${ms(model.loadMs)}.` +
        (backend === 'auto' && model.backend === 'cpu' ? ` Not on the GPU: ${model.backendReason}.` : ''),
    );
    renderCard(model.card());
    await loadGeneSets(model, select.value === 'file' ? null : select.value);
    if (state.model !== model) return;
    document.body.dataset.backend = model.backend;
    document.body.dataset.loadMs = String(Math.round(model.loadMs));
    document.body.dataset.readyAt = String(Math.round(performance.now()));
    fillConditions(info);
    if (state.sample) await inspect();
  } catch (e) {
    show($('model-status'), '');
    show($('model-error'), `The model could not be loaded: ${e.message}`);
  } finally {
    if (state.loading === task) state.loading = null;
    setReady();
  }
}

/**
 * The gene sets published beside a bundled model (checked against models/SHA256SUMS), for the
 * pathway and GO scores of each prediction and for ranking a screen by a pathway.
 */
async function loadGeneSets(model, modelPath) {
  state.geneSets = null;
  state.geneSetsNote = '';
  if (!modelPath) {
    state.geneSetsNote = 'No pathway or GO scores: they need the gene-set file published beside a bundled model, and a model from this computer has none.';
  } else {
    const path = `${modelPath.slice(0, modelPath.lastIndexOf('/') + 1)}refcast-genesets.safetensors`;
    try {
      const sets = await model.loadGeneSets(path, { sha256: await bundledChecksum(path) });
      if (state.model === model) state.geneSets = sets;
    } catch (e) {
      state.geneSetsNote = `No pathway or GO scores: the gene sets could not be loaded (${e.message}).`;
    }
  }
  document.body.dataset.geneSets = state.geneSets ? 'loaded' : 'none';
  fillRankBy();
}

/** The screen's ranking: by effect size, or by the activity of a pathway (with gene sets). */
function fillRankBy() {
  const select = $('rank-by');
  const previous = select.value;
  select.replaceChildren(Object.assign(el('option', 'predicted effect size'), { value: '' }));
  for (const p of state.geneSets?.pathways ?? []) select.append(Object.assign(el('option', `${p.name} pathway activity (PROGENy)`), { value: `pathway:${p.id}` }));
  select.value = [...select.options].some((o) => o.value === previous) ? previous : '';
  select.hidden = $('rank-by-label').hidden = !state.geneSets;
}

function fillConditions(info) {
  const ctx = $('context-select');
  const previousContext = ctx.value;
  ctx.replaceChildren();
  const none = el('option', 'Not specified (the model’s “unknown”)');
  none.value = '';
  ctx.append(none);
  for (const c of info.contexts) {
    const o = el('option', c.name);
    o.value = c.name;
    ctx.append(o);
  }
  ctx.value = [...ctx.options].some((o) => o.value === previousContext) ? previousContext : '';

  fillPerturbations(info.perturbations, info.defaultPerturbation);
}

// ---------------------------------------------------------------------------------------------
// Sample

/** The value kinds the library reads, as the status line names them. */
const VALUE_KINDS = {
  'log-cpm': 'log-CPM (natural log)',
  'log2-cpm': 'log2-CPM',
  'log10-cpm': 'log10-CPM',
  tpm: 'TPM',
  fpkm: 'FPKM',
  cpm: 'CPM',
};

async function setSample(data, name) {
  $('column-select').replaceChildren();
  if (data instanceof Uint8Array && isHdf5(data)) {
    state.hdf5 = { bytes: data, name };
    $('groupby-select').replaceChildren(Object.assign(el('option', 'all together'), { value: '' }));
    $('layer-select').replaceChildren(Object.assign(el('option', '.raw, else X'), { value: '' }));
    await readHdf5();
    return;
  }
  state.hdf5 = null;
  $('cells-row').hidden = true;
  state.sample = { data, name };
  await inspect();
}

/**
 * Sums the cells of the HDF5 sample in `state.hdf5` in a worker (www/hdf5-worker.js), by the
 * obs column and from the matrix chosen, and takes the counts table it gives as the sample.
 */
async function readHdf5() {
  const { bytes, name } = state.hdf5;
  show($('sample-error'), '');
  show($('sample-status'), `${name}: reading its cells…`);
  const worker = new Worker('hdf5-worker.js', { type: 'module' });
  const r = await new Promise((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.onerror = (e) => resolve({ error: `the HDF5 reader failed: ${e.message}`, obsColumns: [], layers: [] });
    // A copy: the worker takes the buffer, and the page keeps the file to read again.
    const buffer = bytes.slice().buffer;
    worker.postMessage({ buffer, fileName: name, groupby: $('groupby-select').value || undefined, layer: $('layer-select').value || undefined }, [buffer]);
  });
  worker.terminate();
  const fill = (select, values, first) => {
    if (select.options.length === values.length + 1) return;
    const keep = select.value;
    select.replaceChildren(Object.assign(el('option', first), { value: '' }), ...values.map((v) => Object.assign(el('option', v), { value: v })));
    select.value = values.includes(keep) ? keep : '';
  };
  fill($('groupby-select'), r.obsColumns, 'all together');
  fill($('layer-select'), r.layers, '.raw, else X');
  $('cells-row').hidden = r.obsColumns.length === 0 && r.layers.length === 0;
  if (r.error) {
    state.sample = null;
    show($('sample-status'), '');
    show($('sample-error'), `${name}: ${r.error}`);
    $('drop').classList.add('bad');
    setReady();
    return;
  }
  state.sample = { data: new TextEncoder().encode(r.text), name, cells: r.description };
  await inspect();
}

async function inspect() {
  show($('sample-error'), '');
  $('drop').classList.remove('bad');
  if (!state.sample) return;
  if (!state.model) {
    show($('sample-status'), `${state.sample.name}: will be checked once the model is loaded.`);
    setReady();
    return;
  }
  const col = $('column-select');
  try {
    const r = await state.model.inspectSample(state.sample.data, {
      values: $('values-select').value,
      column: col.value ? Number(col.value) : 0,
      fileName: state.sample.name,
    });
    if (r.columns.length > 1 && col.options.length !== r.columns.length) {
      col.replaceChildren(...r.columns.map((c, i) => Object.assign(el('option', c), { value: String(i) })));
    }
    col.hidden = $('column-label').hidden = r.columns.length < 2;
    state.sample.ok = true;
    show(
      $('sample-status'),
      `${state.sample.name}: sample “${r.name}”, ${r.rows.toLocaleString('en')} genes read as ${r.valueKind === 'counts' ? `raw counts (library size ${Math.round(r.librarySize).toLocaleString('en')})` : VALUE_KINDS[r.valueKind] ?? r.valueKind}. ` +
        `The file was ${state.sample.cells ? `${state.sample.cells} (in this page)` : r.interpretation}. ${r.report}.`,
    );
  } catch (e) {
    state.sample.ok = false;
    show($('sample-status'), '');
    show($('sample-error'), `${state.sample.name}: ${e.message}`);
    $('drop').classList.add('bad');
  }
  setReady();
}

/** Cell Ranger's folder names, which name no sample. */
const TENX_FOLDERS = ['filtered_feature_bc_matrix', 'raw_feature_bc_matrix', 'filtered_gene_bc_matrices', 'outs'];

/**
 * Files chosen or dropped: one sample file, or the three files of a 10x Genomics matrix (from its
 * folder, `folder` being the folder's name), which the library sums over all cells.
 */
async function readFiles(files, folder) {
  if (!files.length) return;
  const named = (...names) => files.find((f) => names.includes(f.name));
  const matrix = named('matrix.mtx.gz', 'matrix.mtx');
  if (matrix) {
    const name = folder && !TENX_FOLDERS.includes(folder) ? folder : '10x_pseudobulk';
    const tenx = { matrix, features: named('features.tsv.gz', 'features.tsv', 'genes.tsv.gz', 'genes.tsv'), barcodes: named('barcodes.tsv.gz', 'barcodes.tsv'), name };
    await setSample(tenx, folder ? `${folder}/` : files.map((f) => f.name).join(' + '));
    return;
  }
  if (files.length > 1) {
    state.sample = null;
    setReady();
    show($('sample-status'), '');
    show($('sample-error'), `${files.length} files: choose one sample file, or the three files of a 10x Genomics matrix (matrix.mtx, features.tsv, barcodes.tsv).`);
    $('drop').classList.add('bad');
    return;
  }
  await setSample(new Uint8Array(await files[0].arrayBuffer()), files[0].name);
}

/** The files directly inside a dropped folder (a 10x matrix's). */
async function folderFiles(dir) {
  const reader = dir.createReader();
  const entries = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    entries.push(...batch);
  }
  return Promise.all(entries.filter((e) => e.isFile).map((e) => new Promise((resolve, reject) => e.file(resolve, reject))));
}

async function useExample(path, name) {
  show($('sample-error'), '');
  show($('sample-status'), `Loading the example ${name}…`);
  const response = await fetch(path);
  if (!response.ok) {
    show($('sample-status'), '');
    show($('sample-error'), `The example ${name} could not be loaded: HTTP ${response.status}`);
    return;
  }
  await setSample(new Uint8Array(await response.arrayBuffer()), name);
}

// ---------------------------------------------------------------------------------------------
// Predict and screen

/** Genes listed per direction under a prediction (the volcano plot labels the first 8 of each). */
const TOP_GENES = 15;

/** Whether the model has an untreated control to measure decoded profiles against. */
function hasControl() {
  return !!state.info?.perturbations.some((p) => p.control);
}

/**
 * How the profile is formed: 'denoised' (the default: the sample moved by the predicted change,
 * its measurement noise removed), 'counterfactual' (the sample as measured moved by the predicted
 * change) or 'decoded'.
 */
function mode() {
  return document.querySelector('input[name=mode]:checked')?.value ?? 'denoised';
}

/** Whether a mode's profile is the measured sample moved by the predicted change (it stands for the control). */
function anchored(m) {
  return m === 'denoised' || m === 'counterfactual';
}

function conditionOn() {
  const groups = [];
  if ($('cond-technical').checked) groups.push('technical');
  if ($('cond-biological').checked) groups.push('biological');
  return groups;
}


function setReady() {
  const ready = !!state.model && !!state.sample?.ok && !state.busy;
  $('run').disabled = !ready || selectedPerturbations().length === 0;
  $('screen').disabled = !ready;
  document.body.dataset.ready = ready ? 'yes' : 'no';
}

function request() {
  const context = $('context-select').value;
  return {
    sample: state.sample.data,
    values: $('values-select').value,
    column: $('column-select').value ? Number($('column-select').value) : 0,
    fileName: state.sample.name,
    context: context || undefined,
  };
}

async function run() {
  const perturbations = selectedPerturbations();
  if (!perturbations.length) return;
  state.busy = true;
  setReady();
  show($('run-error'), '');
  show($('run-status'), 'Predicting…');
  try {
    // Decoded profiles are measured against the baseline chosen (the library's default: the
    // predicted control); a denoised or counterfactual profile's control is the measured sample itself.
    const m = mode();
    const baseline = m === 'decoded' && hasControl() ? $('baseline-select').value : undefined;
    const p = await state.model.predict({ ...request(), perturbations, conditionOn: conditionOn(), mode: m, baseline, top: TOP_GENES });
    state.prediction = p;
    state.predictionSample = state.sample.name;
    show($('run-status'), '');
    renderPrediction();
    document.body.dataset.result = 'prediction';
    document.body.dataset.mode = p.mode;
    document.body.dataset.runs = String(Number(document.body.dataset.runs ?? 0) + 1);
    document.body.dataset.predictMs = String(Math.round(p.timings.predictMs));
  } catch (e) {
    show($('run-status'), '');
    show($('run-error'), e.message);
    if (e.kind === 'sample') show($('sample-error'), `${state.sample.name}: ${e.message}`);
  } finally {
    state.busy = false;
    setReady();
  }
}

async function screen() {
  state.busy = true;
  setReady();
  show($('run-error'), '');
  show($('run-status'), 'Running every perturbation…');
  try {
    const progress = (done, total) => show($('run-status'), `Running every perturbation… ${done.toLocaleString('en')} of ${total.toLocaleString('en')}`);
    const rankBy = $('rank-by').value || undefined;
    const s = await state.model.screen({ ...request(), mode: mode(), conditionOn: conditionOn(), onProgress: progress, rankBy });
    show($('run-status'), '');
    renderScreen(s);
    document.body.dataset.screen = 'done';
  } catch (e) {
    show($('run-status'), '');
    show($('run-error'), e.message);
  } finally {
    state.busy = false;
    setReady();
  }
}

function renderPrediction() {
  const p = state.prediction;
  $('results').hidden = false;
  const sel = $('result-pert');
  sel.replaceChildren(
    ...p.rows.map((r, i) => Object.assign(el('option', p.perturbations[r.perturbation].name), { value: String(i) })),
  );
  sel.hidden = $('result-pert-label').hidden = p.rows.length < 2;
  const base = $('baseline-select');
  const sampleIsControl = anchored(p.mode);
  base.hidden = $('baseline-label').hidden = sampleIsControl;
  $('baseline-note').hidden = !sampleIsControl;
  base.options[0].disabled = !hasControl();
  if (!sampleIsControl && p.baseline) base.value = p.baseline;
  const where = p.backend === 'webgpu' ? `GPU (${state.model.adapter})` : 'CPU (WebAssembly)';
  const profile = {
    denoised: 'your sample’s profile changed by the predicted effect, its measurement noise removed (denoised)',
    counterfactual: 'your sample’s profile as measured, changed by the predicted effect (counterfactual)',
  }[p.mode] ?? 'the model’s reconstruction of your sample under the perturbation (decoded)';
  $('timings').textContent =
    `Sample “${p.reference.name}” from ${state.predictionSample}; predicted: ${profile}; computed on the ${where} in ${ms(p.timings.predictMs)} ` +
    `(model loaded in ${ms(state.model.loadMs)}). ${p.reference.report}.` +
    p.warnings.map((w) => ` Note: ${w}.`).join('');
  renderFamiliarity($('familiarity'), p.familiarity, p.reference.name);
  renderRow(0);
}

/** What the model is, in the library's words (the same card as `refcast info`). */
function renderCard(card) {
  const weights = card.weights.map((w) => `${w.encoding}: ${w.parameters.toLocaleString('en')} parameters`).join('; ');
  const classes = card.perturbations.map((c) => `${c.class} (${c.entries.toLocaleString('en')})`).join(', ');
  $('model-card-body').replaceChildren(
    el('p', card.description),
    el('p', `Latents: ${card.latents}. Activation: ${card.activation}. Weights: ${weights}.`),
    el('p', `Values: ${card.values}.`),
    el('p', `Perturbations by class: ${classes}.`),
    el('p', `Trained on: ${card.datasets.map((d) => d.name).join('; ')}.`),
  );
  $('model-card').hidden = false;
}

/**
 * Whether the sample resembles what the model was trained on: a visible notice when it does not
 * (its predictions are extrapolations), else one unobtrusive line.
 */
function renderFamiliarity(target, list, name) {
  const f = list?.[0];
  target.hidden = !f;
  if (!f) return;
  // The sentence names the sample column; the page calls the sample as elsewhere on it.
  const summary = f.summary.replace(`sample '${f.reference}'`, `Sample “${name}”`);
  const sentence = summary.charAt(0).toUpperCase() + summary.slice(1) + '.';
  target.textContent = f.outside ? `Caution: ${sentence}` : sentence;
  target.className = f.outside ? 'familiarity-outside' : 'hint';
  document.body.dataset.familiarity = f.outside === null ? 'uncalibrated' : f.outside ? 'outside' : 'inside';
}

function renderRow(r) {
  const p = state.prediction;
  const genes = state.model.genes;
  const n = p.genes;
  const pred = p.logCpm.subarray(r * n, (r + 1) * n);
  const vsControl = p.mode === 'decoded' && p.baseline === 'control';
  const lfc = p.logFoldChange.subarray(r * n, (r + 1) * n);
  const label = `${p.foldChangeUnits} vs ${vsControl ? 'control' : 'sample'}`;
  for (const t of ['top-up', 'top-down']) $(t).tHead.rows[0].cells[1].textContent = label;
  const { topUp, topDown } = p.top[r];
  const fill = (id, list) => {
    const body = $(id).tBodies[0];
    body.replaceChildren(
      ...list.map(({ index: g }) => {
        const tr = el('tr');
        tr.append(
          el('td', genes[g]),
          el('td', fmt(lfc[g], 3), lfc[g] >= 0 ? 'up' : 'down'),
          el('td', fmt(p.sigma[g], 3)),
          el('td', fmt(p.reference.logCpm[g], 2)),
          el('td', fmt(pred[g], 2)),
        );
        return tr;
      }),
    );
  };
  fill('top-up', topUp);
  fill('top-down', topDown);
  const labelled = [...topUp.slice(0, 8), ...topDown.slice(0, 8)].map((e) => e.index);
  drawVolcano($('volcano'), lfc, p.sigma, p.reference.measured, genes, labelled, `predicted ${p.foldChangeUnits} vs the ${vsControl ? 'predicted control' : 'measured sample'}`);
  renderSets(r);
}

/** The row's pathway and GO scores (the library's, as the CLI's --enrichment) as bars and a table. */
function renderSets(r) {
  const p = state.prediction;
  const body = document.body.dataset;
  if (!state.geneSets) {
    $('sets').hidden = $('sets-details').hidden = true;
    show($('sets-note'), state.geneSetsNote);
    body.sets = 'none';
    return;
  }
  const e = state.model.enrichment(p, { row: r });
  const terms = shownTerms(e.terms);
  $('sets').hidden = $('sets-details').hidden = false;
  show($('sets-note'), '');
  drawSetBars($('set-bars'), e.pathways, terms);
  fillSetTable($('set-table'), [...e.pathways, ...terms]);
  $('set-legend').replaceChildren(...e.legend.flatMap(({ column, meaning }) => [el('dt', column), el('dd', meaning)]));
  body.topPathway = e.pathways[0]?.id ?? '';
  body.topTerm = terms[0]?.name ?? '';
  body.sets = 'drawn';
}

function renderScreen(s) {
  $('screen-results').hidden = false;
  // Ranked by a pathway's activity: its column, and the bars follow it.
  const pathway = s.rankedBy ? state.geneSets?.pathways.find((p) => `progeny:${p.id}` === s.rankedBy) : null;
  $('screen-h').textContent = pathway
    ? `Every perturbation, ranked by how much it activates the ${pathway.name} pathway in this sample`
    : 'Every perturbation, ranked by predicted effect on this sample';
  $('screen-activity').hidden = !pathway;
  if (pathway) $('screen-activity').textContent = `${pathway.name} activity (t)`;
  const value = (h) => (pathway ? Math.max(h.activity ?? 0, 0) : h.effectSize);
  const where = s.backend === 'webgpu' ? 'GPU' : 'CPU';
  // A context without effect under the chosen conditioning is said, as for a prediction.
  $('screen-timings').textContent =
    `${s.hits.length} perturbations for sample “${s.reference.name}”, on the ${where} in ${ms(s.timings.screenMs)}.` +
    s.warnings.map((w) => ` Note: ${w}.`).join('');
  renderFamiliarity($('screen-familiarity'), s.familiarity, s.reference.name);
  $('screen-effect').textContent =
    anchored(s.mode)
      ? `effect size (RMS predicted ${s.foldChangeUnits}, ${s.mode})`
      : `effect size (RMS ${s.foldChangeUnits} vs ${s.baseline === 'control' ? 'predicted control' : 'sample'}, decoded)`;
  const recorded = s.hits.some((h) => h.coverage.measured !== 'unknown');
  $('screen-measured').hidden = !recorded;
  const count = (m) => s.hits.filter((h) => h.coverage.measured === m).length;
  $('screen-coverage').hidden = !recorded;
  $('screen-coverage').textContent = recorded
    ? `${count('nearby')} of the ${s.hits.length} perturbations were measured in training in a context like this sample’s; ` +
      `${count('elsewhere')} only in other contexts and ${count('never')} never at that time and dose: their predictions here are extrapolations (marked “elsewhere”).`
    : '';
  // What each column means, in the library's words (the CLI prints the same legend).
  $('screen-legend').replaceChildren(...s.legend.flatMap(({ column, meaning }) => [el('dt', column), el('dd', meaning)]));
  const best = Math.max(...s.hits.map(value), 1e-9);
  const body = $('screen-table').tBodies[0];
  body.replaceChildren(
    ...s.hits.map((h, i) => {
      const tr = el('tr');
      const bar = el('td', undefined, 'meter');
      const meter = el('span', undefined, 'bar');
      meter.style.width = `${Math.round((100 * value(h)) / best)}%`;
      bar.append(meter);
      tr.append(
        el('td', String(i + 1)),
        el('td', h.name),
        el('td', fmt(h.effectSize, 3)),
        ...(pathway ? [el('td', fmt(h.activity, 1), h.activity >= 0 ? 'up' : 'down')] : []),
        bar,
        el('td', h.topUp.slice(0, 5).map((g) => g.gene).join(', ')),
        el('td', h.topDown.slice(0, 5).map((g) => g.gene).join(', ')),
        measuredCell(h.coverage),
      );
      return tr;
    }),
  );
}

/** Whether the model saw this perturbation in a context like the sample's; the reason on hover. */
function measuredCell(coverage) {
  const td = el('td', coverage.measured === 'unknown' ? '' : coverage.measured, `measured-${coverage.measured}`);
  if (coverage.warning) td.title = coverage.warning;
  else if (coverage.context) td.title = `measured in ${coverage.context} (distance ${coverage.distance.toFixed(1)})`;
  return td;
}

function download() {
  const p = state.prediction;
  const tsv = predictionToTsv(p, state.model.genes);
  const url = URL.createObjectURL(new Blob([tsv], { type: 'text/tab-separated-values' }));
  const a = el('a');
  a.href = url;
  const base = (state.predictionSample || 'sample').replace(/\.[^.]*$/, '');
  a.download = `refcast-${base}.tsv`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---------------------------------------------------------------------------------------------
// Wiring

$('model-select').addEventListener('change', () => {
  if ($('model-select').value === 'file') $('model-file').click();
  else loadModel();
});
$('model-file').addEventListener('change', () => loadModel());
$('backend-select').addEventListener('change', () => loadModel());
$('sample-file').addEventListener('change', (e) => readFiles([...e.target.files]));
$('values-select').addEventListener('change', () => inspect());
$('column-select').addEventListener('change', () => inspect());
$('groupby-select').addEventListener('change', () => state.hdf5 && readHdf5());
$('layer-select').addEventListener('change', () => state.hdf5 && readHdf5());
$('example-kang').addEventListener('click', () => useExample('examples/kang_cd14_mono_ctrl.tsv', 'kang_cd14_mono_ctrl.tsv'));
$('example-airway').addEventListener('click', () => useExample('examples/airway_N61311_untreated.tsv', 'airway_N61311_untreated.tsv'));
$('example-tcell').addEventListener('click', () => useExample('examples/tcell_D1_unstimulated_24h.tsv', 'tcell_D1_unstimulated_24h.tsv'));
$('perturbations').addEventListener('change', () => {
  describeSelection();
  setReady();
});
$('pert-search').addEventListener('input', () => filterPerturbations());
$('pert-search').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && $('pert-search').value) {
    e.preventDefault();
    $('pert-search').value = '';
    filterPerturbations();
  } else if (e.key === 'ArrowDown') {
    // From the search box straight to the first entry it leaves shown.
    const first = [...$('perturbations').querySelectorAll('label')].find((l) => !l.hidden && (l.closest('details')?.open ?? true));
    if (first) {
      e.preventDefault();
      first.querySelector('input').focus();
    }
  }
});
$('pert-clear').addEventListener('click', () => {
  clearSelection();
  setReady();
});
$('run').addEventListener('click', () => run());
$('screen').addEventListener('click', () => screen());
$('download').addEventListener('click', () => download());
$('result-pert').addEventListener('change', (e) => renderRow(Number(e.target.value)));
// Another baseline is another prediction: the library computes the fold changes.
$('baseline-select').addEventListener('change', () => {
  if (state.prediction) run();
});

const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  // A folder arrives as an entry (read now: the drop's data is gone after this handler).
  const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length === 1 && entries[0].isDirectory) {
    folderFiles(entries[0])
      .then((files) => readFiles(files, entries[0].name))
      .catch((err) => show($('sample-error'), `The folder ${entries[0].name} could not be read: ${err.message}`));
  } else {
    readFiles([...e.dataTransfer.files]);
  }
});
drop.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') $('sample-file').click();
});

if (params.has('backend')) $('backend-select').value = params.get('backend');
loadModel();
