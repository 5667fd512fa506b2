"""Stage `evaluate`: held-out evaluation of the fold models against baselines on the same splits.

What it answers (models/EVALUATION.md, generated from the numbers in models/evaluation.json):
  * does a prediction follow *this* reference, beyond its population (individual residual r)?
  * does refcast beat each baseline, with paired bootstrap intervals over held-out contexts?
  * does a perturbation keep its identity when applied in a context where it was never measured?
  * scGen's own protocol on Kang; calibration of σ; how far each reference is from what the model
    knows (the data for an "outside what the model knows" warning);
  * the quantized files scored through the Rust runtime, and the shipped model scored on a dataset
    that no model of the pipeline trained on.
Every choice a baseline makes (λ, ridge α, DEG sets) is fit on the fold's training units only.
"""
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import config as C
from . import infer
from . import train as T
from .evaluate_report import report

BASELINES = ["no change", "mean shift", "target-state mean", "shrinkage", "nearest-context shift", "linear",
             "PCA arithmetic", "vector arithmetic"]
REFCAST = ["refcast f32", "refcast Q8_0", "refcast Q4_0"]
N_DEGS = 100
BOOTSTRAP = 2000
INTERVAL_Z = {"coverage50": 0.6744897501960817, "coverage90": 1.6448536269514722}
LATE_HOURS = 45.0      # flu: time points from which the challenge response is under way
EARLY_HOURS = (5.0, 12.0)


