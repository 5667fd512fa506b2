"""Predictions by the shipped Rust runtime (the `refcast` CLI) from exported model files, so that an
evaluation scores what users run rather than a Python re-implementation of it.

    path = runtime.export_model(infer.folded(model), "q4_0", genes, meta, tmp / "m.safetensors")
    pred = runtime.predict(path, refs, genes, [{"perturbation": "IFN-beta", "time_hours": 6.0}])
    pred.log_cpm, pred.sigma, pred.log_fold_change      # each [n, G], model gene order

Each `predict` writes the references as one TSV per distinct perturbation and runs
`refcast predict --values log-cpm --backend cpu` once per TSV. The CLI refuses reference values
outside [0, 13.9] (src/sample.rs, `Reference::from_table`, MAX_LOG_CPM = ln(1 + 10⁶) + slack):
log2 microarray intensities above 13.9 are refused; `predict` raises `RuntimeRefused` with the
CLI's message.
"""
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import config as C
from .fetch import sha256

# src/sample.rs: the range of values `--values log-cpm` accepts for a reference.
MAX_LOG_CPM = 13.9

_BIN = None


class RuntimeRefused(RuntimeError):
    """The CLI exited with an error (its standard error is the message)."""


class Prediction(NamedTuple):
    log_cpm: np.ndarray          # [n, G] predicted log-CPM (the CLI's `predicted` column)
    sigma: np.ndarray            # [n, G] σ of the model's likelihood (the same row for every reference)
    log_fold_change: np.ndarray  # [n, G] against the reference or the model's control (`versus`)


