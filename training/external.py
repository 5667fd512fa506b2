"""Alasoo et al. 2018 iPSC-derived macrophages (shared/data/MANIFEST.md, section 1): training data of
format 2 models through corpus.py, which takes the units and the transcript -> gene map from here.

6 donors x {naive, IFNg, SL1344 (Salmonella), IFNg_SL1344}, Salmon transcript quantifications against
GENCODE v29 (205,870 versioned ENST ids), fetched by `fetch` into C.ALASOO.

Transcript -> gene symbol. No GENCODE v29 transcript-to-gene table is available offline (the one the
macrophage package ships, and its GTF, are not in the pinned files), so the map is put together from:
  1. org.Hs.eg.db `ensembl_trans` (ENST -> Entrez gene; transcripts mapped to several genes skipped):
     maps only 23,102 of the 205,870 transcripts, 12-22 % of the reads (mean 17 %);
  2. geneLenDataBase's UCSC hg19 `ensGene` table (ENST -> ENSG, Ensembl <= 75), ENSG -> symbol through
     org.Hs.eg.db as for airway in `prepare` (first Entrez id of the ENSG). Where 1 and 2 disagree, 1 wins;
  3. order of the transcripts. Salmon keeps the order of the GENCODE transcript FASTA, which lists each
     gene's transcripts together. So a transcript lying between two transcripts of the same gene belongs
     to that gene, and a transcript of source 2 flanked on both sides by another gene Z is relabelled Z.
     Checked on the anchors themselves: with a fifth of them hidden, the fill put 99.4 % of the hidden
     transcripts that it reached back in their gene (99.8 % of their reads).
Still unmapped: transcripts created after Ensembl 75 at the edge of a gene's block (between two
different genes). Their reads stay in the library size but in no gene, so a gene next to such a block
may be under-counted (B2M, FTH1, ACTG1, CTSB: their main v29 transcript is new). Per gene, an upper
bound of that under-count in model units is log1p(CPM(gene) + CPM(unresolved blocks touching the
gene)) - log1p(CPM(gene)), mean over samples; `report["uncertain_genes"]` lists the model genes whose
bound exceeds UNCERTAIN_BOUND, and `drop_uncertain=True` takes them out of the mask.

Normalisation as for the other count data: library size = NumReads summed over *all* transcripts of the
sample; X = log1p(CPM), natural log, float32.
"""
import gzip
import io
import re
import sqlite3

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import config as C

# condition_name -> (perturbation, time_hours). Alasoo et al. 2018: IFN-gamma priming 18 h, Salmonella
# (SL1344) infection 5 h, and IFN-gamma 18 h followed by Salmonella 5 h (MANIFEST.md section 1).
CONDITIONS = {
    "naive": ("none", 0.0),
    "IFNg": ("IFN-gamma", 18.0),
    "SL1344": ("Salmonella", 5.0),
    "IFNg_SL1344": ("IFN-gamma + Salmonella", 23.0),
}
UNCERTAIN_BOUND = 0.25   # nat of log1p(CPM)


def transcript_symbols(ann, tx_ids):
    """Gene symbol per transcript (None where unknown) and source code per transcript:
    0 none, 1 org.Hs.eg.db, 2 hg19 ensGene, 3 filled from the transcript order."""
    import pyreadr

    ids = [t.split(".")[0] for t in tx_ids]
    db = sqlite3.connect(C.ORGHS)
    tr = {}
    for t, i in db.execute("select trans_id, _id from ensembl_trans"):
        tr.setdefault(t, set()).add(i)
    db.close()
    ens = next(iter(pyreadr.read_r(str(C.GENELEN_HG19_ENS)).values()))
    t2g = dict(zip(ens["Transcript"].astype(str), ens["Gene"].astype(str)))

    n = len(ids)
    lab = np.full(n, None, dtype=object)
    src = np.zeros(n, dtype=np.int8)
    for k, t in enumerate(ids):
        s = tr.get(t)
        if s is not None and len(s) == 1:
            lab[k] = ann.id2sym[next(iter(s))]
            src[k] = 1
            continue
        g = t2g.get(t)
        i = ann.ens2id.get(g) if g is not None else None
        if i is not None:
            lab[k] = ann.id2sym[i]
            src[k] = 2

    # Contiguity: relabel a source-2 anchor flanked on both sides by anchors of one other gene.
    anchors = np.flatnonzero(src > 0)
    relabelled = 0
    for a, b, c in zip(anchors[:-2], anchors[1:-1], anchors[2:]):
        if src[b] == 2 and lab[a] == lab[c] and lab[b] != lab[a]:
            lab[b] = lab[a]
            relabelled += 1
    # Fill transcripts lying between two anchors of the same gene.
    for a, b in zip(anchors[:-1], anchors[1:]):
        if b > a + 1 and lab[a] == lab[b]:
            lab[a + 1:b] = lab[a]
            src[a + 1:b] = 3
    return lab, src, relabelled


