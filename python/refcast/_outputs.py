"""Results out: the library's prediction as an AnnData, its screen as a pandas DataFrame. The
arrays are the library's own buffers (no copy); only their layout is decided here. Fold changes
are natural-log (``FOLD_CHANGE_UNITS``: "ln fold change"; divide by ln 2 for log2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import _refcast


def prediction_anndata(p: dict, model) -> "anndata.AnnData":  # noqa: F821
    import anndata

    refs = p["references"]
    perts = p["perturbations"]
    ref_index = np.asarray(p["reference_index"], dtype=np.intp)
    pert_index = np.asarray(p["perturbation_index"], dtype=np.intp)
    draw = np.asarray(p["draw"], dtype=np.int64)
    sampled = p.get("num_samples") is not None
    ref_names = [r["name"] for r in refs] if refs else [f"context {i}" for i in range(int(ref_index.max(initial=0)) + 1)]
    obs = pd.DataFrame(
        {
            "reference": pd.Categorical([ref_names[i] for i in ref_index], categories=list(dict.fromkeys(ref_names))),
            "perturbation": pd.Categorical([perts[i]["name"] for i in pert_index], categories=list(dict.fromkeys(q["name"] for q in perts))),
            "control": np.array([perts[i]["control"] for i in pert_index], dtype=bool),
            "draw": draw,
        }
    )
    fields = list(dict.fromkeys(k for q in perts for k in q["metadata"]))
    for k in fields:
        column = [perts[i]["metadata"].get(k) for i in pert_index]
        obs[f"pert_{k}"] = pd.Series(column, dtype=object if any(isinstance(v, str) for v in column) else float).values
    # Whether the model measured each row's perturbation in a context like its reference's.
    cover = p["coverage"]
    at = [r * len(perts) + q if len(cover) > len(perts) else q for r, q in zip(ref_index, pert_index)]
    obs["measured"] = [cover[k]["measured"] for k in at]
    obs["measured_context"] = [cover[k]["context"] or "" for k in at]
    obs["mode"] = p["mode"]
    obs["baseline"] = p["baseline"] if p["baseline"] is not None else "none"
    names = [f"{ref_names[r]}|{perts[q]['name']}" + (f"|{d}" if sampled else "") for r, q, d in zip(ref_index, pert_index, draw)]
    obs.index = pd.Index(names, dtype=str)
    var = pd.DataFrame({"symbol": model.genes, "ensembl": [e or "" for e in model.ensembl], "sigma": p["sigma"]})
    var.index = pd.Index(model.genes, dtype=str)
    layers = {"counts": p["counts"]}
    if p["log_fold_change"] is not None:
        layers["log_fold_change"] = p["log_fold_change"]
    if refs:
        layers["reference"] = np.stack([r["log_cpm"] for r in refs])[ref_index]
        layers["measured"] = np.stack([r["measured"] for r in refs])[ref_index]
    adata = anndata.AnnData(X=p["log_cpm"], obs=obs, var=var, layers=layers, obsm={"latent": p["latents"]})
    if not adata.obs_names.is_unique:
        adata.obs_names_make_unique()
    adata.uns["refcast"] = {
        "model": model.info_cached["name"],
        "backend": model.backend,
        "backend_reason": model.backend_reason,
        "mode": p["mode"],
        "baseline": p["baseline"] if p["baseline"] is not None else "none",
        "log_fold_change_units": _refcast.FOLD_CHANGE_UNITS,
        "log_fold_change_note": _refcast.FOLD_CHANGE_NOTE,
        "condition_on": list(p["condition_on"]),
        "references": references_frame(refs),
        "familiarity": familiarity_frame(p["familiarity"]),
        # What the CLI warns of: settings without effect, combinations never trained on, and
        # perturbations measured only in contexts unlike a reference's.
        "warnings": list(dict.fromkeys(list(p["warnings"]) + [c["warning"] for c in p["coverage"] if c["warning"] and c["measured"] == "elsewhere"])),
    }
    return adata


def references_frame(refs: list) -> pd.DataFrame:
    keys = ["name", "library_size", "sequencing_depth", "matched", "missing", "unknown", "report"]
    return pd.DataFrame({k: [r[k] if r[k] is not None else np.nan for r in refs] for k in keys}).astype({"name": str, "report": str})


def familiarity_frame(reports: list) -> pd.DataFrame:
    """One row per reference: the library's familiarity report (reasons joined by '; ', so that
    the frame can be written to .h5ad)."""
    rows = [
        {
            "reference": f["reference"],
            "reconstruction_r2": f["reconstruction_r2"],
            "nearest_context": f["nearest_context"] or "",
            "distance": np.nan if f["distance"] is None else f["distance"],
            "outside": "unknown" if f["outside"] is None else str(bool(f["outside"])).lower(),
            "reasons": "; ".join(f["reasons"]),
            "summary": f["summary"],
        }
        for f in reports
    ]
    columns = ["reference", "reconstruction_r2", "nearest_context", "distance", "outside", "reasons", "summary"]
    return pd.DataFrame(rows, columns=columns)


def screen_frame(s: dict) -> pd.DataFrame:
    """The screen's table, best first: rank, perturbation, effect_size, reversal, top_up, top_down
    (then the top genes' ln fold changes, and whether the model measured each perturbation in a
    context like the sample's: measured, measured_context, measured_distance); ``.attrs["legend"]`` says what each column means, in
    the library's words (the CLI prints the same legend)."""
    hits = s["hits"]
    by_reversal = bool(hits) and hits[0]["reversal"] is not None
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(hits) + 1),
            "perturbation": [h["perturbation"] for h in hits],
            "effect_size": np.array([h["effect_size"] for h in hits], dtype=np.float32),
            "reversal": np.array([np.nan if h["reversal"] is None else h["reversal"] for h in hits], dtype=np.float32),
            "top_up": [[g for g, _ in h["top_up"]] for h in hits],
            "top_down": [[g for g, _ in h["top_down"]] for h in hits],
            "top_up_lfc": [[v for _, v in h["top_up"]] for h in hits],
            "top_down_lfc": [[v for _, v in h["top_down"]] for h in hits],
            "measured": [h["measured"] for h in hits],
            "measured_context": [h["measured_context"] for h in hits],
            "measured_distance": np.array([np.nan if h["measured_distance"] is None else h["measured_distance"] for h in hits], dtype=np.float32),
        }
    )
    recorded = any(h["measured"] != "unknown" for h in hits)
    legend = list(_refcast.SCREEN_LEGEND_BY_REVERSAL if by_reversal else _refcast.SCREEN_LEGEND)
    frame.attrs = {
        "legend": legend + (list(_refcast.SCREEN_COVERAGE_LEGEND) if recorded else []),
        "coverage_warnings": [h["coverage_warning"] for h in hits if h["coverage_warning"]],
        "fold_change_units": _refcast.FOLD_CHANGE_UNITS,
        "mode": s["mode"],
        "baseline": s["baseline"],
        "signature_unknown": list(s["signature_unknown"]),
        "familiarity": s["familiarity"],
        "reference": {k: v for k, v in s["reference"].items() if k not in ("log_cpm", "measured")},
        "metadata": {h["perturbation"]: h["metadata"] for h in hits},
    }
    return frame