def binary():
    """Path of the refcast CLI: $REFCAST_BIN, else target/release/refcast under the repository
    (built with `cargo build --release --locked --bin refcast` when it is missing; an existing
    binary is used as it is, even when the Rust sources are newer)."""
    global _BIN
    if _BIN is not None:
        return _BIN
    env = os.environ.get("REFCAST_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"REFCAST_BIN={env} is not a file")
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", C.REPO / "target"))
        if not target.is_absolute():
            target = C.REPO / target
        path = target / "release" / "refcast"
        if not path.is_file():
            cmd = ["cargo", "build", "--release", "--locked", "--bin", "refcast"]
            print(f"runtime: {path} is missing; running `{' '.join(cmd)}` in {C.REPO} (a few minutes)", flush=True)
            t0 = time.time()
            subprocess.run(cmd, cwd=C.REPO, check=True)
            print(f"runtime: built {path} in {time.time() - t0:.0f} s", flush=True)
            if not path.is_file():
                raise FileNotFoundError(f"cargo build finished but {path} does not exist")
    _BIN = path
    return path


def export_model(model_f, kind, genes, meta, path, notes="Exported for evaluation by training/runtime.py."):
    """Write the refcast file of a folded model (`infer.folded(...)`) in `kind` ("q8_0", "q4_0" or
    "f32") at `path`, exactly as `python -m training export` writes the shipped files
    (export.write_model: infer.file_tensors + export.metadata_doc + export.write_file). `meta` is
    the unit table (train.load()), from which the file's perturbation and context lists come.
    Returns `path`."""
    from . import export
    if kind not in ("q8_0", "q4_0", "f32"):
        raise ValueError(f"kind must be q8_0, q4_0 or f32, got {kind!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export.write_model(model_f, kind, genes, meta, path, notes)
    return path


def gene_ids(genes):
    """The identifier written for each model gene: its symbol, or its Ensembl id where the symbol
    would not find the gene (the runtime matches Ensembl ids first, then symbols, case-insensitively,
    a later entry never overriding an earlier one)."""
    def norm(s):
        s = s.strip().lower()
        if s.startswith("ens") and "." in s and s.rsplit(".", 1)[1].isdigit():
            s = s.rsplit(".", 1)[0]
        return s
    index = {}
    for i, g in enumerate(genes):
        if g.get("ensembl"):
            index.setdefault(norm(g["ensembl"]), i)
    for i, g in enumerate(genes):
        index.setdefault(norm(g["symbol"]), i)
    out = []
    for i, g in enumerate(genes):
        if index.get(norm(g["symbol"])) == i:
            out.append(g["symbol"])
        elif g.get("ensembl") and index.get(norm(g["ensembl"])) == i:
            out.append(g["ensembl"])
        else:
            raise ValueError(f"model gene {i} ({g}) cannot be addressed by symbol or Ensembl id")
    return out


def _fmt(v):
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"metadata value {v!r}: expected a name or a number")
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _key(p):
    return tuple(sorted((str(k), _fmt(v)) for k, v in p.items()))


def _write_tsv(path, ids, names, values):
    """values [k, G] float32 -> TSV: gene, then one column per reference; '%.9g' round-trips f32."""
    row = "%s\t" + "\t".join(["%.9g"] * len(names)) + "\n"
    with open(path, "w") as f:
        f.write("gene\t" + "\t".join(names) + "\n")
        f.write("".join(row % (gid, *v) for gid, v in zip(ids, values.T.astype(np.float64).tolist())))


def _read_output(path, symbols, names):
    """The CLI's -o TSV -> (predicted, sigma, lfc, reference, measured) [k, G]; its gene column is
    the model's symbols (whatever id the sample used). With one reference
    (and one perturbation, no draws) the columns start at `gene`; with several, `sample`,
    `perturbation` and `draw` come first, one block of G rows per reference in input order."""
    import pandas as pd
    df = pd.read_csv(path, sep="\t", dtype={"gene": str, "sample": str, "perturbation": str},
                     keep_default_na=False, na_filter=False)
    k, G = len(names), len(symbols)
    want = ["gene", "reference", "predicted", "log_fold_change", "counts", "sigma", "measured"]
    many = ["sample", "perturbation", "draw"]
    expected = (many + want) if k > 1 else want
    if list(df.columns) != expected:
        raise RuntimeError(f"{path}: unexpected columns {list(df.columns)} (expected {expected})")
    if len(df) != k * G:
        raise RuntimeError(f"{path}: {len(df)} rows, expected {k} references × {G} genes")
    if k > 1:
        if not (df["sample"].to_numpy() == np.repeat(np.asarray(names, dtype=object), G)).all():
            raise RuntimeError(f"{path}: the sample column is not the references in input order")
        if not (df["draw"].to_numpy() == 0).all():
            raise RuntimeError(f"{path}: draws other than 0 in a mean prediction")
    if not (df["gene"].to_numpy() == np.tile(np.asarray(symbols, dtype=object), k)).all():
        raise RuntimeError(f"{path}: genes are not in the model's order")
    col = lambda c: df[c].to_numpy(dtype=np.float32).reshape(k, G)
    return col("predicted"), col("sigma"), col("log_fold_change"), col("reference"), col("measured")


def predict(model_path, refs, genes, perturbations, versus="reference", backend="cpu", timeout=600,
            keep_dir=None, mode="decoded", library_sizes=None):
    """Predict with the refcast CLI: reference conditioning (technical + biological latents from the
    encoder, latent means), as `infer.predict_mean(model, refs, perturbations)` does in PyTorch
    (mode "decoded", passed as `--mode` since the CLI's default is "denoised":
    max(0, predict_mean(perturbation) + soft(reference - predict_mean(control), τ)); "counterfactual":
    max(0, reference + predict_mean(perturbation) - predict_mean(control))).

    refs: [n, G] float32 values in the model's gene order (genes a sample lacks already filled with
    the model's gene mean; every gene is written, so the CLI reports all as measured).
    genes: the model's gene list (dicts with "symbol" and "ensembl").
    perturbations: one dict per reference, or one for all, e.g. {"perturbation": "IFN-beta",
    "time_hours": 6.0}. `perturbation` goes to `-p` (and `--set perturbation=...`), every other field
    to `--set FIELD=VALUE`. A perturbation-prior field left out of a dict is "unknown"/0 for
    PyTorch, but the CLI fills it from the model's perturbation list when exactly one known
    perturbation has that perturbation value: give `time_hours` always.
    versus: "reference" (LFC = predicted - reference) or "control" (LFC against the model's own
    prediction for its control perturbation; in modes "denoised" and "counterfactual" the same as
    "reference").
    mode: "decoded" (default: the decoder's output), "denoised" (the CLI's default) or "counterfactual".
    library_sizes: per reference, the library size its log-CPM came from (`--library-size`: a format 2
    model's depth covariate); None or a value <= 0 where there is none (microarrays).
    References sharing a perturbation and a library size go to the CLI in one call (one TSV, one
    column each).

    Returns Prediction(log_cpm, sigma, log_fold_change), each [n, G] float32. Values printed by
    the CLI with 5 decimals, so each carries up to 5e-6 of rounding. Raises RuntimeRefused with
    the CLI's message when it refuses the input (e.g. a value outside [0, 13.9]).
    """
    refs = np.asarray(refs, dtype=np.float32)
    if refs.ndim != 2 or refs.shape[1] != len(genes):
        raise ValueError(f"refs must be [n, {len(genes)}], got {list(refs.shape)}")
    n, G = refs.shape
    if isinstance(perturbations, dict):
        perturbations = [perturbations]
    if len(perturbations) not in (1, n):
        raise ValueError(f"{len(perturbations)} perturbations for {n} references: give one, or one per reference")
    perts = list(perturbations) * n if len(perturbations) == 1 else list(perturbations)
    if versus not in ("reference", "control"):
        raise ValueError(f"versus must be 'reference' or 'control', got {versus!r}")
    if mode not in ("decoded", "denoised", "counterfactual"):
        raise ValueError(f"mode must be 'decoded', 'denoised' or 'counterfactual', got {mode!r}")
    ids = gene_ids(genes)
    exe = binary()
    model_path = Path(model_path).resolve()
    digest = sha256(model_path)   # checked against this, not against a SHA256SUMS beside the file

    libs = [None] * n if library_sizes is None else [float(v) if v and v > 0 else None for v in library_sizes]
    if len(libs) != n:
        raise ValueError(f"{len(libs)} library sizes for {n} references")
    groups = {}
    for i, p in enumerate(perts):
        if "perturbation" not in p:
            raise ValueError(f"perturbation {i} has no 'perturbation' field: {p}")
        groups.setdefault((_key(p), libs[i]), []).append(i)

    out = [np.empty((n, G), dtype=np.float32) for _ in range(3)]
    tmp = tempfile.TemporaryDirectory(prefix="refcast-runtime-") if keep_dir is None else None
    work = Path(tmp.name if tmp else keep_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        for j, ((key, lib), idx) in enumerate(groups.items()):
            p = dict(key)
            names = [f"ref{i}" for i in idx]
            sample = work / f"refs{j}.tsv"
            result = work / f"pred{j}.tsv"
            _write_tsv(sample, ids, names, refs[idx])
            cmd = [str(exe), "predict", "--model", str(model_path), "--sha256", digest, "--sample", str(sample),
                   "--values", "log-cpm", "--backend", backend, "--versus", versus, "--mode", mode,
                   "--perturbation", p["perturbation"], "--set", f"perturbation={p['perturbation']}"]
            for k, v in key:
                if k != "perturbation":
                    cmd += ["--set", f"{k}={v}"]
            if lib is not None:
                cmd += ["--library-size", repr(lib)]
            cmd += ["--top", "0", "--output", str(result)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if r.returncode != 0 and "unexpected argument '--mode'" in r.stderr:
                raise RuntimeError(f"{exe} predates --mode (an existing binary is used as it is): rebuild it with "
                                   "`cargo build --release --locked --bin refcast`")
            if r.returncode != 0:
                raise RuntimeRefused(f"refcast exited with {r.returncode}: {r.stderr.strip()}\n  command: "
                                     + " ".join(cmd))
            pred, sigma, lfc, ref_back, measured = _read_output(result, [g["symbol"] for g in genes], names)
            # the CLI's view of the references must be ours: every gene matched, the same values
            if not (measured == 1).all():
                raise RuntimeError(f"the CLI did not match every model gene of {sample}")
            dev = float(np.abs(ref_back - refs[idx]).max())
            if dev > 1e-5:
                raise RuntimeError(f"the CLI read the references differently (max |diff| {dev:g})")
            for a, v in zip(out, (pred, sigma, lfc)):
                a[idx] = v
    finally:
        if tmp:
            tmp.cleanup()
    return Prediction(*out)
