"""The wider corpus: every dataset beyond the original four, as model units (`Dataset` records).

`load_all(ann)` returns one `Dataset` per source, in a fixed order; `prepare` merges the training ones
with Kang, flu, vaccine and airway, and keeps the calibration ones (tissues absent from training, never
trained on) for the familiarity report. `python3 -m training.corpus` loads everything (after `fetch`)
and prints a check table.

Conventions, as in `prepare`:
  * scales: "log1p_cpm" = ln(1 + counts per million), library = sum of counts over *all* genes of the
    sample (also genes without a symbol); "log1p_tpm" = ln(1 + TPM) for data that come as TPM/FPKM;
    "log2_array" = microarray / L1000 log2 intensities as given.
  * genes: canonical org.Hs.eg.db symbols (`Annotation.canonical`), only genes the annotation knows;
    identifiers that map to one symbol are merged (counts and TPM summed, log values averaged).
  * measured: count or TPM bulk data, every annotated gene (a zero is a measurement); panels and arrays,
    their gene list; full-transcriptome single cells, genes detected in >= 0.5 % of control cells
    (Kang's rule).
  * single cells become pseudobulks per (biological sample, condition): the full pseudobulk plus
    clip(n // 25, 6, 60) random subsets of 20-200 cells (log-uniform sizes), seed fixed per dataset.
  * context = the pairing group of training (a source and a target unit are drawn from one context): one
    biological sample's control and perturbed states. Controls have perturbation "none", time 0, dose 0.
  * time_hours / dose_um: 0 where the source does not give them (each such case is listed in `notes`).
"""
import sqlite3
import time
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import config as C
from .prepare import UNIT_SIZES, Annotation, collapse

META_KEYS = ("dataset", "platform", "study", "cell_type", "tissue", "cell_line", "subject", "perturbation",
             "perturbation_class", "time_hours", "dose_um", "context", "unit", "n_cells", "library_size")
SCALES = {"log1p_cpm": (0.0, float(np.log1p(1e6))), "log1p_tpm": (0.0, float(np.log1p(1e6))),
          "log2_array": (0.0, 20.0)}
DETECT_MIN = 0.005       # single cells: a gene is measured when detected in this share of control cells


@dataclass
class Dataset:
    key: str
    name: str
    role: str                       # "train" | "calibration"
    scale: str                      # "log1p_cpm" | "log1p_tpm" | "log2_array"
    genes: list
    X: np.ndarray                   # [units, genes] float32
    measured: set
    meta: list                      # one dict per unit, keys META_KEYS
    ensembl: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def frame(self):
        return pd.DataFrame(self.meta, columns=list(META_KEYS))


def problems(d):
    """What is wrong with a Dataset record (empty list when nothing is)."""
    out = []
    n, g = d.X.shape
    if d.role not in ("train", "calibration"):
        out.append(f"role {d.role!r}")
    if d.scale not in SCALES:
        out.append(f"scale {d.scale!r}")
    if d.X.dtype != np.float32:
        out.append(f"X dtype {d.X.dtype}")
    if len(d.genes) != g or len(set(d.genes)) != g:
        out.append("genes not unique or not matching X")
    if not set(d.measured) <= set(d.genes):
        out.append(f"{len(set(d.measured) - set(d.genes))} measured genes not in genes")
    if len(d.meta) != n:
        out.append(f"{len(d.meta)} meta rows for {n} units")
    if not np.isfinite(d.X).all():
        out.append("non-finite values")
    lo, hi = SCALES.get(d.scale, (-np.inf, np.inf))
    if n and (d.X.min() < lo or d.X.max() > hi):
        out.append(f"values {d.X.min():.3f}..{d.X.max():.3f} outside {lo}..{hi:.2f}")
    for i, m in enumerate(d.meta):
        if tuple(m) != META_KEYS:
            out.append(f"unit {i}: meta keys {sorted(set(m) ^ set(META_KEYS))}")
            break
    if out:
        return out
    f = d.frame()
    ctrl = f.perturbation == "none"
    if ((f.perturbation_class == "none") != ctrl).any():
        out.append("perturbation 'none' and class 'none' disagree")
    if (f[ctrl][["time_hours", "dose_um"]] != 0).any().any():
        out.append("controls with a time or dose")
    lacking = sorted(set(f.context[~ctrl]) - set(f.context[ctrl]))
    if lacking:
        out.append(f"{len(lacking)} contexts with perturbed units but no control, e.g. {lacking[:3]}")
    if (f.dataset != d.key).any():
        out.append("meta dataset differs from key")
    if (f.library_size < 0).any() or (f.n_cells < 0).any():
        out.append("negative library size or cell count")
    return out


# ------------------------------------------------------------------------------------------ helpers
def _meta(**kw):
    m = {k: kw[k] for k in META_KEYS}
    for k in ("time_hours", "dose_um", "library_size"):
        m[k] = float(m[k])
    m["n_cells"] = int(m["n_cells"])
    return m


def _seed(key):
    return C.SEED + zlib.crc32(key.encode()) % 100_000


