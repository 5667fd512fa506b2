"""AnnData, pandas and file inputs give the same predictions bit for bit; pseudobulks, screens,
errors per kind, and memory over a long run."""

import os
import threading

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import refcast
from conftest import KANG, ROOT


def same(a, b):
    """The same predictions, bit for bit."""
    assert np.array_equal(a.X, b.X)
    for layer in ["counts", "log_fold_change", "reference", "measured"]:
        assert np.array_equal(a.layers[layer], b.layers[layer]), layer
    assert np.array_equal(a.obsm["latent"], b.obsm["latent"])


def test_every_input_gives_the_files_prediction(model, kang):
    from_file = model.predict(KANG, ["IFN-beta 6 h", "none (control)"])
    assert from_file.uns["refcast"]["log_fold_change_units"] == refcast.FOLD_CHANGE_UNITS == "ln fold change"
    adata = ad.AnnData(X=sp.csr_matrix(kang.to_numpy()[None, :].astype(np.float32)), obs=pd.DataFrame(index=[kang.name]), var=pd.DataFrame(index=kang.index))
    for data, kwargs in [
        (kang, {}),
        (kang.to_frame(), {"orient": "genes x samples"}),
        (kang.to_frame().T, {"orient": "samples x genes"}),
        (adata, {}),
    ]:
        pred = model.predict(data, ["IFN-beta 6 h", "none (control)"], **kwargs)
        same(pred, from_file)
        assert list(pred.obs["reference"]) == [kang.name] * 2
    assert from_file.obs["perturbation"].tolist() == ["IFN-beta 6 h", "none (control)"]
    assert from_file.obs["control"].tolist() == [False, True]
    assert from_file.obs["pert_perturbation"].tolist() == ["IFN-beta", "none"]
    assert from_file.uns["refcast"]["familiarity"]["outside"].tolist() == ["false"]
    assert from_file.obs["mode"].tolist() == ["denoised"] * 2 and from_file.obs["baseline"].tolist() == ["reference"] * 2
    # The control's denoised profile (the default) is the reference with its deviations from the
    # model's reconstruction shrunk by at most each gene's threshold (≤ 1 ln unit); its
    # counterfactual profile is the reference itself.
    measured = from_file.layers["measured"][1].astype(bool)
    assert (np.abs(from_file.X[1] - from_file.layers["reference"][1])[measured] <= 1 + 1e-5).all()
    cf = model.predict(KANG, ["none (control)"], mode="counterfactual")
    assert cf.obs["mode"].tolist() == ["counterfactual"]
    assert np.array_equal(cf.X[0], np.where(cf.layers["measured"][0], cf.layers["reference"][0], cf.X[0]))