# ------------------------------------------------------------------ metrics
def pearson(a, b):
    """Pearson r; 0 when `b` (the prediction) is constant, NaN when `a` (the truth) is."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean()
    b = b - b.mean()
    sa, sb = (a * a).sum(), (b * b).sum()
    # below ~1e-5 per gene a vector is float32 rounding, not a prediction (reference + shift − shift)
    if sa <= 1e-10 * len(a):
        return float("nan")
    if sb <= 1e-10 * len(b):
        return 0.0
    return float((a * b).sum() / np.sqrt(sa * sb))


def item_metrics(ref, true, pred, shift, target_mean, pop_degs, rep_degs, sigma=None):
    """All metrics of one (reference, target, prediction), over the genes the dataset measures.

    shift / target_mean: the population LFC and target-state mean from the training contexts;
    pop_degs: top genes of that population LFC; rep_degs: genes from replicates that are neither
    the reference nor the target (None where the dataset has none)."""
    lt, lp = true - ref, pred - ref
    indiv = np.union1d(pop_degs, rep_degs) if rep_degs is not None else pop_degs
    out = {
        "r2_all": pearson(true, pred) ** 2,
        "r2_pop": pearson(true[pop_degs], pred[pop_degs]) ** 2,
        "pearson_lfc_all": pearson(lt, lp),
        "pearson_lfc_pop": pearson(lt[pop_degs], lp[pop_degs]),
        "pearson_lfc_rep": pearson(lt[rep_degs], lp[rep_degs]) if rep_degs is not None else float("nan"),
        "sign_top20": float(np.mean(np.sign(lp[pop_degs[:20]]) == np.sign(lt[pop_degs[:20]]))),
        "mae": float(np.abs(pred - true).mean()),
        # the sample's own response beyond its population's (the definition)
        "indiv_r": pearson(lt[indiv] - shift[indiv], lp[indiv] - shift[indiv]),
        # the sample's own perturbed state beyond the population's perturbed state
        "indiv_state_r": pearson(true[indiv] - target_mean[indiv], pred[indiv] - target_mean[indiv]),
    }
    if sigma is not None:
        err = np.abs(true - pred)
        for k, z in INTERVAL_Z.items():
            out[k] = float(np.mean(err <= z * sigma))
    return out


# ------------------------------------------------------------------ held-out items
def kang_unit(meta, t, pert, unit):
    k = meta[(meta.dataset == "kang") & (meta.cell_type == t) & (meta.unit == unit)]
    k = k[(k.perturbation == "none") if pert == "none" else (k.perturbation != "none")]
    return int(k.index[0])


def eval_items(meta, kang, fold, held=None):
    """Held-out (dataset, context, reference, target) items of `fold`, with their replicate data;
    with `held`, the (control -> perturbed) pairs of those units instead (Kang by full pseudobulks)."""
    pairs_of = held is not None
    held = T.heldout_mask(meta, kang, fold) if held is None else held
    items = []
    types = T.eval_types(kang)
    if pairs_of:
        for t in sorted(set(meta.cell_type[held & (meta.dataset == "kang").values])):
            sel = held & (meta.dataset == "kang").values & (meta.cell_type == t).values & (meta.unit == "full").values
            r, g = meta.index[sel & (meta.perturbation == "none").values], meta.index[sel & (meta.perturbation != "none").values]
            if len(r) and len(g):
                items.append(dict(ds="kang", ctx=t, ref=int(r[0]), tgt=int(g[0])))
    if isinstance(fold, int) and fold < len(types):
        t = types[fold]
        items.append(dict(ds="kang", ctx=t, ref=kang_unit(meta, t, "none", "halfA"),
                          tgt=kang_unit(meta, t, "IFN-beta", "halfA"), label=t,
                          rep_ref=kang_unit(meta, t, "none", "halfB"),
                          rep_degs=kang["degs_half_b"][t]["top100_abs"], group=""))
    for ds in T.SUBJECT_FOLD_DATASETS:
        # one reference per held-out context: its control sample (or full pseudobulk), and every
        # perturbed sample (full pseudobulk) of the context as a target
        sub = meta[held & (meta.dataset == ds).values & meta.unit.isin(["sample", "full"]).values]
        for ctx, g in sub.groupby("context"):
            g = g.sort_values("time_hours")
            ref = g.index[g.perturbation == "none"]
            if len(ref) == 0:
                continue
            name = ctx.split("|", 1)[1]
            for i in g.index[g.perturbation != "none"]:
                label = name + (f" {int(meta.time_hours[i])} h" if ds == "flu" else
                                f" {meta.perturbation[i]}" if ds == "macrophage" else "")
                it = dict(ds=ds, ctx=name, ref=int(ref[0]), tgt=int(i), label=label, rep_ref=None, rep_degs=None,
                          group=str(meta.symptoms[i]) if ds == "flu" else "")
                if ds == "flu":
                    # the subject's own response from samples that are neither reference nor target
                    late = [j for j in g.index if meta.time_hours[j] >= LATE_HOURS and j != i]
                    early = [j for j in g.index if meta.time_hours[j] in EARLY_HOURS and j != i]
                    it["rep_pair"] = (early, late)
                items.append(it)
    return items


# ------------------------------------------------------------------ baselines
def context_profiles(X, meta, train, ds):
    """ctx -> {"none": control vector, (perturbation, time): target-state vector}, training units."""
    tr = train & (meta.dataset == ds).values
    if (meta.unit.values[tr] == "full").any():     # pseudobulk datasets: the full pseudobulks only
        tr &= (meta.unit == "full").values
    out = {}
    for i in np.where(tr)[0]:
        key = "none" if meta.perturbation[i] == "none" else (meta.perturbation[i], float(meta.time_hours[i]))
        out.setdefault(meta.context[i], {}).setdefault(key, []).append(X[i])
    return {c: {k: np.mean(v, 0) for k, v in d.items()} for c, d in out.items()}


def pairs_for(profiles, pert, hours):
    key = (pert, float(hours))
    cs = [c for c, d in profiles.items() if "none" in d and key in d]
    return cs, np.array([profiles[c]["none"] for c in cs]), np.array([profiles[c][key] for c in cs])


def loo_shrinkage(ctrl, tgt):
    """λ of target-state mean + λ·(reference − control mean), minimising leave-one-context-out
    squared error over the training contexts (closed form), clipped to [0, 1.5]."""
    n = len(ctrl)
    if n < 3:
        return 1.0
    num = den = 0.0
    for c in range(n):
        o = np.arange(n) != c
        a = ctrl[c] - ctrl[o].mean(0)
        b = tgt[c] - tgt[o].mean(0)
        num += float(a @ b)
        den += float(a @ a)
    return float(np.clip(num / den, 0.0, 1.5)) if den > 0 else 1.0


RIDGE_GRID = np.logspace(-3, 3, 13)


def _ridge_weights(gram, train, query, alpha):
    """Kernel ridge (linear kernel on control profiles centred over `train`) in dual form: the
    weights w with prediction = mean LFC + w · (LFC[train] − mean LFC). gram = ctrl·ctrlᵀ / genes."""
    g = gram[np.ix_(train, train)]
    r = g.mean(1)
    K = g - r[:, None] - r[None, :] + g.mean()
    k = gram[train, query] - r - gram[query, train].mean() + g.mean()
    return np.linalg.solve(K + alpha * max(np.trace(K), 1e-12) / len(K) * np.eye(len(K)), k)


def loo_ridge_alpha(ctrl, lfc):
    """Ridge from a context's control profile to its LFC; α by leave-one-context-out."""
    n = len(ctrl)
    gram = ctrl @ ctrl.T / ctrl.shape[1]
    best, best_err = RIDGE_GRID[-1], np.inf
    for alpha in RIDGE_GRID:
        err = 0.0
        for c in range(n):
            o = np.where(np.arange(n) != c)[0]
            lm = lfc[o].mean(0)
            pred = lm + _ridge_weights(gram, o, c, alpha) @ (lfc[o] - lm)
            err += float(((pred - lfc[c]) ** 2).sum())
        if err < best_err:
            best, best_err = alpha, err
    return best


