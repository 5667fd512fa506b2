// The in-page half of the browser benchmark (bench/browser/driver.mjs opens this page once per
// runtime, in a fresh browser context, and calls `refcastBench.run`). Every runtime runs the same
// workloads on the same inputs as the native benchmark (bench/run.py writes them under
// bench/out/[smoke/]browser/): refcast through its npm API (js/index.js) on WebGPU or the wasm CPU
// backend, onnxruntime-web on the ONNX export of the same weights (its wasm and WebGPU providers).

const ORT_DIST = '/node_modules/onnxruntime-web/dist/';

/** Runtime name → how to run it. `threads: 0` means navigator.hardwareConcurrency. */
const RUNTIMES = {
  'refcast-webgpu': { kind: 'refcast', backend: 'webgpu' },
  'refcast-wasm': { kind: 'refcast', backend: 'cpu' },
  'refcast-wasm-int': { kind: 'refcast', backend: 'cpu', cpuKernels: 'integer' },
  'ort-web-wasm': { kind: 'ort', ep: 'wasm', threads: 0 },
  'ort-web-wasm-1t': { kind: 'ort', ep: 'wasm', threads: 1 },
  'ort-web-webgpu': { kind: 'ort', ep: 'webgpu', threads: 0 },
};

const now = () => performance.now() / 1e3;

function say(msg) {
  console.log(msg);
  document.getElementById('log').textContent += msg + '\n';
}

