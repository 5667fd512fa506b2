// Small DOM and number-formatting helpers shared by the page's modules.

export const $ = (id) => document.getElementById(id);

export function show(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

export function fmt(x, digits = 2) {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

export function ms(x) {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`;
}

export function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