def _entrez_symbols(ann):
    """Entrez gene id (str) -> symbol, from org.Hs.eg.db's genes table."""
    db = sqlite3.connect(C.ORGHS)
    out = {str(e): ann.id2sym[i] for i, e in db.execute("select _id, gene_id from genes") if i in ann.id2sym}
    db.close()
    return out


def _to_symbols(ann, ids, fallback=None, kind="ensembl", entrez=None):
    """Symbol per identifier (None where unknown). Ensembl ids lose a version suffix and "_at"; a
    fallback symbol from the source is used (canonicalised) when the id is not in the annotation."""
    out = []
    for k, raw in enumerate(ids):
        s = None
        if kind == "ensembl":
            e = str(raw).split(".")[0].removesuffix("_at")
            i = ann.ens2id.get(e)
            s = ann.id2sym[i] if i is not None else None
        elif kind == "entrez":
            s = entrez.get(str(raw).split(".")[0])
        elif kind == "symbol":
            s = ann.canonical(str(raw))
            s = s if s in ann.sym2id else None
        if s is None and fallback is not None and isinstance(fallback[k], str):
            c = ann.canonical(fallback[k])
            s = c if c in ann.sym2id else None
        out.append(s)
    return out


def _merge(values, symbols, how, ids=None):
    """[samples, features] -> [samples, unique symbols] (features without a symbol dropped), the symbol
    list, and symbol -> the identifier with the largest total where `ids` is given."""
    symbols = np.asarray(symbols, dtype=object)
    keep = np.flatnonzero(symbols != None)  # noqa: E711 (object array)
    v = values[:, keep]
    merged, uniq = collapse(v, symbols[keep].astype(str), how)
    best = {}
    if ids is not None:
        tot = np.abs(v).sum(0)
        for pos, j in enumerate(keep):
            s, t = symbols[j], tot[pos]
            if s not in best or t > best[s][0]:
                best[s] = (t, str(ids[j]).split(".")[0].removesuffix("_at"))
        best = {s: e for s, (t, e) in best.items()}
    return np.asarray(merged, dtype=np.float64), [str(s) for s in uniq], best


