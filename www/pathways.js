// The pathways and processes of one prediction: a ranked bar chart of the gene-set scores the
// library computed (`Refcast.enrichment`: PROGENy pathway activity and GO biological process),
// and a table of the sets shown with their leading genes. Nothing is scored here.

import { el, fmt } from './dom.js';
import { niceStep } from './volcano.js';

/** GO terms shown per direction, among those with FDR ≤ GO_FDR. */
export const GO_UP = 8;
export const GO_DOWN = 4;
export const GO_FDR = 0.05;

/** The GO terms to show: the most up and the most down at FDR ≤ 0.05, highest score first. */
export function shownTerms(terms) {
  const up = terms.filter((s) => s.score > 0 && s.fdr <= GO_FDR).slice(0, GO_UP);
  const down = terms.filter((s) => s.score < 0 && s.fdr <= GO_FDR).slice(-GO_DOWN);
  return [...up, ...down];
}

function label(s) {
  const name = s.collection === 'go_bp' ? s.name : `${s.name} pathway`;
  return name.length > 40 ? `${name.slice(0, 39)}…` : name;
}

/** Draws the pathways and the shown GO terms as two ranked panels of horizontal bars. */
export function drawSetBars(canvas, pathways, terms) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640;
  const row = 18;
  const panels = [
    { title: 'Pathway activity (PROGENy footprints)', sets: pathways, empty: 'no pathway has enough measured genes' },
    { title: `GO biological processes (FDR ≤ ${GO_FDR}; most up and most down)`, sets: terms, empty: `no GO process at FDR ≤ ${GO_FDR}` },
  ];
  const pad = { l: 270, r: 40, t: 8 };
  const panelHeight = (p) => 22 + Math.max(p.sets.length, 1) * row + 44;
  const h = pad.t + panels.reduce((a, p) => a + panelHeight(p), 0) + 8;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const style = getComputedStyle(document.body);
  const ink = style.getPropertyValue('--ink').trim() || '#222';
  const faint = style.getPropertyValue('--faint').trim() || '#999';
  const up = style.getPropertyValue('--up').trim() || '#c0392b';
  const down = style.getPropertyValue('--down').trim() || '#2e6fba';
  ctx.font = '12px system-ui, sans-serif';
  let y0 = pad.t;
  for (const p of panels) {
    ctx.fillStyle = ink;
    ctx.textAlign = 'left';
    ctx.font = '600 13px system-ui, sans-serif';
    ctx.fillText(p.title, 4, y0 + 14);
    ctx.font = '12px system-ui, sans-serif';
    const top = y0 + 22;
    if (!p.sets.length) {
      ctx.fillStyle = faint;
      ctx.fillText(p.empty, pad.l, top + 13);
      y0 += panelHeight(p);
      continue;
    }
    const lo = Math.min(0, ...p.sets.map((s) => s.score));
    const hi = Math.max(0, ...p.sets.map((s) => s.score));
    const span = Math.max(hi - lo, 1e-9) * 1.05;
    const X = (v) => pad.l + ((v - lo) / span) * (w - pad.l - pad.r);
    p.sets.forEach((s, i) => {
      const y = top + i * row;
      ctx.fillStyle = s.score >= 0 ? up : down;
      const x0 = X(0);
      const x1 = X(s.score);
      ctx.fillRect(Math.min(x0, x1), y + 3, Math.max(Math.abs(x1 - x0), 1), row - 6);
      ctx.fillStyle = ink;
      ctx.textAlign = 'right';
      ctx.fillText(label(s), pad.l - 8, y + 13);
      // The value beside the bar's end, or right of the zero line for a bar to the left.
      ctx.textAlign = 'left';
      ctx.fillText(fmt(s.score, 1), (s.score >= 0 ? x1 : x0) + 4, y + 13);
    });
    // The zero line and the axis of t-values.
    const bottom = top + p.sets.length * row;
    ctx.strokeStyle = faint;
    ctx.beginPath();
    ctx.moveTo(X(0), top);
    ctx.lineTo(X(0), bottom);
    ctx.moveTo(pad.l, bottom + 2);
    ctx.lineTo(w - pad.r, bottom + 2);
    ctx.stroke();
    ctx.fillStyle = ink;
    ctx.textAlign = 'center';
    const step = niceStep(span);
    for (let v = Math.ceil(lo / step) * step; v <= lo + span; v += step) ctx.fillText(fmt(v, step < 1 ? 1 : 0), X(v), bottom + 16);
    ctx.fillText('activity score (t-value): > 0 up, < 0 down', (pad.l + w - pad.r) / 2, bottom + 32);
    y0 += panelHeight(p);
  }
}

/** One table row per set shown: name, activity, FDR, leading genes with their ln fold change. */
export function fillSetTable(table, sets) {
  table.tBodies[0].replaceChildren(
    ...sets.map((s) => {
      const tr = el('tr');
      const name = el('td', s.collection === 'go_bp' ? `${s.name} (${s.id})` : `${s.name} pathway (PROGENy)`);
      const genes = s.leading.map((g) => `${g.gene} ${g.logFoldChange >= 0 ? '+' : '−'}${fmt(Math.abs(g.logFoldChange), 2)}`).join(', ');
      tr.append(name, el('td', fmt(s.score, 1), s.score >= 0 ? 'up' : 'down'), el('td', s.fdr === 0 ? '< 1e-300' : s.fdr < 0.001 ? s.fdr.toExponential(1) : fmt(s.fdr, 3), 'fdr'), el('td', genes || '–', 'genes'));
      return tr;
    }),
  );
}
