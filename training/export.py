"""Stage `export`: the final model -> models/refcast-{q8_0,q4_0}.safetensors, SHA256SUMS,
golden vectors (tests/golden) and the bundled examples (examples/)."""
import hashlib
import json
import shutil
import struct

import numpy as np
import pandas as pd
import torch

from . import config as C
from . import infer
from . import reference_numpy
from . import train as T
from .model import GROUPS, PriorSpec, RefcastVAE
from .quantize import QUANT

KINDS = ["q8_0", "q4_0"]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _number(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def perturbation_label(p, hours, dose):
    """"IFN-beta 6 h", "dasatinib 0.37 µM 24 h", "influenza vaccine 7 d"; time 0 of a perturbation
    means its duration is not known, and the name leaves it out."""
    when = "" if hours == 0 else f" {hours / 24:g} d" if hours >= 168 else f" {hours:g} h"
    return f"{p} {dose:g} µM{when}" if dose > 0 else f"{p}{when}"


def perturbations(meta):
    """What `screen` ranks: the control, then every (perturbation, dose, time) measured."""
    pert_fields = [c for c in T.PERT_FIELDS + T.PERT_NUMERIC if c in meta.columns]
    out = [{"name": "none (control)", "metadata": {k: v for k, v in T.CONTROL.items() if k in pert_fields}}]
    # in the order of the datasets (Kang's IFN-beta first: what the CLI predicts without -p), then
    # by name, time and dose within a dataset; the compound screens (L1000, TG-GATEs) come last
    datasets = list(dict.fromkeys(meta.dataset))
    rank = {d: i for i, d in enumerate(sorted(datasets, key=lambda d: (d in ("l1000", "tggates"), datasets.index(d))))}
    treated = meta[meta.perturbation != "none"].assign(_rank=lambda m: m.dataset.map(rank))
    combos = treated[["_rank"] + pert_fields].drop_duplicates(subset=pert_fields) \
        .sort_values(["_rank", "perturbation", "time_hours"] + (["dose_um"] if "dose_um" in pert_fields else [])) \
        .drop(columns="_rank")
    seen = set()
    for r in combos.to_dict(orient="records"):
        label = perturbation_label(r["perturbation"], float(r["time_hours"]), float(r.get("dose_um", 0.0)))
        if label in seen:     # one entry per name
            continue
        seen.add(label)
        md = {k: (_number(v) if k in T.PERT_NUMERIC else v) for k, v in r.items()}
        out.append({"name": label, "metadata": md})
    return out


# How a context is named for people: dataset -> format string over the context's metadata.
CONTEXT_NAMES = {
    "kang": "PBMC {cell_type} (10x 3', Kang 2018)",
    "flu": "Whole blood (Affymetrix HG-U133A 2.0, GSE30550)",
    "vaccine": "PBMC (Illumina HumanHT-12, {study})",
    "airway": "Airway smooth muscle cells (bulk RNA-seq, GSE52778)",
}


def contexts(meta):
    out = []
    cols = T.TECH_FIELDS + T.BIO_FIELDS
    for key, g in meta.groupby(cols):
        md = dict(zip(cols, key))
        md = {k: v for k, v in md.items() if v != "unknown"}
        ds = g.dataset.iloc[0]
        fmt = CONTEXT_NAMES.get(ds, "{cell_type} ({platform}, {study})")
        out.append({"name": fmt.format(**dict(zip(cols, key))), "metadata": md})
    return out


def architecture(model, n_genes):
    """The document's `architecture`, read from the model's own sizes (for the shipped model these
    are config's N_GENES / LATENT / ENC / DEC / PRIOR, so its files are unchanged)."""
    def trunk(t, default):
        ff = t.blocks[0].fc1.out_features if len(t.blocks) else default["ff"]
        return {"hidden": t.input.out_features, "ff": ff, "blocks": len(t.blocks)}
    return {"genes": n_genes, "latent": dict(model.latent), "activation": "gelu_tanh",
            "layer_norm_eps": 1e-5, "encoder": trunk(model.encoder, C.ENC), "decoder": trunk(model.decoder, C.DEC),
            "prior": trunk(model.prior["technical"], C.PRIOR)}


def training_source_sha256():
    """What identifies the code and locked packages that built a model, without making its bytes
    depend on the date, the commit or the checkout: the first 16 hex digits of the SHA-256 of
    `sha256sum`'s lines for training/*.py and training/requirements.lock, sorted by path, i.e.
    `sha256sum training/*.py training/requirements.lock | LC_ALL=C sort -k2 | sha256sum | cut -c1-16`."""
    paths = sorted([f.relative_to(C.REPO).as_posix() for f in C.REPO.glob("training/*.py")]
                   + ["training/requirements.lock"])
    lines = "".join(f"{sha256(C.REPO / p)}  {p}\n" for p in paths)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def measured_in(entries, meta, centroid_contexts):
    """Where each perturbation entry was measured: the indices (into the familiarity centroids) of
    the training contexts holding a unit of that perturbation at that time and dose; the control
    entry is measured wherever there is an untreated unit. What lets a screen say whether the model
    ever saw a perturbation in a context like the sample's (docs/FORMAT.md)."""
    index = {c: i for i, c in enumerate(centroid_contexts)}
    dose = meta["dose_um"] if "dose_um" in meta.columns else pd.Series(0.0, index=meta.index)
    labels = [perturbation_label(p, float(h), float(d)) if p != "none" else None
              for p, h, d in zip(meta.perturbation, meta.time_hours, dose)]
    where = {}
    for label, ctx in zip(labels, meta.context):
        where.setdefault(label, set()).add(ctx)
    for e in entries:
        key = None if e["metadata"].get("perturbation") == "none" else e["name"]
        e["measured_in"] = sorted(index[c] for c in where.get(key, ()) if c in index)
    return entries


def metadata_doc(model, genes, meta, tensors, notes, familiarity=None, centroid_contexts=None):
    data = [{"name": s["name"], "package": s["spec"], "registry": "PyPI" if s["kind"].startswith("pip") else "Debian",
             "archive": s["file"], "sha256": s["sha256"]} for s in C.SOURCES.values()
            if not s.get("evaluation_only")]
    data += [{"name": s["name"], "repository": s["repo"], "commit": s["commit"], "licence": s["licence"],
              "files": [{"path": f["path"], "sha256": f["sha256"]} for f in s["files"]]}
             for s in C.REPO_SOURCES.values() if not s.get("evaluation_only")]
    doc = {
        "format_version": model.format_version,
        "name": "refcast-pbmc-flu-airway" if model.format_version == 1 else "refcast-v2",
        "architecture": architecture(model, len(genes)),
        "genes": genes,
        "priors": {g: model.specs[g].to_json() for g in GROUPS},
        "perturbations": perturbations(meta),
        "contexts": contexts(meta),
        "normalisation": {"input": "log1p_cpm", "cpm_scale": 1000000, "log": "natural",
                          "missing_genes": "gene_mean"},
        "provenance": {"data": data, "training_source_sha256": training_source_sha256(), "notes": notes},
        "tensors": {n: {"dtype": d, "shape": s} for n, (d, s, _) in tensors.items()},
    }
    if model.format_version >= 2:
        doc["covariates"] = model.covariates.numeric
        if familiarity is not None:
            doc["familiarity"] = familiarity
            doc["perturbations"] = measured_in(doc["perturbations"], meta, centroid_contexts)
    return doc


def write_file(path, tensors, doc):
    from safetensors.numpy import save_file
    arrays = {n: (a if d == "f32" else np.asarray(a, dtype=np.uint8)) for n, (d, s, a) in tensors.items()}
    save_file(arrays, str(path), metadata={"refcast": json.dumps(doc, separators=(",", ":"))})


def write_model(model_f, kind, genes, meta, path, notes, familiarity=None, centroid_contexts=None):
    """One refcast file at `path` for a folded model (infer.folded) in `kind` (q8_0, q4_0 or f32);
    returns (tensors, doc)."""
    tensors = infer.file_tensors(model_f, kind)
    doc = metadata_doc(model_f, genes, meta, tensors, notes, familiarity, centroid_contexts)
    write_file(path, tensors, doc)
    return tensors, doc


def read_file(path):
    """Read a refcast file back (safetensors.numpy) -> (doc, {name: f32 array with logical shape})."""
    from safetensors.numpy import load_file
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    doc = json.loads(header["__metadata__"]["refcast"])
    arrays = load_file(str(path))
    out = {}
    for name, a in arrays.items():
        info = doc["tensors"][name]
        if info["dtype"] == "f32":
            assert a.dtype == np.float32 and list(a.shape) == info["shape"], name
            out[name] = a
        else:
            assert a.dtype == np.uint8, name
            out[name] = QUANT[info["dtype"]][1](a, tuple(info["shape"]))
    assert set(doc["tensors"]) == set(arrays)
    return doc, out


def model_from_file(doc, arrays):
    """A PyTorch model whose weights are the (dequantized) tensors of a refcast file."""
    specs = {g: PriorSpec(**doc["priors"][g]) for g in GROUPS}
    a = doc["architecture"]
    m = RefcastVAE(a["genes"], a["latent"], a["encoder"], a["decoder"], a["prior"], specs,
                   covariates=doc.get("covariates") if doc["format_version"] >= 2 else None)
    sd = {}
    for name in m.state_dict():
        if name in ("in_mean",):
            sd[name] = torch.zeros(a["genes"])
        elif name == "in_std":
            sd[name] = torch.ones(a["genes"])
        elif name == "decoder_logvar":
            sd[name] = torch.from_numpy(arrays["decoder.logvar"])
        elif name == "gene_mean":
            sd[name] = torch.from_numpy(arrays["input.gene_mean"])
        elif name.startswith("prior.") and ".input." in name:
            g = name.split(".")[1]
            sd[name] = torch.from_numpy(np.ascontiguousarray(arrays[f"prior.{g}.embedding"].T)) \
                if name.endswith("weight") else torch.from_numpy(arrays[f"prior.{g}.input.bias"])
        else:
            sd[name] = torch.from_numpy(arrays[name])
    m.load_state_dict(sd)
    if "denoise.threshold" in arrays:
        m.set_denoise_threshold(arrays["denoise.threshold"])
    m.eval()
    return m


def read_example(path, genes, gene_mean):
    """What refcast does with a counts TSV: match by Ensembl id then symbol, log1p(CPM), gene_mean."""
    df = pd.read_csv(path, sep="\t")
    lib = float(df["count"].sum())
    idx = {}
    for i, g in enumerate(genes):
        if g["ensembl"]:
            idx.setdefault(g["ensembl"].lower(), i)
    for i, g in enumerate(genes):
        idx.setdefault(g["symbol"].lower(), i)
    x = gene_mean.copy()
    for gname, c in zip(df.gene, df["count"]):
        i = idx.get(str(gname).lower())
        if i is not None:
            x[i] = np.float32(np.log1p(c / lib * 1e6))
    return x.astype(np.float32), lib


# What the golden files hold (tests/golden.rs reads it): 1 (no field): decoded cases only; 2: every
# case says its prediction mode ("decoded" or "counterfactual"), and counterfactual cases, mean and
# sampled, are present; 3: "denoised" cases (the default mode of a format 3 model), mean and sampled,
# too.
GOLDEN_FORMAT = 3


def t_unit_activation(meta):
    """The T-cell dataset's perturbation (its one non-control state)."""
    return sorted(set(meta.perturbation[(meta.dataset == "tcell") & (meta.perturbation != "none")]))[0]


def named(doc, perturbation, hours):
    """The metadata of the model's entry for `perturbation` at `hours` (as `-p NAME` gives the runtime)."""
    return next(p["metadata"] for p in doc["perturbations"]
                if p["metadata"]["perturbation"] == perturbation and p["metadata"]["time_hours"] == hours)


def control_perturbation(doc):
    """The runtime's control: the model's first known perturbation with a field set to "none"."""
    return next(p["metadata"] for p in doc["perturbations"]
                if any(isinstance(v, str) and v.lower() == "none" for v in p["metadata"].values()))


@torch.no_grad()
def familiarity_report(model, doc, ref, library_size, control_md):
    """What the runtime reports for one reference (every gene measured): reconstruction R² of the
    decoded control profile, the nearest centroid and its distance, and whether it is outside."""
    cal = doc["familiarity"]
    mu, _ = model.encode(torch.from_numpy(ref[None]), infer.covariates(model, [library_size], 1))
    c_mu, _ = infer.prior_params(model, "perturbation", [control_md])
    rec = model.decode(torch.cat([mu, c_mu], 1))[0].numpy()
    r2 = float(np.corrcoef(ref.astype(np.float64), rec.astype(np.float64))[0, 1] ** 2)
    cents = np.array([c["mean"] for c in cal["centroids"]], dtype=np.float64)
    dist = np.sqrt(((cents - mu[0].numpy().astype(np.float64)) ** 2).sum(1))
    k = int(dist.argmin())
    return {"reconstruction_r2": r2, "nearest_context": cal["centroids"][k]["context"], "distance": float(dist[k]),
            "outside": bool(dist[k] > cal["max_distance"] or r2 < cal["min_reconstruction_r2"])}


def golden(path, doc, arrays, meta, X, masks, datasets):
    model = model_from_file(doc, arrays)
    genes = doc["genes"]
    gm = arrays["input.gene_mean"]
    control_md = control_perturbation(doc)
    air_ref, air_lib = read_example(C.EXAMPLES / "airway_N61311_untreated.tsv", genes, gm)
    kang_ref, kang_lib = read_example(C.EXAMPLES / "kang_cd14_mono_ctrl.tsv", genes, gm)
    tcell_ref, tcell_lib = read_example(C.EXAMPLES / "tcell_D1_unstimulated_24h.tsv", genes, gm)
    fi = meta.index[(meta.dataset == "flu") & (meta.subject == "flu001") & (meta.time_hours == 0)][0]
    flu_ref = np.where(masks[datasets.index("flu")], X[fi], gm).astype(np.float32)
    t_unit = meta[meta.dataset == "tcell"].iloc[0]
    tech = {"tcell": {"platform": t_unit.platform, "study": t_unit.study},
            "kang": {"platform": "10x_3prime", "study": "GSE96583"},
            "airway": {"platform": "illumina_rnaseq", "study": "GSE52778"},
            "flu": {"platform": "affymetrix_hg-u133a_2", "study": "GSE30550"}}
    bio = {"tcell": {"cell_type": t_unit.cell_type, "tissue": t_unit.tissue},
           "kang": {"cell_type": "CD14 Mono", "tissue": "blood"},
           "airway": {"cell_type": "airway smooth muscle", "tissue": "airway"},
           "flu": {"cell_type": "whole blood", "tissue": "blood"}}
    TB = ["technical", "biological"]
    ifn = named(doc, "IFN-beta", 6)
    dex = named(doc, "dexamethasone", 18)
    h3n2 = named(doc, "influenza H3N2 challenge", 69)
    vaccine = named(doc, "influenza vaccine", 168)
    activation = named(doc, t_unit_activation(meta), 24)
    # (name, latent mode, reference, library size, condition_on, dataset, perturbation, seed,
    #  sample index, prediction mode)
    cases = [
        ("airway N61311 untreated (bundled example) + dexamethasone 18 h", "mean", air_ref, air_lib, TB,
         "airway", dex, None, 0, "decoded"),
        ("Kang CD14 Mono control (bundled example) + IFN-beta 6 h", "mean", kang_ref, kang_lib, TB, "kang",
         ifn, None, 0, "decoded"),
        ("flu001 0 h (microarray) + influenza H3N2 challenge 69 h", "mean", flu_ref, 1e6, TB, "flu",
         h3n2, None, 0, "decoded"),
        ("prompt-only: PBMC B cells, 10x, IFN-beta 6 h", "mean", None, None, [], "kang",
         ifn, None, 0, "decoded"),
        ("condition on technical only: Kang CD14 Mono reference, biological prior NK, IFN-beta 6 h", "mean",
         kang_ref, kang_lib, ["technical"], "kang", ifn, None, 0, "decoded"),
        ("sample: airway example + dexamethasone 18 h, seed 42", "sample", air_ref, air_lib, TB, "airway",
         dex, 42, 0, "decoded"),
        ("sample: prompt-only whole blood + influenza vaccine 168 h, seed 7, sample 3", "sample", None, None,
         [], "flu", vaccine, 7, 3, "decoded"),
        # The counterfactual mode: the reference moved by decode(perturbation) - decode(control).
        ("airway N61311 untreated (bundled example) + dexamethasone 18 h, counterfactual", "mean", air_ref,
         air_lib, TB, "airway", dex, None, 0, "counterfactual"),
        ("Kang CD14 Mono control (bundled example) + IFN-beta 6 h, counterfactual", "mean", kang_ref, kang_lib,
         TB, "kang", ifn, None, 0, "counterfactual"),
        ("flu001 0 h (microarray) + influenza H3N2 challenge 69 h, counterfactual", "mean", flu_ref, 1e6, TB,
         "flu", h3n2, None, 0, "counterfactual"),
        ("condition on technical only: Kang CD14 Mono reference, biological prior NK, IFN-beta 6 h, "
         "counterfactual", "mean", kang_ref, kang_lib, ["technical"], "kang", ifn, None, 0, "counterfactual"),
        ("sample: airway example + dexamethasone 18 h, seed 42, sample 2, counterfactual", "sample", air_ref,
         air_lib, TB, "airway", dex, 42, 2, "counterfactual"),
        # a reference of the wider corpus: the bundled T-cell example, activated for 24 h
        ("T cells D1 unstimulated 24 h (bundled example) + activation 24 h, counterfactual", "mean", tcell_ref,
         tcell_lib, TB, "tcell", activation, None, 0, "counterfactual"),
        ("T cells D1 unstimulated 24 h (bundled example) + activation 24 h", "mean", tcell_ref, tcell_lib, TB,
         "tcell", activation, None, 0, "decoded"),
        # The denoised mode (the default): decode(perturbation) + soft(reference − decode(control), τ).
        ("airway N61311 untreated (bundled example) + dexamethasone 18 h, denoised", "mean", air_ref, air_lib,
         TB, "airway", dex, None, 0, "denoised"),
        ("Kang CD14 Mono control (bundled example) + IFN-beta 6 h, denoised", "mean", kang_ref, kang_lib, TB,
         "kang", ifn, None, 0, "denoised"),
        ("T cells D1 unstimulated 24 h (bundled example) + activation 24 h, denoised", "mean", tcell_ref,
         tcell_lib, TB, "tcell", activation, None, 0, "denoised"),
        ("condition on technical only: Kang CD14 Mono reference, biological prior NK, IFN-beta 6 h, denoised",
         "mean", kang_ref, kang_lib, ["technical"], "kang", ifn, None, 0, "denoised"),
        ("sample: Kang example + IFN-beta 6 h, seed 5, sample 1, denoised", "sample", kang_ref, kang_lib, TB,
         "kang", ifn, 5, 1, "denoised"),
    ]
    out = []
    for name, mode, ref, lib, cond, ds, pert, seed, s, prediction in cases:
        b = dict(bio[ds])
        if name.startswith("prompt-only: PBMC B"):
            b = {"cell_type": "B", "tissue": "blood"}
        if "biological prior NK" in name:
            b = {"cell_type": "NK", "tissue": "blood"}
        counterfactual = prediction in ("counterfactual", "denoised")
        # the bundled examples are counts; the flu reference is microarray values without a depth
        from_counts = ds != "flu"
        depth = lib if from_counts else None
        exp, eps = infer.golden_case(model, ref, cond, tech[ds], b, pert, mode, seed=seed or 0, sample_index=s,
                                     control_md=control_md if counterfactual else None, library_size=depth,
                                     denoised=prediction == "denoised")
        c = {"name": name, "mode": mode, "prediction": prediction,
             "reference": None if ref is None else {"log_cpm": ref.tolist(), "library_size": float(lib),
                                                    "from_counts": from_counts},
             "condition_on": cond, "technical": tech[ds], "biological": b, "perturbation": pert}
        if counterfactual:
            c["control"] = control_md
        if mode == "sample":
            c.update(seed=seed, sample_index=s, eps=eps)
        if ref is None:
            exp = {"latent_mu_enc": None, "latent_logvar_enc": None, **exp}
        if ref is not None and mode == "mean" and cond == TB and doc.get("familiarity"):
            exp["familiarity"] = familiarity_report(model, doc, ref, depth, control_md)
        c["expected"] = exp
        # independent float64 numpy forward pass from the file's tensors must agree
        if counterfactual:
            z64, zc64, y64 = reference_numpy.run_counterfactual(doc, arrays, c, control_md)
            dz = max(np.abs(z64 - np.asarray(exp["z"])).max(), np.abs(zc64 - np.asarray(exp["control_z"])).max())
        else:
            z64, y64 = reference_numpy.run_case(doc, arrays, c)
            dz = np.abs(z64 - np.asarray(exp["z"])).max()
        dy = np.abs(y64 - np.asarray(exp["log_cpm"])).max()
        assert dz < 1e-3 and dy < 1e-3, (name, dz, dy)
        out.append(c)
    return {"golden_format": GOLDEN_FORMAT, "model": f"models/{path.name}", "model_sha256": sha256(path),
            "cases": out}


# Context names in the familiarity report: dataset -> how people call its samples.
DATASET_LABELS = {"kang": "PBMC (Kang 2018)", "flu": "whole blood (influenza challenge)",
                  "vaccine": "PBMC (influenza vaccination)", "airway": "airway smooth muscle cells",
                  "tcell": "T cells (Rade 2023)", "macrophage": "iPSC-derived macrophages (Alasoo 2018)",
                  "l1000": "A375 melanoma cells (L1000)", "tggates": "primary hepatocytes (TG-GATEs)",
                  "glioblastoma": "glioblastoma (Zhao 2021)", "mait": "MAIT cells (Finak 2015)",
                  "hsmm": "skeletal muscle myoblasts (HSMM)"}


def context_label(context):
    ds, _, rest = context.partition("|")
    return f"{DATASET_LABELS.get(ds, ds)}, {rest.replace('|', ', ')}" if rest else DATASET_LABELS.get(ds, ds)


def familiarity(model, X, masks, datasets, meta):
    """The file's familiarity calibration (docs/FORMAT.md): the shipped model's centroids of every
    training context's untreated units, and the thresholds the evaluation derived from held-out
    references (models/evaluation.json); None without an evaluation."""
    from . import evaluate
    ev = C.MODELS / "evaluation.json"
    th = json.load(open(ev)).get("familiarity_thresholds", {}) if ev.exists() else {}
    if "latent_distance_max" not in th:
        return None, None
    names, cents, units = evaluate.centroids(model, X, masks, datasets, meta, np.ones(len(meta), dtype=bool))
    return names, {"space": "encoder_mean",
            "centroids": [{"context": context_label(n), "units": u, "mean": [float(v) for v in c]}
                          for n, c, u in zip(names, cents, units)],
            "max_distance": round(th["latent_distance_max"], 4),
            "min_reconstruction_r2": round(th["reconstruction_r2_p05"], 4),
            "calibration": f"From {th['source']}: the largest latent distance among them, and the 5th "
                           f"percentile of their reconstruction R². They flag {th.get('heldout_flagged', 0):.0%} of "
                           f"those and {th.get('external_flagged', 0):.0%} of the references of tissues absent "
                           "from training (PANC-1, LNCaP). models/EVALUATION.md."}


def main():
    from . import determinism
    determinism.configure()
    X, masks, datasets, meta, genes, kang = T.load()
    model = infer.folded(T.load_model(C.RUNS / "final.pt"))
    # the denoised mode's thresholds, fit on every training pair (the fold models' on theirs)
    from .evaluate import calibrate_quantization, noise_thresholds, training_pairs
    everything = np.ones(len(meta), dtype=bool)
    model.set_denoise_threshold(noise_thresholds(training_pairs(model, X, masks, datasets, meta, everything, kang),
                                                 X.shape[1]))
    calibrate_quantization(model, X, masks, datasets, meta, everything)
    centroid_contexts, calibration = familiarity(model, X, masks, datasets, meta)
    C.MODELS.mkdir(exist_ok=True)
    C.EXAMPLES.mkdir(exist_ok=True)
    for f in sorted((C.PREPARED / "examples").glob("*.tsv")):
        shutil.copy(f, C.EXAMPLES / f.name)
    notes = ("Conditional VAE trained on every unit of the training datasets listed under data (pseudobulks of "
             "20-200 cells plus full pseudobulks for single-cell data; microarray and L1000 log2 values as given; "
             "panels masked to the genes they measure). Evaluation on held-out contexts: models/EVALUATION.md.")
    sums = []
    for kind in KINDS:
        path = C.MODELS / f"refcast-{kind}.safetensors"
        tensors, doc = write_model(model, kind, genes, meta, path, notes, calibration, centroid_contexts)
        doc2, arrays = read_file(path)
        # round-trip check: the file's dequantized weights == numpy dequantization of our quantization
        for n, (d, s, a) in tensors.items():
            want = a if d == "f32" else QUANT[d][1](a, tuple(s))
            assert np.array_equal(arrays[n], want), n
        g = golden(path, doc2, arrays, meta, X, masks, datasets)
        C.GOLDEN.mkdir(parents=True, exist_ok=True)
        json.dump(g, open(C.GOLDEN / f"golden_{kind}.json", "w"))
        path.chmod(0o644)
        size = path.stat().st_size
        print(f"export: {path.name} {size / 1e6:.2f} MB, {len(g['cases'])} golden cases", flush=True)
        sums.append(f"{sha256(path)}  {path.name}")
    # the model files' lines replaced, other files' (the gene sets, genesets/build.py) kept
    listing = C.MODELS / "SHA256SUMS"
    ours = {line.split("  ", 1)[1] for line in sums}
    kept = [line for line in (listing.read_text().splitlines() if listing.exists() else [])
            if line.strip() and line.split("  ", 1)[-1] not in ours]
    listing.write_text("\n".join(sums + kept) + "\n")
