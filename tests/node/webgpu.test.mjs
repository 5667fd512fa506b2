// The package on WebGPU in Node, through Dawn from the `webgpu` npm package (optional: ~130 MB, so
// not a devDependency; `npm i --no-save webgpu` to run this). Dawn needs a Vulkan driver it
// accepts: Chromium's SwiftShader ICD works (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json,
// set here when present). wgpu's browser backend wants a `Window` global, `navigator.gpu` and a
// real `Set` for `wgslLanguageFeatures`; the shims below provide them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(ICD)) process.env.VK_ICD_FILENAMES = ICD;

let webgpu = null;
try {
  webgpu = await import('webgpu');
} catch {}

test('predict on WebGPU in Node (Dawn) matches PyTorch', { skip: !webgpu && 'the optional `webgpu` package is not installed' }, async () => {
  Object.assign(globalThis, webgpu.globals);
  const gpu = webgpu.create([]);
  Object.defineProperty(gpu, 'wgslLanguageFeatures', { value: new Set(gpu.wgslLanguageFeatures ?? []) });
  globalThis.Window = class Window {};
  Object.setPrototypeOf(globalThis, Window.prototype);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });

  const { Refcast } = await import('../../js/index.js');
  const root = new URL('../../', import.meta.url);
  const model = await Refcast.load(await readFile(new URL('models/refcast-q8_0.safetensors', root)), { backend: 'webgpu' });
  assert.equal(model.backend, 'webgpu');
  const golden = JSON.parse(await readFile(new URL('tests/golden/golden_q8_0.json', root)));
  const c = golden.cases.find((c) => (c.prediction ?? 'decoded') === 'decoded' && c.name.startsWith('Kang CD14 Mono control (bundled example)'));
  const p = await model.predict({ sample: await readFile(new URL('examples/kang_cd14_mono_ctrl.tsv', root)), perturbations: [c.perturbation], mode: 'decoded' });
  let worst = 0;
  for (let i = 0; i < p.genes; i++) worst = Math.max(worst, Math.abs(p.logCpm[i] - c.expected.log_cpm[i]) / (1 + Math.abs(c.expected.log_cpm[i])));
  assert.ok(worst <= 5e-5, `worst relative error ${worst}`);
  console.log(`# ${model.adapter}: worst relative error vs PyTorch ${worst.toExponential(1)}`);
  model.dispose();
});
