"""refcast: reference-conditioned perturbation prediction of gene expression, on this machine.

The same Rust library as the ``refcast`` command line (and the npm package) runs the model, on
the GPU (wgpu) or the CPU: it decides the backend, resolves perturbation and context names,
checks the data, predicts and ranks. This package turns AnnData and pandas objects into its
inputs and its results into an AnnData (``Model.predict``) or a DataFrame (``Model.screen``).

>>> import refcast
>>> model = refcast.load()                      # the bundled model (Q8_0)
>>> pred = model.predict(adata, ["IFN-beta 6 h"], layer="counts", groupby="cell_type")
>>> pred.X                                       # predicted log-CPM, one row per group × perturbation
>>> pred.layers["log_fold_change"]               # natural-log fold changes (refcast.FOLD_CHANGE_UNITS)

Every fold change is natural-log ("ln fold change": differences of ln(1 + CPM)); divide by
ln 2 = 0.693 for log2.
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from . import _refcast
from ._inputs import signature_arguments, to_table
from ._outputs import prediction_anndata, screen_frame
from .errors import (
    FormatError,
    GpuError,
    IoError,
    MetadataError,
    RefcastError,
    RefcastWarning,
    RequestError,
    SampleError,
    SignatureError,
)

__version__ = _refcast.__version__
#: The units of every fold change: "ln fold change" (natural log, not log2).
FOLD_CHANGE_UNITS: str = _refcast.FOLD_CHANGE_UNITS

BUNDLED_MODEL = "refcast-q8_0.safetensors"


def bundled_model_path() -> Path:
    """The model file shipped inside the wheel (``refcast/models/refcast-q8_0.safetensors``, with
    its ``SHA256SUMS``), or, for a package imported from a source checkout, the checkout's
    ``models/`` file."""
    packaged = resources.files("refcast").joinpath("models", BUNDLED_MODEL)
    if packaged.is_file():
        return Path(os.fspath(packaged))
    checkout = Path(__file__).resolve().parents[2] / "models" / BUNDLED_MODEL
    if checkout.is_file():
        return checkout
    raise IoError(f"no bundled model: {packaged} is missing (a wheel built without python/build-wheel.sh?); pass load(path=...)")


def load(path: str | os.PathLike | None = None, backend: str = "auto", sha256: str | None = None) -> "Model":
    """Loads a refcast model file.

    path: a ``.safetensors`` model; None for the bundled Q8_0 model (see ``bundled_model_path``).
    backend: ``"auto"`` (a hardware GPU when there is one, else the CPU, with the reason in
        ``Model.backend_reason``), ``"gpu"`` (any adapter, software ones included) or ``"cpu"``.
    sha256: the file's expected SHA-256 (hex); without it, a ``SHA256SUMS`` beside the file is
        used when it lists the file. A mismatch raises ``FormatError``.

    The GIL is released while the model is read, checked and uploaded.
    """
    file = bundled_model_path() if path is None else Path(path)
    return Model(_refcast.load(os.fspath(file), backend, sha256), file)


class Model:
    """A model loaded on a backend. Calls run on the model's own engine thread with the GIL
    released; calls from several Python threads run one at a time."""

    def __init__(self, inner, path: Path):
        self._inner = inner
        self.path = path
        self.info_cached = inner.info()
        self._gene_sets = None

    @property
    def genes(self) -> list[str]:
        """Gene symbols, in model order."""
        return self._inner.genes

    @property
    def ensembl(self) -> list[str | None]:
        """Ensembl ids, in model order (None where the model has none)."""
        return self._inner.ensembl

    @property
    def backend(self) -> str:
        """``"cpu"`` or ``"gpu"``."""
        return self._inner.backend

    @property
    def backend_reason(self) -> str:
        """Why this backend: "requested", "a GPU adapter was found", or why ``auto`` fell back."""
        return self._inner.backend_reason

    @property
    def checksum(self) -> str:
        """How the file's checksum was verified (or why it was not)."""
        return self._inner.checksum

    def info(self) -> dict:
        """Name, gene count, latent widths, the metadata vocabularies of the three priors, known
        perturbations (``control`` flags), the default perturbation, known contexts, covariates,
        the familiarity calibration, provenance, and the backend with its reason and adapter."""
        return self._inner.info()

    def __repr__(self) -> str:
        return f"<refcast.Model {self.info_cached['name']!r}: {self.info_cached['genes']} genes on {self._inner.adapter}>"

    def predict(
        self,
        data,
        perturbations=None,
        *,
        layer: str | None = None,
        use_raw: bool = False,
        groupby: str | None = None,
        orient: str | None = None,
        condition_on=("technical", "biological"),
        versus: str | None = None,
        mode: str = "denoised",
        num_samples: int | None = None,
        seed: int = 0,
        values: str = "auto",
        context=None,
        library_size: float | None = None,
    ):
        """Predicts each sample of ``data`` under each perturbation; returns an AnnData.

        data: an ``AnnData`` (one sample per observation; genes as ``var_names``, symbols or
            Ensembl ids; values from ``.X``, ``layers[layer]`` or ``.raw`` with ``use_raw``), a
            ``DataFrame`` with ``orient="genes x samples"`` (as a sample file) or
            ``"samples x genes"`` (as AnnData) — never guessed —, a ``Series`` (one sample, index =
            genes), a path to a TSV/CSV sample file (read by the library, as the CLI reads it), or
            None for prompt-only generation from ``context``.
        perturbations: names (``"IFN-beta 6 h"``, or a value of the perturbation field such as
            ``"IFN-beta"``) or dicts of fields; one name alone is fine. None: the model's default.
        groupby: an ``.obs`` column; raw counts are summed per group (pseudobulk) and each group
            is one reference, named after it.
        values: ``"auto"`` (counts when every value is a non-negative whole number; TPM/CPM
            when each sample sums to about 10⁶; else the one log base under which the CPM sums to
            10⁶, or an error asking), ``"counts"``, ``"log-cpm"`` (natural log of CPM + 1),
            ``"log2-cpm"``, ``"log10-cpm"``, ``"tpm"``, ``"fpkm"`` or ``"cpm"``. scanpy's
            ``normalize_total`` + ``log1p`` is not log-CPM: pass the raw counts.
        mode: ``"denoised"`` (the default: the sample moved by the predicted change, its differences
            from the model's reconstruction within each gene's noise threshold, at most 1 ln unit,
            dropped as measurement noise), ``"counterfactual"`` (the sample as measured moved by
            the predicted change, its noise kept) or ``"decoded"`` (the model's reconstruction
            under the perturbation). In the first two the sample stands for the control.
        versus: fold changes against ``"reference"`` or ``"control"``; None: the library's
            default for the mode.
        num_samples, seed: draw samples of the latents instead of their means.
        context: a known context's name or a dict of metadata fields, for the priors of the groups
            not conditioned on (and for prompt-only generation).
        library_size: for log-CPM samples, the reads their values came from; for prompt-only
            generation, the library size of the predicted counts.

        Returns an AnnData with one observation per (draw, reference, perturbation): ``.X``
        predicted log-CPM (float32); layers ``counts``, ``log_fold_change`` (natural log,
        ``FOLD_CHANGE_UNITS``), ``reference`` (the
        reference's log-CPM) and ``measured`` (whether the reference measured the gene; missing
        genes hold the model's gene mean); ``.obs`` reference, perturbation, control, draw,
        ``pert_<field>`` for each perturbation field, mode, baseline; ``.obsm["latent"]`` the
        decoder's latents; ``.var`` symbol, ensembl, sigma (σ of the model's likelihood);
        ``.uns["refcast"]`` model, backend, ``log_fold_change_units``, references (match reports) and familiarity (a
        DataFrame, one row per reference).
        """
        table = to_table(data, layer=layer, use_raw=use_raw, groupby=groupby, orient=orient, values=values)
        if isinstance(perturbations, (str, dict)):
            perturbations = [perturbations]
        result = self._inner.predict(
            table,
            None if perturbations is None else list(perturbations),
            context=context,
            condition_on=None if table is None and condition_on == ("technical", "biological") else list(condition_on),
            mode=mode,
            versus=versus,
            num_samples=num_samples,
            seed=seed,
            library_size=library_size,
        )
        result["num_samples"] = num_samples
        adata = prediction_anndata(result, self)
        for w in adata.uns["refcast"]["warnings"]:
            warnings.warn(w, RefcastWarning, stacklevel=2)
        return adata

    def screen(
        self,
        data,
        *,
        perturbations=None,
        signature=None,
        layer: str | None = None,
        use_raw: bool = False,
        orient: str | None = None,
        context=None,
        mode: str = "denoised",
        versus: str | None = None,
        condition_on=("technical", "biological"),
        values: str = "auto",
        library_size: float | None = None,
    ):
        """Ranks perturbations (all the model knows, or ``perturbations``) by their predicted
        effect on one sample, or by how well they reverse ``signature``; returns a DataFrame,
        best first: rank, perturbation, effect_size (root mean square of the predicted ln fold
        change over the measured genes: the ranking without a signature), reversal (how far the
        predicted change moves the signature against it: the ranking with one), top_up,
        top_down and their ln fold changes; ``.attrs`` holds ``legend`` (what each column
        means, as the CLI prints it), mode, baseline, familiarity and the reference's match
        report.

        data: one sample, as for ``predict`` (an AnnData with one observation, a Series, …).
        mode, versus: as for ``predict`` (default ``"denoised"``).
        signature: ``{"up": [...], "down": [...]}``, a list of genes (up in the state to
            reverse), or weights per gene (a dict or a Series; > 0 up in the state to reverse).
        """
        table = to_table(data, layer=layer, use_raw=use_raw, orient=orient, values=values)
        if table is None:
            raise RequestError("a screen needs a sample")
        result = self._inner.screen(
            table,
            perturbations=None if perturbations is None else list([perturbations] if isinstance(perturbations, (str, dict)) else perturbations),
            context=context,
            condition_on=list(condition_on),
            mode=mode,
            versus=versus,
            library_size=library_size,
            **signature_arguments(signature),
        )
        for w in result["warnings"]:
            warnings.warn(w, RefcastWarning, stacklevel=2)
        return screen_frame(result)


    def load_gene_sets(self, path: str | os.PathLike | None = None):
        """Reads a gene-set file for ``enrichment``: by default ``refcast-genesets.safetensors``
        beside the model file (PROGENy's 14 pathway footprints and GO biological process terms,
        mapped to the model's genes; the wheel ships it beside the bundled model). A file built for
        another model's genes raises ``FormatError``; its checksum is checked against a
        ``SHA256SUMS`` beside it when that lists it."""
        file = self.path.parent / _refcast.GENE_SETS_FILE if path is None else Path(path)
        self._gene_sets = _refcast.load_gene_sets(os.fspath(file), self._inner)
        return self._gene_sets

    def enrichment(self, prediction, *, gene_sets: str | os.PathLike | None = None) -> pd.DataFrame:
        """Which pathways and processes each predicted change moves: every gene set scored
        against each observation's ln fold changes, as ``refcast predict --enrichment`` does (the
        same library code and numbers).

        prediction: the AnnData ``predict`` returned (its ``log_fold_change`` layer, and the
            ``measured`` layer: the genes each reference measured are the universe).
        gene_sets: a gene-set file; None: the one ``load_gene_sets`` read, else the file beside
            the model.

        Returns a DataFrame, one row per (observation, set), each observation's sets per
        collection highest score first: reference, perturbation, draw, collection (``progeny``:
        PROGENy pathway activity; ``go_bp``: GO biological process), set (pathway name or GO id),
        name, score (decoupler's ULM t-value of the ln fold changes on the set's weights; > 0: the
        set's genes go up), p_value, fdr (Benjamini–Hochberg within the collection), size (the
        set's measured genes), leading_genes and leading_lfc (the genes contributing most in the
        score's direction, and their ln fold changes). ``.attrs["legend"]`` says what each column
        means, in the CLI's words.
        """
        if gene_sets is not None or self._gene_sets is None:
            self.load_gene_sets(gene_sets)
        sets = self._gene_sets
        if "log_fold_change" not in prediction.layers:
            raise RequestError("the prediction has no log_fold_change layer (pass what Model.predict returned)")
        lfc = np.ascontiguousarray(prediction.layers["log_fold_change"], dtype=np.float32)
        if "measured" in prediction.layers:
            measured = np.ascontiguousarray(prediction.layers["measured"], dtype=bool)
        else:  # prompt-only: every gene
            measured = np.ones(lfc.shape, dtype=bool)
        c = sets.score(lfc, measured)
        ids, names, collections = zip(*sets.sets) if sets.sets else ((), (), ())
        ids, names, collections = np.array(ids, dtype=object), np.array(names, dtype=object), np.array(collections, dtype=object)
        row, s, off = c["row"].astype(np.intp), c["set"].astype(np.intp), c["leading_offsets"]
        genes = np.array(self.genes, dtype=object)
        lead_genes = genes[c["leading_gene"].astype(np.intp)]
        lead_lfc = c["leading_lfc"].astype(float)
        obs = prediction.obs
        frame = pd.DataFrame(
            {
                "reference": obs["reference"].to_numpy()[row],
                "perturbation": obs["perturbation"].to_numpy()[row],
                "draw": obs["draw"].to_numpy()[row],
                "collection": collections[s],
                "set": ids[s],
                "name": names[s],
                "score": c["score"],
                "p_value": c["p_value"],
                "fdr": c["fdr"],
                "size": c["size"].astype(np.int64),
                "leading_genes": [list(lead_genes[a:b]) for a, b in zip(off[:-1], off[1:])],
                "leading_lfc": [lead_lfc[a:b].tolist() for a, b in zip(off[:-1], off[1:])],
            }
        )
        frame.attrs = {
            "legend": dict(_refcast.ENRICHMENT_LEGEND) | {"leading_lfc": "the leading genes' " + FOLD_CHANGE_UNITS},
            "log_fold_change_units": FOLD_CHANGE_UNITS,
            "gene_sets_checksum": sets.checksum,
        }
        return frame


__all__ = [
    "FOLD_CHANGE_UNITS",
    "load",
    "Model",
    "bundled_model_path",
    "RefcastError",
    "RefcastWarning",
    "FormatError",
    "SampleError",
    "SignatureError",
    "MetadataError",
    "RequestError",
    "GpuError",
    "IoError",
]
