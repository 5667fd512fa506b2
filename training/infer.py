"""Inference exactly as refcast runs a model file: folded input normalisation, optional
dequantized weights, reference conditioning / prompt-only, mean or sampled latents."""
import copy
import os

import numpy as np
import torch

from . import philox
from .model import GROUPS
from .quantize import QUANT, q4_0_compensated

# How Q4_0 rounds: "importance" (each block on its own, columns weighted) or "compensated"
# (quantize.q4_0_compensated over each layer's calibration inputs; the encoder's, centred).
# See training/README.md, "Q4_0 and the encoder's input layer".
Q4_ROUNDING = os.environ.get("REFCAST_Q4_ROUNDING", "importance")
assert Q4_ROUNDING in ("importance", "compensated"), f"REFCAST_Q4_ROUNDING={Q4_ROUNDING}"


def folded(model):
    """Copy of `model` with the encoder input standardisation folded into encoder.input."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        W, b = m.encoder.input.weight, m.encoder.input.bias
        Wf = W / m.in_std[None, :]
        b.copy_(b - Wf @ m.in_mean)
        W.copy_(Wf)
        m.fold_mean = m.in_mean.clone()   # kept to re-fold the bias against quantized weights
        m.fold_std = m.in_std.clone()     # and to weight the input genes when quantizing
        m.in_mean.zero_()
        m.in_std.fill_(1.0)
        m.decoder_logvar.copy_(m.logvar())
    return m


def corrected_input_bias(model_f, w_dq):
    """encoder.input bias re-folded against the dequantized weight, so that the quantized layer is
    exact at the training-mean input: b_q = b + (W - W_dq) · mean. Without it, inputs far from 0
    (log2 microarray values of 8-14) turn small weight errors into large offsets."""
    with torch.no_grad():
        W = model_f.encoder.input.weight
        return (model_f.encoder.input.bias + (W - torch.as_tensor(w_dq)) @ model_f.fold_mean).clone()


def quantizable(name, t):
    """Whether state-dict entry `name` is a weight the file may quantize (FORMAT.md)."""
    return name.endswith(".weight") and t.ndim == 2 and t.shape[1] % 32 == 0 and \
        not (name.startswith("prior.") and ".input." in name)


@torch.no_grad()
def calibrate_quantization(model_f, refs_filled, pert_rows, library_sizes=None):
    """Measure, per quantizable linear layer, how much each input column reaches the output: the
    mean square of the layer's input over these references decoded under their perturbations and
    under the control (training units only). Kept on the model as `quant_importance`, which
    file_tensors and dequantized pass to the quantizer.

    The encoder's input layer is the exception: its bias is re-folded so that it is exact at the
    training mean, so its error scales with the input's distance from the mean, and its columns
    are weighted by the training standard deviation to the fourth power (on training references
    this left 0.6× the decode error of the variance itself on microarray references, whose
    platform offsets move many genes together)."""
    sums, counts, grams = {}, {}, {}
    compensated = Q4_ROUNDING == "compensated"
    hooks = []
    for mod_name, mod in model_f.named_modules():
        # every quantizable layer but the encoder's input, weighted below without data
        if isinstance(mod, torch.nn.Linear) and quantizable(f"{mod_name}.weight", mod.weight) and \
                mod_name != "encoder.input":
            def hook(_m, inputs, key=f"{mod_name}.weight"):
                x = inputs[0].reshape(-1, inputs[0].shape[-1]).double()
                sums[key] = sums.get(key, 0) + (x * x).sum(0)
                counts[key] = counts.get(key, 0) + x.shape[0]
                if compensated:
                    grams[key] = grams.get(key, 0) + (x.T @ x).numpy()
            hooks.append(mod.register_forward_pre_hook(hook))
    from .train import CONTROL
    try:
        predict_mean(model_f, refs_filled, pert_rows, library_sizes=library_sizes)
        predict_mean(model_f, refs_filled, [dict(CONTROL)] * len(refs_filled), library_sizes=library_sizes)
    finally:
        for h in hooks:
            h.remove()
    imp = {k: (sums[k] / counts[k]).float().numpy() + 1e-6 for k in sums}
    imp["encoder.input.weight"] = model_f.fold_std.numpy().astype(np.float32) ** 4
    model_f.quant_importance = imp
    model_f.__dict__.pop("quant_compensated", None)
    if compensated:
        # the input layer's bias is exact at the training mean, so its error is W_err · (x − mean)
        xc = np.asarray(refs_filled, np.float64) - model_f.fold_mean.numpy()[None, :]
        grams["encoder.input.weight"] = xc.T @ xc
        model_f.quant_gram = grams
    return imp


def quantized(model_f, name, a, kind):
    """The stored bytes of weight `name` (array `a`) in `kind`, rounded as calibrate_quantization
    prepared."""
    importance = getattr(model_f, "quant_importance", {}).get(name)
    gram = getattr(model_f, "quant_gram", {}).get(name)
    if kind == "q4_0" and gram is not None:
        # a factorisation of the 15,360-input layer's gram: once per model (the file and the
        # dequantized model share it)
        cache = model_f.__dict__.setdefault("quant_compensated", {})   # bytes per layer
        if name not in cache:
            cache[name] = q4_0_compensated(a, gram, importance)
        return cache[name]
    return QUANT[kind][0](a, importance)


def file_tensors(model_f, kind):
    """FORMAT.md tensors of a folded model: name -> (logical dtype, shape, numpy array or bytes).
    Quantized weights are weighted by the model's `quant_importance` where calibrate_quantization
    has measured it."""
    out = {}
    for name, t in model_f.state_dict().items():
        a = t.detach().cpu().numpy().astype(np.float32)
        if name in ("in_mean", "in_std"):
            continue
        if name == "decoder_logvar":
            out["decoder.logvar"] = ("f32", list(a.shape), a)
            continue
        if name == "gene_mean":
            out["input.gene_mean"] = ("f32", list(a.shape), a)
            continue
        if name == "denoise_threshold":
            out["denoise.threshold"] = ("f32", list(a.shape), a)
            continue
        if name.startswith("prior.") and ".input." in name:
            g = name.split(".")[1]
            if name.endswith("weight"):
                out[f"prior.{g}.embedding"] = ("f32", [a.shape[1], a.shape[0]], np.ascontiguousarray(a.T))
            else:
                out[f"prior.{g}.input.bias"] = ("f32", list(a.shape), a)
            continue
        if kind != "f32" and quantizable(name, t):
            out[name] = (kind, list(a.shape), quantized(model_f, name, a, kind))
        else:
            out[name] = ("f32", list(a.shape), a)
    if kind != "f32":
        w = out["encoder.input.weight"]
        w_dq = QUANT[kind][1](w[2], tuple(w[1]))
        b = corrected_input_bias(model_f, w_dq).numpy().astype(np.float32)
        out["encoder.input.bias"] = ("f32", list(b.shape), b)
    return out


def dequantized(model_f, kind):
    """The folded model with every quantized weight replaced by its dequantized value."""
    if kind == "f32":
        return model_f
    # the gram matrices (GBs) stay out of the copy
    grams = model_f.__dict__.pop("quant_gram", None)
    try:
        m = copy.deepcopy(model_f)
    finally:
        if grams is not None:
            model_f.quant_gram = grams
    sd = m.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if quantizable(name, t):
                t.copy_(torch.from_numpy(QUANT[kind][1](quantized(model_f, name, t.numpy(), kind), tuple(t.shape))))
        m.encoder.input.bias.copy_(corrected_input_bias(model_f, m.encoder.input.weight))
    return m


@torch.no_grad()
def prior_params(model, group, metadata_rows):
    inp = torch.from_numpy(model.specs[group].encode(metadata_rows))
    return model.prior_params(group, inp)


@torch.no_grad()
def covariates(model, library_sizes, n):
    """The encoder's covariate input for `n` references of these library sizes (None: unknown)."""
    sizes = [None] * n if library_sizes is None else list(library_sizes)
    return model.covariate_input([{"library_size": None if v is None else float(v)} for v in sizes])