class Population:
    """What the training contexts of one dataset say about one (perturbation, time)."""

    def __init__(self, X, meta, train, ds, pert, hours, measured, fit=True):
        prof = context_profiles(X, meta, train, ds)
        self.contexts, self.ctrl, self.tgt = pairs_for(prof, pert, hours)
        if len(self.contexts) == 0:
            raise ValueError(f"no training context of {ds} has {pert} at {hours} h")
        self.lfc = self.tgt - self.ctrl
        self.shift, self.ctrl_mean, self.tgt_mean = self.lfc.mean(0), self.ctrl.mean(0), self.tgt.mean(0)
        mi = np.where(measured)[0]
        self.degs = mi[np.argsort(-np.abs(self.shift[mi]), kind="stable")[:N_DEGS]]
        self.measured = mi
        self.lam = self.alpha = None
        if not fit:     # the population response only (perturbation signatures)
            return
        self.lam = loo_shrinkage(self.ctrl[:, mi], self.tgt[:, mi])
        self.alpha = loo_ridge_alpha(self.ctrl[:, mi], self.lfc[:, mi]) if len(mi) and len(self.ctrl) >= 3 else None

    def linear(self, ref):
        if self.alpha is None:
            return ref + self.shift
        mi = self.measured
        ctrl = np.vstack([self.ctrl[:, mi], ref[mi][None]])
        n = len(self.ctrl)
        w = _ridge_weights(ctrl @ ctrl.T / len(mi), np.arange(n), n, self.alpha)
        return ref + self.shift + w @ (self.lfc - self.shift)

    def nearest(self, ref):
        mi = self.measured
        c = int(np.argmax([pearson(ref[mi], v[mi]) for v in self.ctrl]))
        return ref + self.lfc[c]


_PCA = {}


def _pca(X, train, meta, ds, measured):
    """Top <=50 principal components of the dataset's training units (cached per split)."""
    trp = train & (meta.dataset == ds).values
    key = (ds, trp.tobytes())
    if key not in _PCA:
        Xt = X[trp][:, measured]
        mean = Xt.mean(0)
        k = int(min(50, Xt.shape[0] - 1))
        _, _, Vt = np.linalg.svd(Xt - mean, full_matrices=False)
        _PCA[key] = (mean, Vt[:k].T)
    return _PCA[key]


def other_tissue_shift(X, meta, train, masks, datasets, ds, pert, hours):
    """The perturbation's mean LFC in the training datasets other than `ds` that measured it, at each
    one's time point nearest `hours` (every dose), on the genes each measures (0 elsewhere; the mean
    where several do), converted to `ds`'s log base."""
    total, count = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    for other in sorted(set(meta.dataset[(meta.perturbation == pert).values & train]) - {ds}):
        prof = context_profiles(X, meta, train, other)
        times = sorted({k[1] for d in prof.values() for k in d if k != "none" and k[0] == pert})
        cs, ctrl, tgt = pairs_for(prof, pert, min(times, key=lambda t: (abs(t - hours), t)))
        if not cs:
            continue
        m = masks[datasets.index(other)]
        factor = LOG_BASE_FACTOR[(T.scale(other) == "log2_array", T.scale(ds) == "log2_array")]
        total[m] += factor * (tgt - ctrl).mean(0)[m]
        count[m] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


# log2 (arrays) -> ln (log1p CPM) and back: (from log2, to log2) -> factor
LOG_BASE_FACTOR = {(False, False): 1.0, (True, True): 1.0, (True, False): np.log(2.0), (False, True): 1 / np.log(2.0)}


def unseen_tissue_baselines(X, meta, train, masks, datasets, ds, ref, pop, pert, hours):
    """Baselines for a reference of a tissue the fold never saw (no training unit of its dataset):
    no change; the shift the perturbation caused in the other tissues that measured it (what a user
    with the public data could do); and, as an upper reference no user has, the shift measured in the
    held-out tissue's other samples."""
    return {"no change": ref.copy(),
            "other-tissue shift": ref + other_tissue_shift(X, meta, train, masks, datasets, ds, pert, hours),
            "same-tissue shift (oracle)": ref + pop.shift}


def baselines(X, meta, train, ds, ref, pop, pert, hours, measured):
    """Every baseline for one reference, from the fold's training units of the same dataset."""
    out = {"no change": ref.copy(), "mean shift": ref + pop.shift, "target-state mean": pop.tgt_mean.copy(),
           "shrinkage": pop.tgt_mean + pop.lam * (ref - pop.ctrl_mean), "nearest-context shift": pop.nearest(ref),
           "linear": pop.linear(ref)}
    mean, P = _pca(X, train, meta, ds, measured)
    pca = ref.copy()
    pca[measured] = mean + ((ref[measured] - mean) @ P + (pop.shift[measured]) @ P) @ P.T
    out["PCA arithmetic"] = pca
    if ds == "kang":
        # scGen's pooled arithmetic, cell-weighted: all training stimulated cells minus all control
        # cells (every control cell is training data); for the bulk datasets it equals mean shift
        full = (meta.dataset == "kang").values & (meta.unit == "full").values
        sel_c = full & (meta.perturbation == "none").values
        sel_p = full & train & (meta.perturbation == pert).values & (meta.time_hours == hours).values
        w_c, w_p = meta.n_cells.values[sel_c].astype(float), meta.n_cells.values[sel_p].astype(float)
        delta = (X[sel_p] * w_p[:, None]).sum(0) / w_p.sum() - (X[sel_c] * w_c[:, None]).sum(0) / w_c.sum()
        out["vector arithmetic"] = ref + delta
    return out


# ------------------------------------------------------------------ models
def filled(model, X, masks, datasets, meta, idx):
    d = meta.dataset_idx.values[idx]
    return np.where(masks[d], X[idx], model.gene_mean.numpy()[None, :]).astype(np.float32)


