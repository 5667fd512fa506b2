"""Data in: AnnData, pandas and files to the library's table (``_refcast.Table``).

Only data shaping happens here (choosing the matrix, densifying it, summing counts per group);
every check of the values (duplicate genes, negative or non-finite values, counts vs log-CPM)
is the library's, in ``Table.from_columns`` or ``Table.read``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from . import _refcast
from .errors import RequestError, SampleError

ORIENTS = ("genes x samples", "samples x genes")


def to_table(data, *, layer=None, use_raw=False, groupby=None, orient=None, values="auto"):
    """The library's table of ``data``; None for prompt-only generation."""
    if data is None:
        if groupby is not None or layer is not None:
            raise RequestError("groupby and layer need data")
        return None
    if isinstance(data, (str, os.PathLike)):
        return _refcast.Table.read(os.fspath(data), values)
    if isinstance(data, pd.Series):
        name = "sample" if data.name is None else str(data.name)
        return _from_matrix([str(g) for g in data.index], [name], numbers(data.to_numpy())[None, :], values)
    if isinstance(data, pd.DataFrame):
        if orient not in ORIENTS:
            raise RequestError(
                f"a DataFrame needs orient='genes x samples' (index = genes, a column per sample, as a sample file) "
                f"or orient='samples x genes' (a row per sample, as AnnData), got orient={orient!r}"
            )
        frame = data if orient == "samples x genes" else data.T
        return _from_matrix([str(g) for g in frame.columns], [str(s) for s in frame.index], numbers(frame.to_numpy()), values)
    if is_anndata(data):
        return _from_anndata(data, layer=layer, use_raw=use_raw, groupby=groupby, values=values)
    raise RequestError(f"data must be an AnnData, a pandas DataFrame or Series, a path to a sample file, or None; got {type(data).__name__}")


def is_anndata(data) -> bool:
    return type(data).__name__ == "AnnData" and hasattr(data, "obs") and hasattr(data, "var_names")


def numbers(matrix) -> np.ndarray:
    try:
        return np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SampleError(f"the values are not all numbers ({e})") from None


def _from_matrix(genes, samples, matrix, values):
    return _refcast.Table.from_columns(genes, samples, np.ascontiguousarray(matrix, dtype=np.float64), values)


def anndata_matrix(adata, *, layer=None, use_raw=False):
    """The AnnData's expression matrix (``.X``, ``layers[layer]`` or ``.raw.X``), its genes and
    where it came from (for messages)."""
    if use_raw and layer is not None:
        raise RequestError("give layer or use_raw, not both")
    if use_raw:
        if adata.raw is None:
            raise SampleError("use_raw=True but the AnnData has no .raw")
        matrix, genes, where = adata.raw.X, adata.raw.var_names, ".raw.X"
    elif layer is not None:
        if layer not in adata.layers:
            raise SampleError(f"the AnnData has no layer '{layer}' (layers: {', '.join(adata.layers.keys()) or 'none'})")
        matrix, genes, where = adata.layers[layer], adata.var_names, f".layers['{layer}']"
    else:
        matrix, genes, where = adata.X, adata.var_names, ".X"
    if matrix is None:
        raise SampleError(f"the AnnData has no expression values in {where}; pass layer= (e.g. layer='counts') or use_raw=True")
    return matrix, [str(g) for g in genes], where


def _from_anndata(adata, *, layer, use_raw, groupby, values):
    matrix, genes, where = anndata_matrix(adata, layer=layer, use_raw=use_raw)
    if groupby is None:
        return _from_matrix(genes, [str(s) for s in adata.obs_names], _dense(matrix), values)
    if groupby not in adata.obs.columns:
        raise RequestError(f"groupby='{groupby}': no such column in .obs (columns: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    if values == "log-cpm":
        raise RequestError("groupby sums raw counts per group; it cannot take log-CPM values")
    return _pseudobulk(matrix, genes, adata.obs[groupby], where)


def _dense(matrix) -> np.ndarray:
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return numbers(matrix)


def _pseudobulk(matrix, genes, groups: pd.Series, where: str):
    """Raw counts summed per group (one sample per group, named after it)."""
    import scipy.sparse as sp

    stored = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if not np.issubdtype(stored.dtype, np.integer) and not np.all(np.mod(stored, 1) == 0):
        raise SampleError(
            f"groupby sums raw counts, but {where} holds values that are not whole numbers "
            f"(normalised or log values?); pass the layer that holds the raw counts, e.g. layer='counts'"
        )
    codes = pd.Categorical(groups)
    keep = codes.codes >= 0
    present = np.unique(codes.codes[keep])
    if present.size == 0:
        raise RequestError(f"groupby='{groups.name}': every value is missing")
    row = np.searchsorted(present, codes.codes[keep])
    cells = np.flatnonzero(keep)
    indicator = sp.csr_matrix((np.ones(cells.size), (row, cells)), shape=(present.size, len(groups)))
    sums = indicator @ (matrix if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float64))
    names = [str(codes.categories[c]) for c in present]
    return _from_matrix(genes, names, _dense(sums), "counts")


def signature_arguments(signature) -> dict:
    """``screen``'s signature as the library's up/down sets or weights."""
    if signature is None:
        return {}
    if isinstance(signature, pd.Series):
        return {"weights": [(str(g), float(w)) for g, w in signature.items()]}
    if isinstance(signature, dict):
        if signature and set(signature) <= {"up", "down"} and all(isinstance(v, (list, tuple, pd.Index, np.ndarray)) for v in signature.values()):
            return {"up": [str(g) for g in signature.get("up", [])], "down": [str(g) for g in signature.get("down", [])]}
        return {"weights": [(str(g), float(w)) for g, w in signature.items()]}
    if isinstance(signature, str):
        raise RequestError("a signature is a list of genes, {'up': [...], 'down': [...]}, or weights per gene; got one string")
    return {"up": [str(g) for g in signature]}
