"""refcast against the runtimes a user would pick instead, side by side, in one run.

    python bench/run.py                 # full run (≈ 15–25 min on 2 cores), writes BENCHMARKS.md
    python bench/run.py --smoke         # seconds: tiny counts, writes bench/out/smoke/BENCHMARKS.md
    python bench/run.py --no-gpu --no-scaling --no-torch   # leave parts out (also --no-browser)
    python bench/run.py --browser-only  # the browser part again on the last run's inputs, merged into its results

Peers, each in its own process on the same inputs (bench/out/spec.json): refcast's GPU and CPU
backends (the CPU with its f32 kernels and with its integer kernels) through `Session::predict` / `Session::screen` (bench/refcast_bench.rs), PyTorch eager
on CPU (the training code's network, bench/graph.py), ONNX Runtime CPU on the ONNX export of the
same model (f32, and its dynamic int8 quantization). Weights: the shipped Q8_0 file, dequantized
to f32 for the peers, so every runtime computes the same function. The browser part
(bench/browser/, one headless Chromium): refcast on WebGPU and on its wasm CPU backend through the
npm API, onnxruntime-web's wasm and WebGPU providers on the same ONNX export; under CI=true a
missing Chromium or WebGPU adapter fails the run. The table is printed last.
"""
import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The repository root on the path in place of bench/, whose modules (spec, stats, …) must not
# shadow installed modules of the same names.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p).resolve() != REPO / "bench"]

from bench.context import MODEL, MODEL_Q4, OUT, Run, log  # noqa: E402
from bench.machine import ceilings, machine, versions  # noqa: E402
from bench.peer import model_doc  # noqa: E402
from bench.peers import browser, python, refcast, verify  # noqa: E402
from bench.report import native_targets, plot, report, short_table  # noqa: E402
from bench.results import finish_notes, load_results, save_results  # noqa: E402
from bench.scaling import gene_scaling, kernel_timings  # noqa: E402
from bench.spec import prepare, reference_spec  # noqa: E402


def arguments():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny counts; writes bench/out/smoke/BENCHMARKS.md")
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--no-torch", action="store_true", help="leave out the PyTorch peer")
    ap.add_argument("--no-ort", action="store_true", help="leave out the ONNX Runtime peers")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-kernels", action="store_true")
    ap.add_argument("--no-browser", action="store_true", help="leave out the browser part (bench/browser/)")
    ap.add_argument("--browser-only", action="store_true",
                    help="run only the browser part on the inputs of the last run, merge it into its results.json "
                         "and rewrite the report")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from bench/out/results.json")
    ap.add_argument("--release", action="store_true", help="smoke mode with the release build (default: dev build)")
    ap.add_argument("--out", default=None, help="report path (default BENCHMARKS.md; smoke: bench/out/smoke/)")
    return ap.parse_args()


def report_path(args, out_dir):
    return Path(args.out) if args.out else (out_dir / "BENCHMARKS.md" if args.smoke else REPO / "BENCHMARKS.md")


# bench/graph.py's version: a cached export of an older graph is not reused (2: the control row
# and the denoised prediction).
GRAPH_VERSION = "g2"


def export_dir(digest):
    """Where the ONNX export and PyTorch weights of a model file are cached (by content hash)."""
    return OUT / "models" / f"q8_0-{digest[:12]}-{GRAPH_VERSION}"


def snapshot_models(run):
    """A snapshot of the shipped files: every runtime reads the same bytes even if models/ changes
    during the run; the ONNX / PyTorch exports are cached per content hash."""
    snap = OUT / "snapshot"
    snap.mkdir(parents=True, exist_ok=True)
    for src in (MODEL, MODEL_Q4):
        dst = snap / src.name
        shutil.copyfile(src, dst)
        run.originals[dst.name] = str(src.relative_to(REPO))
    run.model, run.model_q4 = snap / MODEL.name, snap / MODEL_Q4.name
    digest = hashlib.sha256(run.model.read_bytes()).hexdigest()
    run.ctx["model_sha256"] = digest
    run.model_dir = export_dir(digest)


def onnx_export(run):
    """The f32 ONNX export of the run's model, or None where it was not made."""
    onnx = run.model_dir / "model.onnx"
    return onnx if onnx.exists() else None


