"""Check training/runtime.py against PyTorch: a randomly initialised model with the shipped sizes
(and a tiny one), exported to Q8_0 / Q4_0 (and f32), predicted by the refcast CLI, compared with
infer.predict_mean(infer.dequantized(model_f, kind), refs, perts).

    python3 -m training.test_runtime            # REFCAST_BIN=... to use a given CLI build

The shipped-size and tiny models are format 2 (a depth covariate, given to the CLI by
`--library-size`, one reference without one; the perturbation path; class and dose in the
perturbation prior); a tiny format 1 model checks that older files still run. Measured for format 2
(seed 0, shipped sizes, 19 references at library sizes 10⁴-6·10⁷ and one without): max
|runtime - PyTorch| 0.9e-5 (Q8_0, Q4_0), 1.1e-5 (f32).

Tolerance: TOL (below) absolute on predicted log-CPM and on log fold changes. The runtime and
PyTorch run the same float32 network with the same (dequantized) weights; they differ only in
summation order (8,192-long dot products of inputs up to ~14 in encoder.input) and the CLI prints
5 decimals (≤ 5e-6). Measured (seed 0, shipped sizes, 20 references, predictions 0-14): max
|runtime - PyTorch| 1.2e-5 (Q8_0), 0.9e-5 (Q4_0), 1.2e-5 (f32), of which up to 0.5e-5 is the
printing; TOL = 1e-4 leaves ~8x headroom for a trained model's larger activations while still
catching any real discrepancy (a wrong dequantization or bias shows up at 1e-3 and above).
"""
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import config as C
from . import export
from . import infer
from . import runtime
from . import train as T
from .model import RefcastVAE

TOL = 1e-4          # |runtime - PyTorch| on log-CPM / LFC
SIGMA_TOL = 1e-5    # σ = exp(logvar / 2) only passes through the 5-decimal printing


CLASSES = {"none": "none", "IFN-beta": "interferon", "influenza H3N2 challenge": "infection",
           "influenza vaccine": "vaccination", "dexamethasone": "glucocorticoid", "panobinostat": "HDAC inhibitor"}


def synthetic_meta():
    """A unit table shaped like prepared/units.csv (the columns export and build_specs read)."""
    rows = []
    for ct in ["B", "CD14 Mono", "NK"]:
        for p, t in [("none", 0), ("IFN-beta", 6)]:
            rows.append(dict(dataset="kang", platform="10x_3prime", study="GSE96583", cell_type=ct, tissue="blood",
                             perturbation=p, time_hours=t))
    for t in [0, 5, 12, 21, 29, 36, 45, 53, 60, 69, 77, 84, 93, 101, 108]:
        rows.append(dict(dataset="flu", platform="affymetrix_hg-u133a_2", study="GSE30550", cell_type="whole blood",
                         tissue="blood", perturbation="none" if t == 0 else "influenza H3N2 challenge", time_hours=t))
    for study in ["GSE59635", "GSE59654"]:
        for p, t in [("none", 0), ("influenza vaccine", 168)]:
            rows.append(dict(dataset="vaccine", platform="illumina_humanht-12", study=study, cell_type="PBMC",
                             tissue="blood", perturbation=p, time_hours=t))
    for p, t in [("none", 0), ("dexamethasone", 18)]:
        rows.append(dict(dataset="airway", platform="illumina_rnaseq", study="GSE52778",
                         cell_type="airway smooth muscle", tissue="airway", perturbation=p, time_hours=t))
    for p, t in [("none", 0), ("panobinostat", 24)]:
        rows.append(dict(dataset="glioblastoma", platform="10x_panel300", study="GSE148842", cell_type="glioblastoma",
                         tissue="brain", perturbation=p, time_hours=t, dose_um=0.2 if t else 0.0))
    meta = pd.DataFrame(rows)
    meta["perturbation_class"] = meta.perturbation.map(CLASSES)
    meta["dose_um"] = meta.dose_um.fillna(0.0)
    counts = meta.dataset.isin(["kang", "airway", "glioblastoma"])
    meta["library_size"] = np.where(counts, np.geomspace(2e4, 4e7, len(meta)), 0.0)
    return meta


def synthetic_genes(G):
    genes = [{"symbol": f"GENE{i}", "ensembl": f"ENSG{i:011d}"} for i in range(G)]
    genes[3]["ensembl"] = None                       # no Ensembl id
    genes[5]["symbol"] = "NA"                        # a symbol pandas would read as missing
    genes[7]["symbol"] = genes[6]["symbol"]          # shared symbol: gene 7 is addressed by its Ensembl id
    return genes


