"""Cohort screens on Ray Data: samples in batches through one loaded model per actor, results
to Parquet.

A cohort is a table with one row per sample, in one of two layouts:

- ``"wide"``: a sample id column (``sample_column``, default ``"sample"``) and one numeric column
  per gene (symbols or Ensembl ids, as a sample file's first column), a cohort matrix over one
  gene set; ``cohort_table(adata)`` makes it from an AnnData;
- ``"lists"``: the sample id column, a ``genes`` column (a list of gene ids per sample) and a
  ``values`` column (the values in the same order), for samples measured on different genes.

Values are raw counts or log-CPM (``values=``), as everywhere in refcast. ``screen_cohort``
maps the dataset's batches through a pool of Ray actors (``map_batches`` with an
``ActorPoolStrategy``), each of which loads the model once; every sample goes through the same
``Model.screen`` (or ``Model.predict``) as a single-process call, as a one-sample table, so the
results do not depend on the batch size, the number of actors or the order in which batches
run, and equal ``screen_locally``'s (and a plain loop over ``Model.screen``) bit for bit. The
library checks every sample as it checks a sample file; its errors (``SampleError`` naming the
gene and sample, ``MetadataError``, …) reach the caller as themselves, not wrapped in Ray's.

>>> import ray, refcast.ray
>>> ray.init(num_cpus=8)
>>> cohort = refcast.ray.read_cohort("cohort.parquet")            # wide: sample + one column per gene
>>> refcast.ray.screen_cohort(cohort, output="screens/", num_actors=4)
>>> hits = pd.read_parquet("screens/")                           # one row per sample × perturbation

Ray is an optional dependency: ``pip install refcast[ray]``.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pandas as pd
import pyarrow as pa

from . import load
from ._inputs import ORIENTS, anndata_matrix, is_anndata, numbers
from .errors import RefcastError, RequestError, SampleError

LAYOUTS = ("wide", "lists")
GENES, VALUES = "genes", "values"
WHATS = ("screen", "predict")

SCREEN_SCHEMA = pa.schema(
    [
        ("sample", pa.string()),
        ("rank", pa.int64()),
        ("perturbation", pa.string()),
        ("effect_size", pa.float32()),
        ("reversal", pa.float32()),
        ("top_up", pa.list_(pa.string())),
        ("top_down", pa.list_(pa.string())),
        ("top_up_lfc", pa.list_(pa.float32())),
        ("top_down_lfc", pa.list_(pa.float32())),
        ("measured", pa.string()),
        ("measured_context", pa.string()),
        ("measured_distance", pa.float32()),
        ("mode", pa.string()),
        ("baseline", pa.string()),
        ("reconstruction_r2", pa.float64()),
        ("nearest_context", pa.string()),
        ("outside", pa.string()),
        ("matched_genes", pa.int64()),
        ("missing_genes", pa.int64()),
    ]
)
"""One row per sample × perturbation: ``Model.screen``'s columns, with the sample's familiarity
(``outside``: ``"true"``, ``"false"`` or ``"unknown"``) and match report."""

PREDICT_SCHEMA = pa.schema(
    [
        ("sample", pa.string()),
        ("perturbation", pa.string()),
        ("control", pa.bool_()),
        ("draw", pa.int64()),
        ("log_cpm", pa.list_(pa.float32())),
        ("log_fold_change", pa.list_(pa.float32())),
    ]
)
"""One row per sample × perturbation (× draw): the predicted log-CPM and log fold change over
the model's genes, in ``Model.genes`` order."""


