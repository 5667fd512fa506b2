"""The real-GPU measurements (bench/gpu/run.sh is the entry point; see its header).

Runs, each in its own process on one spec (bench/out/gpu/spec.json): refcast's GPU backend and,
as the accuracy reference, its CPU backend (bench/refcast_bench.rs); ONNX Runtime's CUDA provider
and PyTorch on CUDA (bench/peer.py) on the export of the same weights (bench/graph.py). Then the
linear kernels at one input row on the GPU (`refcast_bench kernels`), the device's copy bandwidth
(PyTorch, 256 MiB device-to-device), and the adapter's features (`refcast_bench adapter`).
`--dry-run` accepts a software adapter, runs the CPU peers in place of the CUDA ones, and makes
few runs: it checks the script, its numbers are not GPU numbers.
"""
import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p).resolve() not in (REPO / "bench", REPO / "bench" / "gpu")]

from bench.context import OUT, Run, have, log, run_json  # noqa: E402
from bench.peer import model_doc  # noqa: E402
from bench.peers import LABEL, python, refcast, verify  # noqa: E402
from bench.run import snapshot_models  # noqa: E402
from bench.spec import make_inputs, one_perturbation, perturbation_rows, write_spec  # noqa: E402
from bench.stats import find, stats  # noqa: E402

SOFTWARE = ("llvmpipe", "lavapipe", "swiftshader", "softpipe", "warp")


def arguments():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="any adapter, CPU stand-ins for the CUDA peers, few runs: checks the script")
    return ap.parse_args()


