"""`python -m training smoke`: the whole train → evaluate path on tiny synthetic data, in a minute.

It checks the pipeline's code, not a model: a small unit table with the schema `prepare` writes
(four datasets shaped like the real ones, a calibration dataset, Kang's replicate halves and cell
means), small networks, a few steps per fold model, then the full evaluation — baselines, transfer,
scGen protocol, familiarity, bootstrap, the report — with the quantized files run by the Rust CLI
($REFCAST_BIN, else target/release/refcast). Everything is written under a temporary cache and a
temporary models folder; the repository is not touched.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

G = 320
TYPES = ["B", "CD14 Mono", "CD4 T", "NK"]
FLU_HOURS = [0, 5, 12, 21, 45, 60, 108]


def synthetic_units(rng):
    base = rng.normal(3.0, 1.5, G).clip(0.2, 9)
    ifn = np.zeros(G)
    ifn[:25] = rng.uniform(1, 3, 25)
    dex = np.zeros(G)
    dex[25:45] = rng.choice([-1.5, 1.5], 20)
    vac = np.zeros(G)
    vac[45:60] = rng.uniform(0.5, 1.5, 15)
    rows, meta = [], []

    classes = {"none": "none", "IFN-beta": "interferon", "influenza H3N2 challenge": "infection",
               "influenza vaccine": "vaccination", "dexamethasone": "glucocorticoid"}

    def unit(x, **md):
        rows.append(np.clip(x, 0, 13).astype(np.float32))
        md.setdefault("dose_um", 0.0)
        meta.append(dict(md, perturbation_class=classes[md["perturbation"]]))

    for t in TYPES + ["Mk"]:
        tb = base + rng.normal(0, 0.8, G)
        scale = rng.uniform(0.5, 1.5)
        for cond in ["ctrl", "stim"]:
            mean = tb + (ifn * scale if cond == "stim" else 0)
            names = ["full"] + ["subset"] * 5 + (["halfA", "halfB"] if t in TYPES else [])
            for k, name in enumerate(names):
                n = {"full": 400, "subset": 40, "halfA": 200, "halfB": 200}[name]
                unit(mean + rng.normal(0, 1.0 / np.sqrt(n), G), dataset="kang", platform="10x_3prime", study="GSE96583",
                     cell_type=t, tissue="blood", cell_line="unknown", subject="pool",
                     perturbation="IFN-beta" if cond == "stim" else "none", time_hours=6.0 if cond == "stim" else 0.0,
                     context=f"kang|{t}", unit=name, n_cells=n, library_size=float(n * 900), symptoms="", sample_id="")
    for s in range(8):
        sb = base + 4 + rng.normal(0, 0.4, G)
        resp = rng.uniform(0.3, 1.5)
        for h in FLU_HOURS:
            eff = ifn * resp * min(1.0, h / 60)
            unit(sb + eff + rng.normal(0, 0.1, G), dataset="flu", platform="affymetrix_hg-u133a_2", study="GSE30550",
                 cell_type="whole blood", tissue="blood", cell_line="unknown", subject=f"flu{s:03d}",
                 perturbation="none" if h == 0 else "influenza H3N2 challenge", time_hours=float(h),
                 context=f"flu|flu{s:03d}", unit="sample", n_cells=0, library_size=0.0,
                 symptoms="sx" if resp > 0.8 else "asx", sample_id="")
    for study in ["GSE59635", "GSE59654"]:
        for s in range(4):
            sb = base + 3 + rng.normal(0, 0.4, G)
            for d7 in (False, True):
                unit(sb + (vac if d7 else 0) + rng.normal(0, 0.1, G), dataset="vaccine", platform="illumina_humanht-12",
                     study=study, cell_type="PBMC", tissue="blood", cell_line="unknown", subject=f"{study}-{s}",
                     perturbation="influenza vaccine" if d7 else "none", time_hours=168.0 if d7 else 0.0,
                     context=f"vaccine|{study}-{s}", unit="sample", n_cells=0, library_size=0.0, symptoms="",
                     sample_id="")
    for line in ["N052611", "N061011", "N080611", "N61311"]:
        lb = base + rng.normal(0, 0.5, G)
        for trt in (False, True):
            unit(lb + (dex if trt else 0) + rng.normal(0, 0.05, G), dataset="airway", platform="illumina_rnaseq",
                 study="GSE52778", cell_type="airway smooth muscle", tissue="airway", cell_line=line, subject=line,
                 perturbation="dexamethasone" if trt else "none", time_hours=18.0 if trt else 0.0,
                 dose_um=1.0 if trt else 0.0,
                 context=f"airway|{line}", unit="sample", n_cells=0, library_size=2e7, symptoms="",
                 sample_id=f"{line}-{int(trt)}")
    # a second tissue that measured dexamethasone (on a gene panel), so that holding out airway's only
    # study leaves a tissue the model never saw, with the perturbation known from elsewhere
    for exp in range(3):
        hb = base - 1 + rng.normal(0, 0.5, G)
        for trt in (False, True):
            for rep in range(2):
                unit(hb + (0.8 * dex if trt else 0) + rng.normal(0, 0.1, G), dataset="tggates",
                     platform="affymetrix_hg-u133_plus_2", study="Open TG-GATEs", cell_type="hepatocyte",
                     tissue="liver", cell_line="unknown", subject=f"exp{exp}",
                     perturbation="dexamethasone" if trt else "none", time_hours=24.0 if trt else 0.0,
                     dose_um=2.0 if trt else 0.0, context=f"tggates|exp{exp}|24h", unit="sample", n_cells=0,
                     library_size=0.0, symptoms="", sample_id="")
    X = np.stack(rows)
    meta = pd.DataFrame(meta)
    datasets = ["kang", "flu", "vaccine", "airway", "tggates"]
    meta["dataset_idx"] = meta.dataset.map({d: i for i, d in enumerate(datasets)})
    masks = np.ones((5, G), dtype=bool)
    masks[1, 200:] = False          # the microarrays measure part of the vocabulary
    masks[2, 250:] = False
    masks[4, 60:] = False           # a panel
    X[~masks[meta.dataset_idx.values]] = 0.0
    return X, meta, masks, datasets, base, ifn


def write_prepared(root, rng):
    X, meta, masks, datasets, base, ifn = synthetic_units(rng)
    p = root / "prepared"
    p.mkdir(parents=True)
    np.savez_compressed(p / "units.npz", X=X, masks=masks, datasets=np.array(datasets))
    meta.to_csv(p / "units.csv", index=False)
    genes = [{"symbol": f"GENE{i:04d}", "ensembl": None} for i in range(G)]
    json.dump(genes, open(p / "genes.json", "w"))
    syms = [g["symbol"] for g in genes]
    order = list(np.argsort(-ifn, kind="stable"))
    degs = {t: {"top100_abs": [syms[i] for i in order[:60]], "top100_up_scgen": [syms[i] for i in order[:60]]}
            for t in TYPES}
    kang = {"method": "synthetic data (training/smoke.py)", "markers": {}, "tnk_markers": {}, "mono_markers": {},
            "eval_types": TYPES, "all_types": TYPES + ["Mk"], "degs": degs, "degs_half_b": degs,
            "label_counts": {t: {"ctrl": 400, "stim": 400} for t in TYPES + ["Mk"]}}
    json.dump(kang, open(p / "kang.json", "w"))
    keys, means = [], []
    for t in TYPES + ["Mk"]:
        for c, pert in [("ctrl", "none"), ("stim", "IFN-beta")]:
            i = meta.index[(meta.dataset == "kang") & (meta.cell_type == t) & (meta.unit == "full") &
                           (meta.perturbation == pert)][0]
            keys.append(f"{t}|{c}")
            means.append(0.7 * X[i])
    np.savez_compressed(p / "kang_cellmeans.npz", means=np.stack(means), keys=np.array(keys),
                        mask=np.ones(G, dtype=bool))
    json.dump({"rule": "synthetic", "size": G, "tiers_available": {}, "measured_definition": {}},
              open(p / "vocabulary.json", "w"))
    # calibration datasets: a tissue unlike every training one, never trained on
    cal_rows, cal_meta = [], []
    for d in range(3):
        for pert in ["none", "knockout"]:
            cal_rows.append(np.clip(rng.normal(4.0, 2.5, G), 0, 13))
            cal_meta.append(dict(dataset="panc1", sample_id=f"panc1-{d}-{pert}", perturbation=pert,
                                 library_size=2e7, context=f"panc1|{d}"))
    np.savez_compressed(p / "calibration.npz", X=np.stack(cal_rows).astype(np.float32),
                        measured=np.ones((len(cal_rows), G), dtype=bool))
    pd.DataFrame(cal_meta).to_csv(p / "calibration.csv", index=False)


def main():
    root = Path(tempfile.mkdtemp(prefix="refcast-smoke-"))
    os.environ["REFCAST_CACHE"] = str(root)
    os.environ.setdefault("REFCAST_STEPS_FOLD", "8")
    os.environ.setdefault("REFCAST_STEPS_FINAL", "8")
    os.environ.setdefault("REFCAST_THREADS", "1")
    for m in [k for k in sys.modules if k.startswith("training.") and k != "training.smoke"]:
        del sys.modules[m]
    from . import config as C
    C.N_GENES = G
    C.ENC = C.DEC = {"hidden": 64, "ff": 128, "blocks": 1}
    C.PRIOR = {"hidden": 32, "ff": 64, "blocks": 1}
    C.MODELS = root / "models"
    write_prepared(root, np.random.default_rng(7))
    from . import evaluate, train
    train.main()
    evaluate.main()
    text = (C.MODELS / "EVALUATION.md").read_text()
    report = json.load(open(C.MODELS / "evaluation.json"))
    checks = {
        "every dataset has a headline row": all(f"| {d} |" in text for d in ["kang", "flu", "vaccine", "airway"]),
        "leave-one-study-out was scored": "vaccine|study" in report["summary"],
        "a tissue never seen was scored against the other tissue's change": "other-tissue shift" in
            report["summary"].get("airway|study", {}),
        "the runtime scored the quantized files": report["runtime_scored"] and any(
            r["method"] == "refcast Q4_0" for r in report["rows"]),
        "perturbation identity was scored": len(report["identity"]) == 4,
        "measured responses were scored for identity": len(report["identity_measured"]) > 0,
        "each perturbation's fit where trained was scored": len(report["training_fit"]) == 4 and
            "Fit where trained" in text,
        "scGen's protocol was scored": len(report["scgen_protocol"]) == len(TYPES) * 5,
        "the calibration datasets were scored": any(r["model"] == "final" and r["dataset"] == "external"
                                                    for r in report["familiarity"]),
        "familiarity thresholds were computed": "latent_distance_max" in report["familiarity_thresholds"],
        "intervals were computed": report["summary"]["kang|context"]["mean shift"]["pearson_lfc_pop"]["lo"] is not None,
    }
    # the same inputs give the same model, bit for bit (fixed seeds, threads, deterministic kernels)
    X, masks, datasets, meta, genes, kang = train.load()
    specs = train.build_specs(meta)
    twice = [train.train_model(X, masks, datasets, meta, specs, ~train.heldout_mask(meta, kang, 0), 4, 1, log_every=10**9)
             .state_dict() for _ in range(2)]
    checks["training is bitwise repeatable"] = all(bool((twice[0][k] == twice[1][k]).all()) for k in twice[0])
    failed = [k for k, ok in checks.items() if not ok]
    for k, ok in checks.items():
        print(f"smoke: {'ok  ' if ok else 'FAIL'} {k}", flush=True)
    print(f"smoke: {len(checks) - len(failed)} passed, {len(failed)} failed", flush=True)
    if failed:
        raise SystemExit(1)