def cohort_table(data, *, layer=None, use_raw=False, orient=None, layout="wide", sample_column="sample") -> pd.DataFrame:
    """A cohort table (one row per sample) from an AnnData (one sample per observation: values
    from ``.X``, ``layers[layer]`` or ``.raw``) or a DataFrame with ``orient="genes x samples"``
    or ``"samples x genes"``, in the ``"wide"`` or ``"lists"`` layout."""
    _check_layout(layout)
    if is_anndata(data):
        matrix, genes, _ = anndata_matrix(data, layer=layer, use_raw=use_raw)
        samples = [str(s) for s in data.obs_names]
        matrix = numbers(matrix.toarray() if hasattr(matrix, "toarray") else matrix)
    elif isinstance(data, pd.DataFrame):
        if orient not in ORIENTS:
            raise RequestError(f"a DataFrame needs orient='genes x samples' or orient='samples x genes', got orient={orient!r}")
        frame = data if orient == "samples x genes" else data.T
        genes, samples, matrix = [str(g) for g in frame.columns], [str(s) for s in frame.index], numbers(frame.to_numpy())
    else:
        raise RequestError(f"a cohort is made from an AnnData or a pandas DataFrame; got {type(data).__name__}")
    if layout == "lists":
        return pd.DataFrame({sample_column: samples, GENES: [list(genes)] * len(samples), VALUES: list(matrix)})
    if sample_column in genes:
        raise RequestError(f"a gene is named '{sample_column}', as the sample id column; pass another sample_column=")
    table = pd.DataFrame(matrix, columns=genes)
    table.insert(0, sample_column, samples)
    return table


def cohort_dataset(data, *, layer=None, use_raw=False, orient=None, layout="wide", sample_column="sample", blocks=None):
    """``cohort_table``'s table as a Ray Dataset (split into ``blocks`` blocks when given)."""
    import ray.data

    dataset = ray.data.from_pandas(cohort_table(data, layer=layer, use_raw=use_raw, orient=orient, layout=layout, sample_column=sample_column))
    return dataset if blocks is None else dataset.repartition(blocks)


def read_cohort(paths, **read_parquet_args):
    """A cohort from Parquet files (a file, a folder or a list of them), as a Ray Dataset:
    ``ray.data.read_parquet``."""
    import ray.data

    return ray.data.read_parquet(paths if isinstance(paths, list) else os.fspath(paths), **read_parquet_args)


def screen_cohort(
    dataset,
    model_path: str | os.PathLike | None = None,
    *,
    what: str = "screen",
    perturbations=None,
    signature=None,
    context=None,
    mode: str = "denoised",
    versus: str | None = None,
    condition_on=("technical", "biological"),
    values: str = "auto",
    num_samples: int | None = None,
    seed: int = 0,
    layout: str = "wide",
    sample_column: str = "sample",
    output: str | os.PathLike | None = None,
    num_actors: int = 2,
    num_cpus: float = 1.0,
    threads: int | None = None,
    batch_size: int = 8,
    backend: str = "cpu",
    sha256: str | None = None,
):
    """Screens (or predicts) every sample of a Ray Dataset, with one model per actor.

    dataset: a Ray Dataset in the ``layout`` (``"wide"`` or ``"lists"``, see the module), e.g.
        from ``read_cohort`` or ``cohort_dataset``.
    model_path: a ``.safetensors`` model file every worker can read; None: the bundled model.
    what: ``"screen"`` (``SCREEN_SCHEMA``: every known perturbation, or ``perturbations``,
        ranked per sample, or by reversal of ``signature``) or ``"predict"``
        (``PREDICT_SCHEMA``: the profiles under ``perturbations``, ``num_samples`` draws).
    perturbations, signature, context, mode, versus, condition_on, values, num_samples, seed:
        as for ``Model.screen`` and ``Model.predict``.
    output: a folder to write the results to, as Parquet (one file per block); None: the results
        are returned as a materialized Ray Dataset.
    num_actors: the most actors in the pool (it starts with one and grows while batches wait),
        each holding one loaded model.
    num_cpus: the CPUs Ray reserves per actor; keep actors × num_cpus below the cluster's CPUs
        when the dataset is read from files, since the read tasks need a CPU too.
    threads: the threads each actor's CPU backend uses (``REFCAST_THREADS``); None: ``num_cpus``
        rounded up.
    batch_size: samples per batch handed to an actor.
    backend, sha256: as for ``refcast.load`` in each actor.

    Returns ``output`` (as a string) when given, else the results' Dataset. Rows come in no
    particular order: sort by ``sample`` (and ``rank``) where order matters. Duplicate sample
    ids are refused before any work starts (``SampleError``).
    """
    import ray.data

    request = _request(
        what=what, perturbations=perturbations, signature=signature, context=context, mode=mode, versus=versus,
        condition_on=condition_on, values=values, num_samples=num_samples, seed=seed, layout=layout, sample_column=sample_column,
    )
    if num_actors < 1:
        raise RequestError(f"num_actors must be at least 1, got {num_actors}")
    _check_columns(dataset.columns(), layout, sample_column)
    check_unique_samples(dataset.select_columns([sample_column]).to_pandas()[sample_column])
    threads = threads if threads is not None else max(1, int(np.ceil(num_cpus)))
    results = dataset.map_batches(
        _Worker,
        fn_constructor_kwargs={"model_path": None if model_path is None else os.fspath(model_path), "backend": backend, "sha256": sha256, "request": request},
        batch_size=batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=num_actors, initial_size=1),
        num_cpus=num_cpus,
        runtime_env={"env_vars": {"REFCAST_THREADS": str(threads)}},
    )
    # The actors' exceptions as themselves (SampleError, …), not as Ray Data's UserCodeException,
    # for this run (the context is the dataset's, shared with the input's: restored after).
    context = results.context
    wrapped, context.raise_original_map_exception = context.raise_original_map_exception, True
    try:
        if output is None:
            return results.materialize()
        results.write_parquet(os.fspath(output))
        return os.fspath(output)
    except Exception as e:
        failure = _refcast_cause(e)
        if failure is None:
            raise
    finally:
        context.raise_original_map_exception = wrapped
    # Raised with no reference to the failed run (Ray's exception, its frames and the datasets),
    # whose actor pool sits in reference cycles: collected now, its actors release the CPUs they
    # hold, which the next run's tasks need.
    del results, dataset
    gc.collect()
    failure.__traceback__ = None
    raise failure


