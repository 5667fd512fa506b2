// `npm pack`: the tarball holds the wasm, the JS glue, the wrapper, its types and the READMEs, and
// nothing else; installed into an empty project it imports and predicts (CPU) by its name.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = join(root, 'models/refcast-q4_0.safetensors');
const npm = (args, cwd = root) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const REQUIRED = ['package.json', 'js/index.js', 'js/hdf5.js', 'js/index.d.ts', 'js/README.md', 'pkg/refcast.js', 'pkg/refcast_bg.wasm'];
const ALLOWED = /^(README\.md|LICENSE[-\w.]*|package\.json|js\/(index\.js|hdf5\.js|index\.d\.ts|README\.md)|pkg\/(refcast\.js|refcast_bg\.wasm))$/;

test('npm pack holds exactly the package files', () => {
  const [info] = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts']));
  const files = info.files.map((f) => f.path).sort();
  for (const f of REQUIRED) assert.ok(files.includes(f), `${f} is missing from the package (got ${files.join(', ')})`);
  const stray = files.filter((f) => !ALLOWED.test(f));
  assert.deepEqual(stray, [], `stray files in the package: ${stray.join(', ')}`);
  const wasm = info.files.find((f) => f.path === 'pkg/refcast_bg.wasm');
  assert.ok(wasm.size <= 1 << 20, `the wasm is ${wasm.size} bytes, over the 1 MiB budget`);
  console.log(`# ${info.filename}: ${files.length} files, ${info.size} bytes packed, ${info.unpackedSize} unpacked; wasm ${wasm.size} bytes`);
});

/** The gene count a model file declares: its safetensors header's `refcast` metadata. */
async function declaredGenes(path) {
  const bytes = await readFile(path);
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
  return JSON.parse(header.__metadata__.refcast).architecture.genes;
}

test('the packed package installs and predicts by its name (ESM, types declared)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'refcast-pack-'));
  try {
    const [info] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir]));
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // --prefer-offline: the package's one dependency (jsfive, for HDF5 samples) comes from npm's
    // cache where `npm ci` left it, else from the registry, as for any user of the package
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', join(dir, info.filename)], dir);
    const pkg = JSON.parse(execFileSync('node', ['-p', 'JSON.stringify(require("refcast/package.json"))'], { cwd: dir, encoding: 'utf8' }));
    assert.equal(pkg.types, './js/index.d.ts');
    const script = `
      import { Refcast } from 'refcast';
      import { readFile } from 'node:fs/promises';
      const model = await Refcast.load(await readFile(${JSON.stringify(MODEL)}));
      const p = await model.predict({ sample: await readFile(${JSON.stringify(join(root, 'examples/kang_cd14_mono_ctrl.tsv'))}), perturbation: model.info().perturbations.find((p) => p.name.startsWith('IFN-beta 6 h')).name });
      console.log(JSON.stringify({ backend: model.backend, genes: p.genes, finite: p.logCpm.every(Number.isFinite) }));
      model.dispose();`;
    await writeFile(join(dir, 'use.mjs'), script);
    const out = JSON.parse(execFileSync('node', ['use.mjs'], { cwd: dir, encoding: 'utf8' }));
    assert.deepEqual(out, { backend: 'cpu', genes: await declaredGenes(MODEL), finite: true });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
