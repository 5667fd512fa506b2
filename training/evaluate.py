"""Stage `evaluate`: held-out evaluation of the per-fold models and the baselines on the same splits.

Writes models/evaluation.json and models/EVALUATION.md (+ PNG plots).
"""
import json
import os
import time

import numpy as np

from . import config as C
from . import infer
from . import train as T

METHODS = ["refcast f32", "refcast Q8_0", "refcast Q4_0", "no change", "mean shift",
           "vector arithmetic", "PCA arithmetic", "target-state mean"]
METRICS = ["r2_all", "r2_deg", "pearson_lfc_all", "pearson_lfc_deg", "sign_top20", "mae"]
DATASET_NAMES = {"kang": "Kang 2018 PBMC, IFN-beta (10x, pseudobulk per cell type)",
                 "flu": "Influenza H3N2 challenge, GSE30550 (whole blood, Affymetrix)",
                 "vaccine": "Influenza vaccination, GSE59635/GSE59654 (PBMC, Illumina arrays)",
                 "airway": "airway smooth muscle, dexamethasone (bulk RNA-seq)"}


def pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def metrics(ref, true, pred, degs, degs_up=None):
    lt, lp = true - ref, pred - ref
    out = {
        "r2_all": pearson(true, pred) ** 2,
        "r2_deg": pearson(true[degs], pred[degs]) ** 2,
        "pearson_lfc_all": pearson(lt, lp),
        "pearson_lfc_deg": pearson(lt[degs], lp[degs]),
        "sign_top20": float(np.mean(np.sign(lp[degs[:20]]) == np.sign(lt[degs[:20]]))),
        "mae": float(np.abs(pred - true).mean()),
    }
    if degs_up is not None:
        out["r2_deg_scgen"] = pearson(true[degs_up], pred[degs_up]) ** 2
    return out


def eval_items(meta, kang, fold):
    """(dataset, context, ref unit, target unit) pairs held out in `fold`."""
    held = T.heldout_mask(meta, kang, fold)
    items = []
    types = T.eval_types(kang)
    if fold < len(types):
        t = types[fold]
        k = meta[(meta.dataset == "kang") & (meta.cell_type == t) & (meta.unit == "full")]
        items.append(("kang", t, int(k.index[k.perturbation == "none"][0]),
                      int(k.index[k.perturbation != "none"][0]), t))
    for ds in ["flu", "vaccine", "airway"]:
        sub = meta[held & (meta.dataset == ds).values]
        for ctx, g in sub.groupby("context"):
            g = g.sort_values("time_hours")
            ref = g.index[g.perturbation == "none"]
            if len(ref) == 0:
                continue
            for i in g.index[g.perturbation != "none"]:
                label = ctx.split("|")[1]
                if ds == "flu":
                    label += f" {int(meta.time_hours[i])} h"
                items.append((ds, ctx.split("|")[1], int(ref[0]), int(i), label))
    return items


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