def write_outputs(ctx, out_dir, path):
    save_results(ctx, out_dir)
    path.write_text(report(ctx))
    log(f"wrote {path}")
    print(short_table(ctx))


def report_only(args):
    ctx = load_results(OUT)
    plot(REPO / "bench" / "scaling.png", ctx["results"], ctx["scaling"])
    (Path(args.out) if args.out else REPO / "BENCHMARKS.md").write_text(report(ctx))
    print(short_table(ctx))


def browser_only(args):
    """The browser part alone, on the model, inputs and ONNX export of the last full (or smoke)
    run; its results replace the browser part of that run's results.json."""
    out_dir = OUT / "smoke" if args.smoke else OUT
    ctx = load_results(out_dir)
    ctx["run_notes"] = [n for n in ctx["run_notes"] if not n.startswith("Browser")]
    ctx["notes"] = list(ctx["run_notes"])
    ctx.pop("browser", None)
    run = Run(smoke=args.smoke, out_dir=out_dir, ctx=ctx, model=OUT / "snapshot" / MODEL.name,
              workloads=ctx["workloads"], model_dir=export_dir(ctx["model_sha256"]))
    run.doc = model_doc(run.model)
    run.refs_path, run.library_size = reference_spec(out_dir)
    browser.run_browser(run, onnx_export(run))
    finish_notes(ctx)
    write_outputs(ctx, out_dir, report_path(args, out_dir))


def check_smoke(ctx):
    """Smoke mode: refcast CPU (and the browser's refcast wasm, where it ran) measured every workload."""
    res = ctx["results"]
    assert "refcast-cpu" in res and all(len(x["times_s"]) >= 1 for x in res["refcast-cpu"]["workloads"])
    if "browser" in ctx:
        assert all(len(x["times_s"]) >= 1 for rt in ("refcast-wasm",) for x in ctx["browser"]["results"][rt]["workloads"])
    print(f"bench smoke: {1 + ('browser' in ctx)} passed, 0 failed" + ("" if "browser" in ctx else " (browser part not run)"))


def main():
    args = arguments()
    if args.report_only:
        return report_only(args)
    if args.browser_only:
        return browser_only(args)
    t_run = time.perf_counter()
    smoke = args.smoke
    out_dir = OUT / "smoke" if smoke else OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python3 bench/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    ctx = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_start": os.getloadavg(),
           "machine": machine(), "versions": versions(), "notes": [], "results": {}, "files": {}, "verify": {}}
    run = Run(smoke=smoke, out_dir=out_dir, ctx=ctx)
    run.exe = refcast.build_refcast(release=not smoke or args.release)
    snapshot_models(run)
    prepare(run)

    # Each peer in its own process on the same spec; the Python peers need the export first.
    want_ort, want_torch = python.export(run, args.no_ort, args.no_torch)
    refcast.run_cpu(run)
    refcast.run_cpu_integer(run)
    if not args.no_gpu:
        refcast.run_gpu(run)
    if not smoke:
        refcast.run_cpu_q4(run)
    if want_ort:
        python.run_ort(run)
    if want_torch:
        python.run_torch(run)
    verify(run)
    if not args.no_browser:
        browser.run_browser(run, onnx_export(run))

    # Kernels against measured ceilings, and scaling with genes.
    ctx["ceilings"] = ceilings(smoke)
    if not args.no_kernels:
        kernel_timings(run)
    scaling = {} if args.no_scaling else gene_scaling(run, want_ort)
    try:
        plot(out_dir / "scaling.png" if smoke else REPO / "bench" / "scaling.png", ctx["results"], scaling)
    except ImportError:
        run.note("plot skipped: matplotlib not installed")

    ctx["targets"] = native_targets(ctx["results"], ctx["verify"])
    finish_notes(ctx)
    ctx["load_end"] = os.getloadavg()
    ctx["wall_s"] = time.perf_counter() - t_run
    ctx["scaling"] = scaling
    write_outputs(ctx, out_dir, report_path(args, out_dir))
    if smoke:
        check_smoke(ctx)


if __name__ == "__main__":
    main()
