"""Cohort screens on a local Ray cluster (2 CPUs): Parquet in, Parquet out, both layouts, equal
to a plain single-process loop over ``Model.screen`` / ``Model.predict``; bad cohorts get the
library's errors."""

import os

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402

import refcast  # noqa: E402
import refcast.ray as rr  # noqa: E402
from conftest import EXAMPLES  # noqa: E402

SAMPLES = 200
# Every 10th known perturbation (124 of the bundled model's 1,239): 200 × 124 screens took 1-3
# minutes per pass on 2 busy cores, and the test makes two (Ray, then the plain loop);
# REFCAST_PY_COHORT=all screens every known perturbation (7-8 minutes per pass there).
EVERY = 1 if os.environ.get("REFCAST_PY_COHORT") == "all" else 10
# Two actors on the 2-CPU cluster, each reserving half a CPU, so that Ray Data's tasks (Parquet
# reads and writes, from_pandas) always find a whole one, even while a failed run's actors are
# being released; each actor's CPU backend runs one thread.
POOL = {"num_actors": 2, "num_cpus": 0.5, "threads": 1}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cohort(kang) -> pd.DataFrame:
    """200 samples thinned from the bundled Kang sample (wide: a column per gene)."""
    return rr.thinned_cohort(kang, SAMPLES, seed=7)


def plain_screens(model, cohort: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """The reference: Model.screen on each sample in turn, in this process."""
    frames = []
    for _, row in cohort.iterrows():
        sample = row["sample"]
        hits = model.screen(row.drop("sample").astype(np.float64).rename(sample), **kwargs)
        hits.insert(0, "sample", sample)
        frames.append(hits)
    return pd.concat(frames, ignore_index=True)


def in_order(frame: pd.DataFrame, samples) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(samples)}
    return frame.sort_values(["sample", "rank"], key=lambda c: c.map(order) if c.name == "sample" else c).reset_index(drop=True)


def assert_same_screens(got: pd.DataFrame, want: pd.DataFrame):
    """Equal, bit for bit: the same ranks, perturbations, float32 effect sizes and top genes."""
    assert len(got) == len(want)
    for column in ["sample", "rank", "perturbation"]:
        assert got[column].tolist() == want[column].tolist(), column
    for column in ["effect_size", "reversal"]:
        a, b = got[column].to_numpy(np.float32), want[column].to_numpy(np.float32)
        assert np.array_equal(a, b, equal_nan=True), f"{column}: {np.sum(a != b)} values differ"
    for column in ["top_up", "top_down", "top_up_lfc", "top_down_lfc"]:
        assert [list(v) for v in got[column]] == [list(v) for v in want[column]], column


def test_a_cohort_of_200_samples_on_two_actors(cluster, model, cohort, tmp_path):
    """Parquet in (wide), 200 samples × known perturbations (see EVERY) on two actors, Parquet
    out: the rows equal a single-process loop over Model.screen, bit for bit."""
    names = [p["name"] for p in model.info()["perturbations"]][::EVERY]
    cohort.to_parquet(tmp_path / "cohort.parquet", row_group_size=25)
    written = rr.screen_cohort(rr.read_cohort(tmp_path / "cohort.parquet"), perturbations=names, output=tmp_path / "screens", batch_size=10, **POOL)
    got = in_order(pd.read_parquet(written), cohort["sample"])
    assert len(got) == SAMPLES * len(names) and got["sample"].nunique() == SAMPLES
    assert_same_screens(got, plain_screens(model, cohort, perturbations=names))
    assert (got["mode"] == "denoised").all() and (got["baseline"] == "reference").all()
    assert (got["matched_genes"] == 10921).all() and set(got["outside"]) <= {"true", "false", "unknown"}
    # The same rows from screen_locally (one process, no Ray), for the first 10 samples.
    local = rr.screen_locally(cohort.iloc[:10], perturbations=names, model=model)
    assert_same_screens(local, got.iloc[: 10 * len(names)])


