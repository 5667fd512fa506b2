"""The browser part (bench/browser/): refcast on WebGPU and on its wasm CPU backend through the
npm API, onnxruntime-web's wasm and WebGPU providers on the ONNX export, in one headless Chromium
session (bench/browser/driver.mjs), on the native peers' inputs."""
import json
import os
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np

from bench.context import REPO, log
from bench.peer import workload_inputs
from bench.peers import max_difference

BROWSER_ORDER = ["refcast-webgpu", "refcast-wasm", "refcast-wasm-int", "ort-web-wasm", "ort-web-wasm-1t", "ort-web-webgpu"]
BROWSER_LABEL = {
    "refcast-webgpu": "refcast WebGPU",
    "refcast-wasm": "refcast wasm CPU",
    "refcast-wasm-int": "refcast wasm CPU, integer kernels",
    "ort-web-wasm": "onnxruntime-web wasm",
    "ort-web-wasm-1t": "onnxruntime-web wasm, 1 thread",
    "ort-web-webgpu": "onnxruntime-web WebGPU",
}
BROWSER_WORKLOADS = {False: ["batch1", "samples10", "refs64", "screen_known", "screen_1024"],
                     True: ["batch1", "samples2", "refs4", "screen_known"]}


def browser_spec(run, onnx):
    """Writes the browser spec and the peers' inputs (prior input, ε) under out_dir/browser/;
    the page reads them, and the references, from the local server (repository paths)."""
    smoke, doc = run.smoke, run.doc
    bdir = run.out_dir / "browser"
    bdir.mkdir(parents=True, exist_ok=True)
    rel = lambda p: str(Path(p).resolve().relative_to(REPO))  # noqa: E731
    # Run caps (min runs, floor) where a call takes seconds: on the software adapter (SwiftShader
    # runs both runtimes' WebGPU kernels on these 2 CPU cores; onnxruntime-web ≈ 1 s for batch 1,
    # ≈ 20 s for the 1,024-row screen).
    caps = {"samples10": {"refcast-webgpu": [10, 3], "ort-web-webgpu": [10, 3]},
            "refs64": {"refcast-webgpu": [10, 3], "ort-web-webgpu": [10, 3]},
            "screen_known": {"refcast-webgpu": [10, 3], "ort-web-webgpu": [10, 3]},
            "screen_1024": {"refcast-webgpu": [3, 1], "ort-web-webgpu": [2, 1], "refcast-wasm": [10, 5], "refcast-wasm-int": [10, 5],
                            "ort-web-wasm": [10, 5], "ort-web-wasm-1t": [10, 5]}}
    out = []
    for w in run.workloads:
        if w["name"] not in BROWSER_WORKLOADS[smoke]:
            continue
        pert, eps_tb, eps_p = workload_inputs(doc, w)
        path = bdir / f"inputs-{w['name']}.f32"
        np.concatenate([pert.ravel(), eps_tb.ravel(), eps_p.ravel()]).astype("<f4").tofile(path)
        runs = {} if smoke else caps.get(w["name"], {})
        out.append({k: w[k] for k in ("name", "api", "references", "perturbations", "samples", "seed") if k in w}
                   | {"runs": runs, "warmup": {rt: int(n > 1) for rt, (n, _) in runs.items()},
                      "skip": ["refcast-webgpu"] if smoke and w["name"] == "refs4" else [],
                      "inputs": {"path": rel(path), "pert": list(pert.shape), "eps_tb": list(eps_tb.shape),
                                 "eps_p": list(eps_p.shape)}})
    spec = {"model": rel(run.model), "onnx": rel(onnx) if onnx else None, "references": rel(run.refs_path),
            "genes": doc["architecture"]["genes"], "library_size": run.library_size, "workloads": out,
            "min_runs": 2 if smoke else 30, "floor_runs": 1 if smoke else 10, "warmup": 0 if smoke else 3,
            "budget_s": 0.5 if smoke else 20.0, "runtime_timeout_s": 300 if smoke else 900,
            "skip_runtimes": ([rt for rt in BROWSER_ORDER if rt.startswith("ort")] if not onnx else
                              ["ort-web-wasm-1t"] if smoke else [])}
    path = bdir / "spec.json"
    json.dump(spec, open(path, "w"), indent=1)
    return path


def gzip_size(path):
    return len(zlib.compress(Path(path).read_bytes(), 9))


