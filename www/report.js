// The offline report that `refcast predict --report` and `refcast screen --report` write: one
// HTML file with this script, dom.js, volcano.js and style.css inlined and the results as JSON in
// <script id="refcast-data" type="application/json">. It draws the page's volcano plot and top-gene
// tables for a prediction, and a bar chart and the ranked table for a screen; it loads nothing.

import { $, el, fmt } from './dom.js';
import { drawVolcano } from './volcano.js';

/** Horizontal bars, one per label, longest first as given. */
export function drawBars(canvas, labels, values, xlabel) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640;
  const row = 18;
  const pad = { l: 220, r: 60, t: 8, b: 36 };
  const h = pad.t + pad.b + row * labels.length;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const style = getComputedStyle(document.body);
  const ink = style.getPropertyValue('--ink').trim() || '#222';
  const accent = style.getPropertyValue('--accent').trim() || '#2b6a4f';
  const down = style.getPropertyValue('--down').trim() || '#2e6fba';
  const max = Math.max(...values.map(Math.abs), 1e-9);
  const X = (v) => pad.l + (Math.abs(v) / max) * (w - pad.l - pad.r);
  ctx.font = '12px system-ui, sans-serif';
  labels.forEach((label, i) => {
    const y = pad.t + i * row;
    ctx.fillStyle = values[i] < 0 ? down : accent;
    ctx.fillRect(pad.l, y + 3, Math.max(2, X(values[i]) - pad.l), row - 6);
    ctx.fillStyle = ink;
    ctx.textAlign = 'right';
    ctx.fillText(label.length > 34 ? `${label.slice(0, 33)}…` : label, pad.l - 6, y + row - 5);
    ctx.textAlign = 'left';
    ctx.fillText(fmt(values[i], 3), X(values[i]) + 4, y + row - 5);
  });
  ctx.textAlign = 'center';
  ctx.fillText(xlabel, (pad.l + w - pad.r) / 2, h - 10);
}

/** A familiarity summary as a sentence. */
function sentence(text) {
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

function table(head, rows) {
  const t = el('table');
  const tr = el('tr');
  tr.append(...head.map((h) => el('th', h)));
  t.append(el('thead'), el('tbody'));
  t.tHead.append(tr);
  for (const cells of rows) {
    const r = el('tr');
    r.append(...cells.map(([text, cls]) => el('td', text, cls)));
    t.tBodies[0].append(r);
  }
  return t;
}

function renderPrediction(data, main) {
  for (const row of data.rows) {
    const section = el('section');
    section.append(el('h2', `${row.sample} × ${row.perturbation}`));
    if (row.familiarity) section.append(el('p', sentence(row.familiarity), row.outside ? 'familiarity-outside' : 'hint'));
    const grid = el('div', undefined, 'results-grid');
    const figure = el('figure');
    const canvas = el('canvas');
    canvas.width = 640;
    canvas.height = 440;
    canvas.setAttribute('aria-label', `Volcano plot: ${data.units} against its size in units of the model's σ`);
    figure.append(canvas, el('figcaption', `Each dot is a gene the sample measured: predicted ${data.units} (x) against |${data.units}| / σ (y), σ being the model's per-gene spread. Red: up; blue: down; labelled: the top genes.`));
    const tables = el('div', undefined, 'tables');
    const genes = (list) =>
      list.map((g) => [[g.gene], [fmt(g.lfc, 3), g.lfc >= 0 ? 'up' : 'down'], [fmt(g.sigma, 3)], [fmt(g.reference, 2)], [fmt(g.predicted, 2)]]);
    const head = ['gene', `${data.units} vs ${row.baseline}`, 'σ', 'reference', 'predicted'];
    tables.append(el('h3', 'Top up-regulated'), table(head, genes(row.top_up)), el('h3', 'Top down-regulated'), table(head, genes(row.top_down)));
    grid.append(figure, tables);
    section.append(grid);
    main.append(section);
    // The volcano's arrays cover the measured genes only.
    const labelled = [...row.top_up.slice(0, 8), ...row.top_down.slice(0, 8)].map((g) => g.index);
    drawVolcano(canvas, row.lfc, row.sigma, row.lfc.map(() => 1), row.genes, labelled, `predicted ${data.units} vs the ${row.baseline}`);
  }
}

function renderScreen(data, main) {
  const section = el('section');
  section.append(el('h2', `${data.hits.length} perturbations ranked by ${data.ranked_by} for sample “${data.sample}”`));
  if (data.familiarity) section.append(el('p', sentence(data.familiarity), data.outside ? 'familiarity-outside' : 'hint'));
  const figure = el('figure');
  const canvas = el('canvas');
  canvas.setAttribute('aria-label', `Bar chart: the ${data.chart.length} highest-ranked perturbations by ${data.ranked_by}`);
  figure.append(canvas, el('figcaption', `The ${data.chart.length} highest-ranked perturbations.`));
  section.append(figure);
  // Where the model measured each perturbation, for models that record it (see the legend).
  const coverage = data.legend.some((c) => c.column === 'measured');
  const measured = (h) => (coverage ? [[h.measured], [h.measured_context ?? '-'], [h.measured_distance === null ? '-' : fmt(h.measured_distance, 2)]] : []);
  const rows = data.hits.map((h) => [[String(h.rank)], [h.perturbation], [fmt(h.effect_size, 4)], [h.reversal === null ? '-' : fmt(h.reversal, 4)], [h.top_up], [h.top_down], ...measured(h)]);
  section.append(table(data.legend.map((c) => c.column), rows));
  const legend = el('dl', undefined, 'legend');
  for (const { column, meaning } of data.legend) legend.append(el('dt', column), el('dd', meaning));
  section.append(el('h3', 'What the columns mean'), legend);
  main.append(section);
  drawBars(canvas, data.chart.map((h) => h.perturbation), data.chart.map((h) => (data.ranked_by === 'reversal' ? h.reversal : h.effect_size)), data.ranked_by === 'reversal' ? 'reversal' : `effect size (RMS ${data.units})`);
}

const data = JSON.parse($('refcast-data').textContent);
const main = $('report');
$('subtitle').textContent = data.subtitle;
$('units').textContent = data.note;
if (data.kind === 'prediction') renderPrediction(data, main);
else renderScreen(data, main);
document.body.dataset.rendered = 'true';
