"""Beyond the workloads: each linear layer of the model timed alone (`refcast_bench kernels`),
and latency against gene count on synthetic models of the shipped architecture."""
import subprocess
import sys

from bench.context import OUT, REPO, run_json
from bench.peer import model_doc
from bench.spec import make_inputs, write_spec
from bench.stats import find, stats


def kernel_timings(run):
    """Per-layer timings on the CPU (and, full runs, the GPU) into run.ctx["kernels"]."""
    run.ctx["kernels"] = []
    smoke = run.smoke
    plans = [("cpu", "1" if smoke else "1,64,256", "q8_0" if smoke else "q8_0,q4_0,f32", 20 if smoke else 400),
             ("cpu-integer", "1" if smoke else "1,64,256", "q8_0" if smoke else "q8_0,q4_0", 20 if smoke else 400)]
    if "refcast-gpu" in run.ctx["results"] and not smoke:
        plans.append(("gpu", "1,64", "q8_0", 300))
    for backend, ms, dtypes, budget in plans:
        r, err = run_json([run.exe, "kernels", "--backend", backend, "--m", ms, "--dtypes", dtypes, "--budget-ms", budget],
                          run.timeout)
        if r is None:
            run.note(f"kernel timings on {backend} failed: {err.strip()[-200:]}")
            continue
        run.ctx["kernels"] += r["kernels"]


def gene_scaling(run, want_ort):
    """{(runtime, workload): [(genes, median s)]}: the shipped model's medians, then synthetic
    models (refcast_bench synthetic) of more genes, exported to ONNX like the shipped one."""
    smoke, exe, ctx = run.smoke, run.exe, run.ctx
    scaling = {}
    sizes = [1024] if smoke else [20000, 40000]
    scal_wl = [w for w in run.workloads if w["name"] in ("batch1", "refs64")]
    for rt in ("refcast-cpu", "ort-f32", "refcast-gpu"):
        if rt in ctx["results"]:
            for w in scal_wl:
                if rt == "refcast-gpu" and w["name"] != "batch1":
                    continue
                x = find(ctx["results"], rt, w["name"])
                if x:
                    scaling.setdefault((rt, w["name"]), []).append((run.doc["architecture"]["genes"], stats(x["times_s"])["median"]))
    for genes in sizes:
        sdir = OUT / "models" / f"synthetic-{genes}"
        sdir.mkdir(parents=True, exist_ok=True)
        smodel = sdir / "model.safetensors"
        if not smodel.exists():
            subprocess.run([exe, "synthetic", "--genes", str(genes), "--out", smodel], cwd=REPO, check=True)
        sdoc = model_doc(smodel)
        srefs = sdir / "refs.f32"
        lib = make_inputs(exe, smodel, 64, srefs, shipped=False)
        swl = [dict(w, perturbations=[sdoc["perturbations"][0]["metadata"]]) for w in scal_wl]
        sspec = sdir / "spec.json"
        write_spec(sspec, smodel, srefs, lib, swl, 2 if smoke else 10, 1 if smoke else 5, 1, 20.0)
        runs = [("refcast-cpu", [exe, "run", "--spec", sspec, "--backend", "cpu"])]
        if "refcast-gpu" in ctx["results"] and not smoke:
            g = dict(swl[0], runs={"gpu": (5, 3)})
            gspec = sdir / "spec-gpu.json"
            write_spec(gspec, smodel, srefs, lib, [g], 5, 3, 1, 20.0)
            runs.append(("refcast-gpu", [exe, "run", "--spec", gspec, "--backend", "gpu"]))
        if want_ort and not smoke:
            if not (sdir / "model.onnx").exists():
                subprocess.run([sys.executable, "bench/graph.py", str(smodel), str(sdir), "--no-int8"], cwd=REPO)
            if (sdir / "model.onnx").exists():
                runs.append(("ort-f32", [sys.executable, "bench/peer.py", "ort-f32", sspec, sdir]))
            else:
                run.note(f"scaling: ONNX export of the {genes}-gene model failed")
        for rt, cmd in runs:
            r, err = run_json(cmd, run.timeout)
            if r is None:
                run.note(f"scaling {rt} at {genes} genes failed: {err.strip()[-200:]}")
                continue
            for x in r["workloads"]:
                scaling.setdefault((rt, x["name"]), []).append((genes, stats(x["times_s"])["median"]))
    return scaling