def pert_row(meta, i):
    return {"perturbation": meta.perturbation[i], "perturbation_class": meta.perturbation_class[i],
            "time_hours": float(meta.time_hours[i]), "dose_um": float(meta.dose_um[i])}


def named_pert(meta, p, hours):
    """The metadata row of perturbation `p` at `hours` as the units that measured it have it."""
    i = meta.index[(meta.perturbation == p) & (meta.time_hours == hours)][0]
    return pert_row(meta, i)


def controls(n):
    return [dict(T.CONTROL)] * n


def libraries(meta, idx):
    return meta.library_size.values[np.asarray(idx)].astype(float)


def training_pairs(model, X, masks, datasets, meta, train, kang):
    """Every training (control → perturbed) pair of the datasets with held-out contexts, predicted:
    (reference, target, decode(perturbation), decode(control), measured mask), each [pairs, G]; None
    without pairs."""
    pairs = eval_items(meta, kang, None, train & meta.dataset.isin(["kang"] + T.SUBJECT_FOLD_DATASETS).values)
    if not pairs:
        return None
    ri = np.array([it["ref"] for it in pairs])
    ti = np.array([it["tgt"] for it in pairs])
    refs_f = filled(model, X, masks, datasets, meta, ri)
    lib = libraries(meta, ri)
    decoded = infer.predict_mean(model, refs_f, [pert_row(meta, t) for t in ti], library_sizes=lib)
    control = infer.predict_mean(model, refs_f, controls(len(ri)), library_sizes=lib)
    return X[ri], X[ti], decoded, control, masks[meta.dataset_idx.values[ri]]


def gene_gain(pairs, genes):
    """Per gene, the least-squares factor w of true change ≈ w · (decode(perturbation) −
    decode(control)) over the training pairs, clipped to [0, 2] (1 where a gene has no pairs)."""
    if pairs is None:
        return np.ones(genes, dtype=np.float32)
    ref, tgt, decoded, control, m = pairs
    pred, true = decoded - control, tgt - ref
    num = (pred * true * m).sum(0)
    den = (pred * pred * m).sum(0)
    return np.where(den > 1e-6, np.clip(num / np.maximum(den, 1e-12), 0.0, 2.0), 1.0).astype(np.float32)


# Candidate denoising thresholds (ln units). Capped at 1: whatever a gene's fit, at most 1 of a
# reference's deviation from its reconstruction is dropped, so reconstruction error can move a
# predicted fold change by no more than that.
THRESHOLDS = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0], dtype=np.float32)


def calibrate_quantization(model, X, masks, datasets, meta, train, per_dataset=40):
    """infer.calibrate_quantization on up to `per_dataset` training units of each dataset (fixed
    draw), each under its own perturbation: the same recipe for fold models and the shipped one."""
    rng = np.random.default_rng(C.SEED)
    idx = []
    for d in range(len(datasets)):
        units = np.where(train & (meta.dataset_idx == d).values)[0]
        if len(units):
            idx.append(rng.choice(units, min(per_dataset, len(units)), replace=False))
    idx = np.sort(np.concatenate(idx))
    return infer.calibrate_quantization(model, filled(model, X, masks, datasets, meta, idx),
                                        [pert_row(meta, i) for i in idx], libraries(meta, idx))


def noise_thresholds(pairs, genes):
    """Per gene, the threshold τ of the denoised mode, decoded + soft(reference − control, τ), that
    best predicts the perturbed sample over the training pairs (least squares over THRESHOLDS; 0,
    the counterfactual mode, where a gene has no pairs). A soft threshold, because a reference
    differs from its reconstruction by measurement noise, which the perturbed sample (another
    measurement) does not share, and by its own biology, which it does: small deviations are
    mostly the former, large ones the latter."""
    if pairs is None:
        return np.zeros(genes, dtype=np.float32)
    ref, tgt, decoded, control, m = pairs
    residual, want = ref - control, tgt - decoded
    err = np.stack([(((want - (residual - np.clip(residual, -t, t))) ** 2) * m).sum(0) for t in THRESHOLDS])
    best = THRESHOLDS[np.argmin(err, 0)]
    return np.where(m.sum(0) > 0, best, 0.0).astype(np.float32)


def counterfactual(reference, decoded, control):
    """The runtime's counterfactual prediction: max(0, reference + (decoded − control))."""
    return np.maximum(0.0, reference + (decoded - control))


def denoised(reference, decoded, control, threshold):
    """The runtime's denoised prediction (the default): max(0, decoded + soft(reference − control,
    threshold)); RefcastVAE.denoised in numpy."""
    residual = reference - control
    return np.maximum(0.0, decoded + (residual - np.clip(residual, -threshold, threshold)))