def read_quants(root=None):
    """coldata (DataFrame), NumReads [samples, transcripts] (float64) and the transcript names."""
    root = C.ALASOO if root is None else root
    col = pd.read_csv(root / "coldata.csv")
    names, first, reads = None, None, []
    for s in col["names"]:
        raw = gzip.decompress((root / "quants" / s / "quant.sf.gz").read_bytes())
        if not raw.startswith(b"Name\tLength\tEffectiveLength\tTPM\tNumReads\n"):
            raise ValueError(f"alasoo: {s}: not a Salmon quant.sf")
        ids = re.sub(rb"\t[^\n]*", b"", raw)          # the Name column, one per line
        if first is None:
            first = ids
            names = np.array(ids.decode().split("\n")[1:-1], dtype=object)
        elif ids != first:
            raise ValueError(f"alasoo: {s}: transcripts differ from the first sample's")
        q = pd.read_csv(io.BytesIO(raw), sep="\t", usecols=["NumReads"], dtype={"NumReads": np.float64})
        reads.append(q["NumReads"].to_numpy())
    return col, np.stack(reads), names


def load_alasoo(ann, gene_symbols, drop_uncertain=False, root=None):
    """X [24, G] log1p(CPM) float32 in the order of `gene_symbols` (0 where not measured), mask [G] of the
    genes measured, meta (DataFrame, one row per sample), report (dict)."""
    col, R, names = read_quants(root)
    lab, src, relabelled = transcript_symbols(ann, names)
    lib = R.sum(1)                                          # over all transcripts, mapped or not

    has = lab != None  # noqa: E711 (object array)
    syms, inv = np.unique(lab[has].astype(str), return_inverse=True)
    agg = sp.csr_matrix((np.ones(inv.size), (np.flatnonzero(has), inv)), shape=(len(names), len(syms)))
    counts = np.asarray((sp.csr_matrix(R) @ agg).todense())  # samples x symbols
    sidx = {s: j for j, s in enumerate(syms)}

    # Unresolved blocks (maximal runs of unmapped transcripts) and the genes on either side of them: a
    # block's reads may belong to either gene. Upper bound of a gene's under-count in model units:
    # log1p(CPM(gene) + CPM(touching blocks)) - log1p(CPM(gene)), mean over samples.
    touching = np.zeros_like(counts)
    i, n = 0, len(names)
    while i < n:
        if has[i]:
            i += 1
            continue
        j = i
        while j < n and not has[j]:
            j += 1
        r = R[:, i:j].sum(1)
        for k in (i - 1, j):
            if 0 <= k < n:
                touching[:, sidx[lab[k]]] += r
        i = j
    cpm = counts / lib[:, None] * 1e6
    bound = (np.log1p(cpm + touching / lib[:, None] * 1e6) - np.log1p(cpm)).mean(0)

    G = len(gene_symbols)
    X = np.zeros((len(col), G), dtype=np.float32)
    mask = np.zeros(G, dtype=bool)
    uncertain = np.zeros(G, dtype=bool)
    for g, s in enumerate(gene_symbols):
        j = sidx.get(s)
        if j is None:
            continue
        X[:, g] = np.log1p(cpm[:, j])
        mask[g] = True
        uncertain[g] = bound[j] > UNCERTAIN_BOUND
    n_measured = int(mask.sum())
    if drop_uncertain:
        mask &= ~uncertain

    unknown = sorted(set(col["condition_name"]) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"alasoo: unknown conditions {unknown}")
    pert = [CONDITIONS[c] for c in col["condition_name"]]
    donor = col["line_id"].astype(str).to_numpy()
    meta = pd.DataFrame({
        "dataset": "alasoo", "platform": "illumina_rnaseq", "study": "PRJEB18997",
        "cell_type": "macrophage", "tissue": "iPSC-derived macrophage",
        "cell_line": donor, "subject": donor,
        "perturbation": [p for p, _ in pert], "time_hours": [t for _, t in pert],
        "context": [f"alasoo|{d}" for d in donor], "unit": "sample", "n_cells": 0,
        "library_size": lib, "sample_id": col["names"].astype(str).to_numpy(),
    })

    share = R[:, has].sum(1) / lib
    by_src = {name: float((R[:, src == code].sum(1) / lib).mean())
              for code, name in [(1, "org.Hs.eg.db"), (2, "hg19 ensGene"), (3, "transcript order"), (0, "none")]}
    in_model = sorted({s for s in gene_symbols if s in sidx}, key=lambda s: -bound[sidx[s]])
    report = {
        "n_samples": int(len(col)),
        "n_transcripts": int(len(names)),
        "transcripts_mapped": {"org.Hs.eg.db": int((src == 1).sum()), "hg19 ensGene": int((src == 2).sum()),
                               "transcript order": int((src == 3).sum()), "none": int((src == 0).sum()),
                               "ensGene labels corrected by order": int(relabelled)},
        "read_share_mapped": {"per_sample": {s: round(float(v), 4) for s, v in zip(meta.sample_id, share)},
                              "mean": float(share.mean()), "min": float(share.min()), "max": float(share.max())},
        "read_share_by_source_mean": by_src,
        "n_symbols_measured": int(len(syms)),
        "n_model_genes": int(G),
        "n_model_genes_measured": n_measured,
        "uncertain_bound_nat": UNCERTAIN_BOUND,
        "n_model_genes_uncertain": int(uncertain.sum()),
        "model_genes_most_uncertain": [(s, round(float(bound[sidx[s]]), 2)) for s in in_model[:25]],
        "model_genes_bound_quantiles": {q: round(float(np.quantile([bound[sidx[s]] for s in in_model], q)), 3)
                                        for q in (0.5, 0.75, 0.9, 0.95, 0.99)},
        "uncertain_genes": [s for s, u in zip(gene_symbols, uncertain) if u],
        "mask_excludes_uncertain": bool(drop_uncertain),
        "library_size": {"min": float(lib.min()), "median": float(np.median(lib)), "max": float(lib.max())},
    }
    return X, mask, meta, report


