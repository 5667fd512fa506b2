// A small static server for the www/ page: serves www/ at /, and js/, pkg/, models/, examples/
// under their own names, jsfive (the npm dependency that reads HDF5 samples) under /vendor/jsfive/, on 127.0.0.1 only, with the page's Content-Security-Policy as a header.
//   node scripts/serve.mjs [--port 8080]      (npm run serve builds pkg/ first)
// Import { serve } to start it from a test (port 0 picks a free port).

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** URL prefix → directory of the repository. Anything else is looked up in www/. */
const MOUNTS = { '/js/': 'js', '/pkg/': 'pkg', '/models/': 'models', '/examples/': 'examples', '/vendor/jsfive/': 'node_modules/jsfive/dist/esm' };

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.tsv': 'text/tab-separated-values; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.safetensors': 'application/octet-stream',
};

/**
 * Same origin only: the page, its code, the model and the example. 'wasm-unsafe-eval' lets the
 * page compile WebAssembly; its own worker (www/hdf5-worker.js) reads HDF5 samples; nothing may be fetched from, or sent to, another origin.
 */
export const CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'none'",
  "object-src 'none'",
  "worker-src 'self'",
  "frame-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const HEADERS = {
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), interest-cohort=()',
};

function resolvePath(pathname) {
  let decoded;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  let dir = 'www';
  let rest = decoded;
  for (const [prefix, d] of Object.entries(MOUNTS)) {
    if (decoded.startsWith(prefix)) {
      dir = d;
      rest = decoded.slice(prefix.length);
      break;
    }
  }
  if (rest === '' || rest === '/') rest = 'index.html';
  const base = join(root, dir);
  const file = normalize(join(base, rest));
  return file.startsWith(base + sep) ? file : null;
}

/**
 * Starts the server. `log(line)` receives one line per request. Resolves to
 * `{ server, url, close() }`.
 */
export function serve({ port = 8080, host = '127.0.0.1', log = () => {} } = {}) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const send = (status, body, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { ...HEADERS, 'Content-Type': type });
      res.end(body);
      log(`${req.method} ${url.pathname} ${status}`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    const file = resolvePath(url.pathname);
    if (!file) return send(404, 'not found\n');
    let info;
    try {
      info = await stat(file);
    } catch {
      return send(404, 'not found\n');
    }
    if (!info.isFile()) return send(404, 'not found\n');
    res.writeHead(200, {
      ...HEADERS,
      'Content-Type': MIME[extname(file)] ?? 'application/octet-stream',
      'Content-Length': info.size,
      'Cache-Control': 'no-cache',
    });
    log(`${req.method} ${url.pathname} 200`);
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => {
      const { port: p } = server.address();
      ok({ server, url: `http://${host}:${p}/`, close: () => new Promise((done) => server.close(done)) });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : Number(process.env.PORT ?? 8080);
  const { url } = await serve({ port, log: (l) => console.log(l) });
  console.log(`refcast page: ${url}  (127.0.0.1 only; Ctrl-C stops)`);
}
