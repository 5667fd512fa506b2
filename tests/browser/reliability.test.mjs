// Reliability of the package in headless Chromium: memory stays flat over many predictions on the
// wasm CPU backend, the page keeps working offline once the model is loaded, and dispose() on
// WebGPU releases the model so that a later call rejects and a new model loads and runs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { start, openPage, requireWebgpu, waitReady, shot, modelDoc, perturbationNamed } from './harness.mjs';

const MiB = 1024 * 1024;
const MODEL = '/models/refcast-q8_0.safetensors';
const SAMPLE = '/examples/kang_cd14_mono_ctrl.tsv';

let env;
let PERTURBATION; // the model's IFN-beta 6 h entry, by name
before(async () => {
  PERTURBATION = perturbationNamed(await modelDoc(MODEL.slice(1)), 'IFN-beta 6 h').name;
  env = await start();
});
after(() => env?.close());

/** Keeps the module's WebAssembly.Memory reachable as `globalThis.__refcastMemory` (the glue in
 * pkg/ does not export it): wraps WebAssembly.instantiate(Streaming) before any script runs. */
function captureWasmMemory(page) {
  return page.addInitScript(() => {
    const keep = (result) => {
      const memory = (result.instance ?? result).exports?.memory;
      if (memory instanceof WebAssembly.Memory) globalThis.__refcastMemory = memory;
      return result;
    };
    for (const name of ['instantiateStreaming', 'instantiate']) {
      const original = WebAssembly[name];
      WebAssembly[name] = (...args) => original.apply(WebAssembly, args).then(keep);
    }
  });
}

/** JS heap after a full GC (CDP), the typed arrays' backing stores included, and the wasm memory. */
async function memory(page, cdp) {
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('HeapProfiler.collectGarbage');
  const heap = await cdp.send('Runtime.getHeapUsage');
  const wasm = await page.evaluate(() => globalThis.__refcastMemory?.buffer.byteLength ?? null);
  return { js: heap.usedSize + (heap.backingStorageSize ?? 0), jsUsed: heap.usedSize, wasm };
}

const fmt = (bytes) => `${(bytes / MiB).toFixed(2)} MiB`;