def runtime_variants(model_f, fold_name, genes, meta, refs, perts, ref_lib=None, measured_refs=None):
    """Q8_0 and Q4_0 predictions made by the Rust runtime from exported files. The runtime takes
    log-CPM in [0, runtime.MAX_LOG_CPM]; references outside it (log2 microarray intensities above
    13.9) are refused there, so those rows come from the dequantized PyTorch model instead and are
    marked (`via_runtime` False)."""
    from . import runtime
    ok = refs.max(1) <= runtime.MAX_LOG_CPM
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="refcast-eval-"))
    for kind in ("q8_0", "q4_0"):
        pred = np.zeros_like(refs)
        if not ok.all():
            dq = infer.dequantized(model_f, kind)
            pred = denoised(measured_refs, infer.predict_mean(dq, refs, perts, library_sizes=ref_lib),
                            infer.predict_mean(dq, refs, controls(len(refs)), library_sizes=ref_lib),
                            model_f.denoise_threshold.numpy())
        if ok.any():
            path = tmp / f"{fold_name}-{kind}.safetensors"
            runtime.export_model(model_f, kind, genes, meta, path)
            sel = np.where(ok)[0]
            pred[sel] = runtime.predict(path, refs[sel], genes, [perts[i] for i in sel], mode="denoised",
                                        library_sizes=None if ref_lib is None else ref_lib[sel]).log_cpm
        out[f"refcast {kind.upper()}"] = (pred, ok)
    return out


def centroids(model, X, masks, datasets, meta, train):
    """Per training context: the mean encoder latent (μ over technical ‖ biological) of its untreated
    units, what a new reference is compared with. -> (context names, [contexts, Dt+Db], units each)."""
    tr = np.where(train & (meta.perturbation == "none").values)[0]
    mu_tr = infer.encoder_means(model, filled(model, X, masks, datasets, meta, tr), libraries(meta, tr))
    ctx = meta.context.values[tr]
    names = sorted(set(ctx))
    return names, np.stack([mu_tr[ctx == c].mean(0) for c in names]), [int((ctx == c).sum()) for c in names]


def familiarity(model, X, masks, datasets, meta, train, ref_idx, ref_f=None, measured=None, ref_lib=None):
    """How well the model reconstructs each reference, and its latent distance to the nearest
    training context (centroid of that context's untreated units' encoder means)."""
    names, cents, _ = centroids(model, X, masks, datasets, meta, train)
    if ref_f is None:
        ref_f = filled(model, X, masks, datasets, meta, np.asarray(ref_idx))
        measured = masks[meta.dataset_idx.values[np.asarray(ref_idx)]]
        ref_lib = libraries(meta, ref_idx)
    mu = infer.encoder_means(model, ref_f, ref_lib)
    rec = infer.predict_mean(model, ref_f, controls(len(ref_f)), library_sizes=ref_lib)
    dist = np.sqrt(((mu[:, None, :] - cents[None]) ** 2).sum(-1))
    near = dist.argmin(1)
    return [{"reconstruction_r2": pearson(ref_f[k][measured[k]], rec[k][measured[k]]) ** 2,
             "latent_distance": float(dist[k, near[k]]), "nearest_context": names[near[k]]}
            for k in range(len(ref_f))]


# ------------------------------------------------------------------ perturbation transfer
# Datasets whose perturbations are scored for identity across contexts: those with held-out
# contexts, and two with one context each as distractors. The L1000 and TG-GATEs compounds
# (hundreds, measured on panels of 978 and 196 genes in one cell type each) are left out.
IDENTITY_DATASETS = ["kang"] + T.SUBJECT_FOLD_DATASETS + ["mait", "hsmm"]


def canonical_times(X, meta, train, masks, datasets):
    """Per perturbation: its dataset and the time point with the largest population response."""
    out = {}
    for p in sorted(set(meta.perturbation[meta.dataset.isin(IDENTITY_DATASETS)]) - {"none"}):
        # the first identity dataset that measured it and has training units of it in this fold
        trained = meta.dataset[(meta.perturbation == p) & train & meta.dataset.isin(IDENTITY_DATASETS)]
        if trained.empty:
            continue
        ds = trained.iloc[0]
        measured = masks[datasets.index(ds)]
        best = None
        for h in sorted(set(meta.time_hours[(meta.perturbation == p) & train & (meta.dataset == ds)])):
            try:
                pop = Population(X, meta, train, ds, p, h, measured, fit=False)
            except ValueError:
                continue
            norm = float(np.linalg.norm(pop.shift[measured]))
            if best is None or norm > best[0]:
                best = (norm, h, pop)
        if best:
            out[p] = {"dataset": ds, "hours": best[1], "signature": best[2].shift, "degs": best[2].degs,
                      "measured": measured, "row": named_pert(meta, p, best[1])}
    return out


def identity_row(resp, p, sigs, union):
    """Score one response (predicted or measured) as perturbation `p`: its correlation with each
    perturbation's signature over the union of their top genes that the signature's dataset
    measures; identified when `p`'s own signature is the closest."""
    corr = {}
    for q in sorted(sigs):
        g = union[sigs[q]["measured"][union]]
        corr[q] = pearson(sigs[q]["signature"][g], resp[g])
    others = max(v for q, v in corr.items() if q != p)
    closest = max(corr, key=corr.get)
    return dict(perturbation=p, perturbation_dataset=sigs[p]["dataset"], r_own=corr[p], margin=corr[p] - others,
                identified=bool(closest == p), closest=closest, r_all=corr)


def signature_genes(sigs):
    return np.unique(np.concatenate([sigs[p]["degs"] for p in sorted(sigs)]))