async function fetchBytes(path) {
  const r = await fetch('/' + path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function fetchF32(path) {
  const b = await fetchBytes(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

/** The WebGPU adapter as the page sees it, or null. */
async function adapterInfo() {
  if (!navigator.gpu) return null;
  const a = await navigator.gpu.requestAdapter();
  if (!a) return null;
  const i = a.info ?? {};
  return {
    vendor: i.vendor ?? '',
    architecture: i.architecture ?? '',
    device: i.device ?? '',
    description: i.description ?? '',
    isFallbackAdapter: i.isFallbackAdapter ?? a.isFallbackAdapter ?? null,
    features: [...a.features].sort(),
    maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize,
  };
}

/** refcast through its npm API. The references are one TSV (gene symbol, then one log-CPM column
 * per reference), built before timing: the API takes a table, as a page gets it from a user's file,
 * and predicts all its columns in one batch (`columns: 'all'`). */
async function refcastRunner(spec, backend, cpuKernels, refs) {
  const { Refcast, init } = await import('/js/index.js');
  const bytes = await fetchBytes(spec.model);
  const cold = {};
  let t = now();
  await init();
  cold.init_s = now() - t;
  t = now();
  const model = await Refcast.load(bytes, { backend, cpuKernels });
  cold.load_s = now() - t;
  const g = spec.genes;
  const enc = new TextEncoder();
  const symbols = model.genes;
  const table = (n) => {
    const lines = [['gene', ...Array.from({ length: n }, (_, b) => `ref${b}`)].join('\t')];
    for (let i = 0; i < g; i++) {
      const row = [symbols[i]];
      for (let b = 0; b < n; b++) row.push(refs[b * g + i]);
      lines.push(row.join('\t'));
    }
    return enc.encode(lines.join('\n'));
  };
  const tables = new Map();
  for (const w of spec.workloads) {
    const n = w.api === 'screen' ? 1 : w.references;
    if (!tables.has(n)) tables.set(n, table(n));
  }
  const call = async (w) => {
    if (w.api === 'screen') {
      // The default (denoised) mode: the perturbations' rows and the control's are decoded, as
      // the peers compute (bench/graph.py).
      const r = await model.screen({ sample: tables.get(1), values: 'log-cpm', perturbations: w.perturbations });
      return { rows: r.hits.length };
    }
    const p = await model.predict({
      sample: tables.get(w.references),
      columns: 'all',
      values: 'log-cpm',
      perturbations: w.perturbations,
      ...(w.samples ? { numSamples: w.samples, seed: w.seed } : {}),
    });
    return { rows: p.rows.length, first: p.logCpm.subarray(0, p.genes) };
  };
  return {
    describe: `refcast ${backend === 'cpu' ? 'wasm CPU backend' : 'WebGPU backend'}: ${model.adapter}`,
    threads: backend === 'cpu' ? 1 : null,
    cold,
    call,
    async extra() {
      // What reading a new sample table costs (parse + match to the model's genes + typed
      // arrays): the timed calls reuse one table, which the model keeps after its first read, so
      // each round here changes the table's last digit.
      const times = [];
      for (let i = 0; i < 5; i++) {
        const fresh = tables.get(1).slice();
        fresh[fresh.length - 1] = 48 + ((fresh[fresh.length - 1] - 47 + i) % 10);
        const t0 = now();
        await model.inspectSample(fresh, { values: 'log-cpm' });
        times.push(now() - t0);
      }
      return { sample_parse_s: times.sort((a, b) => a - b)[2] };
    },
    dispose: () => model.dispose(),
  };
}

/** Screen post-processing of the peers (bench/peer.py `rank`): effect size per row, rows in
 * descending order, each row's 10 genes most up and most down. */
function rank(lfc, rows, g) {
  const effect = new Float64Array(rows);
  const up = new Int32Array(rows * 10);
  const down = new Int32Array(rows * 10);
  for (let r = 0; r < rows; r++) {
    const row = lfc.subarray(r * g, (r + 1) * g);
    let ss = 0;
    const hi = [];
    const lo = [];
    for (let i = 0; i < g; i++) {
      const v = row[i];
      ss += v * v;
      if (hi.length < 10 || v > row[hi[hi.length - 1]]) {
        hi.push(i);
        hi.sort((a, b) => row[b] - row[a]);
        if (hi.length > 10) hi.pop();
      }
      if (lo.length < 10 || v < row[lo[lo.length - 1]]) {
        lo.push(i);
        lo.sort((a, b) => row[a] - row[b]);
        if (lo.length > 10) lo.pop();
      }
    }
    effect[r] = Math.sqrt(ss / g);
    up.set(hi, r * 10);
    down.set(lo, r * 10);
  }
  const order = Array.from(effect.keys()).sort((a, b) => effect[b] - effect[a]);
  return { order, up, down };
}

/** onnxruntime-web on the ONNX export (bench/graph.py): the build a page would load for that
 * provider (ort.wasm.min.mjs, ort.webgpu.min.mjs), from node_modules via the local server. */
async function ortRunner(spec, ep, threads, refs) {
  const ort = await import(`${ORT_DIST}ort.${ep === 'webgpu' ? 'webgpu' : 'wasm'}.min.mjs`);
  const n = threads || navigator.hardwareConcurrency || 1;
  ort.env.wasm.numThreads = n;
  const bytes = await fetchBytes(spec.onnx);
  const inputs = {};
  for (const w of spec.workloads) {
    const all = await fetchF32(w.inputs.path);
    const [p, s, b] = [w.inputs.pert[0], w.inputs.eps_tb[0], w.inputs.eps_tb[1]];
    const sizes = [p * w.inputs.pert[1], s * b * w.inputs.eps_tb[2], s * p * w.inputs.eps_p[2]];
    inputs[w.name] = {
      pert: all.subarray(0, sizes[0]),
      eps_tb: all.subarray(sizes[0], sizes[0] + sizes[1]),
      eps_p: all.subarray(sizes[0] + sizes[1]),
    };
  }
  const cold = {};
  const t = now();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [ep], graphOptimizationLevel: 'all' });
  cold.create_s = now() - t;
  const g = spec.genes;
  const call = async (w) => {
    const b = w.api === 'screen' ? 1 : w.references;
    const d = inputs[w.name];
    const T = (data, dims) => new ort.Tensor('float32', data, dims);
    const out = await session.run({
      x: T(refs.subarray(0, b * g), [b, g]),
      lib: T(new Float32Array(b).fill(spec.library_size), [b]),
      pert: T(d.pert, w.inputs.pert),
      eps_tb: T(d.eps_tb, w.inputs.eps_tb),
      eps_p: T(d.eps_p, w.inputs.eps_p),
    });
    const rows = out.log_cpm.dims[0];
    if (w.api === 'screen') rank(out.lfc.data, rows, g);
    return { rows, first: out.log_cpm.data.subarray(0, g) };
  };
  return {
    describe: `onnxruntime-web ${ort.env.versions?.web ?? ''} ${ep} execution provider, ${n} wasm thread(s)`,
    threads: n,
    cold,
    call,
    extra: async () => ({}),
    dispose: () => session.release(),
  };
}

/** Runs every workload of `spec` not skipped for `runtime`; see driver.mjs for the result. */
async function run(runtime, spec) {
  const how = RUNTIMES[runtime];
  if (!how) throw new Error(`unknown runtime ${runtime}`);
  const refs = await fetchF32(spec.references);
  const workloads = spec.workloads.filter((w) => !(w.skip ?? []).includes(runtime));
  const t0 = now();
  const r = how.kind === 'refcast' ? await refcastRunner(spec, how.backend, how.cpuKernels ?? 'f32', refs) : await ortRunner(spec, how.ep, how.threads, refs);
  let t = now();
  const first = await r.call(workloads[0]);
  r.cold.first_s = now() - t;
  r.cold.first_workload = workloads[0].name;
  const coldTotal = now() - t0;
  say(`${runtime}: cold start ${(Object.values(r.cold).filter((v) => typeof v === 'number').reduce((a, b) => a + b, 0) * 1e3).toFixed(1)} ms`);
  const results = [];
  for (const w of workloads) {
    const [minRuns, floor] = w.runs?.[runtime] ?? [spec.min_runs, spec.floor_runs];
    const warmup = w.warmup?.[runtime] ?? spec.warmup;
    let rows = 0;
    for (let i = 0; i < warmup; i++) rows = (await r.call(w)).rows;
    const times = [];
    const tAll = now();
    while (times.length < minRuns && (times.length < floor || now() - tAll < spec.budget_s)) {
      t = now();
      rows = (await r.call(w)).rows;
      times.push(now() - t);
    }
    say(`${runtime}: ${w.name} ${times.length} runs, median ${(times.slice().sort((a, b) => a - b)[times.length >> 1] * 1e3).toFixed(2)} ms`);
    results.push({ name: w.name, rows, times_s: times });
  }
  const extra = await r.extra();
  r.dispose();
  return {
    runtime,
    describe: r.describe,
    threads: r.threads,
    cold: { ...r.cold, with_fetch_s: coldTotal },
    extra,
    workloads: results,
    first_row: first.first ? Array.from(first.first) : null,
  };
}

window.refcastBench = {
  adapterInfo,
  run,
  environment: () => ({
    crossOriginIsolated: self.crossOriginIsolated,
    hardwareConcurrency: navigator.hardwareConcurrency,
    userAgent: navigator.userAgent,
  }),
};
document.body.dataset.ready = 'yes';
