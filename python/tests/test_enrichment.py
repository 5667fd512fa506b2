"""Model.enrichment: the gene-set scores of a prediction, against the CLI's --enrichment file.

Both run the same library on the same fold changes (the predictions agree to the CLI's printed
digits, test_cli_and_golden.py), so what differs is the CLI's printing: the score (a t-value)
with 4 decimals (±5e-5), p-values and FDRs with 3 significant digits (±5e-4 relative), the
leading genes' ln fold changes with 2 decimals (±0.005). The asserted tolerances are those, and
a hair of float for the comparison itself.
"""

import subprocess

import numpy as np
import pandas as pd
import pytest

import refcast
from conftest import KANG, ROOT, cli


def ifn(model) -> str:
    return next(p["name"] for p in model.info()["perturbations"] if p["name"].startswith("IFN-beta 6 h"))


def test_enrichment_is_the_clis(model, tmp_path):
    name = ifn(model)
    pred = model.predict(KANG, [name])
    frame = model.enrichment(pred)
    out = tmp_path / "enrichment.tsv"
    subprocess.run([str(cli()), "predict", "--backend", "cpu", "--sample", str(KANG), "-p", name, "-o", "/dev/null", "--enrichment", str(out)], check=True, capture_output=True)
    want = pd.read_csv(out, sep="\t", keep_default_na=False, dtype={"set": str, "leading_genes": str})
    assert len(frame) == len(want), "the same sets are scored"
    both = frame.merge(want, on=["collection", "set"], suffixes=("", "_cli"), validate="one_to_one")
    assert len(both) == len(want)
    assert (both["name"] == both["name_cli"]).all()
    assert (both["size"] == both["size_cli"]).all()
    dt = np.abs(both["score"] - both["score_cli"])
    assert dt.max() <= 5e-5 + 1e-9, both.loc[dt.idxmax(), ["set", "score", "score_cli"]].to_dict()
    for column in ["p_value", "fdr"]:
        cli_values = both[f"{column}_cli"].to_numpy()
        rel = np.abs(both[column].to_numpy() - cli_values) / np.where(cli_values > 0, cli_values, 1.0)
        assert rel.max() <= 5e-4 + 1e-9, (column, both.loc[int(rel.argmax()), ["set", column, f"{column}_cli"]].to_dict())
    for genes, lfc, text in zip(both["leading_genes"], both["leading_lfc"], both["leading_genes_cli"]):
        pairs = [p.rsplit(":", 1) for p in text.split(",")] if text else []
        assert genes == [g for g, _ in pairs]
        assert all(abs(v - float(w)) <= 0.005 + 1e-6 for v, (_, w) in zip(lfc, pairs))
    # Each collection highest score first; the interferon programme on top.
    for _, group in frame.groupby("collection", sort=False):
        assert (np.diff(group["score"].to_numpy()) <= 0).all()
    pathways = frame[frame["collection"] == "progeny"]
    assert pathways.iloc[0]["set"] == "JAK-STAT"
    assert (frame["reference"] == "kang_cd14_mono_ctrl").all() and (frame["perturbation"] == name).all()
    assert set(frame.attrs["legend"]) == {"collection", "set", "name", "score", "p_value", "fdr", "size", "leading_genes", "leading_lfc"}
    assert "t-value" in frame.attrs["legend"]["score"] and refcast.FOLD_CHANGE_UNITS in frame.attrs["legend"]["score"]
    assert frame.attrs["gene_sets_checksum"].startswith("verified against")


def test_several_rows_each_scored_over_its_own_universe(model):
    names = [p["name"] for p in model.info()["perturbations"]]
    dex = next(n for n in names if n.startswith("dexamethasone"))
    pred = model.predict(KANG, [ifn(model), dex])
    frame = model.enrichment(pred)
    assert list(dict.fromkeys(frame["perturbation"])) == [ifn(model), dex]
    alone = model.enrichment(model.predict(KANG, [dex]))
    rows = frame[frame["perturbation"] == dex].reset_index(drop=True)
    # One prediction of two rows against one of one: the same fold changes up to float sums (the
    # decoder sums a batch of three rows in another order than one of two), so the same sets with
    # the same scores, in the same order except where two scores lie within those sums.
    assert sorted(rows["set"]) == sorted(alone["set"])
    both = rows.merge(alone, on=["collection", "set"], suffixes=("", "_alone"))
    assert len(both) == len(rows)
    assert np.allclose(both["score"], both["score_alone"], rtol=1e-4, atol=1e-4)
    moved = rows["set"] != alone["set"]
    assert np.allclose(rows["score"][moved], alone["score"][moved], rtol=1e-4, atol=1e-4)


def test_gene_sets_of_another_kind_are_refused(model):
    pred = model.predict(KANG, [ifn(model)])
    with pytest.raises(refcast.FormatError, match="no 'refcast_genesets' entry"):
        model.enrichment(pred, gene_sets=ROOT / "models" / "refcast-q8_0.safetensors")
    with pytest.raises(refcast.FormatError, match="not a safetensors file"):
        model.enrichment(pred, gene_sets=KANG)
    with pytest.raises(refcast.RequestError, match="no log_fold_change layer"):
        del pred.layers["log_fold_change"]
        model.enrichment(pred, gene_sets=ROOT / "models" / "refcast-genesets.safetensors")
