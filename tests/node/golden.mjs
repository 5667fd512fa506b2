// The golden files (tests/golden, written by training/export.py) as the Node tests read them: which
// cases are decoded and which counterfactual, and the counterfactual tolerance. Mirrors
// tests/golden.rs: `golden_format` 1 (no field) holds decoded cases only; from 2 every case names
// its `prediction` mode and counterfactual cases must be there.

import assert from 'node:assert/strict';

/** The newest golden_format these tests know (training/export.py's GOLDEN_FORMAT). */
export const GOLDEN_FORMAT = 2;

/** The same tolerance as tests/golden.rs: 5e-5 · (1 + |x|) per decoded value. */
export const TOLERANCE = 5e-5;

export const prediction = (c) => c.prediction ?? 'decoded';

export function decodedCases(golden) {
  return golden.cases.filter((c) => prediction(c) === 'decoded');
}

/** The counterfactual cases; from golden_format 2 there must be some, mean and sampled. */
export function counterfactualCases(golden, what) {
  const format = golden.golden_format ?? 1;
  assert.ok(format >= 1 && format <= GOLDEN_FORMAT, `${what}: golden_format ${format} is not one these tests know`);
  const cases = golden.cases.filter((c) => prediction(c) === 'counterfactual');
  if (format >= 2) {
    for (const mode of ['mean', 'sample']) assert.ok(cases.some((c) => c.mode === mode), `${what}: golden_format ${format} but no ${mode} counterfactual case`);
  } else {
    assert.equal(cases.length, 0, `${what}: counterfactual cases in a format-1 file`);
  }
  return cases;
}

/**
 * Asserts |got − want| ≤ scale · TOLERANCE · (2 + |a| + |b|): a counterfactual profile carries the
 * errors of both decoded rows `a` (the perturbation) and `b` (the control). Returns the worst
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