def run_browser(run, onnx):
    """Writes the browser spec, builds pkg/ if needed, runs bench/browser/driver.mjs on it (one
    headless Chromium), checks each runtime's batch-1 log-CPM against refcast CPU, and stores
    everything in run.ctx["browser"]. Without Chromium, Node or the npm packages it fails under
    CI=true and is skipped (with a note) elsewhere; in smoke mode a failed refcast runtime fails
    the run."""
    spec_path = browser_spec(run, onnx)
    smoke = run.smoke

    def unavailable(why):
        if run.ci:
            raise SystemExit(f"browser benchmark: {why} (CI=true: Chromium with WebGPU is required)")
        log(f"browser benchmark skipped: {why}")
        run.note(f"Browser part not run: {why}.")

    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return unavailable("no Chromium (apt-get install chromium, or set CHROMIUM)")
    if not shutil.which("node") or not (REPO / "node_modules" / "playwright-core").exists():
        return unavailable("no Node or no node_modules (npm ci)")
    p = subprocess.run(["bash", "scripts/build-wasm.sh", "--if-needed"], cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        return unavailable("the wasm build failed: " + (p.stderr or p.stdout).strip()[-300:])
    bdir = spec_path.parent
    out_path = bdir / "browser.json"
    out_path.unlink(missing_ok=True)
    log("$ node bench/browser/driver.mjs", spec_path.relative_to(REPO), out_path.relative_to(REPO))
    t = time.perf_counter()
    try:
        rc = subprocess.run(["node", "bench/browser/driver.mjs", str(spec_path), str(out_path)], cwd=REPO,
                            env={**os.environ, "CHROMIUM": chromium}, timeout=900 if smoke else 3600).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    if not out_path.exists():
        return unavailable(f"the browser driver ended ({rc}) without results")
    b = json.load(open(out_path))
    if b.get("error"):
        return unavailable(b["error"])
    b["wall_s"] = time.perf_counter() - t
    b["dir"] = str(bdir.relative_to(REPO))
    spec = json.load(open(spec_path))
    b["workloads"] = [w["name"] for w in spec["workloads"]]
    b["verify"] = {}
    base = np.fromfile(run.out_dir / "dump-refcast-cpu.f32", dtype="<f4")
    for rt in b["results"]:
        dump = bdir / f"dump-{rt}.f32"
        if dump.exists():
            b["verify"][rt] = max_difference(dump, base)
    # Sizes: model files, and the wasm each runtime fetched (raw, gzip -9).
    b["files"] = {"refcast": [spec["model"], (REPO / spec["model"]).stat().st_size]}
    if spec.get("onnx"):
        b["files"]["onnxruntime-web"] = [spec["onnx"], (REPO / spec["onnx"]).stat().st_size]
    b["wasm"] = {}
    for rt, files in b.pop("fetched", {}).items():
        for f in files:
            if f["path"].endswith(".wasm") and f["path"] not in b["wasm"]:
                b["wasm"][f["path"]] = {"bytes": f["bytes"], "gzip": gzip_size(REPO / f["path"]), "runtimes": []}
            if f["path"].endswith(".wasm") and rt not in b["wasm"][f["path"]]["runtimes"]:
                b["wasm"][f["path"]]["runtimes"].append(rt)
    run.ctx["browser"] = b
    for rt, err in b["errors"].items():
        run.note(f"Browser: {BROWSER_LABEL.get(rt, rt)} failed: {err[:300]}")
    if smoke:
        check_smoke(run, b)


def check_smoke(run, b):
    """Smoke mode: the refcast runtimes ran and agree with refcast CPU."""
    # The integer kernels: within their error budget (CpuKernels::INTEGER_ERROR_BOUND).
    for rt, worst in [("refcast-wasm", 1e-4), ("refcast-wasm-int", 0.02), ("refcast-webgpu", 1e-3)]:
        if rt not in b["results"]:
            if rt == "refcast-webgpu" and not b.get("adapter") and not run.ci:
                run.note("Browser: no WebGPU adapter in this Chromium; refcast WebGPU not run.")
                continue
            raise SystemExit(f"browser smoke: {rt} did not run: {b['errors'].get(rt, 'no WebGPU adapter')}")
        if b["verify"].get(rt, 1.0) > worst:
            raise SystemExit(f"browser smoke: {rt} batch-1 log-CPM differs from refcast CPU by {b['verify'].get(rt)}")
