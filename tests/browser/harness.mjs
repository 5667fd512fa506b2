// Shared set-up of the real-browser tests: the page's own server, Debian's Chromium driven by
// playwright-core with the flags that expose WebGPU on the software adapter (SwiftShader), a log
// of every request the page makes, and screenshots under target/browser-artifacts/.

import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const artifacts = join(root, 'target', 'browser-artifacts');
export const CI = process.env.CI === 'true' || process.env.CI === '1';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Starts the server and the browser. Call `close()` when done. */
export async function start() {
  await mkdir(artifacts, { recursive: true });
  const server = await serve({ port: 0 });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--enable-unsafe-webgpu',
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      // playwright-core gives every launch a fresh, temporary profile (--user-data-dir).
    ],
  });
  return {
    url: server.url,
    origin: new URL(server.url).origin,
    browser,
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

/**
 * A fresh page (own context, so no cache is shared) that records every request, console message
 * and page error. `gpu: false` removes `navigator.gpu` before any script runs (a browser without
 * WebGPU).
 */
export async function openPage(env, { gpu = true } = {}) {
  const context = await env.browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  if (!gpu) {
    await context.addInitScript(() => {
      delete Object.getPrototypeOf(navigator).gpu;
    });
  }
  const page = await context.newPage();
  const log = { requests: [], console: [], errors: [], sockets: [] };
  const record = (r) =>
    log.requests.push({
      url: r.url(),
      method: r.method(),
      type: r.resourceType(),
      body: r.postDataBuffer(),
      headers: r.headers(),
      at: Date.now(),
    });
  context.on('request', record);
  page.on('websocket', (ws) => log.sockets.push(ws.url()));
  page.on('console', (m) => log.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.errors.push(String(e)));
  return { page, context, log };
}

/** Whether this Chromium gives a WebGPU adapter; under CI=true its absence fails the caller. */
export async function webgpuAdapter(page) {
  return page.evaluate(async () => {
    if (!navigator.gpu) return null;
    const a = await navigator.gpu.requestAdapter();
    if (!a) return null;
    const info = a.info ?? {};
    return `${info.vendor ?? ''} ${info.architecture ?? ''} ${info.device ?? ''} ${info.description ?? ''}`.trim() || 'adapter';
  });
}

/** The WebGPU adapter; without one, `t` is skipped (null), or fails under CI=true. */
export async function requireWebgpu(page, t) {
  const adapter = await webgpuAdapter(page);
  if (!adapter) {
    if (CI) assert.fail('no WebGPU adapter in Chromium (CI=true: this must not be skipped)');
    t.skip('no WebGPU adapter in this Chromium');
  }
  return adapter;
}

/**
 * For `page.$$eval(selector, ink)`: each canvas's size, pixels drawn and colours among them (a
 * blank canvas has no inked pixel; a flat one a single colour). Self-contained: it runs in the page.
 */
export function ink(canvases) {
  return canvases.map((c) => {
    const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
    const colours = new Set();
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      inked += 1;
      colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    return { width: c.width, height: c.height, inked, colours: colours.size };
  });
}

/** Drops `files` (`[{ name, bytes }]`) on the page's drop zone together, as a person dragging them there. */
export async function dropFiles(page, files) {
  const dataTransfer = await page.evaluateHandle((list) => {
    const dt = new DataTransfer();
    for (const { name, data } of list) dt.items.add(new File([new Uint8Array(data)], name));
    return dt;
  }, files.map(({ name, bytes }) => ({ name, data: [...bytes] })));
  await page.dispatchEvent('#drop', 'drop', { dataTransfer });
}

export async function waitReady(page, backend) {
  await page.waitForFunction(() => document.body.dataset.backend, null, { timeout: 120_000 });
  const got = await page.evaluate(() => document.body.dataset.backend);
  if (backend && got !== backend) throw new Error(`the page runs on ${got}, expected ${backend}`);
  return got;
}

export function shot(page, name) {
  return page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/**
 * A model file's `refcast` metadata (genes, perturbations, contexts, familiarity, …), read from its
 * safetensors header: what the page shows comes from the same file, whichever model it is.
 */
export async function modelDoc(path) {
  const bytes = await readFile(join(root, path));
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
  return JSON.parse(header.__metadata__.refcast);
}

/** The model's first perturbation whose name starts with `start`; fails clearly when there is none. */
export function perturbationNamed(doc, start) {
  const found = doc.perturbations.find((p) => p.name.startsWith(start));
  if (!found) {
    const some = doc.perturbations.slice(0, 8).map((p) => `'${p.name}'`).join(', ');
    throw new Error(`the model has no perturbation whose name starts with '${start}' (${doc.perturbations.length} known: ${some}, …)`);
  }
  return found;
}

/** Parses a prediction TSV (refcast CLI / page download) into columns by header name. */
export function parseTsv(text) {
  const lines = text.trim().split('\n');
  const head = lines[0].split('\t');
  const cols = Object.fromEntries(head.map((h) => [h, []]));
  for (const l of lines.slice(1)) {
    const f = l.split('\t');
    head.forEach((h, i) => cols[h].push(f[i]));
  }
  return cols;
}