def screen_locally(cohort, model_path: str | os.PathLike | None = None, *, backend: str = "cpu", sha256: str | None = None, model=None, **options) -> pd.DataFrame:
    """``screen_cohort`` in this process, without Ray: a cohort table (a DataFrame, or a path to a
    Parquet file or folder) through one model (``model``, or loaded from ``model_path``), sample
    by sample; returns the rows in the cohort's order (and rank order). ``options``: what,
    perturbations, signature, … layout, sample_column, as for ``screen_cohort``."""
    request = _request(**options)
    if not isinstance(cohort, pd.DataFrame):
        cohort = pd.read_parquet(cohort)
    _check_columns(list(cohort.columns), request["layout"], request["sample_column"])
    check_unique_samples(cohort[request["sample_column"]])
    model = model if model is not None else load(model_path, backend=backend, sha256=sha256)
    return run_batch(model, cohort, request).to_pandas()


def thinned_cohort(counts: pd.Series, n: int, *, seed: int = 0, low: float = 0.2, sample_column: str = "sample") -> pd.DataFrame:
    """A wide cohort table of ``n`` samples drawn from one sample's raw counts by binomial
    thinning (each sample keeps a fraction, uniform in [``low``, 1), of the reads), ids
    ``<name>_0``, ``<name>_1``, …: realistic samples at varied depths, for trying
    ``screen_cohort`` out and for benchmarks. Seeded: the same call gives the same table."""
    values = numbers(counts.to_numpy())
    if (values < 0).any() or (np.mod(values, 1) != 0).any():
        raise SampleError("thinned_cohort draws from raw counts: the values must be non-negative whole numbers")
    rng = np.random.default_rng(seed)
    fractions = rng.uniform(low, 1.0, size=n)
    matrix = rng.binomial(values.astype(np.int64)[None, :], fractions[:, None])
    name = "sample" if counts.name is None else str(counts.name)
    table = pd.DataFrame(matrix, columns=[str(g) for g in counts.index])
    table.insert(0, sample_column, [f"{name}_{i}" for i in range(n)])
    return table


