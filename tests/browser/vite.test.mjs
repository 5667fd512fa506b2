// The npm package inside a bundler: a small app that depends on the packed tarball (as a web
// developer would install it) is built with Vite, served from its dist/ by `vite preview`, and run
// in headless Chromium on WebGPU and on the wasm CPU backend. The wasm must come out of the build
// as an asset found through `new URL(…, import.meta.url)`, with no extra configuration, and the
// predictions must match the PyTorch golden vectors.
//
// Tolerance: |web − PyTorch| ≤ 1e-4 · (1 + |x|) on predicted log-CPM, as in page.test.mjs (the
// native backends are held to 5e-5 in tests/golden.rs; WebGPU sums in another order).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, preview, createLogger } from 'vite';
import { start, openPage, webgpuAdapter, shot, root, CI } from './harness.mjs';

const TOLERANCE = 1e-4;
const MODEL = 'refcast-q8_0.safetensors';
const EXAMPLE = 'kang_cd14_mono_ctrl.tsv';

// The whole app: one HTML file and one module that uses the package by its name.
const INDEX_HTML = `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8" /><title>refcast in a Vite app</title></head>
  <body>
    <pre id="out">running</pre>
    <script type="module" src="/main.js"></script>
  </body>
</html>
`;
const MAIN_JS = `import { Refcast, RefcastError } from 'refcast';

const out = document.getElementById('out');
const backend = new URLSearchParams(location.search).get('backend') ?? 'auto';
try {
  const started = performance.now();
  const model = await Refcast.load('/${MODEL}', { backend, sha256: import.meta.env.VITE_MODEL_SHA256 });
  const sample = await (await fetch('/${EXAMPLE}')).text();
  // The golden case's perturbation, as metadata: the same entry whatever the model names it.
  const p = await model.predict({ sample, perturbations: [import.meta.env.VITE_PERTURBATION], mode: 'decoded' });
  window.result = { backend: model.backend, genes: model.genes.length, logCpm: Array.from(p.logCpm), ms: performance.now() - started };
  model.dispose();
  out.textContent = 'done on ' + window.result.backend;
} catch (e) {
  window.result = { error: e instanceof RefcastError ? e.kind + ': ' + e.message : String(e) };
  out.textContent = window.result.error;
}
`;

let env;
let app; // { dir, server, url, assets }
let golden;

before(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'refcast-vite-'));
  const npm = (args) => execFileSync('npm', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: root, encoding: 'utf8' }));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'vite-consumer', private: true, type: 'module' }));
  npm(['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', join(dir, packed.filename)]);
  await writeFile(join(dir, 'index.html'), INDEX_HTML);
  await writeFile(join(dir, 'main.js'), MAIN_JS);
  await mkdir(join(dir, 'public'));
  await copyFile(join(root, 'models', MODEL), join(dir, 'public', MODEL));
  await copyFile(join(root, 'examples', EXAMPLE), join(dir, 'public', EXAMPLE));
  const sums = await readFile(join(root, 'models/SHA256SUMS'), 'utf8');
  const sha256 = sums.split('\n').find((l) => l.endsWith(MODEL)).split(/\s+/)[0];
  const g = JSON.parse(await readFile(join(root, 'tests/golden/golden_q8_0.json'), 'utf8'));
  golden = g.cases.find((c) => (c.prediction ?? 'decoded') === 'decoded' && c.name.startsWith('Kang CD14 Mono control (bundled example)'));

  // Vite is the repository's devDependency; the app resolves `refcast` from its own node_modules.
  // Its warnings are kept: the package must build without any.
  const logger = createLogger('warn');
  const warnings = [];
  const warn = logger.warn.bind(logger);
  logger.warn = (msg, options) => {
    warnings.push(msg);
    warn(msg, options);
  };
  const config = { root: dir, configFile: false, logLevel: 'warn', customLogger: logger, define: { 'import.meta.env.VITE_MODEL_SHA256': JSON.stringify(sha256), 'import.meta.env.VITE_PERTURBATION': JSON.stringify(golden.perturbation) } };
  await build({ ...config, build: { outDir: join(dir, 'dist'), emptyOutDir: true } });
  const server = await preview({ ...config, build: { outDir: join(dir, 'dist') }, preview: { port: 0, host: '127.0.0.1', strictPort: false } });
  const url = server.resolvedUrls.local[0];
  const assets = await readdir(join(dir, 'dist', 'assets'));
  app = { dir, server, url, assets, warnings };

  env = await start();
});

after(async () => {
  await env?.close();
  await app?.server.close();
  if (app) await rm(app.dir, { recursive: true, force: true });
});

test('vite build emits the wasm as an asset next to the bundled JS, without warnings', () => {
  assert.deepEqual(app.warnings, [], 'vite warned while building the app');
  const wasm = app.assets.filter((f) => f.endsWith('.wasm'));
  const js = app.assets.filter((f) => f.endsWith('.js'));
  assert.equal(wasm.length, 1, `one .wasm asset expected in dist/assets, got: ${app.assets.join(', ')}`);
  assert.ok(js.length >= 1, `no bundled JS in dist/assets: ${app.assets.join(', ')}`);
  console.log(`# vite build: ${app.assets.join(', ')}`);
});

for (const backend of ['webgpu', 'cpu']) {
  test(`the Vite-built app predicts in Chromium on ${backend}`, async (t) => {
    const { page, context, log } = await openPage(env, { gpu: backend === 'webgpu' });
    try {
      if (backend === 'webgpu') {
        await page.goto(app.url);
        const adapter = await webgpuAdapter(page);
        if (!adapter) {
          assert.ok(!CI, 'WebGPU is not available in this Chromium (CI=true: this must not be skipped)');
          t.skip('no WebGPU adapter in this Chromium');
          return;
        }
      }
      log.requests.length = 0; // only the run below counts
      await page.goto(`${app.url}?backend=${backend}`);
      await page.waitForFunction(() => window.result, null, { timeout: 180_000 });
      const result = await page.evaluate(() => window.result);
      await shot(page, `vite-${backend}`);
      assert.equal(result.error, undefined, result.error);
      assert.equal(result.backend, backend);
      assert.equal(result.genes, golden.expected.log_cpm.length);
      let worst = 0;
      golden.expected.log_cpm.forEach((want, i) => {
        const err = Math.abs(result.logCpm[i] - want) / (1 + Math.abs(want));
        assert.ok(err <= TOLERANCE, `log-CPM[${i}]: app ${result.logCpm[i]}, PyTorch ${want}`);
        worst = Math.max(worst, err);
      });
      assert.deepEqual(log.errors, []);
      const origin = new URL(app.url).origin;
      const foreign = log.requests.filter((r) => new URL(r.url).origin !== origin);
      assert.deepEqual(foreign.map((r) => r.url), [], 'requests to another origin');
      const wasm = log.requests.filter((r) => r.url.endsWith('.wasm')).map((r) => new URL(r.url).pathname);
      assert.equal(wasm.length, 1, `the app fetched ${wasm.length} wasm files: ${wasm.join(', ')}`);
      assert.ok(wasm[0].startsWith('/assets/'), `the wasm came from ${wasm[0]}, not from the build's assets`);
      console.log(`# Vite app on ${backend}: load + predict ${result.ms.toFixed(0)} ms; worst relative error vs PyTorch ${worst.toExponential(2)}`);
    } finally {
      await context.close();
    }
  });
}