def baselines(X, meta, train, ds, ref_i, tgt_i, measured):
    """no change, mean shift, vector arithmetic, PCA arithmetic for one item (training units only)."""
    tgt_pert, tgt_time = meta.perturbation[tgt_i], meta.time_hours[tgt_i]
    tr = train & (meta.dataset == ds).values
    if ds == "kang":
        tr &= (meta.unit == "full").values
    ref = X[ref_i]
    # per training context: target-state mean minus control mean
    lfcs = []
    for ctx, g in meta[tr].groupby("context"):
        c = g.index[g.perturbation == "none"]
        p = g.index[(g.perturbation == tgt_pert) & (g.time_hours == tgt_time)]
        if len(c) and len(p):
            lfcs.append(X[p].mean(0) - X[c].mean(0))
    shift = np.mean(lfcs, 0)
    # pooled (scGen's vector arithmetic): mean of all training target-state units - mean of all
    # training control units (control units of the held-out context included), cell-weighted for Kang
    sel_c = tr & (meta.perturbation == "none").values
    sel_p = tr & (meta.perturbation == tgt_pert).values & (meta.time_hours == tgt_time).values
    if ds == "kang":
        sel_c = (meta.dataset == "kang").values & (meta.unit == "full").values & \
                (meta.perturbation == "none").values          # all control cells are training data
        w_c = meta.n_cells.values[sel_c].astype(float)
        w_p = meta.n_cells.values[sel_p].astype(float)
        mc, mp = (X[sel_c] * w_c[:, None]).sum(0) / w_c.sum(), (X[sel_p] * w_p[:, None]).sum(0) / w_p.sum()
    else:
        mc, mp = X[sel_c].mean(0), X[sel_p].mean(0)
    delta = mp - mc
    # PCA arithmetic: PCA of all training units of the dataset, delta in PC space, decode
    mean, P = _pca(X, train, meta, ds, measured)
    proj = lambda v: (v[measured] - mean) @ P
    zd = P.T @ (mp[measured] - mc[measured])
    pca = ref.copy()
    pca[measured] = mean + (proj(ref) + zd) @ P.T
    # ignores the reference: mean of the training units in the target state (a regression-to-the-mean
    # control for the bulk datasets, where DEGs are ranked by |true LFC| of the noisy reference)
    return {"no change": ref.copy(), "mean shift": ref + shift, "vector arithmetic": ref + delta,
            "PCA arithmetic": pca, "target-state mean": mp.copy()}


