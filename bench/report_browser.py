"""The report's browser parts: the Browser section, the browser targets, and the browser rows of
the table printed at the end."""
from pathlib import Path

from bench.peers.browser import BROWSER_LABEL, BROWSER_ORDER
from bench.spec import WORKLOAD_TEXT
from bench.stats import find, fmt_ms, per_row, stats, timing_cells


def browser_cold(r):
    return sum(v for k, v in r["cold"].items() if k.endswith("_s") and k != "with_fetch_s")


def adapter_text(b):
    a = b.get("adapter")
    if not a:
        return "no WebGPU adapter"
    name = " ".join(x for x in (a["vendor"], a["architecture"], a["device"], a["description"]) if x)
    return f"{name}{' (fallback adapter)' if a.get('isFallbackAdapter') else ''}"


def browser_targets(ctx):
    """The browser targets, measured against their peers in the same Chromium session."""
    b = ctx.get("browser")
    if not b:
        return ["Browser targets (WebGPU ≥ 2× onnxruntime-web WebGPU, wasm CPU ≥ 1.5× its wasm provider at batch 1, "
                "cold start ≤ 300 ms): not measured in this run — see Notes."]
    res = b["results"]

    def versus(ours, theirs, goal):
        ratios = {w: per_row(res, theirs, w) / per_row(res, ours, w) for w in b["workloads"]
                  if find(res, ours, w) and find(res, theirs, w)}
        if not ratios:
            return f"not measured ({BROWSER_LABEL[ours]} or {BROWSER_LABEL[theirs]} missing)"
        one = ratios.get("batch1")
        head = (f"**{one:.2f}× at batch 1 — {'met' if one >= goal else 'not met'}**" if one is not None
                else "batch 1 not measured")
        return head + "; per workload (throughput at the median): " + ", ".join(f"{w} {r:.2f}×" for w, r in ratios.items())

    t = [f"refcast WebGPU ≥ 2× onnxruntime-web WebGPU: {versus('refcast-webgpu', 'ort-web-webgpu', 2.0)}. Both on "
         f"{adapter_text(b)}, a software adapter on the CPU: the ratio compares the two runtimes' kernels on the same "
         "device, not GPU speed.",
         f"refcast wasm CPU ≥ 1.5× onnxruntime-web wasm: {versus('refcast-wasm', 'ort-web-wasm', 1.5)} (refcast "
         f"1 thread, onnxruntime-web {res.get('ort-web-wasm', {}).get('threads', '?')}); against onnxruntime-web with "
         f"1 thread: {versus('refcast-wasm', 'ort-web-wasm-1t', 1.5)}.",
         f"refcast wasm CPU, integer kernels ≥ 1.5× onnxruntime-web wasm: {versus('refcast-wasm-int', 'ort-web-wasm', 1.5)}; "
         f"against onnxruntime-web with 1 thread: {versus('refcast-wasm-int', 'ort-web-wasm-1t', 1.5)}."]
    cold = [f"{BROWSER_LABEL[rt]} {fmt_ms(browser_cold(res[rt]))} ms ({'met' if browser_cold(res[rt]) <= 0.3 else 'not met'})"
            for rt in ("refcast-wasm", "refcast-webgpu") if rt in res]
    t.append("Cold start ≤ 300 ms in the browser (model bytes in memory → first batch-1 result, wasm instantiation "
             "included): " + ("; ".join(cold) if cold else "not measured") + ".")
    return t


