#!/usr/bin/env python3
"""Writes the HDF5 sample files of tests/formats.rs from the 10x matrix directory that make.py
writes (kang_10x/: the bundled Kang CD14 monocyte counts split over 6 cells, plus one Antibody
Capture feature), so that every file holds the same cells and sums back to
examples/kang_cd14_mono_ctrl.tsv. Needs numpy, scipy, h5py and anndata (run make.py first; the
output is deterministic up to the HDF5 library's own bytes).

  kang_10x.h5          Cell Ranger's filtered_feature_bc_matrix.h5 layout: /matrix/{barcodes,
                       data, indices, indptr, shape, features/{id, name, feature_type, genome}},
                       gzip-compressed chunked datasets, fixed-length byte strings, CSC over
                       features x barcodes (one run per cell)
  kang.h5ad            AnnData as anndata writes it (gzip): X log-normalised (float32 CSR, so not counts),
                       .raw holding the counts (CSR), layers["counts"] the counts too (CSC), obs
                       with a categorical `group` (a/b as in kang_groups.tsv) and a numeric
                       `n_counts`, var indexed by gene symbol with a categorical `feature_name`
  kang_dense_old.h5ad  AnnData in the older (0.7) encoding, written with h5py: dense integer
                       counts in X, obs/group as codes whose categories sit in obs/__categories
  not_anndata.h5       an HDF5 file that is neither (one dataset, /values)
"""

import gzip
import os

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))


def read_10x_dir():
    d = os.path.join(HERE, "kang_10x")
    with gzip.open(os.path.join(d, "features.tsv.gz"), "rt") as f:
        features = [line.rstrip("\n").split("\t") for line in f]
    with gzip.open(os.path.join(d, "barcodes.tsv.gz"), "rt") as f:
        barcodes = [line.strip() for line in f]
    with gzip.open(os.path.join(d, "matrix.mtx.gz"), "rt") as f:
        lines = [line for line in f if not line.startswith("%")]
    rows, cols, _ = map(int, lines[0].split())
    entries = np.array([list(map(int, line.split())) for line in lines[1:]], dtype=np.int64)
    m = sp.csc_matrix((entries[:, 2], (entries[:, 0] - 1, entries[:, 1] - 1)), shape=(rows, cols))
    m.sort_indices()
    return features, barcodes, m


def write_10x_h5(path, features, barcodes, m):
    s = lambda v: np.array([x.encode() for x in v], dtype=f"S{max(len(x) for x in v)}")
    opts = dict(compression="gzip", compression_opts=4, chunks=True)
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = 2
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=s(barcodes), **opts)
        g.create_dataset("data", data=m.data.astype(np.int32), **opts)
        g.create_dataset("indices", data=m.indices.astype(np.int64), **opts)
        g.create_dataset("indptr", data=m.indptr.astype(np.int64), **opts)
        g.create_dataset("shape", data=np.array(m.shape, dtype=np.int32))
        ft = g.create_group("features")
        ft.create_dataset("_all_tag_keys", data=s(["genome"]))
        ft.create_dataset("id", data=s([x[0] for x in features]), **opts)
        ft.create_dataset("name", data=s([x[1] for x in features]), **opts)
        ft.create_dataset("feature_type", data=s([x[2] for x in features]), **opts)
        ft.create_dataset("genome", data=s(["GRCh38"] * len(features)), **opts)


def main():
    features, barcodes, m = read_10x_dir()
    write_10x_h5(os.path.join(HERE, "kang_10x.h5"), features, barcodes, m)

    genes = [x[1] for x in features if x[2] == "Gene Expression"]
    counts = m[: len(genes), :].T.tocsr().astype(np.float32)  # cells x genes
    groups = ["a" if i % 2 == 0 else "b" for i in range(len(barcodes))]
    obs = pd.DataFrame({"group": pd.Categorical(groups), "n_counts": np.asarray(counts.sum(1)).ravel()}, index=barcodes)
    var = pd.DataFrame({"feature_name": pd.Categorical(genes)}, index=genes)
    lib = np.asarray(counts.sum(1)).ravel()
    norm = sp.diags(1e4 / lib) @ counts
    norm.data = np.log1p(norm.data)
    adata = anndata.AnnData(X=norm.tocsr().astype(np.float32), obs=obs, var=var)
    adata.raw = anndata.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = counts.tocsc()
    adata.write_h5ad(os.path.join(HERE, "kang.h5ad"), compression="gzip")

    # The older encoding: obs/var groups with an _index attribute, categorical codes carrying
    # a "categories" object reference to obs/__categories/<column>, dense X.
    with h5py.File(os.path.join(HERE, "kang_dense_old.h5ad"), "w") as f:
        f.create_dataset("X", data=counts.toarray().astype(np.int32), compression="gzip", chunks=True)
        vlen = h5py.special_dtype(vlen=str)
        o = f.create_group("obs")
        o.attrs.update({"_index": "index", "encoding-type": "dataframe", "encoding-version": "0.1.0"})
        o.attrs.create("column-order", ["group"], dtype=vlen)
        o.create_dataset("index", data=np.array(barcodes, dtype=object), dtype=vlen)
        cats = o.create_group("__categories")
        c = cats.create_dataset("group", data=np.array(["a", "b"], dtype=object), dtype=vlen)
        codes = o.create_dataset("group", data=np.array([0 if g == "a" else 1 for g in groups], dtype=np.int8))
        codes.attrs["categories"] = c.ref
        v = f.create_group("var")
        v.attrs.update({"_index": "index", "encoding-type": "dataframe", "encoding-version": "0.1.0"})
        v.attrs.create("column-order", [], dtype=vlen)
        v.create_dataset("index", data=np.array(genes, dtype=object), dtype=vlen)
        f.create_group("uns")

    with h5py.File(os.path.join(HERE, "not_anndata.h5"), "w") as f:
        f.create_dataset("values", data=np.arange(10, dtype=np.float64))


if __name__ == "__main__":
    main()
