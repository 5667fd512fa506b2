// The golden files (tests/golden, written by training/export.py) as the Node tests read them: which
// cases are decoded, which counterfactual and which denoised, and the tolerance of the latter two.
// Mirrors tests/golden.rs: `golden_format` 1 (no field) holds decoded cases only; from 2 every case
// names its `prediction` mode and counterfactual cases must be there; from 3 denoised cases too.
// Also: which bundled example a golden case's reference is, and the model's perturbations by name.

import assert from 'node:assert/strict';

/** The newest golden_format these tests know (training/export.py's GOLDEN_FORMAT). */
export const GOLDEN_FORMAT = 3;

/** The same tolerance as tests/golden.rs: 5e-5 · (1 + |x|) per decoded value. */
export const TOLERANCE = 5e-5;

export const prediction = (c) => c.prediction ?? 'decoded';

export function decodedCases(golden) {
  return golden.cases.filter((c) => prediction(c) === 'decoded');
}

/** The golden_format from which a file holds cases of each mode anchored to the sample. */
const SINCE = { counterfactual: 2, denoised: 3 };

/** The cases of `mode` (counterfactual or denoised); from its golden_format on there must be some, mean and sampled. */
function anchoredCases(golden, what, mode) {
  const format = golden.golden_format ?? 1;
  assert.ok(format >= 1 && format <= GOLDEN_FORMAT, `${what}: golden_format ${format} is not one these tests know`);
  const cases = golden.cases.filter((c) => prediction(c) === mode);
  if (format >= SINCE[mode]) {
    for (const m of ['mean', 'sample']) assert.ok(cases.some((c) => c.mode === m), `${what}: golden_format ${format} but no ${m} ${mode} case`);
  } else {
    assert.equal(cases.length, 0, `${what}: ${mode} cases in a format-${format} file`);
  }
  return cases;
}

/** The counterfactual cases; from golden_format 2 there must be some, mean and sampled. */
export const counterfactualCases = (golden, what) => anchoredCases(golden, what, 'counterfactual');

/** The denoised cases; from golden_format 3 there must be some, mean and sampled. */
export const denoisedCases = (golden, what) => anchoredCases(golden, what, 'denoised');

/**
 * Asserts |got − want| ≤ scale · TOLERANCE · (2 + |a| + |b|): a counterfactual or denoised profile
 * carries the errors of both decoded rows `a` (the perturbation) and `b` (the control). Returns the worst
 * ratio of error to bound.
 */
export function assertCloseSum(what, got, want, a, b, scale = 1) {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const bound = scale * TOLERANCE * (2 + Math.abs(a[i]) + Math.abs(b[i]));
    const err = Math.abs(got[i] - want[i]);
    assert.ok(err <= bound, `${what}[${i}]: refcast ${got[i]}, expected ${want[i]} (decoded ${a[i]}, control ${b[i]})`);
    worst = Math.max(worst, err / bound);
  }
  return worst;
}

/** The bundled example each "(bundled example)" golden case starts with, by its name's first words. */
export const EXAMPLES = [
  ['airway ', 'examples/airway_N61311_untreated.tsv'],
  ['Kang ', 'examples/kang_cd14_mono_ctrl.tsv'],
  ['T cells D1 ', 'examples/tcell_D1_unstimulated_24h.tsv'],
];

/** The example file of a golden case whose reference is a bundled example; fails for an unknown one. */
export function exampleOf(c) {
  const hit = EXAMPLES.find(([start]) => c.name.startsWith(start));
  assert.ok(hit, `golden case '${c.name}': no bundled example file is known for it (tests/node/golden.mjs, EXAMPLES)`);
  return hit[1];
}

/** Whether a known perturbation is a control (a field set to "none"), as the runtime decides. */
export const isControl = (p) => Object.values(p.metadata).some((v) => String(v).toLowerCase() === 'none');

/**
 * The name of the model's first known perturbation whose name starts with `start` ("IFN-beta 6 h"),
 * failing with the list's size and first entries when there is none.
 */
export function perturbationNamed(info, start) {
  const found = info.perturbations.find((p) => p.name.startsWith(start));
  const some = info.perturbations.slice(0, 8).map((p) => `'${p.name}'`).join(', ');
  assert.ok(found, `the model has no perturbation whose name starts with '${start}' (${info.perturbations.length} known: ${some}, …)`);
  return found.name;
}

/** The name of the model's control perturbation (its first with a field set to "none"). */
export function controlName(info) {
  const found = info.perturbations.find(isControl);
  assert.ok(found, 'the model has no control perturbation (none with a field set to "none")');
  return found.name;
}
