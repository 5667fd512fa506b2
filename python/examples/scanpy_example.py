"""refcast with scanpy: predict a sample under several perturbations, then rank the genes that
separate them and draw a heatmap of the top ones.

    python python/examples/scanpy_example.py        (writes refcast_heatmap.png)
"""

from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")  # no display needed

import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402

import refcast  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# The bundled example: one CD14 monocyte pseudobulk (raw counts) of the Kang 2018 PBMC study.
table = pd.read_csv(ROOT / "examples" / "kang_cd14_mono_ctrl.tsv", sep="\t", index_col=0)
sample = ad.AnnData(X=table.T.to_numpy(dtype="float32"), obs=pd.DataFrame({"cell_type": ["CD14 Mono"]}, index=["kang_ctrl"]), var=pd.DataFrame(index=table.index.astype(str)))
sample.layers["counts"] = sample.X.copy()

model = refcast.load()  # the bundled Q8_0 model: GPU when there is one, else the CPU
print(model, "-", model.backend_reason)

# Three draws per perturbation so that every group has replicates for the statistics below.
perturbations = ["none (control)", "IFN-beta 6 h", "anti-CD3/CD28", "dexamethasone"]
pred = model.predict(sample, perturbations, layer="counts", groupby="cell_type", num_samples=3, seed=0)
print(pred)
print(pred.uns["refcast"]["familiarity"][["reference", "reconstruction_r2", "outside"]])

# Predicted log-CPM is what scanpy expects after normalisation and log1p.
sc.tl.rank_genes_groups(pred, groupby="perturbation", reference="none (control)", method="t-test")
top = {group: list(pred.uns["rank_genes_groups"]["names"][group][:5]) for group in pred.uns["rank_genes_groups"]["names"].dtype.names}
print(pd.DataFrame(top))
genes = list(dict.fromkeys(g for names in top.values() for g in names))
sc.pl.heatmap(pred, var_names=genes, groupby="perturbation", layer="log_fold_change", show=False)
matplotlib.pyplot.savefig("refcast_heatmap.png", bbox_inches="tight")