def main():
    import torch
    from threadpoolctl import threadpool_limits
    threads = int(os.environ.get("REFCAST_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    threadpool_limits(threads)
    t0 = time.time()
    X, masks, datasets, meta, genes, kang = T.load()
    symbols = [g["symbol"] for g in genes]
    gidx = {s: i for i, s in enumerate(symbols)}
    rows = []
    for fold in range(T.N_FOLDS):
        path = C.RUNS / f"fold{fold}.pt"
        model = infer.folded(T.load_model(path))
        variants = {"refcast f32": model, "refcast Q8_0": infer.dequantized(model, "q8_0"),
                    "refcast Q4_0": infer.dequantized(model, "q4_0")}
        train = ~T.heldout_mask(meta, kang, fold)
        items = eval_items(meta, kang, fold)
        gm = model.gene_mean.numpy()
        for ds, ctx, ri, ti, label in items:
            d = datasets.index(ds)
            measured = masks[d]
            ref_f = np.where(measured, X[ri], gm)
            pert = [{"perturbation": meta.perturbation[ti], "time_hours": float(meta.time_hours[ti])}]
            preds = {k: infer.predict_mean(m, ref_f[None], pert)[0] for k, m in variants.items()}
            preds.update(baselines(X, meta, train, ds, ri, ti, measured))
            mi = np.where(measured)[0]
            ref, true = X[ri][mi], X[ti][mi]
            pos = {g: j for j, g in enumerate(mi)}
            if ds == "kang":
                degs = np.array([pos[gidx[g]] for g in kang["degs"][ctx]["top100_abs"]])
                up = np.array([pos[gidx[g]] for g in kang["degs"][ctx]["top100_up_scgen"]])
                deg_def = "Wilcoxon on cells, top 100 by |z|"
            else:
                degs = np.argsort(-np.abs(true - ref))[:100]
                up = None
                deg_def = "top 100 by |true LFC|"
            for meth, p in preds.items():
                r = metrics(ref, true, p[mi], degs, up)
                r.update(dataset=ds, context=ctx, item=label, fold=fold, method=meth, deg_definition=deg_def,
                         perturbation=pert[0]["perturbation"], time_hours=pert[0]["time_hours"])
                rows.append(r)
            if ds == "kang" and ctx == "CD14 Mono":
                np.savez(C.RUNS / "scatter_cd14.npz", ref=ref, true=true, pred=preds["refcast f32"][mi],
                         shift=preds["mean shift"][mi], degs=degs)
        print(f"evaluate: fold {fold}: {len(items)} items", flush=True)
    timings = json.load(open(C.RUNS / "timings.json")) if (C.RUNS / "timings.json").exists() else {}
    report(rows, kang, timings, time.time() - t0)


def _fmt(v):
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def summarise(rows):
    """Per dataset and method: mean over contexts (flu: first averaged per subject over time points)."""
    import pandas as pd
    df = pd.DataFrame(rows)
    per_ctx = df.groupby(["dataset", "method", "context"])[METRICS + ["r2_deg_scgen"]].mean().reset_index()
    per_ds = per_ctx.groupby(["dataset", "method"])[METRICS + ["r2_deg_scgen"]].mean().reset_index()
    return df, per_ctx, per_ds


def report(rows, kang, timings, eval_seconds):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    df, per_ctx, per_ds = summarise(rows)
    C.MODELS.mkdir(exist_ok=True)
    summary = {ds: {m: {k: (None if np.isnan(v) else round(float(v), 4)) for k, v in r[METRICS].items()}
                    for m, r in g.set_index("method").iterrows()} for ds, g in per_ds.groupby("dataset")}
    clean = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]
    json.dump({"summary": summary, "rows": clean, "kang_labels": kang["label_counts"],
               "kang_eval_types": kang["eval_types"], "timings_s": timings},
              open(C.MODELS / "evaluation.json", "w"), indent=1)

    # plots
    order = ["kang", "flu", "vaccine", "airway"]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    meths = [m for m in METHODS if m != "no change"]
    for j, m in enumerate(meths):
        vals = [per_ds[(per_ds.dataset == d) & (per_ds.method == m)].pearson_lfc_deg.mean() for d in order]
        ax.bar(np.arange(4) + j * 0.13, vals, width=0.13, label=m)
    ax.set_xticks(np.arange(4) + 0.33)
    ax.set_xticklabels(order)
    ax.set_ylabel("Pearson r, LFC, top-100 DEGs")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(C.MODELS / "eval_pearson_lfc_deg.png", dpi=110)
    plt.close(fig)
    sc = C.RUNS / "scatter_cd14.npz"
    if sc.exists():
        z = np.load(sc)
        fig, axs = plt.subplots(1, 2, figsize=(8, 3.8))
        for a, k, t in [(axs[0], "pred", "refcast (f32, held out)"), (axs[1], "shift", "mean shift")]:
            lt, lp = z["true"] - z["ref"], z[k] - z["ref"]
            a.scatter(lt, lp, s=2, alpha=0.3, color="grey")
            a.scatter(lt[z["degs"]], lp[z["degs"]], s=6, color="crimson", label="top-100 DEGs")
            a.set_xlabel("true LFC (log-CPM)")
            a.set_ylabel("predicted LFC")
            a.set_title(f"Kang CD14 Mono: {t}", fontsize=9)
            a.axline((0, 0), slope=1, color="k", lw=0.5)
        axs[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(C.MODELS / "eval_kang_cd14_scatter.png", dpi=110)
        plt.close(fig)

    L = []
    L.append("# refcast model evaluation\n")
    L.append("Regenerated by `python -m training evaluate` (part of `python -m training build`). "
             "Every number is on data held out of the model that predicted it: one model per fold, "
             "the folds fixed in `training/train.py` (`heldout_mask`) before any training. "
             "Baselines are computed by the same script on the same folds from the same training units.\n")
    L.append("Metrics (over the genes the dataset measures, in the model's 8,192-gene vocabulary): "
             "**R² all / R² DEG** = squared Pearson correlation of predicted vs true expression "
             "(scGen's \"R² of means\") over all genes / the top-100 DEGs; **r LFC all / r LFC DEG** = "
             "Pearson correlation of predicted vs true log fold change (target − reference); "
             "**sign20** = fraction of the top-20 DEGs whose predicted LFC has the right sign; "
             "**MAE** = mean |predicted − true| expression. Expression is log1p(CPM) (natural log) "
             "for Kang and airway, log2 intensity as published for the two microarray datasets.\n")
    L.append("DEGs: Kang = Wilcoxon rank-sum test of the real stimulated vs control cells of that cell "
             "type (scanpy), top 100 by |z|; the bulk datasets have one sample per condition and context, "
             "so there the top 100 genes by |true LFC| of that context are used (this favours no method; "
             "it is the same gene set for all of them).\n")
    L.append("Methods: **refcast** = reference conditioning with latent means (z_tech, z_bio from the "
             "encoder on the reference, z_pert from the perturbation prior), rows for the f32 weights and "
             "for the Q8_0 / Q4_0 weights dequantized. **no change** = the reference itself. "
             "**mean shift** = reference + the mean over training contexts of that perturbation's "
             "(same time point) LFC. **vector arithmetic** = reference + (mean of all training "
             "perturbed units − mean of all training control units), pooled (scGen's comparison; for "
             "Kang cell-weighted, so it differs from mean shift). **PCA arithmetic** = the same delta "
             "added in the space of the top ≤50 principal components of the dataset's training units, "
             "decoded back (scGen's \"PCA + arithmetic\"; genes outside the PCs are lost). "
             "**target-state mean** = the mean of all training units of the dataset in the target state "
             "(it ignores the reference; a control for regression to the mean, see Caveats).\n")
    def val(ds, m, k="pearson_lfc_deg"):
        return float(per_ds[(per_ds.dataset == ds) & (per_ds.method == m)][k].iloc[0])
    L.append("## Headline\n")
    L.append("Pearson correlation of predicted vs true log fold change over the top-100 DEGs, mean over "
             "held-out contexts (refcast f32 / Q4_0 vs the best baseline):\n")
    L.append("| dataset | refcast f32 | refcast Q8_0 | refcast Q4_0 | mean shift | PCA arithmetic | target-state mean | beats mean shift? | beats target-state mean? |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for ds in order:
        L.append(f"| {ds} | {val(ds, 'refcast f32'):.3f} | {val(ds, 'refcast Q8_0'):.3f} | {val(ds, 'refcast Q4_0'):.3f} | "
                 f"{val(ds, 'mean shift'):.3f} | {val(ds, 'PCA arithmetic'):.3f} | {val(ds, 'target-state mean'):.3f} | "
                 f"{'yes' if val(ds, 'refcast f32') > val(ds, 'mean shift') else '**no**'} | "
                 f"{'yes' if val(ds, 'refcast f32') > val(ds, 'target-state mean') else '**no**'} |")
    L.append("")
    L.append("## Caveats (read before quoting a number)\n")
    L.append("- **airway is below mean shift** (4 held-out cell lines, each predicted by a model that saw "
             "3 lines). The encoder carries only a few nats at β = 1, so refcast's prediction is close to "
             "\"the typical airway line under dexamethasone\" and loses the held-out line's own "
             "idiosyncrasies, which mean shift keeps by construction. Tried on a training-only dev split: "
             "β = 0.1 (worse everywhere), no cell-line field in the biological prior, per-dataset "
             "likelihood variance (no measurable change); see training/README.md.")
    L.append("- **flu and vaccine gains are partly regression to the mean.** With one sample per "
             "condition and subject, the DEGs there are the top 100 genes by |true LFC|, which "
             "preferentially picks genes where the reference sample is noisy; any predictor that "
             "shrinks the reference toward the population scores on them. The *target-state mean* row "
             "(which ignores the reference completely) measures that effect, and on flu and vaccine it "
             "is as good as refcast on LFC correlation: there is no evidence that refcast predicts a "
             "subject's individual response beyond the population response. What refcast does add "
             "there is a lower MAE than every baseline on vaccine (it keeps the subject's baseline "
             "level while moving it toward the day-7 state). On airway, refcast is also close to the "
             "target-state mean. Only on Kang does refcast clearly beat all baselines. Kang DEGs come from a cell-level Wilcoxon test and do not have "
             "this problem.")
    L.append("- Kang MAE over all genes is higher for refcast than for the baselines: the decoder "
             "does not reproduce the reference exactly, so genes that do not respond carry a "
             "reconstruction error that reference + shift does not have. R² of means is dominated by "
             "baseline expression (no change already scores high); the LFC metrics are the informative ones.")
    L.append("- Q8_0 is indistinguishable from f32. Q4_0 costs little after re-folding the encoder input "
             "bias against the quantized weights (training/README.md); without that, flu LFC correlation "
             "dropped from 0.67 to 0.38.")
    L.append("- Fold models were trained for 1,500 steps, the shipped model for 3,000; fold k holds out "
             "contexts of all four datasets at once, so each fold model saw less data than the shipped "
             "model. Kang cell labels are ours (marker-based, below), not the published ones; "
             "the CD8 T count is higher in the stimulated sample (1,146 vs 664), so some stimulated CD4 T "
             "or NK cells are probably labelled CD8 T.\n")
    names = {"r2_all": "R² all", "r2_deg": "R² DEG", "pearson_lfc_all": "r LFC all",
             "pearson_lfc_deg": "r LFC DEG", "sign_top20": "sign20", "mae": "MAE"}
    L.append("## Summary (mean over held-out contexts)\n")
    for ds in order:
        g = per_ds[per_ds.dataset == ds].set_index("method")
        n = per_ctx[(per_ctx.dataset == ds) & (per_ctx.method == "no change")].shape[0]
        L.append(f"### {DATASET_NAMES[ds]} — {n} held-out contexts\n")
        L.append("| method | " + " | ".join(names[m] for m in METRICS) + " |")
        L.append("|---|" + "---|" * len(METRICS))
        for m in METHODS:
            if m in g.index:
                L.append(f"| {m} | " + " | ".join(_fmt(g.loc[m, k]) for k in METRICS) + " |")
        L.append("")
    L.append("![Pearson LFC over top-100 DEGs](eval_pearson_lfc_deg.png)\n")
    L.append("## Per context (refcast f32 vs mean shift)\n")
    L.append("Flu contexts are subjects (metrics averaged over the subject's 14 later time points; every "
             "time point is in evaluation.json). No-change rows have no LFC correlation (its LFC is 0).\n")
    for ds in order:
        L.append(f"### {ds}\n")
        L.append("| context | fold | method | " + " | ".join(names[m] for m in METRICS) + " |")
        L.append("|---|---|---|" + "---|" * len(METRICS))
        sub = per_ctx[per_ctx.dataset == ds]
        folds = df[df.dataset == ds].groupby("context").fold.first()
        for ctx in sorted(set(sub.context)):
            for m in ["refcast f32", "refcast Q4_0", "mean shift"]:
                r = sub[(sub.context == ctx) & (sub.method == m)].iloc[0]
                L.append(f"| {ctx} | {folds[ctx]} | {m} | " + " | ".join(_fmt(r[k]) for k in METRICS) + " |")
        L.append("")
    L.append("![Kang CD14 Mono](eval_kang_cd14_scatter.png)\n")
    kk = per_ctx[(per_ctx.dataset == "kang")]
    L.append("## Comparison with scGen (Kang)\n")
    L.append("scGen's reproduction notebook reports R² of means over the top-100 DEGs per held-out type "
             "(B 0.965, CD14 Mono 0.853, CD4 T 0.988, CD8 T 0.985, DC 0.929, CD16 Mono 0.861, NK 0.972; "
             "mean 0.936, all genes mean 0.949). Our column *R² DEG (scGen def.)* uses scGen's DEG "
             "definition (top 100 genes ranked for the stimulated group, i.e. mostly up-regulated).\n")
    L.append("| cell type | refcast f32 R² all | refcast f32 R² DEG (scGen def.) | mean shift R² DEG (scGen def.) | "
             "vector arithmetic R² DEG (scGen def.) | scGen published R² DEG |")
    L.append("|---|---|---|---|---|---|")
    pub = {"B": 0.965, "CD14 Mono": 0.853, "CD4 T": 0.988, "CD8 T": 0.985, "DC": 0.929, "CD16 Mono": 0.861,
           "NK": 0.972}
    for t in sorted(set(kk.context)):
        gr = kk[kk.context == t].set_index("method")
        L.append(f"| {t} | {_fmt(gr.loc['refcast f32', 'r2_all'])} | {_fmt(gr.loc['refcast f32', 'r2_deg_scgen'])} | "
                 f"{_fmt(gr.loc['mean shift', 'r2_deg_scgen'])} | {_fmt(gr.loc['vector arithmetic', 'r2_deg_scgen'])} | "
                 f"{pub.get(t, '–')} |")
    mean_row = [kk[kk.method == m].groupby("context")[k].mean().mean() for m, k in
                [("refcast f32", "r2_all"), ("refcast f32", "r2_deg_scgen"), ("mean shift", "r2_deg_scgen"),
                 ("vector arithmetic", "r2_deg_scgen")]]
    L.append("| **mean** | " + " | ".join(f"{v:.3f}" for v in mean_row) + " | 0.936 (all genes 0.949) |")
    L.append("")
    L.append("On this metric refcast is below scGen's published numbers for every type but CD16 Mono "
             "(mean R² DEG about 0.87 vs 0.936), while above the mean-shift and vector-arithmetic "
             "baselines computed here on the same data.\n")
    L.append("Where the protocols differ: scGen computes means over single cells of its own "
             "log-normalised 6,998-HVG matrix with its own cell labels; here the unit is the pseudobulk "
             "log1p(CPM) of all cells of a type (our marker-based labels, see below), over the Kang genes in "
             "the model vocabulary, and one model per held-out type is trained jointly with the three "
             "other datasets. The numbers are therefore comparable in spirit, not digit for digit. "
             "R² of means is dominated by baseline expression (no change already scores high); the LFC "
             "metrics are the informative ones.\n")
    L.append("## Kang cell-type labels\n")
    L.append(kang["method"] + "\n")
    L.append("Markers: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in kang["markers"].items()) + ". "
             "T/NK second pass: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in kang["tnk_markers"].items()) + ". "
             "Monocyte split: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in kang["mono_markers"].items()) + ".\n")
    L.append("| label | control cells | stimulated cells | evaluated |")
    L.append("|---|---|---|---|")
    for t, c in sorted(kang["label_counts"].items()):
        L.append(f"| {t} | {c['ctrl']} | {c['stim']} | {'yes' if t in kang['eval_types'] else 'no'} |")
    L.append("")
    L.append("## Timings\n")
    L.append(f"Training (seconds, {timings.get('threads', '?')} CPU threads): " +
             ", ".join(f"{k} {v}" for k, v in timings.items() if k != "threads") +
             f". Evaluation: {eval_seconds:.0f} s. These were measured on 2 CPU cores shared with "
             "concurrent compilation (load average 5–9), single-threaded; unloaded, one training step "
             "takes about 0.12 s, i.e. about 3 min per fold model and 6 min for the final model.\n")
    open(C.MODELS / "EVALUATION.md", "w").write("\n".join(L) + "\n")
    print("evaluate: wrote models/EVALUATION.md and models/evaluation.json", flush=True)
    for ds in order:
        g = per_ds[per_ds.dataset == ds].set_index("method")
        print(ds, {m: round(float(g.loc[m, "pearson_lfc_deg"]), 3) for m in METHODS if m in g.index})