def test_groupby_sums_counts_per_group(model, kang, tmp_path):
    """Cells whose counts add up to the bundled sample: their pseudobulk predicts as the sample."""
    counts = kang.to_numpy().astype(np.int64)
    half = counts // 2
    cells = np.stack([half, counts - half, counts // 3])
    adata = ad.AnnData(
        X=sp.csr_matrix(np.zeros_like(cells, dtype=np.float32)),
        obs=pd.DataFrame({"cell_type": pd.Categorical(["mono", "mono", "other"])}, index=["c1", "c2", "c3"]),
        var=pd.DataFrame(index=kang.index),
        layers={"counts": sp.csr_matrix(cells)},
    )
    pred = model.predict(adata, "IFN-beta 6 h", layer="counts", groupby="cell_type")
    assert pred.obs["reference"].tolist() == ["mono", "other"]
    # The same two samples in one request (the CPU kernels' path depends on the batch size).
    sums = pd.DataFrame(np.stack([counts, counts // 3]), index=["mono", "other"], columns=kang.index)
    same(pred, model.predict(sums, "IFN-beta 6 h", orient="samples x genes"))
    refs = pred.uns["refcast"]["references"]
    assert refs["library_size"].tolist()[0] == float(counts.sum())
    pred.write_h5ad(tmp_path / "pred.h5ad")
    assert ad.read_h5ad(tmp_path / "pred.h5ad").uns["refcast"]["model"] == model.info()["name"]


def test_screen_frames_and_signatures(model, kang):
    hits = model.screen(kang, perturbations=["IFN-beta 6 h", "none (control)", "anti-CD3/CD28"])
    assert hits["perturbation"].tolist()[-1] == "none (control)" and hits["rank"].tolist() == [1, 2, 3]
    assert hits.attrs["baseline"] == "reference" and hits["reversal"].isna().all()
    up = hits["top_up"].iloc[0][:5]
    reversed_ = model.screen(kang, signature={"up": [], "down": up})
    assert reversed_["reversal"].notna().all() and len(reversed_) == len(model.info()["perturbations"])
    for signature in [list(up), dict.fromkeys(up, -1.0), pd.Series(-1.0, index=up)]:
        s = model.screen(kang, signature=signature)
        assert s["reversal"].notna().all()
    weights = model.screen(kang, signature=pd.Series(-1.0, index=up))
    assert weights["perturbation"].iloc[0] == reversed_["perturbation"].iloc[0]


def test_settings_without_effect_and_extrapolations_are_warned_of(model, kang):
    """As the CLI warns: a context field of a group taken from the sample, a time never measured,
    and a perturbation measured only in contexts unlike the sample's (Python warnings, and the
    result's ``uns["refcast"]["warnings"]``)."""
    with pytest.warns(refcast.RefcastWarning, match="cell_type has no effect"):
        pred = model.predict(kang, "IFN-beta 6 h", context={"cell_type": "B"})
    assert any("cell_type has no effect" in w for w in pred.uns["refcast"]["warnings"])
    assert pred.obs["measured"].tolist() == ["nearby"] and pred.obs["measured_context"].iloc[0].startswith("PBMC (Kang 2018)")
    with pytest.warns(refcast.RefcastWarning, match="time_hours=168 is a combination the model was never trained on"):
        model.predict(kang, {"perturbation": "IFN-beta", "perturbation_class": "interferon", "time_hours": 168, "dose_um": 0})
    with pytest.warns(refcast.RefcastWarning, match="'anti-CD3/CD28 24 h' was measured only in training contexts unlike this sample"):
        pred = model.predict(kang, "anti-CD3/CD28 24 h")
    assert pred.obs["measured"].tolist() == ["elsewhere"]
    with pytest.warns(refcast.RefcastWarning, match="cell_type has no effect"):
        model.screen(kang, perturbations=["IFN-beta 6 h"], context={"cell_type": "B"})


def test_info_and_prompt_only(model):
    info = model.info()
    assert info["genes"] == len(model.genes) and info["backend"] == "cpu" and model.backend_reason == "requested"
    assert sum(p["control"] for p in info["perturbations"]) >= 1 and info["default_perturbation"]
    assert "verified against" in model.checksum
    context = info["contexts"][0]["name"]
    pred = model.predict(None, "IFN-beta 6 h", context=context, num_samples=3, seed=1)
    assert pred.n_obs == 3 and pred.obs["mode"].tolist() == ["decoded"] * 3 and "log_fold_change" not in pred.layers
    again = model.predict(None, "IFN-beta 6 h", context=context, num_samples=3, seed=1)
    assert np.array_equal(pred.X, again.X)


def raises(kind, match, call):
    with pytest.raises(kind, match=match or None) as e:
        call()
    assert isinstance(e.value, ValueError)
    return e.value


def test_errors_by_kind_with_the_librarys_messages(model, kang, tmp_path):
    var = pd.DataFrame(index=kang.index)
    obs = pd.DataFrame(index=["s"])
    row = kang.to_numpy()[None, :].astype(np.float32)
    raises(refcast.SampleError, "no expression values in .X", lambda: model.predict(ad.AnnData(obs=obs, var=var), "IFN-beta"))
    raises(refcast.RequestError, "groupby='cell_type': no such column", lambda: model.predict(ad.AnnData(X=row, obs=obs, var=var), "IFN-beta", groupby="cell_type"))
    twice = pd.DataFrame(index=list(kang.index[:-1]) + [kang.index[0]])
    raises(refcast.SampleError, f"gene '{kang.index[0]}' appears twice", lambda: model.predict(ad.AnnData(X=row, obs=obs, var=twice), "IFN-beta"))
    negative = sp.csr_matrix(np.where(np.arange(row.shape[1]) == 7, -3.0, row))
    raises(refcast.SampleError, "has a negative count \\(-3\\)", lambda: model.predict(ad.AnnData(X=negative, obs=obs, var=var), "IFN-beta", values="counts"))
    raises(refcast.SampleError, "the values include negative numbers \\(-3\\)", lambda: model.predict(ad.AnnData(X=negative, obs=obs, var=var), "IFN-beta"))
    raises(refcast.SampleError, "not whole numbers", lambda: model.predict(ad.AnnData(X=np.log1p(row), obs=pd.DataFrame({"g": ["a"]}, index=["s"]), var=var), "IFN-beta", groupby="g"))
    raises(refcast.RequestError, "orient=", lambda: model.predict(kang.to_frame(), "IFN-beta"))
    raises(refcast.MetadataError, "unknown context 'Mars'", lambda: model.predict(kang, "IFN-beta", context="Mars"))
    raises(refcast.MetadataError, "cisplatin", lambda: model.predict(kang, "cisplatin"))
    raises(refcast.SignatureError, "", lambda: model.screen(kang, signature=["NOT_A_GENE1", "NOT_A_GENE2"]))
    raises(refcast.FormatError, "checksum mismatch", lambda: refcast.load(backend="cpu", sha256="0" * 64))
    err = raises(refcast.IoError, "", lambda: refcast.load(tmp_path / "missing.safetensors", backend="cpu"))
    assert isinstance(err, OSError)
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    raises(refcast.FormatError, "invalid model file", lambda: refcast.load(tmp_path / "bad.safetensors", backend="cpu"))
    with pytest.raises(ValueError, match="unknown prediction mode"):
        model.predict(kang, "IFN-beta", mode="sideways")


def test_calls_from_threads_run_one_at_a_time(model, kang):
    want = model.predict(kang, "IFN-beta 6 h").X
    results = []
    threads = [threading.Thread(target=lambda: results.append(model.predict(kang, "IFN-beta 6 h").X)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(np.array_equal(r, want) for r in results)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# As tests/long_run.rs and the browser test: after a warm-up, RSS may grow by at most this much
# over the whole run (a leak of one prediction's arrays, 15,360 genes × 4 layers × 4 bytes, per
# call would be 240 MiB over 1,000 calls).
RSS_MARGIN = 16 << 20
RUNS = int(os.environ.get("REFCAST_PY_RUNS", "1000"))


def test_memory_stays_flat_over_a_thousand_predictions(model, kang):
    table = refcast._inputs.to_table(kang)
    for _ in range(20):
        model.predict(kang, "IFN-beta 6 h")
    start = rss()
    for i in range(RUNS):
        # Through the whole binding (the library's arrays into numpy, then AnnData) every 10th
        # call; the others through the compiled module alone, which holds every buffer.
        if i % 10 == 0:
            model.predict(kang, "IFN-beta 6 h")
        else:
            model._inner.predict(table, ["IFN-beta 6 h"])
    grown = rss() - start
    assert grown <= RSS_MARGIN, f"RSS grew by {grown >> 20} MiB over {RUNS} predictions"


def test_the_scanpy_example_runs(tmp_path, monkeypatch):
    import runpy

    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "python" / "examples" / "scanpy_example.py"), run_name="__main__")
    assert (tmp_path / "refcast_heatmap.png").stat().st_size > 0