def transfer_rows(model, fold, refs_f, ref_meta, sigs, ref_lib=None):
    """Apply every perturbation to every held-out reference; score its identity."""
    union = signature_genes(sigs)
    n = len(refs_f)
    base = infer.predict_mean(model, refs_f, controls(n), library_sizes=ref_lib)
    rows = []
    for p in sorted(sigs):
        pred = infer.predict_mean(model, refs_f, [sigs[p]["row"]] * n, library_sizes=ref_lib)
        resp = pred - base       # the perturbation's own effect: reconstruction error cancels
        for k in range(n):
            rows.append(dict(identity_row(resp[k], p, sigs, union), fold=str(fold),
                             reference_dataset=ref_meta[k]["dataset"], reference=ref_meta[k]["label"],
                             measured_here=sigs[p]["dataset"] == ref_meta[k]["dataset"]))
    return rows


def training_fit_rows(model, X, masks, datasets, meta, train, sigs, fold, n_refs=10):
    """How well the model fits each perturbation's response where it was trained: its predicted
    response on up to `n_refs` training references of the signature's dataset, averaged, against
    the signature (the mean measured change of those training contexts) over the signature's top
    genes: slope (1 = full size) and r. Training data only: it tells an underfit response from one
    that does not carry over to new contexts."""
    rows = []
    for p in sorted(sigs):
        ds = sigs[p]["dataset"]
        idx = np.where(train & (meta.dataset == ds).values & (meta.perturbation == "none").values)[0][:n_refs]
        if len(idx) == 0:
            continue
        refs = filled(model, X, masks, datasets, meta, idx)
        lib = libraries(meta, idx)
        resp = (infer.predict_mean(model, refs, [sigs[p]["row"]] * len(idx), library_sizes=lib)
                - infer.predict_mean(model, refs, controls(len(idx)), library_sizes=lib)).mean(0)
        g, sig = sigs[p]["degs"], sigs[p]["signature"]
        rows.append(dict(fold=str(fold), perturbation=p, dataset=ds, references=int(len(idx)),
                         slope=float((sig[g] * resp[g]).sum() / max((sig[g] ** 2).sum(), 1e-12)),
                         r=pearson(sig[g], resp[g])))
    return rows


def measured_identity_rows(X, meta, items, sigs, fold):
    """The same score for the measured responses (target − reference) of the fold's held-out pairs
    at each perturbation's signature time: how identifiable the perturbation is in its own
    held-out contexts from data alone, the ceiling of the predicted responses' score."""
    union = signature_genes(sigs)
    rows = []
    for it in items:
        p, h = meta.perturbation[it["tgt"]], float(meta.time_hours[it["tgt"]])
        if p in sigs and sigs[p]["dataset"] == it["ds"] and h == sigs[p]["hours"]:
            rows.append(dict(identity_row(X[it["tgt"]] - X[it["ref"]], p, sigs, union), fold=str(fold),
                             reference_dataset=it["ds"], reference=meta.context[it["ref"]]))
    return rows


# ------------------------------------------------------------------ Kang in scGen's protocol
def scgen_protocol(model, X, masks, datasets, meta, kang, cellmeans, fold, train):
    types = T.eval_types(kang)
    if not (isinstance(fold, int) and fold < len(types)):
        return []
    t = types[fold]
    keys = list(cellmeans["keys"])
    cm, cmask = cellmeans["means"], cellmeans["mask"]
    g = np.where(cmask)[0]
    all_types = kang["all_types"]
    trained = [u for u in all_types if train[kang_unit(meta, u, "IFN-beta", "full")]]
    # per gene: pseudobulk LFC -> LFC of cell-level means, fit through the origin on training types
    xs = np.stack([X[kang_unit(meta, u, "IFN-beta", "full")] - X[kang_unit(meta, u, "none", "full")] for u in trained])
    ys = np.stack([cm[keys.index(f"{u}|stim")] - cm[keys.index(f"{u}|ctrl")] for u in trained])
    slope = np.clip((xs * ys).sum(0) / np.maximum((xs * xs).sum(0), 1e-6), 0.0, 1.5)
    ri = kang_unit(meta, t, "none", "full")
    ref_f = filled(model, X, masks, datasets, meta, np.array([ri]))
    lib = libraries(meta, [ri])
    pred = infer.predict_mean(model, ref_f, [named_pert(meta, "IFN-beta", 6.0)], library_sizes=lib)[0]
    base = infer.predict_mean(model, ref_f, controls(1), library_sizes=lib)[0]
    ctrl, stim = cm[keys.index(f"{t}|ctrl")], cm[keys.index(f"{t}|stim")]
    # the default (denoised) mode's change is its prediction − reference; the counterfactual mode's
    # decode(perturbation) − decode(control); the decoded mode's decode(perturbation) − reference
    change = denoised(X[ri], pred, base, model.denoise_threshold.numpy()) - X[ri]
    preds = {"refcast f32": ctrl + slope * change, "refcast counterfactual": ctrl + slope * (pred - base),
             "refcast decoded": ctrl + slope * (pred - X[ri]),
             "mean shift": ctrl + ys.mean(0), "no change": ctrl}
    pos = {gi: j for j, gi in enumerate(g)}
    up = np.array([pos[_GIDX[s]] for s in kang["degs"][t]["top100_up_scgen"]])
    return [dict(cell_type=t, method=m, r2_all=pearson(stim[g], p[g]) ** 2,
                 r2_deg=pearson(stim[g][up], p[g][up]) ** 2) for m, p in preds.items()]