def check_unique_samples(ids: pd.Series) -> None:
    """Refuses a cohort in which a sample id appears twice (its results could not be told apart)."""
    ids = ids.astype(str).reset_index(drop=True)
    repeated = ids[ids.duplicated()]
    if not repeated.empty:
        first = repeated.iloc[0]
        rows = ids.index[ids == first][:2] + 1
        raise SampleError(f"sample '{first}' appears twice in the cohort (rows {rows[0]} and {rows[1]}); sample ids must be unique")


def run_batch(model, batch: pd.DataFrame, request: dict) -> pa.Table:
    """Every sample of one batch through ``model``, one at a time: the screen's or prediction's
    rows as an Arrow table (``SCREEN_SCHEMA`` or ``PREDICT_SCHEMA``)."""
    rows = []
    for sample, data in _samples(batch, request["layout"], request["sample_column"]):
        if request["what"] == "screen":
            rows.append(_screen_rows(model, sample, data, request))
        else:
            rows.append(_predict_rows(model, sample, data, request))
    schema = SCREEN_SCHEMA if request["what"] == "screen" else PREDICT_SCHEMA
    if not rows:
        return schema.empty_table()
    return pa.concat_tables(rows)


class _Worker:
    """One actor of the pool: loads the model once, then screens batch after batch."""

    def __init__(self, model_path, backend, sha256, request):
        self.model = load(model_path, backend=backend, sha256=sha256)
        self.request = request

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        return run_batch(self.model, batch, self.request)


def _request(
    *,
    what="screen",
    perturbations=None,
    signature=None,
    context=None,
    mode="denoised",
    versus=None,
    condition_on=("technical", "biological"),
    values="auto",
    num_samples=None,
    seed=0,
    layout="wide",
    sample_column="sample",
) -> dict:
    """The options of a cohort run, checked, as one dict for the actors."""
    if what not in WHATS:
        raise RequestError(f"what must be 'screen' or 'predict', got {what!r}")
    _check_layout(layout)
    if what == "predict" and signature is not None:
        raise RequestError("a signature is for screens (what='screen')")
    if what == "screen" and num_samples is not None:
        raise RequestError("num_samples is for predictions (what='predict'); a screen ranks the latents' means")
    if isinstance(perturbations, (str, dict)):
        perturbations = [perturbations]
    return {
        "what": what,
        "perturbations": None if perturbations is None else list(perturbations),
        "signature": signature,
        "context": context,
        "mode": mode,
        "versus": versus,
        "condition_on": tuple(condition_on),
        "values": values,
        "num_samples": num_samples,
        "seed": seed,
        "layout": layout,
        "sample_column": sample_column,
    }


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise RequestError(f"layout must be 'wide' (a column per gene) or 'lists' (genes and values columns), got {layout!r}")


def _check_columns(columns, layout, sample_column):
    shown = ", ".join(map(str, columns[:8])) + (f", … ({len(columns)} in all)" if len(columns) > 8 else "")
    needed = [sample_column] + ([GENES, VALUES] if layout == "lists" else [])
    for column in needed:
        if column not in columns:
            raise RequestError(f"the cohort has no column '{column}' (layout='{layout}' needs {', '.join(repr(c) for c in needed)}{'' if layout == 'lists' else ' and a column per gene'}; columns: {shown or 'none'})")
    if layout == "wide" and len(columns) < 2:
        raise RequestError(f"the cohort has no gene columns besides '{sample_column}' (layout='wide' needs a column per gene; for gene and value lists, pass layout='lists')")


