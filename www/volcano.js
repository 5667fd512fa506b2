// The volcano plot of one prediction: ln fold change against its size in units of the model's σ,
// the measured genes only, the most changed labelled.

import { fmt } from './dom.js';

export function drawVolcano(canvas, lfc, sigma, measured, genes, labelled, xlabel) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640;
  const h = Math.round((w * 440) / 640);
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 56, r: 16, t: 16, b: 44 };
  let xmax = 0.5;
  let ymax = 1;
  for (let g = 0; g < lfc.length; g++) {
    if (!measured[g]) continue;
    xmax = Math.max(xmax, Math.abs(lfc[g]));
    ymax = Math.max(ymax, Math.abs(lfc[g]) / sigma[g]);
  }
  xmax *= 1.05;
  ymax *= 1.08;
  const X = (v) => pad.l + ((v + xmax) / (2 * xmax)) * (w - pad.l - pad.r);
  const Y = (v) => h - pad.b - (v / ymax) * (h - pad.t - pad.b);
  const style = getComputedStyle(document.body);
  const ink = style.getPropertyValue('--ink').trim() || '#222';
  const faint = style.getPropertyValue('--faint').trim() || '#999';
  ctx.strokeStyle = faint;
  ctx.fillStyle = ink;
  ctx.lineWidth = 1;
  ctx.font = '12px system-ui, sans-serif';
  // Axes and ticks.
  ctx.beginPath();
  ctx.moveTo(pad.l, pad.t);
  ctx.lineTo(pad.l, h - pad.b);
  ctx.lineTo(w - pad.r, h - pad.b);
  ctx.moveTo(X(0), pad.t);
  ctx.lineTo(X(0), h - pad.b);
  ctx.stroke();
  ctx.textAlign = 'center';
  const step = niceStep(xmax);
  for (let v = -Math.floor(xmax / step) * step; v <= xmax; v += step) {
    ctx.fillText(fmt(v, step < 1 ? 1 : 0), X(v), h - pad.b + 16);
  }
  ctx.fillText(xlabel, (pad.l + w - pad.r) / 2, h - 8);
  ctx.textAlign = 'right';
  const ystep = niceStep(ymax / 2);
  for (let v = 0; v <= ymax; v += ystep) ctx.fillText(fmt(v, ystep < 1 ? 1 : 0), pad.l - 6, Y(v) + 4);
  ctx.save();
  ctx.translate(14, (pad.t + h - pad.b) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = 'center';
  ctx.fillText('|ln fold change| / σ', 0, 0);
  ctx.restore();
  // Points.
  const up = style.getPropertyValue('--up').trim() || '#c0392b';
  const down = style.getPropertyValue('--down').trim() || '#2e6fba';
  for (let g = 0; g < lfc.length; g++) {
    if (!measured[g]) continue;
    const z = Math.abs(lfc[g]) / sigma[g];
    ctx.fillStyle = z < 1 ? faint : lfc[g] > 0 ? up : down;
    ctx.globalAlpha = z < 1 ? 0.35 : 0.75;
    ctx.fillRect(X(lfc[g]) - 1.5, Y(z) - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = ink;
  for (const g of labelled) {
    const x = X(lfc[g]);
    ctx.textAlign = lfc[g] > 0 ? 'right' : 'left';
    ctx.fillText(genes[g], x + (lfc[g] > 0 ? -5 : 5), Y(Math.abs(lfc[g]) / sigma[g]) + 4);
  }
}

/** A round tick step (1, 2 or 5 × 10^k) giving about four ticks over `range`. */
export function niceStep(range) {
  const raw = range / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}