_GIDX = {}     # gene symbol -> model index, set by main()


# ------------------------------------------------------------------ calibration datasets
def load_calibration():
    """Datasets of tissues absent from training (prepare.prepare_calibration), never trained on:
    they calibrate the familiarity report's "outside what the model knows"."""
    p = C.PREPARED / "calibration.npz"
    if not p.exists():
        return None
    z = np.load(p, allow_pickle=False)
    return z["X"], z["measured"], pd.read_csv(C.PREPARED / "calibration.csv", keep_default_na=False)


def score_calibration(model, model_name, X, masks, datasets, meta, cal):
    """Familiarity of every calibration reference under one model (its training units: all of
    `meta` for the final model, the fold's for a fold model)."""
    Xc, measured, cmeta = cal
    ref_f = np.where(measured, Xc, model.gene_mean.numpy()[None, :]).astype(np.float32)
    train = np.ones(len(meta), dtype=bool) if model_name == "final" else \
        ~T.heldout_mask(meta, _KANG, _FOLDS[model_name])
    fam = familiarity(model, X, masks, datasets, meta, train, None, ref_f, measured,
                      cmeta.library_size.values.astype(float))
    return [dict(f, dataset="external", calibration_dataset=r["dataset"], model=model_name, reference=r["sample_id"],
                 perturbation_state=r["perturbation"]) for r, f in zip(cmeta.to_dict(orient="records"), fam)]


_KANG = {}
_FOLDS = {}