def main():
    """Self-check: python -m training.external (after `fetch`; gene list from `prepare`, else the model)."""
    import json
    import time

    from .prepare import Annotation

    path = C.PREPARED / "genes.json"
    if path.exists():
        genes = [g["symbol"] for g in json.load(open(path))]
    else:
        import struct
        with open(C.MODELS / "refcast-q8_0.safetensors", "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        genes = [g["symbol"] for g in json.loads(header["__metadata__"]["refcast"])["genes"]]
        path = C.MODELS / "refcast-q8_0.safetensors"
    t0 = time.time()
    ann = Annotation()
    t1 = time.time()
    X, mask, meta, report = load_alasoo(ann, genes)
    t2 = time.time()
    print(f"alasoo: genes from {path}; Annotation {t1 - t0:.1f} s, load_alasoo {t2 - t1:.1f} s")
    shown = dict(report, uncertain_genes=f"{len(report['uncertain_genes'])} symbols")
    print(json.dumps(shown, indent=1))
    print(meta.groupby(["perturbation", "time_hours"]).size().to_string())
    gi = {g: i for i, g in enumerate(genes)}
    naive = meta.perturbation.to_numpy() == "none"
    ifng = meta.perturbation.to_numpy() == "IFN-gamma"
    assert (meta.subject[naive].to_numpy() == meta.subject[ifng].to_numpy()).all()
    ok = True
    print("mean log1p CPM   naive   IFNg   diff  (min over donors)")
    for g in ["GBP1", "CXCL10", "IRF1", "STAT1"]:
        if g not in gi or not mask[gi[g]]:
            print(f"{g:8s} not measured")
            ok = False
            continue
        d = X[ifng, gi[g]] - X[naive, gi[g]]
        print(f"{g:8s} {X[naive, gi[g]].mean():12.2f} {X[ifng, gi[g]].mean():6.2f} {d.mean():+6.2f}  ({d.min():+.2f})")
        ok &= bool(d.min() > 0.5)
    print("IFN-gamma response visible:", ok)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