def _subsets(idx, rng):
    """Cell index sets of one (sample, condition) group: the full pseudobulk, then random subsets."""
    n_units = int(np.clip(len(idx) // 25, 6, 60))
    units, names = [idx], ["full"]
    hi = min(UNIT_SIZES[1], len(idx))
    for _ in range(n_units):
        size = int(np.exp(rng.uniform(np.log(min(UNIT_SIZES[0], hi)), np.log(hi))))
        units.append(np.sort(rng.choice(idx, size=size, replace=False)))
        names.append("subset")
    return units, names


def _detected(cells_by_genes, ctrl_rows, genes):
    """Genes detected (> 0) in at least DETECT_MIN of the control cells (at least one cell)."""
    x = cells_by_genes[ctrl_rows]
    share = np.asarray((x > 0).mean(0)).ravel()
    need = max(DETECT_MIN, 1.0 / x.shape[0] - 1e-12)
    return {g for g, s in zip(genes, share) if s >= need}


def _read_rdata(path):
    import rdata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # R classes without a Python constructor (tibble specs etc.)
        return rdata.read_rda(str(path)) if str(path).endswith((".rda", ".RData")) else \
            rdata.conversion.convert(rdata.parser.parse_file(str(path)))


def _log1p_cpm(counts, lib):
    return np.log1p(counts / lib[:, None] * 1e6).astype(np.float32)


# ------------------------------------------------------------------------------------------ loaders
def load_tcell(ann):
    """Rade 2023: pan-T cells of 4 donors; anti-CD3/CD28 activation and time-matched unstimulated
    controls at 6, 12, 24, 48, 72 h, and a 0 h baseline per donor. Raw counts, HGNC symbols."""
    import pyreadr

    counts = next(iter(pyreadr.read_r(str(C.TCELL / "Count.Matrix.rda")).values()))
    md = next(iter(pyreadr.read_r(str(C.TCELL / "metadata.rda")).values()))
    md = md.loc[counts.columns]
    R = counts.to_numpy(dtype=np.float64).T                 # samples x genes
    if not np.array_equal(R, np.round(R)) or R.min() < 0:
        raise ValueError("tcell: counts are not non-negative integers")
    lib = R.sum(1)                                           # over all 57,133 rows
    sym = _to_symbols(ann, counts.index, kind="symbol")
    Xc, genes, _ = _merge(R, sym, "sum")
    X = _log1p_cpm(Xc, lib)

    meta = []
    for (sid, r), L in zip(md.iterrows(), lib):
        t, donor, cond = float(r.Timepoint), str(r.Replicates), str(r.Condition)
        act = cond == "act"
        meta.append(_meta(dataset="tcell", platform="illumina_rnaseq", study="GSE197067", cell_type="T cell",
                          tissue="blood", cell_line="unknown", subject=donor,
                          perturbation="anti-CD3/CD28" if act else "none",
                          perturbation_class="TCR activation" if act else "none",
                          time_hours=t if act else 0.0, dose_um=0.0,
                          context=f"tcell|{donor}|{t:g}h", unit="sample", n_cells=0, library_size=L))

    # Culture drift of the controls: mean |difference| (genes with mean ln(1+CPM) > 1) of each time's
    # control from the donor's 0 h sample, next to the activation effect (act - ctr) at that time.
    expressed = X.mean(0) > 1
    row = {(str(r.Condition), float(r.Timepoint), str(r.Replicates)): i for i, r in enumerate(md.itertuples())}
    donors = sorted(set(md.Replicates.astype(str)))
    drift = {}
    for t in sorted(set(md.Timepoint.astype(float)) - {0.0}):
        d0, da = [], []
        for donor in donors:
            ctr, act, base = (X[row[(c, tt, donor)], expressed] for c, tt in
                              (("ctr", t), ("act", t), ("Initiation", 0.0)))
            d0.append(np.abs(ctr - base).mean())
            da.append(np.abs(act - ctr).mean())
        drift[f"{t:g}h"] = {"ctr_vs_0h": round(float(np.mean(d0)), 3), "act_vs_ctr": round(float(np.mean(da)), 3)}
    share = Xc.sum(1) / lib
    return Dataset(
        key="tcell", name="Rade 2023 pan-T cells, anti-CD3/CD28 activation vs time-matched control, 4 donors, "
                          "0-72 h (Genome Biol 24:287; GEO GSE197067; ICArus repository)",
        role="train", scale="log1p_cpm", genes=genes, X=X, measured=set(genes), meta=meta,
        notes={"measured": "every annotated gene (bulk counts: a zero count is a measurement)",
               "rows": int(R.shape[1]), "symbols_annotated": len(genes),
               "read_share_in_annotated_genes": {"mean": round(float(share.mean()), 4),
                                                  "min": round(float(share.min()), 4)},
               "library_size": {"min": float(lib.min()), "max": float(lib.max())},
               "context": "donor x time point: the unstimulated controls drift in culture (see culture_drift), "
                          "so each activated sample is paired with its own time-matched control only. The 0 h "
                          "baseline ('Initiation') is a context of its own (donor x 0 h, control only): used as "
                          "training data, never as the source of an activated target, since it differs from "
                          "the later controls by culture time, not by activation.",
               "culture_drift": drift})


def load_macrophage(ann):
    """Alasoo 2018 iPSC-derived macrophages: 6 donors x {naive, IFN-gamma 18 h, Salmonella 5 h,
    IFN-gamma 18 h + Salmonella 5 h}. Gene-level counts through external.py's transcript -> gene map;
    genes whose mapping is uncertain are kept as values but left out of `measured`."""
    from . import external

    symbols = sorted(set(ann.id2sym.values()))
    X, mask, m, rep = external.load_alasoo(ann, symbols, drop_uncertain=False)
    uncertain = set(rep["uncertain_genes"])
    keep = np.flatnonzero(mask)
    genes = [symbols[j] for j in keep]
    X = np.ascontiguousarray(X[:, keep], dtype=np.float32)
    klass = {"none": "none", "IFN-gamma": "interferon", "Salmonella": "infection",
             "IFN-gamma + Salmonella": "interferon + infection"}
    meta = [_meta(dataset="macrophage", platform="illumina_rnaseq", study="PRJEB18997", cell_type="macrophage",
                  tissue="iPSC-derived macrophage", cell_line=r.cell_line, subject=r.subject,
                  perturbation=r.perturbation, perturbation_class=klass[r.perturbation],
                  time_hours=r.time_hours, dose_um=0.0, context=f"macrophage|{r.subject}", unit="sample",
                  n_cells=0, library_size=r.library_size) for r in m.itertuples()]
    return Dataset(
        key="macrophage", name="Alasoo 2018 iPSC-derived macrophages, 6 donors x naive / IFN-gamma 18 h / "
                               "Salmonella 5 h / IFN-gamma + Salmonella (Nat Genet 50:424; ENA PRJEB18997)",
        role="train", scale="log1p_cpm", genes=genes, X=X, measured=set(genes) - uncertain, meta=meta,
        notes={"measured": "every gene the transcript map reaches, less the genes whose count may be "
                           f"under-counted by more than {rep['uncertain_bound_nat']} nat (external.py)",
               "transcripts": rep["n_transcripts"], "transcripts_mapped": rep["transcripts_mapped"],
               "read_share_mapped": {k: round(rep["read_share_mapped"][k], 4) for k in ("mean", "min", "max")},
               "uncertain_genes_left_out_of_measured": len(uncertain & set(genes)),
               "library_size": rep["library_size"],
               "dose": "IFN-gamma and Salmonella doses are not in the package: dose_um 0"})


def read_gct(path):
    """GCT 1.3: (data [rows, cols] DataFrame, row metadata, column metadata)."""
    with open(path) as f:
        if f.readline().strip() != "#1.3":
            raise ValueError(f"{path}: not GCT 1.3")
        nr, nc, nrm, ncm = map(int, f.readline().split())
    t = pd.read_csv(path, sep="\t", skiprows=2, header=0, dtype=str, keep_default_na=False, index_col=0)
    col = t.iloc[:ncm, nrm:].T
    rows = t.iloc[ncm:]
    data = rows.iloc[:, nrm:].astype(np.float64)
    if data.shape != (nr, nc) or col.shape != (nc, ncm):
        raise ValueError(f"{path}: shape {data.shape}, expected {(nr, nc)}")
    return data, rows.iloc[:, :nrm], col


L1000_POSCON_CLASS = {"geldanamycin": "HSP90 inhibitor", "radicicol": "HSP90 inhibitor",
                      "mitoxantrone": "topoisomerase inhibitor", "withaferin-a": "compound"}


def load_l1000(ann):
    """One LINCS L1000 plate (LJP005, A375, 24 h): level 3 log2 expression of the 978 landmark genes;
    DMSO wells are the controls, 55 kinase inhibitors and 4 positive-control compounds x 6 doses."""
    data, rm, cm = read_gct(C.L1000)
    ent = _entrez_symbols(ann)
    sym = _to_symbols(ann, rm["pr_gene_id"], fallback=list(rm["pr_gene_symbol"]), kind="entrez", entrez=ent)
    X, genes, _ = _merge(data.to_numpy().T, sym, "mean")
    meta = []
    for well, r in cm.iterrows():
        ctl = r.pert_type == "ctl_vehicle"
        if not ctl and (r.pert_dose_unit != "um" or r.pert_time_unit != "h"):
            raise ValueError(f"l1000: {well}: dose unit {r.pert_dose_unit}, time unit {r.pert_time_unit}")
        klass = "none" if ctl else (L1000_POSCON_CLASS.get(r.pert_iname, "compound") if r.pert_type == "trt_poscon"
                                    else "kinase inhibitor")
        meta.append(_meta(dataset="l1000", platform="l1000", study="LINCS LJP005 (GSE70138)",
                          cell_type="melanoma cell line", tissue="skin", cell_line=r.cell_id, subject=r.cell_id,
                          perturbation="none" if ctl else r.pert_iname, perturbation_class=klass,
                          time_hours=0.0 if ctl else float(r.pert_time), dose_um=0.0 if ctl else float(r.pert_dose),
                          context=f"l1000|{r.cell_id}", unit="well", n_cells=0, library_size=0.0))
    return Dataset(
        key="l1000", name="LINCS L1000 plate LJP005_A375_24H_X1_B19: A375 x kinase inhibitors x 6 doses, "
                          "DMSO controls, level 3 (Subramanian 2017; GEO GSE70138; cmapPy test data)",
        role="train", scale="log2_array", genes=genes, X=X.astype(np.float32), measured=set(genes), meta=meta,
        notes={"measured": "the 978 landmark genes (Entrez ids -> symbols)",
               "provenance_code": sorted(set(cm.provenance_code)),
               "pert_type": cm.pert_type.value_counts().to_dict(),
               "positive_controls": L1000_POSCON_CLASS,
               "scale": "level 3: quantile-normalised log2 (not counts); one plate, so no plate effect to remove"})


# One perturbation, one name across datasets: a compound measured by two datasets under two spellings
# would be two unrelated perturbations to the prior network. prepare.py refuses names that differ only
# by case, so a new dataset cannot bring a spelling back in unnoticed.
TGGATES_NAMES = {"Dexamethasone": "dexamethasone"}     # airway (GSE52778) spells it in lower case
TGGATES_CLASSES = {"dexamethasone": "glucocorticoid"}  # as airway classes it


def load_tggates(ann):
    """Open TG-GATEs human primary hepatocytes (ToxicoGx TGGATESsmall): 196 genes, log2 RMA, 146
    compounds x 3 doses x 2/8/24 h, each experiment with its own time-matched controls."""
    ts = _read_rdata(C.TGGATES)["TGGATESsmall"]
    rna = ts.molecularProfiles["rna"]
    cd = pd.DataFrame({str(k): np.asarray(v) for k, v in rna.colData.listData.items()})
    rd = pd.DataFrame({str(k): np.asarray(v) for k, v in rna.elementMetadata.listData.items()})
    E = np.asarray(rna.assays.data.listData["exprs"], dtype=np.float64)     # genes x arrays
    ids = [str(s) for s in rna.NAMES]
    sym = _to_symbols(ann, ids, fallback=list(rd["Symbol"].astype(str)), kind="ensembl")
    X, genes, ens = _merge(E.T, sym, "mean", ids=ids)
    meta = []
    for r in cd.itertuples():
        ctl = r.xptype == "control"
        t = float(r.duration)
        meta.append(_meta(dataset="tggates", platform="affymetrix_hg-u133_plus_2", study="Open TG-GATEs",
                          cell_type="hepatocyte", tissue="liver", cell_line="unknown", subject=f"exp{r.exp_id}",
                          perturbation="none" if ctl else TGGATES_NAMES.get(str(r.treatmentid), str(r.treatmentid)),
                          perturbation_class="none" if ctl else TGGATES_CLASSES.get(
                              TGGATES_NAMES.get(str(r.treatmentid), ""), "compound"),
                          time_hours=0.0 if ctl else t, dose_um=0.0 if ctl else float(r.concentration),
                          context=f"tggates|exp{r.exp_id}|{t:g}h", unit="sample", n_cells=0, library_size=0.0))
    return Dataset(
        key="tggates", name="Open TG-GATEs human primary hepatocytes, 146 compounds x 3 doses x 2/8/24 h, "
                            "196 genes (Igarashi 2015 NAR 43:D921; ToxicoGx TGGATESsmall)",
        role="train", scale="log2_array", genes=genes, X=X.astype(np.float32), measured=set(genes), meta=meta,
        ensembl=ens,
        notes={"measured": "the 196 BrainArray Ensembl probe sets of the package",
               "context": "experiment (exp_id: one compound, one hepatocyte batch) x time: every experiment "
                          "ran 2 control arrays per time point (individual_id 1/2 are replicate wells, not "
                          "donors), so a treated array is paired with its own experiment's time-matched "
                          "controls",
               "dose": "colData 'concentration' (Open TG-GATEs in vitro doses are in µM); dose_level "
                       "Low/Middle/High is not used",
               "arrays": {"control": int((cd.xptype == "control").sum()),
                          "perturbation": int((cd.xptype != "control").sum())},
               "batches": sorted(set(cd.batchid.astype(str)))})


def load_glioblastoma(ann):
    """lemur's glioblastoma example (Zhao 2021): acute slices of 5 patients, DMSO vs 0.2 µM
    panobinostat, 500 + 500 single cells each, UMI counts of 300 genes."""
    sce = _read_rdata(C.GLIOBLASTOMA)["glioblastoma_example_data"]
    cd = pd.DataFrame({str(k): np.asarray(v) for k, v in sce.colData.listData.items()})
    m = sce.assays.data.listData["counts"]
    ng, nc = (int(v) for v in m.Dim)
    counts = sp.csc_matrix((np.asarray(m.x), np.asarray(m.i), np.asarray(m.p)), shape=(ng, nc)).T.tocsr()
    rr = {str(k): np.asarray(v) for k, v in sce.rowRanges.elementMetadata.listData.items()}
    ids = list(rr["gene_id"])
    sym = _to_symbols(ann, ids, fallback=list(rr["symbol"]), kind="ensembl")
    keep = np.flatnonzero(np.asarray(sym, dtype=object) != None)  # noqa: E711
    agg_names = np.asarray(sym, dtype=object)[keep].astype(str)
    uniq, inv = np.unique(agg_names, return_inverse=True)
    agg = sp.csr_matrix((np.ones(len(keep)), (keep, inv)), shape=(ng, len(uniq)))
    cells = (counts @ agg).tocsr()                           # cells x symbols
    cell_lib = np.asarray(counts.sum(1)).ravel()              # over all 300 genes
    genes = [str(s) for s in uniq]
    tot = np.asarray(counts.sum(0)).ravel()
    ens = {}
    for j in keep:
        s = sym[j]
        if s not in ens or tot[j] > tot[ids.index(ens[s])]:
            ens[s] = ids[j]

    rng = np.random.default_rng(_seed("glioblastoma"))
    rows, meta = [], []
    for patient in sorted(set(cd.patient_id)):
        for cond in ("ctrl", "panobinostat"):
            idx = np.flatnonzero((cd.patient_id == patient).to_numpy() & (cd.condition == cond).to_numpy())
            pano = cond == "panobinostat"
            for u, name in zip(*_subsets(idx, rng)):
                c = np.asarray(cells[u].sum(0)).ravel()
                lib = float(cell_lib[u].sum())
                rows.append(np.log1p(c / lib * 1e6))
                meta.append(_meta(dataset="glioblastoma", platform="microwell_panel300", study="Zhao 2021 (lemur)",
                                  cell_type="glioblastoma slice (all cells)", tissue="brain tumour",
                                  cell_line="unknown", subject=patient,
                                  perturbation="panobinostat" if pano else "none",
                                  perturbation_class="HDAC inhibitor" if pano else "none",
                                  time_hours=0.0, dose_um=0.2 if pano else 0.0,
                                  context=f"glioblastoma|{patient}", unit=name, n_cells=len(u), library_size=lib))
    return Dataset(
        key="glioblastoma", name="Zhao 2021 glioblastoma acute slices, 5 patients x DMSO / 0.2 µM panobinostat, "
                                 "single cells, 300 genes (Genome Med 13:82; lemur example data)",
        role="train", scale="log1p_cpm", genes=genes, X=np.asarray(rows, dtype=np.float32), measured=set(genes),
        meta=meta, ensembl=ens,
        notes={"measured": "the 300 genes of the package (a gene panel: every one measured)",
               "platform": "own platform 'microwell_panel300': the library size is the sum over only these 300 "
                           "genes (mostly highly expressed ones), so its ln(1+CPM) is not comparable with "
                           "whole-transcriptome CPM; the cells are from the authors' microwell scRNA-seq "
                           "platform, not 10x",
               "cells": {"total": int(nc), "per_patient_condition": 500},
               "umi_per_cell_over_300_genes": {"median": float(np.median(cell_lib)), "min": float(cell_lib.min())},
               "time": "treatment duration not in the data (the publication finishes each screen within 24 h "
                       "of surgery): time_hours 0",
               "context": "patient (one tumour's DMSO and panobinostat slices)"})


def load_mait(ann):
    """MAST's MAIT cells: one donor, cytokine-stimulated vs unstimulated, Fluidigm C1 single cells as
    log2(TPM + 1). Pseudobulks average TPM over cells (the log undone first), then ln(1 + TPM)."""
    m = _read_rdata(C.MAIT)["maits"]
    E = np.asarray(m["expressionmat"], dtype=np.float64)     # cells x features
    fd, cd = m["fdat"], m["cdat"]
    tpm_all = np.expm1(E * np.log(2.0))                       # 2^x - 1
    ent = fd["entrez"].astype(str).to_numpy()
    # Features sharing an Entrez id: identical columns are one quantification listed twice (kept once),
    # different ones are summed.
    seen, drop = {}, np.zeros(len(ent), dtype=bool)
    for j, e in enumerate(ent):
        if e in seen:
            drop[j] = any(np.array_equal(E[:, j], E[:, k]) for k in seen[e])
            seen[e].append(j)
        else:
            seen[e] = [j]
    entrez = _entrez_symbols(ann)
    sym = _to_symbols(ann, ent, fallback=list(fd["symbolid"].astype(str)), kind="entrez", entrez=entrez)
    sym = [None if d else s for s, d in zip(sym, drop)]
    tpm, genes, _ = _merge(tpm_all, sym, "sum")

    cond = cd["condition"].astype(str).to_numpy()
    ok = cd["ourfilter"].astype(bool).to_numpy()
    stim_rows = np.flatnonzero(ok & (cond == "Stim"))
    ctrl_rows = np.flatnonzero(ok & (cond == "Unstim"))
    measured = _detected(tpm, ctrl_rows, genes)
    rng = np.random.default_rng(_seed("mait"))
    rows, meta = [], []
    for idx, stim in ((ctrl_rows, False), (stim_rows, True)):
        for u, name in zip(*_subsets(idx, rng)):
            rows.append(np.log1p(tpm[u].mean(0)))
            meta.append(_meta(dataset="mait", platform="fluidigm_c1_smartseq", study="Finak 2015 (MAST)",
                              cell_type="MAIT cell", tissue="blood", cell_line="unknown", subject="donor1",
                              perturbation="cytokine stimulation" if stim else "none",
                              perturbation_class="cytokine cocktail" if stim else "none",
                              time_hours=0.0, dose_um=0.0, context="mait|donor1", unit=name, n_cells=len(u),
                              library_size=0.0))
    return Dataset(
        key="mait", name="MAIT cells of one donor, cytokine-stimulated vs unstimulated, Fluidigm C1 single cells "
                         "(Finak 2015 Genome Biol 16:278; MAST example data)",
        role="train", scale="log1p_tpm", genes=genes, X=np.asarray(rows, dtype=np.float32), measured=measured,
        meta=meta,
        notes={"measured": f"genes detected in >= {DETECT_MIN:.1%} of the control cells (at least one)",
               "cells": {"Stim": int((cond == "Stim").sum()), "Unstim": int((cond == "Unstim").sum())},
               "cells_used": {"Stim": len(stim_rows), "Unstim": len(ctrl_rows),
                              "rule": "the package's own QC flag 'ourfilter'"},
               "features": int(E.shape[1]), "duplicate_features_dropped_as_identical": int(drop.sum()),
               "tpm_per_cell": {"median": float(np.median(tpm_all.sum(1))), "min": float(tpm_all.sum(1).min())},
               "library_size": "TPM, not counts: library_size 0",
               "time": "stimulation cocktail and duration are not in the data: time_hours 0"})


def load_hsmm(ann):
    """HSMMSingleCell (Trapnell 2014): primary human skeletal muscle myoblasts, growth medium (0 h) and
    differentiation medium 24/48/72 h, 271 single cells as FPKM. Per cell FPKM -> TPM (share of the cell's
    FPKM sum over all 47,192 features x 1e6), pseudobulk = mean TPM of the cells, ln(1 + TPM)."""
    import pyreadr

    fpkm = next(iter(pyreadr.read_r(str(C.HSMM / "HSMM_expr_matrix.rda")).values()))
    ss = next(iter(pyreadr.read_r(str(C.HSMM / "HSMM_sample_sheet.rda")).values())).loc[fpkm.columns]
    ga = next(iter(pyreadr.read_r(str(C.HSMM / "HSMM_gene_annotation.rda")).values())).reindex(fpkm.index)
    F = fpkm.to_numpy(dtype=np.float64).T                   # cells x features
    tpm_all = F / F.sum(1, keepdims=True) * 1e6
    ids = list(fpkm.index)
    sym = _to_symbols(ann, ids, fallback=list(ga["gene_short_name"]), kind="ensembl")
    tpm, genes, ens = _merge(tpm_all, sym, "sum", ids=ids)

    hours = ss["Hours"].astype(str).astype(float).to_numpy()
    media = ss["Media"].astype(str).to_numpy()
    ctrl_rows = np.flatnonzero(media == "GM")
    measured = _detected(tpm, ctrl_rows, genes)
    rng = np.random.default_rng(_seed("hsmm"))
    rows, meta = [], []
    for h in sorted(set(hours)):
        idx = np.flatnonzero(hours == h)
        dm = bool((media[idx] == "DM").all())
        if not dm and not (media[idx] == "GM").all():
            raise ValueError(f"hsmm: mixed media at {h} h")
        for u, name in zip(*_subsets(idx, rng)):
            rows.append(np.log1p(tpm[u].mean(0)))
            meta.append(_meta(dataset="hsmm", platform="fluidigm_c1_rnaseq", study="GSE52529",
                              cell_type="skeletal muscle myoblast", tissue="skeletal muscle", cell_line="HSMM",
                              subject="HSMM", perturbation="differentiation medium" if dm else "none",
                              perturbation_class="differentiation" if dm else "none",
                              time_hours=h if dm else 0.0, dose_um=0.0, context="hsmm|HSMM", unit=name,
                              n_cells=len(u), library_size=0.0))
    return Dataset(
        key="hsmm", name="Trapnell 2014 primary human skeletal muscle myoblasts, growth medium vs "
                         "differentiation medium 24/48/72 h, single cells (Nat Biotechnol 32:381; GEO GSE52529; "
                         "Bioconductor HSMMSingleCell)",
        role="train", scale="log1p_tpm", genes=genes, X=np.asarray(rows, dtype=np.float32), measured=measured,
        meta=meta, ensembl=ens,
        notes={"measured": f"genes detected in >= {DETECT_MIN:.1%} of the growth-medium cells (at least one)",
               "cells": {f"{h:g}h": int((hours == h).sum()) for h in sorted(set(hours))},
               "features": int(F.shape[1]), "features_with_symbol": int(sum(s is not None for s in sym)),
               "tpm_share_in_annotated_genes": round(float(tpm.sum() / tpm_all.sum()), 4),
               "library_size": "FPKM/TPM, not counts: library_size 0 (Mapped.Fragments per cell: median "
                               f"{float(np.median(ss['Mapped.Fragments'])):.0f})",
               "context": "one myoblast culture: growth-medium cells are the controls of every time point"})


def load_panc1(ann):
    """decoupleR's bulk example: PANC-1 FOXA2 knockout vs wild type, 3 + 3, 11,093 genes.

    The values are log2 of normalised counts: in each sample 2^x rises in steps of one read times a
    per-sample factor (0.88-1.12), and sums to 22-28 M over the genes. Values below ~70 normalised
    reads are missing (NaN, 460 genes in at least one sample). Converted to ln(1 + CPM) with CPM taken
    over the genes present in every sample (the library over all genes is not in the package)."""
    o = _read_rdata(C.PANC1)
    c = o["counts"]
    samples = [s for s in c.columns if s != "gene"]
    V = c[samples].to_numpy(dtype=np.float64).T               # samples x genes, log2
    complete = ~np.isnan(V).any(0)
    sym = _to_symbols(ann, list(c["gene"].astype(str)), kind="symbol")
    sym = [s if ok else None for s, ok in zip(sym, complete)]
    lin = np.exp2(np.where(np.isnan(V), -np.inf, V))
    merged, genes, _ = _merge(lin, sym, "sum")
    lib = np.exp2(V[:, complete]).sum(1)
    X = _log1p_cpm(merged, lib)
    steps = []
    for row in V:
        u = np.unique(np.exp2(row[~np.isnan(row)]))
        steps.append(round(float(np.median(np.diff(u[:30]))), 4))
    design = o["design"]
    cond = dict(zip(design["sample"].astype(str), design["condition"].astype(str)))
    meta = []
    for s in samples:
        ko = cond[s] == "PANC1.FOXA2KO"
        meta.append(_meta(dataset="panc1", platform="illumina_rnaseq", study="decoupleR bk_data",
                          cell_type="pancreatic cancer cell line", tissue="pancreas", cell_line="PANC-1",
                          subject="PANC-1", perturbation="FOXA2 knockout" if ko else "none",
                          perturbation_class="knockout" if ko else "none", time_hours=0.0, dose_um=0.0,
                          context="panc1|PANC-1", unit="sample", n_cells=0, library_size=0.0))
    return Dataset(
        key="panc1", name="PANC-1 FOXA2 knockout vs wild type, 3 + 3 bulk RNA-seq (decoupleR example data bk_data)",
        role="calibration", scale="log1p_cpm", genes=genes, X=X, measured=set(genes), meta=meta,
        notes={"measured": "genes with a value in all 6 samples",
               "scale": "source: log2 normalised counts (per-sample read step of 2^x: " + ", ".join(map(str, steps))
                        + "); ln(1 + CPM) with the library = sum of 2^x over the genes present in all samples",
               "library_size": "normalised counts, not raw: library_size 0; sum of 2^x over the genes kept: "
                               + ", ".join(f"{v / 1e6:.1f} M" for v in lib),
               "genes_in_source": int(len(c)), "genes_with_missing_values": int((~complete).sum()),
               "limma_top_table": "shipped with the data (logFC FOXA2 KO vs WT), used by test_corpus",
               "time": "not in the data: time_hours 0"})


def load_lncap(ann):
    """goseq's Li 2008 data: LNCaP cells, mock (lanes 1-4) vs androgen (lanes 5, 6, 8), raw counts of
    49,506 Ensembl genes. Lanes of one condition are technical replicates of one library, so they are
    summed: one mock and one androgen sample."""
    t = pd.read_csv(C.LNCAP, sep="\t", index_col=0)
    lanes = {"none": ["lane1", "lane2", "lane3", "lane4"], "androgen": ["lane5", "lane6", "lane8"]}
    if sorted(t.columns) != sorted(sum(lanes.values(), [])):
        raise ValueError(f"lncap: lanes {list(t.columns)}")
    R = np.stack([t[v].sum(1).to_numpy(dtype=np.float64) for v in lanes.values()])
    lib = R.sum(1)
    ids = list(t.index)
    sym = _to_symbols(ann, ids, kind="ensembl")
    Xc, genes, ens = _merge(R, sym, "sum", ids=ids)
    X = _log1p_cpm(Xc, lib)
    meta = []
    for (p, v), L in zip(lanes.items(), lib):
        a = p != "none"
        meta.append(_meta(dataset="lncap", platform="illumina_rnaseq", study="Li 2008 (goseq)",
                          cell_type="prostate cancer cell line", tissue="prostate", cell_line="LNCaP",
                          subject="LNCaP", perturbation=p, perturbation_class="androgen" if a else "none",
                          time_hours=0.0, dose_um=0.0, context="lncap|LNCaP", unit="sample", n_cells=0,
                          library_size=L))
    per_lane = t.sum(0)
    return Dataset(
        key="lncap", name="LNCaP androgen vs mock, raw counts, lanes summed per condition (Li 2008 PNAS "
                          "105:20179; goseq example data)",
        role="calibration", scale="log1p_cpm", genes=genes, X=X, measured=set(genes), meta=meta, ensembl=ens,
        notes={"measured": "every Ensembl gene with a symbol (a zero count is a measurement)",
               "lanes": {p: v for p, v in lanes.items()},
               "reads_per_lane": {k: int(v) for k, v in per_lane.items()},
               "read_share_in_annotated_genes": [round(float(v), 4) for v in Xc.sum(1) / lib],
               "time": "androgen, dose and duration are not in the package: time_hours 0, dose_um 0"})


# The files each loader reads (all fetched by `fetch`).
FILES = {"tcell": [C.TCELL / "Count.Matrix.rda", C.TCELL / "metadata.rda"],
         "macrophage": [C.ALASOO / "coldata.csv", C.GENELEN_HG19_ENS],
         "l1000": [C.L1000], "tggates": [C.TGGATES], "glioblastoma": [C.GLIOBLASTOMA], "mait": [C.MAIT],
         "hsmm": [C.HSMM / "HSMM_expr_matrix.rda", C.HSMM / "HSMM_sample_sheet.rda",
                  C.HSMM / "HSMM_gene_annotation.rda"],
         "panc1": [C.PANC1], "lncap": [C.LNCAP]}
LOADERS = {"tcell": load_tcell, "macrophage": load_macrophage, "l1000": load_l1000, "tggates": load_tggates,
           "glioblastoma": load_glioblastoma, "mait": load_mait, "hsmm": load_hsmm, "panc1": load_panc1,
           "lncap": load_lncap}


def load_all(ann=None, keys=None, timings=None):
    """Every dataset of the corpus (or those in `keys`), in LOADERS order. `timings`, a dict, receives
    the seconds each loader took."""
    ann = ann or Annotation()
    out = []
    for k, f in LOADERS.items():
        if keys is not None and k not in keys:
            continue
        t0 = time.time()
        d = f(ann)
        if timings is not None:
            timings[k] = time.time() - t0
        bad = problems(d)
        if bad:
            raise ValueError(f"corpus: {k}: " + "; ".join(bad))
        out.append(d)
    return out


def summary(d):
    f = d.frame()
    ctrl = f.perturbation == "none"
    paired = set(f.context[ctrl]) & set(f.context[~ctrl])
    return {"key": d.key, "role": d.role, "scale": d.scale, "units": len(f), "genes": len(d.genes),
            "measured": len(d.measured), "controls": int(ctrl.sum()), "perturbed": int((~ctrl).sum()),
            "perturbations": int(f.perturbation[~ctrl].nunique()), "contexts": int(f.context.nunique()),
            "paired_contexts": len(paired), "min": round(float(d.X.min()), 2),
            "median": round(float(np.median(d.X)), 2), "max": round(float(d.X.max()), 2),
            "library_min": float(f.library_size.min())}


def main():
    t0 = time.time()
    ann = Annotation()
    t1 = time.time()
    timings = {}
    sets = load_all(ann, timings=timings)
    t2 = time.time()
    table = pd.DataFrame([summary(d) for d in sets]).set_index("key")
    table["load_s"] = [round(timings[k], 1) for k in table.index]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string())
    print(f"corpus: Annotation {t1 - t0:.1f} s, load_all {t2 - t1:.1f} s")


if __name__ == "__main__":
    main()