def browser_report(ctx, add):
    b = ctx["browser"]
    res = b["results"]
    env = b.get("environment") or {}
    add("## Browser\n")
    add(f"One headless Chromium session (`bench/browser/driver.mjs`, {b['wall_s'] / 60:.1f} min), each runtime in a "
        "fresh browser context on a page served from 127.0.0.1 with cross-origin isolation (COOP/COEP), on the same "
        f"inputs as above (`{b.get('dir', 'bench/out/browser')}/`). refcast through its npm API (`js/index.js`: `Refcast.load`, "
        "`predict`, `screen`) on the Q8_0 file; onnxruntime-web on the f32 ONNX export, loaded from node_modules "
        "by the same server (`ort.wasm.min.mjs` / `ort.webgpu.min.mjs`).\n")
    add(f"- Chromium {b['chromium']}; crossOriginIsolated: {str(env.get('crossOriginIsolated')).lower()}; "
        f"navigator.hardwareConcurrency: {env.get('hardwareConcurrency')}")
    a = b.get("adapter")
    add(f"- WebGPU adapter: {adapter_text(b)}" + (f"; {len(a['features'])} features"
                                                  f"{', shader-f16' if 'shader-f16' in a['features'] else ', no shader-f16'}"
                                                  if a else ""))
    add("- wasm threads: " + "; ".join(f"{BROWSER_LABEL[rt]} {res[rt]['threads'] or 1}" for rt in BROWSER_ORDER if rt in res)
        + " (refcast's wasm build is single-threaded; on WebGPU, the threads of the wasm side)")
    add("")
    add("Batch 1 predicted log-CPM, max |difference| to refcast CPU (native): "
        + "; ".join(f"{BROWSER_LABEL[rt]} {v:.2e}" for rt, v in b["verify"].items()) + ".\n")
    add("| runtime | model file | file size | wasm (raw / gzip) | cold start (bytes → first result) | of which |")
    add("|---|---|---|---|---|---|")
    for rt in BROWSER_ORDER:
        r = res.get(rt)
        if not r:
            continue
        path, size = b["files"]["refcast" if rt.startswith("refcast") else "onnxruntime-web"]
        wasm = [(p, w) for p, w in b["wasm"].items() if rt in w["runtimes"]]
        wtext = ", ".join(f"`{Path(p).name}` {w['bytes'] / 1e6:.2f} / {w['gzip'] / 1e6:.2f} MB" for p, w in wasm)
        parts = ", ".join(f"{k[:-2]} {v * 1e3:.0f} ms" for k, v in r["cold"].items() if k.endswith("_s") and k != "with_fetch_s")
        add(f"| {BROWSER_LABEL[rt]} | `{path}` | {size / 1e6:.1f} MB | {wtext} | {fmt_ms(browser_cold(r))} ms | {parts} |")
    add("")
    add("Cold start: model bytes already in memory → wasm module compiled and instantiated (refcast `init`; "
        "onnxruntime-web inside `InferenceSession.create`) → model parsed and uploaded (`Refcast.load` / "
        "`InferenceSession.create`) → first batch-1 result (WebGPU: pipeline builds happen here).\n")
    for w in b["workloads"]:
        add(f"### Browser: {WORKLOAD_TEXT.get(w, w)}\n")
        add("| runtime | median ms | p10–p90 ms | runs | predictions/s | vs ORT-web wasm | vs ORT-web WebGPU |")
        add("|---|---|---|---|---|---|---|")
        for rt in BROWSER_ORDER:
            x = find(res, rt, w)
            if not x:
                continue
            ratios = [f"{per_row(res, p, w) / per_row(res, rt, w):.2f}×" if find(res, p, w) else "–"
                      for p in ("ort-web-wasm", "ort-web-webgpu")]
            add(f"| {BROWSER_LABEL[rt]} | {timing_cells(x)} | {ratios[0]} | {ratios[1]} |")
        skipped = [BROWSER_LABEL[rt] for rt in BROWSER_ORDER if rt in res and not find(res, rt, w)]
        if skipped:
            add(f"\nNot run: {', '.join(skipped)} (see Notes).")
        add("")
    parse = {rt: res[rt]["extra"]["sample_parse_s"] for rt in ("refcast-wasm", "refcast-webgpu")
             if rt in res and "sample_parse_s" in res[rt].get("extra", {})}
    if parse:
        add("refcast takes the sample as a table (TSV text), as a page gets it from a user's file; the ONNX peers take "
            "the log-CPM array. A model keeps the last sample it read, so the timed calls above (one table, as a page "
            "predicting one sample under one perturbation after another) read it once; reading a new sample costs "
            + ", ".join(f"{BROWSER_LABEL[rt]} {v * 1e3:.1f} ms" for rt, v in parse.items())
            + " (`inspectSample` on a table not read before, median of 5).\n")


def browser_rows(b):
    """The browser rows of the table printed at the end of a run."""
    rows = [f"{'browser':14} {'runtime':32} {'median ms':>10} {'pred/s':>10} cold ms  runs"]
    for w in b["workloads"]:
        for rt in BROWSER_ORDER:
            x = find(b["results"], rt, w)
            if x:
                s = stats(x["times_s"])
                rows.append(f"{w:14} {BROWSER_LABEL[rt]:32} {s['median'] * 1e3:10.3f} {x['rows'] / s['median']:10.4g} "
                            f"{browser_cold(b['results'][rt]) * 1e3:7.0f} {s['n']}")
    return rows
