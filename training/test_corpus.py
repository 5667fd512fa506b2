"""Check training/corpus.py on the fetched data: every dataset's record, its unit counts per
condition (as shared/data/MANIFEST.md and shared/design/DATA.md state them), its pairing contexts,
value ranges, gene symbols, and one known piece of biology per dataset.

    python3 -m training.test_corpus

Needs the files of `python3 -m training fetch` (REFCAST_DATA_MIRROR=../shared/data offline). Without
them the test is skipped with a message, except under CI=true, where missing data is a failure.
"""
import os
import sys
import time

import numpy as np

from . import config as C
from . import corpus
from .prepare import Annotation

COUNT_DATA = {"tcell", "macrophage", "glioblastoma", "lncap"}   # library_size = raw counts over all genes


class Checks:
    def __init__(self):
        self.failed, self.n = [], 0

    def __call__(self, key, ok, what):
        self.n += 1
        if not ok:
            self.failed.append(f"{key}: {what}")
            print(f"  FAIL {key}: {what}", flush=True)


def diff(d, a, b, gene):
    """Mean over units `a` minus mean over units `b` of one gene."""
    j = d.genes.index(gene)
    return float(d.X[a, j].mean() - d.X[b, j].mean())


def paired_diff(d, f, treated, gene):
    """Per context: mean of the treated units minus mean of the context's controls (one value per
    context that has treated units)."""
    j = d.genes.index(gene)
    out = []
    for ctx in sorted(set(f.context[treated])):
        t = treated & (f.context == ctx).to_numpy()
        c = (f.perturbation == "none").to_numpy() & (f.context == ctx).to_numpy()
        out.append(float(d.X[t, j].mean() - d.X[c, j].mean()))
    return np.array(out)


def generic(d, ann, check):
    f = d.frame()
    check(d.key, corpus.problems(d) == [], f"record problems: {corpus.problems(d)}")
    check(d.key, all(ann.canonical(g) == g and g in ann.sym2id for g in d.genes),
          "genes are canonical org.Hs.eg.db symbols")
    check(d.key, len(set(d.genes)) == len(d.genes) and set(d.measured) <= set(d.genes),
          "unique genes, measured ⊆ genes")
    check(d.key, len(d.measured) > 0 and np.isfinite(d.X).all(), "measured genes and finite values")
    ctrl = (f.perturbation == "none").to_numpy()
    check(d.key, set(f.context[~ctrl]) <= set(f.context[ctrl]), "a control in every context with perturbed units")
    check(d.key, ((f.time_hours >= 0) & (f.dose_um >= 0)).all(), "time and dose non-negative")
    if d.key in COUNT_DATA:
        check(d.key, (f.library_size > 0).all(), "library size > 0 for count data")
    pseudo = f.unit.isin(["full", "subset"]).to_numpy()
    if pseudo.any():
        sub = (f.unit == "subset").to_numpy()
        check(d.key, (f.n_cells[pseudo] > 0).all(), "pseudobulks have cells")
        check(d.key, (f.n_cells[sub] >= min(corpus.UNIT_SIZES[0], f.n_cells[sub].max())).all()
              and (f.n_cells[sub] <= corpus.UNIT_SIZES[1]).all(), "subset sizes within 20-200 cells")
    for e in d.ensembl.values():
        if not e.startswith("ENSG"):
            check(d.key, False, f"ensembl id {e}")
            break