test('1,000 predictions on the wasm CPU backend: JS heap and wasm memory stay flat, same result', async () => {
  // 1,000 runs: one prediction of the bundled example takes about 20 ms here (2 cores), so the
  // whole loop stays around 20-30 s. The count is logged with the timing.
  const TOTAL = 1000;
  const WARMUP = 100;
  // Margin: 16 MiB over the 900 measured runs is < 19 KiB a run, less than one leaked output
  // vector (4 bytes a gene of the model, checked below; a prediction returns five such arrays
  // plus latents), so any per-run leak of a result shows; it leaves room for V8's and the
  // allocator's bookkeeping, which settle after the warm-up (the wasm memory only grows in
  // 64 KiB pages).
  const MARGIN = 16 * MiB;
  const { page, context, log } = await openPage(env, { gpu: false });
  await captureWasmMemory(page);
  await page.goto(`${env.url}?backend=cpu`);
  await waitReady(page, 'cpu');
  const cdp = await context.newCDPSession(page);

  const warm = await page.evaluate(
    async ({ MODEL, SAMPLE, PERTURBATION, WARMUP }) => {
      const { Refcast } = await import('/js/index.js');
      const model = await Refcast.load(MODEL, { backend: 'cpu' });
      const sample = new Uint8Array(await (await fetch(SAMPLE)).arrayBuffer());
      const t0 = performance.now();
      let first;
      for (let i = 0; i < WARMUP; i++) {
        const p = await model.predict({ sample, perturbation: PERTURBATION });
        first ??= p;
      }
      globalThis.__run = { model, sample, first };
      return { backend: model.backend, ms: performance.now() - t0, genes: first.genes, rows: first.rows.length };
    },
    { MODEL, SAMPLE, PERTURBATION, WARMUP },
  );
  assert.equal(warm.backend, 'cpu');
  assert.equal(warm.rows, 1);
  assert.ok(warm.genes > 0);
  assert.ok(MARGIN / (TOTAL - WARMUP) < 4 * warm.genes, `the margin allows ${fmt(MARGIN / (TOTAL - WARMUP))} a run, a whole output vector of ${warm.genes} genes`);
  const before = await memory(page, cdp);
  assert.ok(before.wasm > 0, 'the WebAssembly memory was not captured');

  const end = await page.evaluate(
    async ({ PERTURBATION, n }) => {
      const { model, sample, first } = globalThis.__run;
      const t0 = performance.now();
      let last;
      for (let i = 0; i < n; i++) last = await model.predict({ sample, perturbation: PERTURBATION });
      const ms = performance.now() - t0;
      // Exact equality, bit for bit, of every output array of the first and the last run.
      const differs = [];
      for (const k of ['logCpm', 'counts', 'logFoldChange', 'latents', 'sigma']) {
        const a = first[k];
        const b = last[k];
        if (!a || !b || a.length !== b.length) {
          differs.push(`${k}: length ${a?.length} vs ${b?.length}`);
          continue;
        }
        const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
        const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
        for (let i = 0; i < ua.length; i++) {
          if (ua[i] !== ub[i]) {
            differs.push(`${k}[${i}]: ${a[i]} vs ${b[i]}`);
            break;
          }
        }
      }
      if (JSON.stringify(first.rows) !== JSON.stringify(last.rows)) differs.push('rows');
      if (JSON.stringify(first.perturbations) !== JSON.stringify(last.perturbations)) differs.push('perturbations');
      globalThis.__run.last = last;
      return { ms, differs, sample: [...last.logCpm.slice(0, 3)] };
    },
    { PERTURBATION, n: TOTAL - WARMUP },
  );
  const afterAll = await memory(page, cdp);
  assert.deepEqual(end.differs, [], 'the last result differs from the first');

  const perRun = (warm.ms + end.ms) / TOTAL;
  const dJs = afterAll.js - before.js;
  const dWasm = afterAll.wasm - before.wasm;
  console.log(
    `# ${TOTAL} CPU predictions in ${((warm.ms + end.ms) / 1000).toFixed(1)} s (${perRun.toFixed(1)} ms each; ` +
      `the last ${TOTAL - WARMUP} in ${(end.ms / 1000).toFixed(1)} s)`,
  );
  console.log(
    `# after ${WARMUP} warm-up runs: JS heap ${fmt(before.js)} (${fmt(before.jsUsed)} objects), wasm memory ${fmt(before.wasm)}; ` +
      `after ${TOTAL}: JS heap ${fmt(afterAll.js)} (${fmt(afterAll.jsUsed)} objects), wasm memory ${fmt(afterAll.wasm)}; ` +
      `growth: JS ${fmt(dJs)}, wasm ${fmt(dWasm)} (margin ${fmt(MARGIN)})`,
  );
  assert.ok(dJs <= MARGIN, `the JS heap grew by ${fmt(dJs)} over ${TOTAL - WARMUP} predictions`);
  assert.ok(dWasm <= MARGIN, `the wasm memory grew by ${fmt(dWasm)} over ${TOTAL - WARMUP} predictions`);
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('offline after the model and sample are loaded: Predict still works and nothing is requested', async () => {
  const { page, context, log } = await openPage(env, { gpu: false });
  await page.goto(env.url);
  await waitReady(page, 'cpu');
  await page.click('#example-kang');
  await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 60_000 });
  await page.check(`#perturbations input[value="${PERTURBATION}"]`);

  // Cut the network two ways: the browser is offline, and any request that still goes out is
  // aborted. Every request is still recorded (the harness logs them at the context).
  await context.setOffline(true);
  await context.route('**/*', (route) => route.abort('internetdisconnected'));
  assert.equal(await page.evaluate(() => navigator.onLine), false);
  const atOffline = log.requests.length;

  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.result === 'prediction' || !document.getElementById('run-error').hidden, null, {
    timeout: 60_000,
  });
  assert.equal(await page.isHidden('#run-error'), true, await page.textContent('#run-error'));
  assert.equal(await page.isVisible('#results'), true);
  const up = await page.$$eval('#top-up tbody tr', (trs) => trs.map((tr) => tr.children[0].textContent));
  const down = await page.$$eval('#top-down tbody tr', (trs) => trs.map((tr) => tr.children[0].textContent));
  assert.ok(up.length > 0 && down.length > 0, `result tables: ${up.length} up, ${down.length} down`);
  await shot(page, 'offline-prediction');

  const attempted = log.requests.slice(atOffline).map((r) => `${r.method} ${r.url}`);
  assert.deepEqual(attempted, [], 'the page made requests while offline');
  assert.deepEqual(log.sockets, []);
  console.log(`# offline prediction: ${up.length} + ${down.length} genes shown (top up: ${up.slice(0, 3).join(', ')}), 0 requests`);
  assert.deepEqual(log.errors, []);
  await context.close();
});