def random_model(G, meta, latent=C.LATENT, enc=C.ENC, dec=C.DEC, prior=C.PRIOR, seed=0, format_version=3):
    """Format 3 (format 2 and denoising thresholds), format 2 (covariates, perturbation path, depth
    in the technical prior) or format 1."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if format_version == 1:
        specs = T.build_specs_v1(meta)
        m = RefcastVAE(G, latent, enc, dec, prior, specs)
    else:
        specs = T.build_specs(meta)
        m = RefcastVAE(G, latent, enc, dec, prior, specs, covariates=T.build_covariates(meta))
    with torch.no_grad():
        mean = rng.uniform(0.5, 8.0, G).astype(np.float32)
        m.in_mean.copy_(torch.from_numpy(mean))
        m.in_std.copy_(torch.from_numpy(rng.uniform(0.3, 2.0, G).astype(np.float32)))
        m.gene_mean.copy_(torch.from_numpy(np.clip(mean + rng.normal(0, 0.2, G), 0, None).astype(np.float32)))
        m.decoder.head.bias.copy_(torch.from_numpy(mean))
        m.decoder_logvar.copy_(torch.from_numpy(rng.uniform(-4, 1, G).astype(np.float32)))
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.add_(0.1 * torch.randn_like(mod.weight))
                mod.bias.add_(0.1 * torch.randn_like(mod.bias))
    if format_version == 3:
        # thresholds of 0–1.5, every fifth 0 (the counterfactual profile there)
        m.set_denoise_threshold(np.where(np.arange(G) % 5 == 0, 0.0, rng.uniform(0, 1.5, G)))
    m.eval()
    return m


def references(model, n, seed=1):
    """n references: training-mean ± noise in [0, 13.9], a tenth of the genes at the gene mean."""
    rng = np.random.default_rng(seed)
    mu, sd, gm = (model.in_mean.numpy(), model.in_std.numpy(), model.gene_mean.numpy())
    x = np.clip(mu + sd * rng.normal(0, 1, (n, len(mu))), 0, runtime.MAX_LOG_CPM).astype(np.float32)
    missing = rng.random(x.shape) < 0.1
    return np.where(missing, gm, x).astype(np.float32)


PERTS_V1 = ([{"perturbation": "IFN-beta", "time_hours": 6.0}] * 8 + [{"perturbation": "dexamethasone", "time_hours": 18}] * 5
            + [{"perturbation": "influenza H3N2 challenge", "time_hours": 69.0}] * 3
            + [{"perturbation": "none", "time_hours": 0.0}] * 2
            + [{"perturbation": "IFN-beta", "time_hours": 12.0}, {"perturbation": "influenza vaccine", "time_hours": 168}])
# format 2: every perturbation-prior field given, as the model's perturbation list has them
PERTS_V2 = [dict(p, perturbation_class=CLASSES[p["perturbation"]], dose_um=0.0) for p in PERTS_V1[:-1]] + \
    [{"perturbation": "panobinostat", "perturbation_class": "HDAC inhibitor", "time_hours": 24, "dose_um": 0.2}]
# library sizes of the references: counts of various depths, and one without counts (0: unknown)
LIBRARIES = [float(v) for v in np.geomspace(1e4, 6e7, len(PERTS_V1) - 1)] + [0.0]
PERTS = PERTS_V1
CONTROL = {"perturbation": "none", "time_hours": 0}


def check(name, got, want, tol):
    d = float(np.abs(got - want).max())
    print(f"  {name:<34} max |runtime - torch| = {d:.2e}  (tol {tol:.0e})", flush=True)
    assert d <= tol, f"{name}: {d} > {tol}"
    return d


def run_case(label, model, meta, genes, kinds, tmp, timing=False):
    global PERTS, CONTROL
    v2 = model.format_version >= 2
    PERTS = PERTS_V2 if v2 else PERTS_V1
    CONTROL = dict(T.CONTROL) if v2 else {"perturbation": "none", "time_hours": 0}
    libs = LIBRARIES if v2 else None
    model_f = infer.folded(model)
    n = len(PERTS)
    refs = references(model, n)
    sigma_want = np.exp(0.5 * model_f.decoder_logvar.detach().numpy())
    worst = {}
    for kind in kinds:
        path = runtime.export_model(model_f, kind, genes, meta, tmp / f"{label}-{kind}.safetensors")
        print(f"{label} {kind}: {path.stat().st_size / 1e6:.2f} MB", flush=True)
        ref_model = infer.dequantized(model_f, kind)
        want = infer.predict_mean(ref_model, refs, PERTS, library_sizes=libs)
        t0 = time.time()
        got = runtime.predict(path, refs, genes, PERTS, library_sizes=libs)
        t_grouped = time.time() - t0
        w = {}
        w["log_cpm"] = check("predicted log-CPM (6 calls)", got.log_cpm, want, TOL)
        w["lfc"] = check("LFC vs reference", got.log_fold_change, want - refs, TOL)
        check("sigma", got.sigma, np.broadcast_to(sigma_want, got.sigma.shape), SIGMA_TOL)
        # versus control: LFC against the model's own prediction for the control perturbation
        gotc = runtime.predict(path, refs, genes, PERTS, versus="control", library_sizes=libs)
        ctrl = infer.predict_mean(ref_model, refs, [CONTROL] * n, library_sizes=libs)
        w["lfc_control"] = check("LFC vs control", gotc.log_fold_change, want - ctrl, TOL)
        check("predicted, versus control run", gotc.log_cpm, want, TOL)
        # the counterfactual mode (the CLI's default): the reference moved by the decoded change
        # from the control; its fold changes are against the reference, whatever `versus` says
        gotx = runtime.predict(path, refs, genes, PERTS, mode="counterfactual", library_sizes=libs)
        want_x = np.maximum(0.0, refs + (want - ctrl))
        w["counterfactual"] = check("counterfactual log-CPM", gotx.log_cpm, want_x, TOL)
        check("counterfactual LFC", gotx.log_fold_change, want_x - refs, TOL)
        gotxc = runtime.predict(path, refs, genes, PERTS, versus="control", mode="counterfactual", library_sizes=libs)
        assert np.array_equal(gotxc.log_fold_change, gotx.log_fold_change), "counterfactual: versus control"
        if model.format_version >= 3:
            # the denoised mode (the CLI's default on a format 3 file): the decoded profile plus the
            # reference's deviation from the control's profile, soft-thresholded per gene
            gotd = runtime.predict(path, refs, genes, PERTS, mode="denoised", library_sizes=libs)
            want_d = ref_model.denoised(torch.from_numpy(refs), torch.from_numpy(want), torch.from_numpy(ctrl)).numpy()
            moved = float(np.mean(np.abs(want_d - want_x) > 1e-3))
            assert 0.2 < moved < 0.95, f"the thresholds move {moved:.0%} of the values: the test would not see them"
            w["denoised"] = check("denoised log-CPM", gotd.log_cpm, want_d, TOL)
            check("denoised LFC", gotd.log_fold_change, want_d - refs, TOL)
        w["sampled_counterfactual"] = check_sampled_counterfactual(path, ref_model, refs, genes)
        # one reference: the CLI's single-sample column layout
        one = runtime.predict(path, refs[:1], genes, PERTS[:1], library_sizes=None if libs is None else libs[:1])
        check("one reference", one.log_cpm, want[:1], TOL)
        if timing:
            same = [PERTS[0]]
            want1 = infer.predict_mean(ref_model, refs, same * n)
            t0 = time.time()
            got1 = runtime.predict(path, refs, genes, same)
            t_one = time.time() - t0
            check(f"{n} refs, one perturbation", got1.log_cpm, want1, TOL)
            print(f"  time: {n} references, one perturbation = one CLI call: {t_one:.2f} s; "
                  f"{len({runtime._key(p) for p in PERTS})} perturbations = that many calls: {t_grouped:.2f} s",
                  flush=True)
        worst[kind] = w
    return worst, refs, path


def check_sampled_counterfactual(path, ref_model, refs, genes, seed=42, draw=2):
    """infer.golden_case (what tests/golden holds for the counterfactual and denoised modes) against
    the CLI's sampled draws: the same draw of the technical and biological latents for the
    perturbation and the control, the control's perturbation latent drawn as one more perturbation
    (prior row 1)."""
    pert = next(p for p in PERTS if p["perturbation"] == "dexamethasone")
    cases = {}
    for denoised in [False, True] if ref_model.denoise_threshold is not None else [False]:
        cases[denoised], _ = infer.golden_case(ref_model, refs[0], ["technical", "biological"], {}, {}, pert, "sample",
                                               seed=seed, sample_index=draw, control_md=CONTROL, denoised=denoised)
    runs = [("counterfactual", cases[False]["log_cpm"]), ("decoded", cases[False]["decoded_log_cpm"])]
    if True in cases:
        runs.append(("denoised", cases[True]["log_cpm"]))
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="refcast-test-runtime-") as d:
        sample, result = Path(d) / "ref.tsv", Path(d) / "pred.tsv"
        runtime._write_tsv(sample, runtime.gene_ids(genes), ["ref0"], refs[:1])
        for mode, want in runs:
            cmd = [str(runtime.binary()), "predict", "--model", str(path), "--sample", str(sample),
                   "--values", "log-cpm", "--backend", "cpu", "--mode", mode, "-p", pert["perturbation"],
                   "--set", f"perturbation={pert['perturbation']}"] + \
                [a for k, v in pert.items() if k != "perturbation" for a in ("--set", f"{k}={v}")] + [
                   "--num-samples", str(draw + 1), "--seed", str(seed), "--top", "0", "-o", str(result)]
            subprocess.run(cmd, check=True, capture_output=True, text=True)
            df = pd.read_csv(result, sep="\t", keep_default_na=False)
            got = df[df["draw"] == draw]["predicted"].to_numpy(dtype=np.float32)
            worst = max(worst, check(f"sampled draw {draw}, {mode}", got, np.asarray(want), TOL))
    return worst


def check_refusals(path, refs, genes):
    """What the CLI says to values outside [0, 13.9] (log2 microarray intensities go up to ~15)."""
    out = {}
    for what, value in [("log2 intensity 14.5", 14.5), ("negative value -0.5", -0.5)]:
        bad = refs[:2].copy()
        bad[1, 10] = value
        try:
            runtime.predict(path, bad, genes, PERTS[:1])
            out[what] = None
            print(f"  {what}: accepted", flush=True)
        except runtime.RuntimeRefused as e:
            msg = str(e).split("\n  command:")[0]
            out[what] = msg
            print(f"  {what}: refused: {msg}", flush=True)
    ok = refs[:1].copy()
    ok[0, 10] = runtime.MAX_LOG_CPM
    runtime.predict(path, ok, genes, PERTS[:1])
    print(f"  {runtime.MAX_LOG_CPM} exactly: accepted", flush=True)
    return out


def main():
    torch.set_num_threads(1)
    print(f"runtime: {runtime.binary()}", flush=True)
    meta = synthetic_meta()
    with tempfile.TemporaryDirectory(prefix="refcast-test-runtime-") as d:
        tmp = Path(d)
        # the architecture entry read from the model equals the config's for the shipped sizes
        G = C.N_GENES
        genes = synthetic_genes(G)
        model = random_model(G, meta)
        assert export.architecture(model, G) == {"genes": G, "latent": dict(C.LATENT), "activation": "gelu_tanh",
                                                  "layer_norm_eps": 1e-5, "encoder": dict(C.ENC),
                                                  "decoder": dict(C.DEC), "prior": dict(C.PRIOR)}
        worst, refs, path = run_case("shipped-size", model, meta, genes, ["q8_0", "q4_0", "f32"], tmp, timing=True)
        print("refusals (shipped-size f32 file)", flush=True)
        check_refusals(path, refs, genes)
        small = dict(latent={"technical": 4, "biological": 6, "perturbation": 5},
                     enc={"hidden": 64, "ff": 96, "blocks": 1}, dec={"hidden": 32, "ff": 64, "blocks": 2},
                     prior={"hidden": 32, "ff": 32, "blocks": 1})
        run_case("tiny", random_model(96, meta, seed=3, **small), meta, synthetic_genes(96), ["q8_0", "q4_0"], tmp)
        # format 2 files (no denoising thresholds) still run as before
        run_case("tiny format 2", random_model(96, meta, seed=5, format_version=2, **small), meta, synthetic_genes(96),
                 ["q8_0"], tmp)
        # format 1 files (no covariates, no perturbation path) still run as before
        v1_meta = meta[meta.dataset != "glioblastoma"].drop(columns=["perturbation_class", "dose_um", "library_size"])
        run_case("tiny format 1", random_model(96, v1_meta, seed=4, format_version=1, **small), v1_meta,
                 synthetic_genes(96), ["q8_0", "f32"], tmp)
    print("summary (max |runtime - PyTorch dequantized|, shipped sizes):")
    for kind, w in worst.items():
        print(f"  {kind}: " + ", ".join(f"{k} {v:.2e}" for k, v in w.items()))
    print("ok")


if __name__ == "__main__":
    main()
