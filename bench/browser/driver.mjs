// The browser half of the benchmark: serves bench/browser/ (with the files it needs) on
// 127.0.0.1 with cross-origin isolation (COOP/COEP, so onnxruntime-web may use wasm threads),
// launches one headless Chromium, runs every runtime in a fresh browser context of that one
// session, and writes one JSON document. bench/run.py writes the spec and calls it:
//
//   node bench/browser/driver.mjs SPEC.json OUT.json [--runtimes a,b,...]
//
// Each runtime's batch-1 predicted log-CPM goes to dump-<runtime>.f32 beside OUT.json.
// Exit status: 0 when the driver ran (runtime failures are in the JSON under `errors`), 3 when
// Chromium cannot be started (`error` in the JSON says why).

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('../../', import.meta.url)));

/** Only these directories of the repository are served (URL path = repository path). */
const SERVED = ['bench/browser/', 'bench/out/', 'js/', 'pkg/', 'node_modules/onnxruntime-web/dist/'];

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

const HEADERS = {
  // Cross-origin isolation: SharedArrayBuffer, hence onnxruntime-web's wasm threads.
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  // Nothing from another origin (no CDN); onnxruntime-web starts its threads from its own script.
  'Content-Security-Policy': "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; img-src data:; base-uri 'none'",
  'Cache-Control': 'no-store',
};

const RUNTIMES = ['refcast-webgpu', 'refcast-wasm', 'refcast-wasm-int', 'ort-web-wasm', 'ort-web-wasm-1t', 'ort-web-webgpu'];

/** Static server over SERVED; `onRequest(path, bytes)` sees every file sent. */
function serve(onRequest) {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^\/+/, '');
    const file = join(root, path);
    const ok = SERVED.some((p) => path.startsWith(p)) && file.startsWith(root + sep);
    const info = ok ? await stat(file).catch(() => null) : null;
    if (!info?.isFile()) {
      res.writeHead(404, HEADERS).end('not found\n');
      return;
    }
    res.writeHead(200, { ...HEADERS, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': info.size });
    onRequest(path, info.size);
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() })));
}

function withTimeout(promise, seconds, what) {
  let timer;
  const limit = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what}: no result after ${seconds} s`)), seconds * 1e3);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function main(argv) {
  const [specPath, outPath] = argv;
  const only = argv.includes('--runtimes') ? argv[argv.indexOf('--runtimes') + 1].split(',') : RUNTIMES;
  const spec = JSON.parse(await readFile(specPath, 'utf8'));
  const out = { chromium: null, results: {}, errors: {}, fetched: {} };
  const log = (m) => process.stderr.write(`browser: ${m}\n`);
  const fail = async (error) => {
    out.error = error;
    await writeFile(outPath, JSON.stringify(out, null, 1));
    log(error);
    process.exit(3);
  };

  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    return fail(`playwright-core is not installed (npm ci): ${e.message}`);
  }
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  let current = null;
  const server = await serve((path, bytes) => {
    if (current) (out.fetched[current] ??= []).push({ path, bytes });
  });
  let browser;
  try {
    browser = await chromium.launch({
      executablePath,
      headless: true,
      // --enable-unsafe-webgpu exposes WebGPU on the software adapter (SwiftShader) headless.
      args: ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
  } catch (e) {
    server.close();
    return fail(`cannot start Chromium (${executablePath}): ${e.message.split('\n')[0]}`);
  }
  out.chromium = browser.version();
  log(`Chromium ${out.chromium}, ${server.url}`);

  for (const runtime of only.filter((r) => !(spec.skip_runtimes ?? []).includes(r))) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (m) => log(m.text()));
    page.on('pageerror', (e) => log(`page error: ${e}`));
    try {
      await page.goto(`${server.url}bench/browser/index.html`);
      await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 30_000 });
      if (!out.environment) {
        out.environment = await page.evaluate(() => window.refcastBench.environment());
        out.adapter = await page.evaluate(() => window.refcastBench.adapterInfo());
        log(`environment ${JSON.stringify(out.environment)}; adapter ${JSON.stringify(out.adapter)}`);
      }
      current = runtime;
      const r = await withTimeout(page.evaluate(([rt, s]) => window.refcastBench.run(rt, s), [runtime, spec]), spec.runtime_timeout_s, runtime);
      if (r.first_row) {
        await writeFile(join(dirname(outPath), `dump-${runtime}.f32`), Buffer.from(new Float32Array(r.first_row).buffer));
      }
      delete r.first_row;
      out.results[runtime] = r;
    } catch (e) {
      out.errors[runtime] = e.message.split('\n').slice(0, 3).join(' ');
      log(`${runtime} failed: ${out.errors[runtime]}`);
    } finally {
      current = null;
      await context.close().catch(() => {});
    }
  }
  await browser.close();
  server.close();
  await writeFile(outPath, JSON.stringify(out, null, 1));
}

await main(process.argv.slice(2));