def _samples(batch: pd.DataFrame, layout: str, sample_column: str):
    """(sample id, Series of values indexed by gene) for each row of a batch."""
    ids = [str(s) for s in batch[sample_column]]
    if layout == "wide":
        values = batch.drop(columns=[sample_column])
        genes = pd.Index([str(c) for c in values.columns])
        text = [c for c, t in values.dtypes.items() if not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t)]
        if text:
            raise SampleError(f"gene column '{text[0]}' holds {values[text[0]].dtype} values, not numbers (layout='wide' takes one numeric column per gene besides '{sample_column}')")
        matrix = numbers(values.to_numpy())
        for i, sample in enumerate(ids):
            yield sample, pd.Series(matrix[i], index=genes, name=sample)
        return
    for sample, genes, vals in zip(ids, batch[GENES], batch[VALUES]):
        if genes is None or vals is None:
            raise SampleError(f"sample '{sample}': the genes or values list is missing")
        genes, vals = [str(g) for g in genes], numbers(vals)
        if len(genes) != len(vals):
            raise SampleError(f"sample '{sample}' has {len(vals)} values for {len(genes)} genes")
        yield sample, pd.Series(vals, index=pd.Index(genes), name=sample)


def _shared(request: dict) -> dict:
    """The options that Model.screen and Model.predict share."""
    return {k: request[k] for k in ("context", "mode", "versus", "condition_on", "values")}


def _screen_rows(model, sample: str, data: pd.Series, request: dict) -> pa.Table:
    frame = model.screen(data, perturbations=request["perturbations"], signature=request["signature"], **_shared(request))
    (familiarity,) = frame.attrs["familiarity"]  # one report: one reference
    reference = frame.attrs["reference"]
    n = len(frame)
    columns = {name: frame[name].tolist() for name in ["rank", "perturbation", "effect_size", "reversal", "top_up", "top_down", "top_up_lfc", "top_down_lfc", "measured", "measured_context", "measured_distance"]}
    columns.update(
        sample=[sample] * n,
        mode=[frame.attrs["mode"]] * n,
        baseline=[frame.attrs["baseline"]] * n,
        reconstruction_r2=[familiarity["reconstruction_r2"]] * n,
        nearest_context=[familiarity["nearest_context"] or ""] * n,
        outside=["unknown" if familiarity["outside"] is None else str(bool(familiarity["outside"])).lower()] * n,
        matched_genes=[reference["matched"]] * n,
        missing_genes=[reference["missing"]] * n,
    )
    return pa.table({f.name: pa.array(columns[f.name], type=f.type, from_pandas=True) for f in SCREEN_SCHEMA}, schema=SCREEN_SCHEMA)


def _predict_rows(model, sample: str, data: pd.Series, request: dict) -> pa.Table:
    pred = model.predict(data, request["perturbations"], num_samples=request["num_samples"], seed=request["seed"], **_shared(request))
    rows, genes = pred.X.shape
    lfc = pred.layers.get("log_fold_change")

    def lists(matrix):
        flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).ravel())
        return pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * genes), flat)

    return pa.table(
        {
            "sample": pa.array([sample] * rows, pa.string()),
            "perturbation": pa.array(pred.obs["perturbation"].astype(str).tolist(), pa.string()),
            "control": pa.array(pred.obs["control"].to_numpy(), pa.bool_()),
            "draw": pa.array(pred.obs["draw"].to_numpy(), pa.int64()),
            "log_cpm": lists(pred.X),
            "log_fold_change": lists(lfc) if lfc is not None else pa.nulls(rows, PREDICT_SCHEMA.field("log_fold_change").type),
        },
        schema=PREDICT_SCHEMA,
    )


def _refcast_cause(error: BaseException) -> RefcastError | None:
    """The refcast error an actor raised, from the exception Ray raised for it
    (``RayTaskError(SampleError)`` holds it as ``cause``), if that is what failed."""
    seen = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        cause = getattr(error, "cause", None)
        if isinstance(cause, RefcastError):
            return cause
        if isinstance(error, RefcastError) and type(error).__module__ == RefcastError.__module__:
            return error
        error = cause if isinstance(cause, BaseException) else error.__cause__
    return None


__all__ = ["screen_cohort", "screen_locally", "cohort_table", "cohort_dataset", "read_cohort", "check_unique_samples", "run_batch", "thinned_cohort", "SCREEN_SCHEMA", "PREDICT_SCHEMA", "LAYOUTS"]
