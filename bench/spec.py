"""The benchmark's inputs and workloads, written as the spec every native peer reads
(bench/out/spec.json: model, references, library size, workloads, run counts)."""
import json
from pathlib import Path

import numpy as np

from bench.context import EXAMPLE, OUT, run_json
from bench.peer import model_doc

WORKLOAD_TEXT = {
    "batch1": "1 reference × 1 perturbation (batch 1), mean",
    "samples10": "1 reference × 1 perturbation, 10 samples",
    "samples2": "1 reference × 1 perturbation, 2 samples",
    "refs4": "4 references × 1 perturbation",
    "refs16": "16 references × 1 perturbation",
    "refs64": "64 references × 1 perturbation",
    "refs256": "256 references × 1 perturbation (batch 256)",
    "screen_known": "screen: 1 reference × every known perturbation",
    "screen_1024": "screen: 1 reference × 1,024 perturbation rows",
}

# GPU caps per workload size class: (min runs, floor) — lavapipe runs ~0.2–0.9 GFLOP/s.
GPU_CAPS = {0: (30, 5), 1: (30, 3), 2: (10, 3), 3: (3, 2)}


def make_inputs(exe, model, rows, path, shipped):
    """Row 0: the bundled example as refcast reads it (a shipped model), or seeded values (a
    synthetic model: the example's genes are not in its vocabulary); rows 1..: the same with
    seeded jitter. Returns the library size."""
    genes = model_doc(model)["architecture"]["genes"]
    if shipped:
        ref0 = OUT / "example.f32"
        info, err = run_json([exe, "reference", "--model", model, "--tsv", EXAMPLE, "--out", ref0], 120)
        if info is None:
            raise SystemExit(f"refcast_bench reference failed:\n{err}")
        x0 = np.fromfile(ref0, dtype="<f4")
    else:
        info = {"library_size": 1e6}
        x0 = np.abs(np.random.default_rng(0).normal(2.0, 1.5, genes)).astype(np.float32)
    rng = np.random.default_rng(20251125)
    x = np.repeat(x0[None], rows, 0)
    x[1:] = np.maximum(x[1:] + rng.normal(0, 0.2, (rows - 1, genes)), 0)
    x.astype("<f4").tofile(path)
    return info["library_size"]


def perturbation_rows(doc, n):
    """n perturbation rows: the categorical values (all but 'unknown') × times across the range."""
    spec = doc["priors"]["perturbation"]
    cat = spec["categorical"][0]
    values = [v for v in cat["values"] if v != "unknown"]
    num = spec["numeric"][0] if spec["numeric"] else None
    per = -(-n // len(values))
    rows = []
    for i in range(n):
        md = {cat["name"]: values[i % len(values)]}
        if num:
            md[num["name"]] = round(num["min"] + (num["max"] - num["min"]) * (i // len(values)) / max(per - 1, 1), 3)
        rows.append(md)
    return rows


def one_perturbation(doc):
    known = doc["perturbations"]
    pick = next((p for p in known if p["metadata"].get("perturbation") == "IFN-beta"), known[min(1, len(known) - 1)])
    return pick["metadata"]


def workloads(doc, smoke, gpu_caps):
    one = [one_perturbation(doc)]
    known = [p["metadata"] for p in doc["perturbations"]]
    caps = lambda big: {"gpu": gpu_caps[big]} if gpu_caps else {}  # noqa: E731
    # On a software adapter (lavapipe, a few GFLOP/s on these cores) the large batches take seconds
    # per call: the GPU backend runs them with capped run counts.
    if smoke:
        return [
            {"name": "batch1", "api": "predict", "references": 1, "perturbations": one},
            {"name": "refs4", "api": "predict", "references": 4, "perturbations": one, "skip": ["gpu"]},
            {"name": "screen_known", "api": "screen", "references": 1, "perturbations": known, "skip": ["gpu"]},
            {"name": "samples2", "api": "predict", "references": 1, "perturbations": one, "samples": 2, "seed": 42},
        ]
    return [
        {"name": "batch1", "api": "predict", "references": 1, "perturbations": one},
        {"name": "samples10", "api": "predict", "references": 1, "perturbations": one, "samples": 10, "seed": 42,
         "runs": caps(1)},
        {"name": "refs4", "api": "predict", "references": 4, "perturbations": one, "runs": caps(0)},
        {"name": "refs16", "api": "predict", "references": 16, "perturbations": one, "runs": caps(1)},
        {"name": "refs64", "api": "predict", "references": 64, "perturbations": one, "runs": caps(2)},
        {"name": "refs256", "api": "predict", "references": 256, "perturbations": one, "runs": caps(3)},
        {"name": "screen_known", "api": "screen", "references": 1, "perturbations": known, "runs": caps(1)},
        {"name": "screen_1024", "api": "screen", "references": 1, "perturbations": perturbation_rows(doc, 1024),
         "runs": caps(3)},
    ]


def write_spec(path, model, refs_path, library_size, wl, min_runs, floor, warmup, budget):
    json.dump({"model": str(model), "references": str(refs_path), "library_size": library_size, "workloads": wl,
               "min_runs": min_runs, "floor_runs": floor, "warmup": warmup, "budget_s": budget}, open(path, "w"))


def prepare(run):
    """The references, workloads and spec of the shipped model (run.model) for every peer."""
    run.doc = model_doc(run.model)
    run.refs_path = run.out_dir / "refs.f32"
    rows = max(w["references"] for w in workloads(run.doc, run.smoke, None))
    run.library_size = make_inputs(run.exe, run.model, rows, run.refs_path, shipped=True)
    run.workloads = workloads(run.doc, run.smoke, GPU_CAPS)
    run.ctx["workloads"] = run.workloads
    run.spec_path = run.out_dir / "spec.json"
    if run.smoke:
        write_spec(run.spec_path, run.model, run.refs_path, run.library_size, run.workloads, 2, 1, 1, 5.0)
    else:
        write_spec(run.spec_path, run.model, run.refs_path, run.library_size, run.workloads, 30, 10, 3, 45.0)


def reference_spec(out_dir):
    """The spec of the last run in out_dir (its references and library size)."""
    spec = json.load(open(out_dir / "spec.json"))
    return Path(spec["references"]), spec["library_size"]