@torch.no_grad()
def encoder_means(model, ref_filled, library_sizes=None):
    x = torch.from_numpy(np.asarray(ref_filled, dtype=np.float32))
    return model.encode(x, covariates(model, library_sizes, len(x)))[0].numpy()


@torch.no_grad()
def predict_mean(model, ref_filled, pert_rows, tech_rows=None, bio_rows=None,
                 condition_on=("technical", "biological"), library_sizes=None):
    """Batch reference conditioning with latent means. ref_filled [n, G] (missing genes = gene_mean);
    library_sizes: the references' library sizes (None or 0 where unknown: the covariate's mean)."""
    Dt = model.latent["technical"]
    zs = []
    mu_enc = None
    if ref_filled is not None:
        mu_enc, _ = model.encode(torch.from_numpy(np.asarray(ref_filled, dtype=np.float32)),
                                 covariates(model, library_sizes, len(ref_filled)))
    n = len(pert_rows)
    for g, rows in (("technical", tech_rows), ("biological", bio_rows)):
        if g in condition_on:
            zs.append(mu_enc[:, :Dt] if g == "technical" else mu_enc[:, Dt:])
        else:
            zs.append(prior_params(model, g, rows or [{}] * n)[0])
    zs.append(prior_params(model, "perturbation", pert_rows)[0])
    return model.decode(torch.cat(zs, 1)).numpy()


