"""The package against the CLI (same sample, same numbers) and against PyTorch (the golden
vectors of tests/golden, at the tolerances of tests/golden.rs)."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

import refcast
from conftest import KANG, ROOT, cli, load_on


def test_predictions_are_the_clis(model, tmp_path):
    # Known names: the CLI labels a perturbation with the name given, Python with the name the
    # library resolved it to; for a known name both are that name.
    names = [p["name"] for p in model.info()["perturbations"]]
    PERTURBATIONS = [names[1], names[0], next(n for n in names if n.startswith("dexamethasone"))]
    """The CLI's TSV holds 5 decimals (counts 3): Python's float32 values, formatted as the CLI
    formats them, give the same text for every gene, perturbation and column. The sample is read
    by the library in both (Python: the file path, as --sample)."""
    out = tmp_path / "cli.tsv"
    args = [str(cli()), "predict", "--backend", "cpu", "--sample", str(KANG), "-o", str(out), "--num-samples", "2", "--seed", "5"]
    for p in PERTURBATIONS:
        args += ["-p", p]
    subprocess.run(args, check=True, capture_output=True)
    want = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    pred = model.predict(KANG, PERTURBATIONS, num_samples=2, seed=5)
    assert pred.n_obs == 2 * len(PERTURBATIONS)
    genes = pred.n_vars
    # The CLI writes rows in the prediction's order, gene by gene.
    assert len(want) == pred.n_obs * genes
    fmt = lambda v, d: np.char.mod(f"%.{d}f", v.astype(np.float64).ravel())  # noqa: E731
    assert (want["perturbation"].to_numpy() == np.repeat(pred.obs["perturbation"].astype(str).to_numpy(), genes)).all()
    assert (want["draw"].astype(int).to_numpy() == np.repeat(pred.obs["draw"].to_numpy(), genes)).all()
    assert (want["gene"].to_numpy() == np.tile(pred.var_names.to_numpy(), pred.n_obs)).all()
    for column, values, decimals in [
        ("predicted", pred.X, 5),
        ("log_fold_change", pred.layers["log_fold_change"], 5),
        ("counts", pred.layers["counts"], 3),
        ("reference", pred.layers["reference"], 5),
        ("sigma", np.tile(pred.var["sigma"].to_numpy(), pred.n_obs), 5),
    ]:
        got = fmt(values, decimals)
        bad = np.flatnonzero(got != want[column].to_numpy())
        assert bad.size == 0, f"{column}: {bad.size} values differ, first at row {bad[0]}: {got[bad[0]]} vs {want[column][bad[0]]}"
    measured = np.char.mod("%d", pred.layers["measured"].astype(int).ravel())
    assert (measured == want["measured"].to_numpy()).all()


def test_screens_are_the_clis(model):
    """The CLI's screen table (4 decimals, top 20) and the DataFrame agree, rank for rank, and
    both explain the same columns."""
    run = subprocess.run([str(cli()), "screen", "--backend", "cpu", "--sample", str(KANG), "--top", "20"], check=True, capture_output=True, text=True)
    rows = [line.split("\t") for line in run.stdout.strip().splitlines()[1:]]
    hits = model.screen(KANG)
    columns = ["rank", "perturbation", "effect_size", "reversal", "top_up", "top_down"]
    coverage = ["measured", "measured_context", "measured_distance"]
    assert list(hits.columns[:6]) == columns and "score" not in hits.columns
    assert set(coverage) <= set(hits.columns)
    # The shipped model records where each perturbation was measured: both add its columns.
    assert run.stdout.splitlines()[0].split("\t") == columns + coverage
    assert [c for c, _ in hits.attrs["legend"]] == columns + coverage
    for column, meaning in hits.attrs["legend"]:
        assert f"  {column}" in run.stderr, f"the CLI's legend lacks {column}"
    assert refcast.FOLD_CHANGE_UNITS == "ln fold change" and refcast.FOLD_CHANGE_UNITS in run.stderr
    assert hits.attrs["fold_change_units"] == refcast.FOLD_CHANGE_UNITS
    assert len(hits) == len(model.info()["perturbations"])
    for row, (_, hit) in zip(rows, hits.iterrows()):
        assert row[:3] == [str(hit["rank"]), hit["perturbation"], f"{hit['effect_size']:.4f}"]
        assert row[4] == ",".join(f"{g}:{v:+.2f}" for g, v in list(zip(hit["top_up"], hit["top_up_lfc"]))[:5])
        assert row[6:8] == [hit["measured"], hit["measured_context"]] and hit["measured"] in ("nearby", "elsewhere")
    assert hits.set_index("perturbation").loc["IFN-beta 6 h", "measured"] == "nearby"
    assert (np.diff(hits["effect_size"].to_numpy()) <= 0).all()


TOLERANCE = 5e-5


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
@pytest.mark.parametrize("name", ["golden_q8_0.json", "golden_q4_0.json"])
def test_golden_vectors_match_pytorch(name, backend):
    """Each golden case through the Python API (the reference as a log-CPM Series over every
    model gene; prompt-only cases with data=None), on each backend, to tests/golden.rs's
    tolerances (the same for both backends there): latents and decoded log-CPM within
    5e-5·(1 + |x|); counterfactual and denoised profiles within 5e-5·(2 + |decoded| + |control|); familiarity
    R² within 1e-4, distance within 1e-3·(1 + d). The GPU backend runs on any adapter (lavapipe
    where there is no GPU); without one it fails under CI=true."""
    golden = json.loads((ROOT / "tests" / "golden" / name).read_text())
    model = load_on(backend, ROOT / golden["model"])
    assert (model.backend, model.backend_reason) == (backend, "requested")
    for case in golden["cases"]:
        ref = case["reference"]
        draw = case.get("sample_index") or 0
        sampled = case["mode"] == "sample"
        data = None
        library_size = None
        if ref is not None and max(ref["log_cpm"]) > 13.9:
            # Microarray intensities on a log scale (the flu cases): not a log-CPM sample, which
            # the library's sample checks refuse; tests/golden.rs feeds them to the session.
            with pytest.raises(refcast.SampleError, match="the largest possible log-CPM"):
                model.predict(pd.Series(ref["log_cpm"], index=model.genes), [case["perturbation"]], values="log-cpm")
            continue
        if ref is not None:
            data = pd.Series(np.asarray(ref["log_cpm"], dtype=np.float32), index=model.genes, name="golden")
            library_size = ref["library_size"] if ref.get("from_counts") else None
        pred = model.predict(
            data,
            [case["perturbation"]],
            values="log-cpm",
            context={**case["technical"], **case["biological"]},
            condition_on=case["condition_on"],
            mode=case.get("prediction") or "decoded",
            num_samples=draw + 1 if sampled else None,
            seed=case.get("seed") or 0,
            library_size=library_size,
        )
        expected = case["expected"]
        z = pred.obsm["latent"][draw]
        want_z = np.asarray(expected["z"], dtype=np.float32)
        assert (np.abs(z - want_z) <= TOLERANCE * (1 + np.abs(want_z))).all(), f"{case['name']}: z"
        row = pred.X[draw]
        want = np.asarray(expected["log_cpm"], dtype=np.float32)
        if (case.get("prediction") or "decoded") in ("counterfactual", "denoised"):
            a, b = np.asarray(expected["decoded_log_cpm"]), np.asarray(expected["control_log_cpm"])
            bound = TOLERANCE * (2 + np.abs(a) + np.abs(b))
        else:
            bound = TOLERANCE * (1 + np.abs(want))
        assert (np.abs(row - want) <= bound).all(), f"{case['name']}: log-CPM, worst {np.max(np.abs(row - want) / bound):.2f} of the bound"
        fam = expected.get("familiarity")
        if fam:
            got = pred.uns["refcast"]["familiarity"].iloc[0]
            assert abs(got["reconstruction_r2"] - fam["reconstruction_r2"]) <= 1e-4, case["name"]
            assert abs(got["distance"] - fam["distance"]) <= 1e-3 * (1 + fam["distance"]), case["name"]
            assert got["nearest_context"] == fam["nearest_context"] and got["outside"] == str(fam["outside"]).lower(), case["name"]
