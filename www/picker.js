// The page's perturbation picker: a search box over the names; the list grouped by the metadata's
// perturbation_class when the model has one (the control first, each class a collapsible group),
// one flat list otherwise; and what is selected, which a search never changes.

import { $, el } from './dom.js';


const CLASS_FIELD = 'perturbation_class';
const picker = {
  items: [], // { name, key (lower case), label, input }
  groups: [], // { name, details, count, items }
  loose: null, // the controls (grouped) or every entry (flat)
  open: new Map(), // group name → open, as the user left it while not searching
};

/** The group of a perturbation: its class, or "other" where it has none. */
function classOf(p) {
  const c = String(p.metadata[CLASS_FIELD] ?? '').trim();
  return c && c.toLowerCase() !== 'unknown' ? c : 'other';
}

/** `list`: the model's perturbations; `first`: what to select for a model that has no selection yet. */
export function fillPerturbations(list, first) {
  const before = new Set(selectedPerturbations());
  const kept = list.filter((p) => before.has(p.name)).map((p) => p.name);
  const chosen = new Set(kept.length ? kept : [first].filter(Boolean));
  const grouped = list.some((p) => !p.control && CLASS_FIELD in p.metadata);
  picker.items = list.map((p, i) => {
    const input = document.createElement('input');
    input.type = 'checkbox';
    input.value = p.name;
    input.id = `pert-${i}`;
    input.checked = chosen.has(p.name);
    const label = el('label');
    label.append(input, ` ${p.name}${p.control && !/control/i.test(p.name) ? ' (control)' : ''}`);
    return { name: p.name, key: p.name.toLowerCase(), label, input, group: grouped && !p.control ? classOf(p) : null };
  });
  picker.loose = el('div', undefined, 'checks');
  picker.loose.append(...picker.items.filter((it) => it.group === null).map((it) => it.label));
  const names = [...new Set(picker.items.map((it) => it.group).filter((g) => g !== null))];
  names.sort((a, b) => (a === 'other') - (b === 'other') || a.localeCompare(b, 'en', { sensitivity: 'base' }));
  picker.groups = names.map((name) => {
    const items = picker.items.filter((it) => it.group === name);
    const details = el('details', undefined, 'pert-group');
    const count = el('span', undefined, 'pert-n');
    const summary = el('summary');
    summary.append(el('span', name, 'pert-class'), ' ', count);
    const checks = el('div', undefined, 'checks');
    checks.setAttribute('role', 'group');
    checks.setAttribute('aria-label', name);
    checks.append(...items.map((it) => it.label));
    details.append(summary, checks);
    // Open as the user left it, and wherever the selection is.
    picker.open.set(name, !!picker.open.get(name) || items.some((it) => it.input.checked));
    details.open = picker.open.get(name);
    details.addEventListener('toggle', () => {
      if (!searchText()) picker.open.set(name, details.open);
    });
    return { name, details, count, items };
  });
  $('perturbations').replaceChildren(picker.loose, ...picker.groups.map((g) => g.details));
  $('perturbations').classList.toggle('grouped', grouped);
  filterPerturbations();
}

const searchText = () => $('pert-search').value.trim().toLowerCase();

/** Shows the entries whose name contains the search text (case-insensitive); opens the groups that hold them. */
export function filterPerturbations() {
  const q = searchText();
  let shown = 0;
  for (const it of picker.items) {
    it.label.hidden = !!q && !it.key.includes(q);
    if (!it.label.hidden) shown++;
  }
  picker.loose.hidden = picker.items.every((it) => it.group !== null || it.label.hidden);
  for (const g of picker.groups) {
    const hits = g.items.filter((it) => !it.label.hidden).length;
    g.details.hidden = hits === 0;
    const open = q ? hits > 0 : picker.open.get(g.name);
    if (g.details.open !== open) g.details.open = open;
  }
  const total = picker.items.length;
  const all = `${total.toLocaleString('en')} perturbation${total === 1 ? '' : 's'}`;
  $('pert-count').textContent = !q
    ? `${all}${picker.groups.length ? ` in ${picker.groups.length} groups` : ''}.`
    : shown
      ? `${shown.toLocaleString('en')} of ${all} match “${$('pert-search').value.trim()}”.`
      : `No perturbation matches “${$('pert-search').value.trim()}”.`;
  describeSelection();
}

/** The selection in words (it may sit in closed groups or be filtered out), and the groups' counts. */
export function describeSelection() {
  const q = searchText();
  for (const g of picker.groups) {
    const hits = g.items.filter((it) => !it.label.hidden).length;
    const picked = g.items.filter((it) => it.input.checked).length;
    g.count.textContent = `(${q ? `${hits} of ` : ''}${g.items.length}${picked ? `, ${picked} selected` : ''})`;
  }
  const names = selectedPerturbations();
  const most = 6;
  $('pert-selected').textContent = names.length
    ? `Selected (${names.length}): ${names.slice(0, most).join('; ')}${names.length > most ? `; and ${names.length - most} more` : ''}.`
    : 'Nothing selected: choose at least one perturbation to predict.';
  $('pert-clear').disabled = names.length === 0;
}

export function clearSelection() {
  for (const it of picker.items) it.input.checked = false;
  describeSelection();
}

export function selectedPerturbations() {
  return picker.items.filter((it) => it.input.checked).map((it) => it.name);
}