def specific(d, check):
    f = d.frame()
    ctrl = (f.perturbation == "none").to_numpy()
    k = d.key
    if k == "tcell":
        check(k, len(f) == 44 and ctrl.sum() == 24 and (~ctrl).sum() == 20, "44 samples: 4 baseline + 20 ctr + 20 act")
        check(k, f.subject.nunique() == 4 and f.context.nunique() == 24, "4 donors, 24 donor x time contexts")
        per = f.groupby("context").perturbation.agg(lambda s: tuple(sorted(s)))
        check(k, all(v in (("none",), ("anti-CD3/CD28", "none")) for v in per),
              "each context: one control, and one activated sample except the 0 h baseline")
        check(k, sorted(set(f.time_hours[~ctrl])) == [6, 12, 24, 48, 72], "activation times 6-72 h")
        for g in ("IL2", "IFNG"):
            dd = paired_diff(d, f, ~ctrl, g)
            check(k, len(dd) == 20 and dd.min() > 2.0, f"activation raises {g} in every donor x time "
                                                        f"(min {dd.min():+.2f} nat)")
    elif k == "macrophage":
        check(k, len(f) == 24 and f.context.nunique() == 6, "24 samples, 6 donors")
        check(k, (f.groupby("perturbation").size() == 6).all() and f.perturbation.nunique() == 4,
              "6 samples of each of naive / IFN-gamma / Salmonella / IFN-gamma + Salmonella")
        ifng = (f.perturbation == "IFN-gamma").to_numpy()
        for g in ("CXCL10", "GBP1"):
            dd = paired_diff(d, f, ifng, g)
            check(k, g in d.measured and dd.min() > 1.0, f"IFN-gamma raises {g} in every donor (min {dd.min():+.2f})")
    elif k == "l1000":
        check(k, len(f) == 377 and len(d.genes) == 978 and len(d.measured) == 978, "377 wells x 978 landmark genes")
        check(k, ctrl.sum() == 26 and f.context.nunique() == 1, "26 DMSO wells, one context")
        check(k, (f.perturbation_class == "kinase inhibitor").sum() == 328
              and (~ctrl & (f.perturbation_class != "kinase inhibitor")).sum() == 23, "328 trt_cp + 23 poscon wells")
        check(k, sorted(set(f.dose_um[~ctrl])) == [0.04, 0.12, 0.37, 1.11, 3.33, 10.0]
              and set(f.time_hours[~ctrl]) == {24.0}, "6 doses in µM, 24 h")
        check(k, f.perturbation[~ctrl].nunique() == 59, "59 compounds")
        # HSP90 inhibitors set off the heat-shock response; BRAF / MEK inhibitors shut down MAPK output
        # (DUSP6) in BRAF V600E A375 cells.
        for drugs, gene, sign in ((("geldanamycin", "radicicol"), "HSPA1A", 1),
                                  (("vemurafenib", "trametinib"), "DUSP6", -1)):
            sel = f.perturbation.isin(drugs).to_numpy() & (f.dose_um >= 1).to_numpy()
            dd = sign * diff(d, sel, ctrl, gene)
            check(k, sel.sum() >= 5 and dd > 1.0, f"{'/'.join(drugs)} (>= 1 µM) move {gene} "
                                                  f"{'up' if sign > 0 else 'down'} vs DMSO ({sign * dd:+.2f} log2)")
    elif k == "tggates":
        check(k, len(f) == 2382 and ctrl.sum() == 670 and len(d.genes) == 196,
              "2,382 arrays (670 controls) x 196 genes")
        check(k, f.context.nunique() == 335 and (f[ctrl].groupby("context").size() == 2).all(),
              "335 experiment x time contexts with 2 controls each")
        check(k, set(f.time_hours[~ctrl]) == {2.0, 8.0, 24.0} and (f.dose_um[~ctrl] > 0).all()
              and f.perturbation[~ctrl].nunique() == 146, "146 compounds at 2/8/24 h with a µM dose")
        for drug, gene, lim in (("Omeprazole", "CYP1A1", 2.0), ("Rifampicin", "CYP2B6", 0.5)):
            sel = (f.perturbation == drug).to_numpy() & (f.time_hours == 24).to_numpy()
            sel &= (f.dose_um == f.dose_um[sel].max()).to_numpy()
            dd = paired_diff(d, f, sel, gene)
            check(k, dd.min() > lim, f"{drug} (top dose, 24 h) induces {gene} (AhR / PXR target): {dd.round(2)}")
    elif k == "glioblastoma":
        full = (f.unit == "full").to_numpy()
        check(k, full.sum() == 10 and (f.n_cells[full] == 500).all(), "5 patients x 2 conditions, 500 cells each")
        check(k, f.context.nunique() == 5 and len(f) == 210, "5 contexts, 21 units per patient x condition")
        check(k, set(f.dose_um[~ctrl]) == {0.2}, "panobinostat 0.2 µM")
        # HDAC inhibitors induce metallothionein genes
        for g in ("MT1X", "MT2A"):
            j = d.genes.index(g)
            dd = np.array([d.X[~ctrl & full & (f.context == c).to_numpy(), j][0]
                           - d.X[ctrl & full & (f.context == c).to_numpy(), j][0] for c in sorted(set(f.context))])
            check(k, dd.min() > 0.3, f"panobinostat raises {g} in every patient ({dd.round(2)})")
    elif k == "mait":
        check(k, d.notes["cells"] == {"Stim": 47, "Unstim": 49}, "47 stimulated + 49 unstimulated cells")
        full = (f.unit == "full").to_numpy()
        check(k, sorted(f.n_cells[full]) == [36, 38], "full pseudobulks of the 36 + 38 cells passing QC")
        for g in ("IFNG", "GZMB"):
            dd = diff(d, full & ~ctrl, full & ctrl, g)
            check(k, dd > 2.0, f"stimulation raises {g} ({dd:+.2f})")
    elif k == "hsmm":
        full = (f.unit == "full").to_numpy()
        check(k, d.notes["cells"] == {"0h": 69, "24h": 74, "48h": 79, "72h": 49}, "271 cells: 69 / 74 / 79 / 49")
        check(k, sorted(f.n_cells[full]) == [49, 69, 74, 79] and set(f.time_hours[~ctrl]) == {24.0, 48.0, 72.0},
              "one full pseudobulk per time point")
        for g in ("MYOG", "MYH3", "TNNT1"):
            dd = [diff(d, full & (f.time_hours == t).to_numpy(), full & ctrl, g) for t in (24, 48, 72)]
            check(k, g in d.measured and min(dd) > 0.5, f"differentiation raises {g} at 24/48/72 h ({np.round(dd, 2)})")
    elif k == "panc1":
        check(k, len(f) == 6 and ctrl.sum() == 3 and d.role == "calibration", "3 wild type + 3 FOXA2 knockout")
        tt = corpus._read_rdata(C.PANC1)["limma_ttop"]
        tt = tt[tt["adj.P.Val"] < 0.2]
        gi = {g: i for i, g in enumerate(d.genes)}
        genes = [g for g in tt.ID if g in gi]
        ours = np.array([d.X[~ctrl, gi[g]].mean() - d.X[ctrl, gi[g]].mean() for g in genes])
        theirs = tt.set_index("ID").loc[genes, "logFC"].to_numpy()
        r = np.corrcoef(ours, theirs)[0, 1]
        check(k, len(genes) >= 40 and r > 0.95 and (np.sign(ours) == np.sign(theirs)).all(),
              f"knockout effect agrees with the shipped limma table ({len(genes)} genes, r = {r:.3f})")
    elif k == "lncap":
        check(k, len(f) == 2 and d.role == "calibration" and (f.library_size > 5e6).all(),
              "mock + androgen, lanes summed")
        for g in ("KLK3", "KLK2", "TMPRSS2", "FKBP5"):
            dd = diff(d, ~ctrl, ctrl, g)
            check(k, dd > 0.5, f"androgen raises {g} ({dd:+.2f})")