def test_gene_lists_from_an_anndata_and_predictions(cluster, model, kang, tmp_path):
    """The lists layout (samples on different gene sets: Kang's and the T cell sample's), made
    from AnnData objects, screened against a subset; and predictions with draws, per sample."""
    tcell = pd.read_csv(EXAMPLES / "tcell_D1_unstimulated_24h.tsv", sep="\t", index_col=0).iloc[:, 0].rename("tcell")
    parts = []
    for series, n in [(kang, 12), (tcell, 12)]:
        wide = rr.thinned_cohort(series, n, seed=3)
        adata = ad.AnnData(X=wide.drop(columns="sample").to_numpy(np.float32), obs=pd.DataFrame(index=wide["sample"]), var=pd.DataFrame(index=wide.columns[1:]))
        parts.append(rr.cohort_table(adata, layout="lists"))
    lists = pd.concat(parts, ignore_index=True)
    perturbations = ["IFN-beta 6 h", "dexamethasone 1 µM 18 h", "none (control)"]
    got = rr.screen_cohort(ray.data.from_pandas(lists), layout="lists", perturbations=perturbations, batch_size=5, **POOL).to_pandas()
    want = []
    for _, row in lists.iterrows():
        hits = model.screen(pd.Series(np.asarray(row["values"], np.float64), index=list(row["genes"]), name=row["sample"]), perturbations=perturbations)
        hits.insert(0, "sample", row["sample"])
        want.append(hits)
    assert_same_screens(in_order(got, lists["sample"]), pd.concat(want, ignore_index=True))

    preds = rr.screen_cohort(ray.data.from_pandas(lists.iloc[:6]), what="predict", layout="lists", perturbations=perturbations[:2], num_samples=2, seed=4, batch_size=4, output=tmp_path / "preds", **POOL)
    frame = pd.read_parquet(preds)
    assert len(frame) == 6 * 2 * 2
    for _, row in lists.iloc[:6].iterrows():
        pred = model.predict(pd.Series(np.asarray(row["values"], np.float64), index=list(row["genes"]), name=row["sample"]), perturbations[:2], num_samples=2, seed=4)
        mine = frame[frame["sample"] == row["sample"]].sort_values(["draw", "perturbation"], key=lambda c: c.map({p: i for i, p in enumerate(perturbations)}) if c.name == "perturbation" else c)
        order = np.lexsort((pred.obs["perturbation"].cat.codes, pred.obs["draw"]))
        assert np.array_equal(np.stack(mine["log_cpm"].to_numpy()), pred.X[order])
        assert np.array_equal(np.stack(mine["log_fold_change"].to_numpy()), pred.layers["log_fold_change"][order])
        assert mine["control"].tolist() == pred.obs["control"].to_numpy()[order].tolist()


def raises(kind, match, call):
    with pytest.raises(kind, match=match) as e:
        call()
    return e.value


def test_bad_cohorts_get_the_librarys_errors(cluster, cohort):
    small = cohort.iloc[:4].copy()
    lists = rr.cohort_table(small.set_index("sample"), orient="samples x genes", layout="lists")
    # Refused before any work: duplicate sample ids, missing columns, an unknown layout.
    twice = small.copy()
    twice.loc[3, "sample"] = twice["sample"][1]
    raises(refcast.SampleError, f"sample '{twice['sample'][1]}' appears twice in the cohort \\(rows 2 and 4\\)", lambda: rr.screen_cohort(ray.data.from_pandas(twice), **POOL))
    raises(refcast.SampleError, "appears twice", lambda: rr.screen_locally(twice))
    raises(refcast.RequestError, "the cohort has no column 'genes'", lambda: rr.screen_cohort(ray.data.from_pandas(lists.drop(columns="genes")), layout="lists", **POOL))
    raises(refcast.RequestError, "the cohort has no column 'sample'", lambda: rr.screen_cohort(ray.data.from_pandas(small.drop(columns="sample")), **POOL))
    raises(refcast.RequestError, "layout must be", lambda: rr.screen_cohort(ray.data.from_pandas(small), layout="tall"))
    # Found by the actors, raised as the library's errors. One small actor per run: a failed
    # run's actor may hold its share of a CPU for a while after the error.
    pool = {"num_actors": 1, "num_cpus": 0.25, "threads": 1}
    holey = small.copy()
    gene = holey.columns[5]
    holey[gene] = holey[gene].astype(np.float64)
    holey.loc[2, gene] = np.nan
    uneven = lists.copy()
    uneven.at[1, "values"] = uneven.at[1, "values"][:-1]
    datasets = [ray.data.from_pandas(frame) for frame in (holey, small, uneven)]
    raises(refcast.SampleError, f"gene '{gene}' in sample '{holey['sample'][2]}': NaN is not a finite number", lambda: rr.screen_cohort(datasets[0], **pool))
    raises(refcast.MetadataError, "perturbation 'cisplatin' is not known", lambda: rr.screen_cohort(datasets[1], perturbations=["cisplatin"], **pool))
    n = len(uneven.at[1, "genes"])
    raises(refcast.SampleError, f"sample '{uneven['sample'][1]}' has {n - 1} values for {n} genes", lambda: rr.screen_cohort(datasets[2], layout="lists", **pool))
