"""An independent numpy implementation of the FORMAT.md forward pass, used to check golden vectors."""
import math

import numpy as np


def _ln(h, w, b, eps):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def trunk(t, net, h, blocks, eps):
    for i in range(blocks):
        p = f"{net}.blocks.{i}"
        u = _ln(h, t[f"{p}.norm.weight"], t[f"{p}.norm.bias"], eps)
        u = _gelu(u @ t[f"{p}.fc1.weight"].T + t[f"{p}.fc1.bias"])
        h = h + u @ t[f"{p}.fc2.weight"].T + t[f"{p}.fc2.bias"]
    h = _ln(h, t[f"{net}.norm.weight"], t[f"{net}.norm.bias"], eps)
    return h @ t[f"{net}.head.weight"].T + t[f"{net}.head.bias"]


def prior_input(doc, t, g, md):
    spec = doc["priors"][g]
    emb = t[f"prior.{g}.embedding"].astype(np.float64)
    h = t[f"prior.{g}.input.bias"].astype(np.float64).copy()
    off = 0
    for c in spec["categorical"]:
        v = md.get(c["name"], "unknown")
        h += emb[off + (c["values"].index(v) if v in c["values"] else 0)]
        off += len(c["values"])
    for k, n in enumerate(spec["numeric"]):
        h += transformed(n, md.get(n["name"])) * emb[off + k]
    return h


def transformed(n, v):
    """A numeric field or covariate as the model takes it (missing -> 0, the training mean)."""
    if v is None:
        return 0.0
    if n["transform"] == "log1p_zscore":
        return (math.log1p(v) - n["mean"]) / n["std"]
    return (v - n["mean"]) / n["std"]


def sequencing_depth(reference):
    """A reference's library size when it came from counts (> 0), else None (unknown)."""
    lib = reference["library_size"]
    return lib if reference.get("from_counts") and lib > 0 else None


def run_case(doc, tensors, case):
    t = {k: v.astype(np.float64) for k, v in tensors.items()}
    a = doc["architecture"]
    eps = a["layer_norm_eps"]
    L = a["latent"]
    Dt, Db = L["technical"], L["biological"]
    mu, lv = {}, {}
    if case["reference"] is not None:
        x = np.asarray(case["reference"]["log_cpm"], dtype=np.float64)
        h = x @ t["encoder.input.weight"].T + t["encoder.input.bias"]
        if doc["format_version"] >= 2:
            # format 2: covariates beside log-CPM; a library size that is not > 0 is missing
            depth = sequencing_depth(case["reference"])
            c = np.array([transformed(n, depth if n["name"] == "library_size" else None) for n in doc["covariates"]])
            h = h + c @ t["encoder.covariate.weight"].T + t["encoder.covariate.bias"]
        o = trunk(t, "encoder", h, a["encoder"]["blocks"], eps)
        D = Dt + Db
        mu["technical"], lv["technical"] = o[:Dt], o[D:D + Dt]
        mu["biological"], lv["biological"] = o[Dt:D], o[D + Dt:]
    z = []
    for g in ["technical", "biological", "perturbation"]:
        if g not in case["condition_on"]:
            md = dict(case[g] or {})
            if g == "technical" and "library_size" not in md:
                # the runtime fills the depth field from the reference (10⁶ for prompt-only requests)
                md["library_size"] = sequencing_depth(case["reference"]) if case["reference"] else 1e6
            o = trunk(t, f"prior.{g}", prior_input(doc, t, g, md), a["prior"]["blocks"], eps)
            mu[g], lv[g] = o[:L[g]], o[L[g]:]
        zg = mu[g]
        if case["mode"] == "sample":
            zg = mu[g] + np.exp(0.5 * lv[g]) * np.asarray(case["eps"][g])
        z.append(zg)
    z = np.concatenate(z)
    out = trunk(t, "decoder", z @ t["decoder.input.weight"].T + t["decoder.input.bias"], a["decoder"]["blocks"], eps)
    if doc["format_version"] >= 2:
        # format 2: the context-free perturbation path on z_pert
        zp = z[-L["perturbation"]:]
        out = out + zp @ t["decoder.perturbation.weight"].T + t["decoder.perturbation.bias"]
    return z, out


def run_counterfactual(doc, tensors, case, control_md):
    """The counterfactual case (see infer.golden_case): max(0, reference + decode(z) - decode(z_control))
    -> (z, z_control, log_cpm), the control's perturbation latent drawn with eps["control_perturbation"];
    a "denoised" case: max(0, decode(z) + soft(reference - decode(z_control), denoise.threshold))."""
    z, y = run_case(doc, tensors, case)
    control = dict(case, perturbation=control_md)
    if case["mode"] == "sample":
        control["eps"] = dict(case["eps"], perturbation=case["eps"]["control_perturbation"])
    zc, yc = run_case(doc, tensors, control)
    x = np.asarray(case["reference"]["log_cpm"], dtype=np.float64)
    if case.get("prediction") == "denoised":
        # the reference's deviation from its reconstruction, soft-thresholded per gene
        t = np.asarray(tensors["denoise.threshold"], dtype=np.float64)
        residual = x - yc
        return z, zc, np.maximum(0.0, y + (residual - np.clip(residual, -t, t)))
    return z, zc, np.maximum(0.0, x + (y - yc))