def main():
    missing = [str(p) for ps in corpus.FILES.values() for p in ps if not p.exists()] + \
              ([str(C.ORGHS)] if not C.ORGHS.exists() else [])
    if missing:
        msg = (f"test_corpus: {len(missing)} data files missing (run `REFCAST_DATA_MIRROR=../shared/data "
               f"python3 -m training fetch`), e.g. {missing[0]}")
        if os.environ.get("CI") == "true":
            print(msg + " -- FAILED (CI=true)", flush=True)
            sys.exit(1)
        print(msg + " -- SKIPPED", flush=True)
        return
    ann = Annotation()
    timings = {}
    t0 = time.time()
    sets = corpus.load_all(ann, timings=timings)
    t_all = time.time() - t0
    check = Checks()
    check("corpus", [d.key for d in sets] == list(corpus.LOADERS), "every dataset loaded")
    for d in sets:
        print(f"test_corpus: {d.key} ({timings[d.key]:.1f} s)", flush=True)
        generic(d, ann, check)
        specific(d, check)
    again = corpus.load_all(ann, keys=["glioblastoma"])[0]
    first = next(d for d in sets if d.key == "glioblastoma")
    check("glioblastoma", np.array_equal(again.X, first.X) and again.meta == first.meta,
          "pseudobulk subsets are the same on a second load (fixed seed)")
    print(f"test_corpus: load_all {t_all:.1f} s; {check.n - len(check.failed)}/{check.n} checks passed", flush=True)
    if check.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