test('dispose() on WebGPU: later calls reject as disposed; a new model loads and gives the same numbers', async (t) => {
  const { page, context, log } = await openPage(env);
  // The page itself runs on the CPU here; this test drives the package directly on WebGPU.
  await page.goto(`${env.url}?backend=cpu`);
  const adapter = await requireWebgpu(page, t);
  if (!adapter) return context.close();
  await waitReady(page, 'cpu');

  const r = await page.evaluate(
    async ({ MODEL, SAMPLE, PERTURBATION }) => {
      const { Refcast, RefcastError } = await import('/js/index.js');
      const sample = new Uint8Array(await (await fetch(SAMPLE)).arrayBuffer());
      const t0 = performance.now();
      const model = await Refcast.load(MODEL, { backend: 'webgpu' });
      const loadMs = performance.now() - t0;
      const p1 = await model.predict({ sample, perturbation: PERTURBATION });
      const first = [...p1.logCpm.slice(0, 16)];
      const firstLfc = [...p1.logFoldChange.slice(0, 16)];
      model.dispose();
      model.dispose(); // twice is harmless

      const rejected = {};
      try {
        await model.predict({ sample, perturbation: PERTURBATION });
        rejected.predict = null;
      } catch (e) {
        rejected.predict = { isRefcastError: e instanceof RefcastError, name: e.name, kind: e.kind, message: e.message };
      }
      try {
        await model.screen({ sample });
        rejected.screen = null;
      } catch (e) {
        rejected.screen = { isRefcastError: e instanceof RefcastError, kind: e.kind, message: e.message };
      }
      try {
        model.info();
        rejected.info = null;
      } catch (e) {
        rejected.info = { isRefcastError: e instanceof RefcastError, kind: e.kind, message: e.message };
      }

      const t1 = performance.now();
      const again = await Refcast.load(MODEL, { backend: 'webgpu' });
      const reloadMs = performance.now() - t1;
      const p2 = await again.predict({ sample, perturbation: PERTURBATION });
      const second = [...p2.logCpm.slice(0, 16)];
      const secondLfc = [...p2.logFoldChange.slice(0, 16)];
      again.dispose();
      return { backend: model.backend, backend2: again.backend, adapter: again.adapter, loadMs, reloadMs, first, second, firstLfc, secondLfc, rejected };
    },
    { MODEL, SAMPLE, PERTURBATION },
  );

  assert.equal(r.backend, 'webgpu');
  assert.equal(r.backend2, 'webgpu');
  for (const what of ['predict', 'screen', 'info']) {
    const e = r.rejected[what];
    assert.ok(e, `${what} after dispose() did not fail`);
    assert.equal(e.isRefcastError, true, `${what}: not a RefcastError`);
    assert.equal(e.kind, 'usage', `${what}: kind`);
    assert.equal(e.message, 'this model was disposed', `${what}: message`);
  }
  assert.equal(r.rejected.predict.name, 'RefcastError');
  // Same model, same device, same kernels: the numbers are identical.
  assert.deepEqual(r.second, r.first);
  assert.deepEqual(r.secondLfc, r.firstLfc);
  console.log(
    `# WebGPU (${r.adapter}): load ${Math.round(r.loadMs)} ms, reload after dispose ${Math.round(r.reloadMs)} ms; ` +
      `first log-CPM ${r.first.slice(0, 3).map((x) => x.toFixed(5)).join(', ')} both times`,
  );
  assert.deepEqual(log.errors, []);
  await context.close();
});