def device_bandwidth():
    """GB/s of a 256 MiB device-to-device copy (read + write) with PyTorch on CUDA, or None."""
    if not have("torch"):
        return None
    import torch
    if not torch.cuda.is_available():
        return None
    n = 64 << 20
    a, b = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(20):
        t = time.perf_counter()
        b.copy_(a)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 2 * 4 * n / sorted(times)[len(times) // 2] / 1e9


def main():
    args = arguments()
    dry = args.dry_run
    out_dir = OUT / "gpu"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = {"notes": [], "results": {}, "files": {}, "verify": {}, "dry_run": dry}
    run = Run(smoke=dry, out_dir=out_dir, ctx=ctx)
    run.exe = refcast.build_refcast(release=True)

    adapter, err = run_json([run.exe, "adapter"], 120)
    if adapter is None:
        raise SystemExit(f"no wgpu adapter:\n{err}")
    ctx["adapter"] = adapter
    software = adapter["device_type"] == "Cpu" or any(s in adapter["name"].lower() for s in SOFTWARE)
    if software and not dry:
        raise SystemExit(f"the adapter is {adapter['name']} ({adapter['device_type']}), a software one: these are "
                         "not GPU numbers. Run on a machine with a GPU, or pass --dry-run to check the script.")

    snapshot_models(run)
    run.doc = doc = model_doc(run.model)
    run.refs_path = out_dir / "refs.f32"
    run.library_size = make_inputs(run.exe, run.model, 256, run.refs_path, shipped=True)
    one = [one_perturbation(doc)]
    run.workloads = [
        {"name": "batch1", "api": "predict", "references": 1, "perturbations": one},
        {"name": "refs256", "api": "predict", "references": 256, "perturbations": one},
        {"name": "screen_1000", "api": "screen", "references": 1, "perturbations": perturbation_rows(doc, 1000)},
    ]
    run.spec_path = out_dir / "spec.json"
    if dry:
        write_spec(run.spec_path, run.model, run.refs_path, run.library_size, run.workloads, 2, 1, 1, 5.0)
    else:
        write_spec(run.spec_path, run.model, run.refs_path, run.library_size, run.workloads, 30, 10, 3, 30.0)

    for name, backend in (("refcast-gpu", "gpu"), ("refcast-cpu", "cpu")):
        err = refcast.run_backend(run, name, backend, run.spec_path, run.model)
        if err:
            raise SystemExit(f"{name} failed:\n{err}")
    want_ort, want_torch = python.export(run, False, False)
    peers = []
    if want_ort:
        peers.append(("ort-f32" if dry else "ort-cuda", "model.onnx"))
    if want_torch:
        peers.append(("torch" if dry else "torch-cuda", "model.pt"))
    for rt, file_name in peers:
        python.run_peer(run, rt, file_name)
    verify(run)

    genes = doc["architecture"]["genes"]
    r, err = run_json([run.exe, "kernels", "--backend", "gpu", "--m", "1", "--dtypes", "q4_0,q8_0,f16",
                       "--genes", genes, "--budget-ms", 50 if dry else 500], run.timeout)
    ctx["kernels"] = r["kernels"] if r else []
    if r is None:
        run.note(f"GPU kernel timings failed: {err.strip()[-300:]}")
    ctx["bandwidth_gbs"] = device_bandwidth()

    report = table(ctx)
    (out_dir / "results.json").write_text(json.dumps(ctx, indent=1, default=str))
    (out_dir / "GPU.md").write_text(report + "\n")
    print(report)
    log(f"wrote {out_dir / 'GPU.md'}")


def table(ctx):
    res, a = ctx["results"], ctx["adapter"]
    L = [f"Adapter: {a['name']} ({a['backend']}, {a['device_type']}; driver {a['driver']}); shader-f16: "
         f"{'yes' if a['shader_f16'] else 'no'}" + ("; DRY RUN: software adapter and CPU stand-ins, not GPU numbers"
                                                   if ctx["dry_run"] else ""), ""]
    L.append("| runtime | batch 1, median ms | batch 256, median ms | 1,000-perturbation screen, median ms "
             "| error: max abs Δ log-CPM vs refcast CPU f32 (batch 1) |")
    L.append("|---|---|---|---|---|")
    for rt in ("refcast-gpu", "ort-cuda", "torch-cuda", "ort-f32", "torch", "refcast-cpu"):
        if rt not in res:
            continue
        cells = []
        for w in ("batch1", "refs256", "screen_1000"):
            x = find(res, rt, w)
            cells.append(f"{stats(x['times_s'])['median'] * 1e3:.3g}" if x else "–")
        err = "0 (reference)" if rt == "refcast-cpu" else f"{ctx['verify'].get(rt, float('nan')):.1e}"
        L.append(f"| {LABEL.get(rt, rt)} ({res[rt].get('describe', '')}) | " + " | ".join(cells) + f" | {err} |")
    bw = ctx.get("bandwidth_gbs")
    L += ["", f"Device copy bandwidth (PyTorch, 256 MiB device-to-device, read + write): "
          + (f"{bw:.0f} GB/s" if bw else "not measured (no CUDA device)"), ""]
    L.append("| kernel [out × in] | weights | batch | time | GB/s | % of device bandwidth |")
    L.append("|---|---|---|---|---|---|")
    for k in ctx.get("kernels", []):
        gbs = k["bytes"] / k["seconds"] / 1e9
        share = f"{100 * gbs / bw:.0f} %" if bw else "–"
        L.append(f"| {k['layer']} [{k['n']} × {k['k']}] | {k['dtype']} | {k['m']} | {k['seconds'] * 1e3:.3g} ms "
                 f"| {gbs:.1f} | {share} |")
    L += ["", "f16 weights: refcast's F16 kernels decode two f16 per 32-bit word with unpack2x16float and "
          "compute in f32, so they run with or without shader-f16; the adapter line says whether an f16 "
          "arithmetic path could be used."]
    screen = find(res, "refcast-gpu", "screen_1000")
    if screen:
        ms = stats(screen["times_s"])["median"] * 1e3
        L.append(f"Target: 1,000-perturbation screen ≤ 5 ms: {ms:.3g} ms — {'met' if ms <= 5 else 'not met'}.")
    q4 = [k for k in ctx.get("kernels", []) if k["dtype"] == "q4_0" and k["layer"] == "decoder.head"]
    if q4 and bw:
        share = q4[0]["bytes"] / q4[0]["seconds"] / 1e9 / bw
        L.append(f"Target: Q4_0 matrix–vector ≥ 70 % of device bandwidth: {100 * share:.0f} % — "
                 f"{'met' if share >= 0.7 else 'not met'}.")
    L += [f"Note: {n}" for n in ctx["notes"]]
    return "\n".join(L)


if __name__ == "__main__":
    main()