@torch.no_grad()
def golden_case(model, ref_log_cpm, condition_on, tech_md, bio_md, pert_md, mode, seed=0, sample_index=0,
                control_md=None, library_size=None, denoised=False):
    """One case with every intermediate, as the runtime computes it (float32).

    `library_size` is the reference's sequencing depth, None where it gave no counts (its covariate,
    and the technical prior's depth when that prior is used); prompt-only cases use the request's
    default of 10⁶.

    With `control_md` (the model's control perturbation; needs a reference) the case is the
    runtime's counterfactual prediction mode: log_cpm = max(0, reference + (decode(z) -
    decode(z_control))), where z_control is z with the control's perturbation latent. In sampling
    mode both rows share the draw of the technical and biological latents, and the control's
    perturbation latent is drawn as the runtime draws it: as one more perturbation after the
    case's one, i.e. perturbation-prior row 1 (eps["control_perturbation"]). With `denoised` (and
    `control_md`) the case is the denoised mode: `model.denoised(reference, decoded, control)`."""
    Dt, Db = model.latent["technical"], model.latent["biological"]
    out = {}
    mu = {}
    lv = {}
    if ref_log_cpm is not None:
        m_enc, l_enc = model.encode(torch.from_numpy(np.asarray(ref_log_cpm, dtype=np.float32)[None]),
                                    covariates(model, [library_size], 1))
        out["latent_mu_enc"] = m_enc[0].tolist()
        out["latent_logvar_enc"] = l_enc[0].tolist()
    for g in GROUPS:
        if g in condition_on:
            sl = slice(0, Dt) if g == "technical" else slice(Dt, Dt + Db)
            mu[g], lv[g] = m_enc[0, sl], l_enc[0, sl]
        else:
            md = {"technical": tech_md, "biological": bio_md, "perturbation": pert_md}[g] or {}
            if g == "technical" and "library_size" not in md and \
                    any(n["name"] == "library_size" for n in model.specs[g].numeric):
                # as the runtime does: the reference's sequencing depth (None: unknown, i.e. the
                # mean), or for a prompt-only request the request's library size (10⁶)
                md = dict(md, library_size=library_size if ref_log_cpm is not None else 1e6)
            p_mu, p_lv = prior_params(model, g, [md])
            mu[g], lv[g] = p_mu[0], p_lv[0]
    eps = {}
    z = []
    for g in GROUPS:
        if mode == "sample":
            e = philox.eps(seed, g, model.latent[g], row=0, sample=sample_index)
            eps[g] = e.tolist()
            z.append(mu[g] + torch.exp(0.5 * lv[g]) * torch.from_numpy(e))
        else:
            z.append(mu[g])
    z = torch.cat(z)
    out["z"] = z.tolist()
    decoded = model.decode(z[None])[0]
    if control_md is None:
        out["log_cpm"] = decoded.tolist()
        return out, eps
    if ref_log_cpm is None:
        raise ValueError("a counterfactual case needs a reference")
    c_mu, c_lv = prior_params(model, "perturbation", [control_md])
    z_pert = c_mu[0]
    if mode == "sample":
        e = philox.eps(seed, "perturbation", model.latent["perturbation"], row=1, sample=sample_index)
        eps["control_perturbation"] = e.tolist()
        z_pert = c_mu[0] + torch.exp(0.5 * c_lv[0]) * torch.from_numpy(e)
    z_control = torch.cat([z[:Dt + Db], z_pert])
    control = model.decode(z_control[None])[0]
    reference = torch.from_numpy(np.asarray(ref_log_cpm, dtype=np.float32))
    if denoised:
        out["log_cpm"] = model.denoised(reference, decoded, control).tolist()
    else:
        out["log_cpm"] = torch.clamp(reference + (decoded - control), min=0.0).tolist()
    out["decoded_log_cpm"] = decoded.tolist()
    out["control_z"] = z_control.tolist()
    out["control_log_cpm"] = control.tolist()
    return out, eps