# ------------------------------------------------------------------ main
def main():
    from . import determinism
    threads = determinism.configure()
    use_runtime = os.environ.get("REFCAST_EVAL_RUNTIME", "1") != "0"
    t0 = time.time()
    X, masks, datasets, meta, genes, kang = T.load()
    _GIDX.update({g["symbol"]: i for i, g in enumerate(genes)})
    cellmeans = np.load(C.PREPARED / "kang_cellmeans.npz")
    rows, transfer, transfer_measured, training_fit, scgen, fam = [], [], [], [], [], []
    folds = T.all_folds(meta)
    only = os.environ.get("REFCAST_FOLDS")       # e.g. "0,1" for a quick look; the report needs all
    if only:
        folds = [f for f in folds if T.fold_name(f).removeprefix("fold") in only.split(",")]
    for fold in folds:
        name = T.fold_name(fold)
        path = C.RUNS / f"{name}.pt"
        model = infer.folded(T.load_model(path))
        train = ~T.heldout_mask(meta, kang, fold)
        items = eval_items(meta, kang, fold)
        if not items:
            continue
        ref_idx = np.array([it["ref"] for it in items])
        refs_f = filled(model, X, masks, datasets, meta, ref_idx)
        ref_lib = libraries(meta, ref_idx)
        perts = [pert_row(meta, it["tgt"]) for it in items]
        # the fold model's denoising thresholds, fit on its training pairs as export fits the
        # shipped model's
        pairs = training_pairs(model, X, masks, datasets, meta, train, kang)
        threshold = noise_thresholds(pairs, X.shape[1])
        model.set_denoise_threshold(threshold)
        decoded = infer.predict_mean(model, refs_f, perts, library_sizes=ref_lib)
        control = infer.predict_mean(model, refs_f, controls(len(perts)), library_sizes=ref_lib)
        # the default, denoised mode; the counterfactual mode, max(0, reference + decode(z_ref,
        # perturbation) − decode(z_ref, control)), where the decoder's reconstruction error of this
        # reference cancels whole; and the decoder's own profile
        preds = {"refcast f32": denoised(X[ref_idx], decoded, control, threshold),
                 "refcast counterfactual": counterfactual(X[ref_idx], decoded, control), "refcast decoded": decoded}
        # an anchoring alternative that is not shipped: the counterfactual change scaled per gene by
        # a factor fit on the fold's training contexts
        gain = gene_gain(pairs, X.shape[1])
        preds["refcast per-gene gain"] = np.maximum(0.0, X[ref_idx] + gain * (decoded - control))
        via_runtime = {}
        if use_runtime:
            calibrate_quantization(model, X, masks, datasets, meta, train)   # the quantized variants only
            for k, (p, ok) in runtime_variants(model, name, genes, meta, refs_f, perts, ref_lib, X[ref_idx]).items():
                preds[k], via_runtime[k] = p, ok
        sigma = np.exp(0.5 * model.decoder_logvar.detach().numpy())
        pops = {}
        for k, it in enumerate(items):
            ds, ri, ti = it["ds"], it["ref"], it["tgt"]
            d = datasets.index(ds)
            measured = masks[d]
            mi = np.where(measured)[0]
            key = (ds, meta.perturbation[ti], float(meta.time_hours[ti]))
            cand = {m: p[k] for m, p in preds.items()}
            unseen = not (train & (meta.dataset == ds).values).any()
            if unseen:
                # a tissue this fold never saw: the perturbation is known only from other datasets.
                # Its DEGs and population response come from the tissue's other held-out contexts
                # (never the scored pair).
                others = ~train & (meta.dataset == ds).values & (meta.context != meta.context[ri]).values
                pop = Population(X, meta, others, ds, key[1], key[2], measured, fit=False)
                cand.update(unseen_tissue_baselines(X, meta, train, masks, datasets, ds, X[ri], pop, key[1], key[2]))
            else:
                if key not in pops:
                    pops[key] = Population(X, meta, train, ds, key[1], key[2], measured)
                pop = pops[key]
                cand.update(baselines(X, meta, train, ds, X[ri], pop, key[1], key[2], measured))
            pos = np.full(X.shape[1], -1)
            pos[mi] = np.arange(len(mi))
            pop_degs = pos[pop.degs]
            rep = None
            if it["rep_degs"] is not None:
                rep = pos[[_GIDX[g] for g in it["rep_degs"]]]
            elif it.get("rep_pair"):
                early, late = it["rep_pair"]
                resp = X[late].mean(0) - X[early].mean(0)
                rep = np.argsort(-np.abs(resp[mi]), kind="stable")[:N_DEGS]
            ref, true = X[ri][mi], X[ti][mi]
            for meth, p in cand.items():
                r = item_metrics(ref, true, p[mi], pop.shift[mi], pop.tgt_mean[mi], pop_degs, rep,
                                 sigma[mi] if meth.startswith("refcast") else None)
                if it["rep_ref"] is not None:
                    # the same residual against an independent control replicate: shared noise of
                    # the reference cannot make it positive
                    rr = X[it["rep_ref"]][mi]
                    g = np.union1d(pop_degs, rep) if rep is not None else pop_degs
                    r["indiv_r_independent"] = pearson((true - rr - pop.shift[mi])[g], (p[mi] - ref - pop.shift[mi])[g])
                r.update(dataset=ds, context=it["ctx"], item=it["label"], fold=str(fold), method=meth,
                         via_runtime=bool(via_runtime[meth][k]) if meth in via_runtime else None,
                         perturbation=key[1], time_hours=key[2], group=it["group"],
                         study=str(meta.study[ti]), protocol="study" if isinstance(fold, str) else "context",
                         shrinkage_lambda=pop.lam, ridge_alpha=pop.alpha, unseen_tissue=unseen,
                         training_contexts=0 if unseen else len(pop.contexts))
                rows.append(r)
        # perturbation transfer and familiarity: every distinct held-out reference of the fold
        uniq = sorted({it["ref"] for it in items})
        ref_meta = [dict(dataset=meta.dataset[i], label=meta.context[i]) for i in uniq]
        sigs = canonical_times(X, meta, train, masks, datasets)
        transfer += transfer_rows(model, fold, filled(model, X, masks, datasets, meta, np.array(uniq)), ref_meta, sigs,
                                  libraries(meta, uniq))
        transfer_measured += measured_identity_rows(X, meta, items, sigs, fold)
        training_fit += training_fit_rows(model, X, masks, datasets, meta, train, sigs, fold)
        for i, f in zip(uniq, familiarity(model, X, masks, datasets, meta, train, uniq)):
            # a held-out reference of a tissue the fold never saw (a whole-tissue study fold) is not
            # in distribution: it calibrates nothing, it tests the thresholds
            unseen = not (train & (meta.dataset == meta.dataset[i]).values).any()
            fam.append(dict(f, dataset=meta.dataset[i], model=name, reference=meta.context[i], heldout=True,
                            unseen_tissue=unseen))
        scgen += [dict(r, fold=str(fold)) for r in scgen_protocol(model, X, masks, datasets, meta, kang, cellmeans, fold, train)]
        print(f"evaluate: {name}: {len(items)} items ({time.time() - t0:.0f} s)", flush=True)
    external = []
    cal = load_calibration()
    _KANG.update(kang)
    _FOLDS.update({T.fold_name(f): f for f in folds})
    if cal is not None and (C.RUNS / "final.pt").exists():
        final = infer.folded(T.load_model(C.RUNS / "final.pt"))
        fam += score_calibration(final, "final", X, masks, datasets, meta, cal)
        for fold in folds:     # the calibration references through every fold model too
            model = infer.folded(T.load_model(C.RUNS / f"{T.fold_name(fold)}.pt"))
            fam += score_calibration(model, T.fold_name(fold), X, masks, datasets, meta, cal)
    timings = json.load(open(C.RUNS / "timings.json")) if (C.RUNS / "timings.json").exists() else {}
    vocab = json.load(open(C.PREPARED / "vocabulary.json")) if (C.PREPARED / "vocabulary.json").exists() else {}
    pert = meta[meta.perturbation != "none"]
    shared = {p: sorted(set(g)) for p, g in pert.groupby("perturbation").dataset if g.nunique() > 1}
    report(dict(rows=rows, transfer=transfer, transfer_measured=transfer_measured, training_fit=training_fit, shared_perturbations=shared, scgen=scgen, familiarity=fam, external=external, kang=kang,
                timings=timings, vocabulary=vocab, eval_seconds=time.time() - t0, threads=threads,
                runtime=use_runtime, folds=[str(f) for f in folds]), np.random.default_rng(C.SEED))
