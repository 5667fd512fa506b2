"""The refcast network (docs/FORMAT.md) in PyTorch."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GROUPS = ["technical", "biological", "perturbation"]


class Block(nn.Module):
    def __init__(self, hidden, ff):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, eps=1e-5)
        self.fc1 = nn.Linear(hidden, ff)
        self.fc2 = nn.Linear(ff, hidden)

    def forward(self, h):
        return h + self.fc2(F.gelu(self.fc1(self.norm(h)), approximate="tanh"))


class Trunk(nn.Module):
    """input linear (+ covariate linear) -> residual pre-LN blocks -> LayerNorm -> head."""

    def __init__(self, d_in, hidden, ff, blocks, d_out, d_covariate=0):
        super().__init__()
        self.input = nn.Linear(d_in, hidden)
        # format 2: covariates (sequencing depth) enter the first hidden state beside the input
        self.covariate = nn.Linear(d_covariate, hidden) if d_covariate else None
        self.blocks = nn.ModuleList([Block(hidden, ff) for _ in range(blocks)])
        self.norm = nn.LayerNorm(hidden, eps=1e-5)
        self.head = nn.Linear(hidden, d_out)

    def forward(self, x, covariate=None):
        h = self.input(x)
        if self.covariate is not None:
            h = h + self.covariate(covariate)
        for b in self.blocks:
            h = b(h)
        return self.head(self.norm(h))


class PriorSpec:
    """Metadata fields of one prior group -> the prior's input vector [one-hot ‖ numeric]."""

    def __init__(self, categorical, numeric):
        self.categorical = categorical      # list of {"name", "values"}
        self.numeric = numeric              # list of {"name", "transform", "mean", "std", ...}
        self.dim = sum(len(c["values"]) for c in categorical) + len(numeric)

    def encode(self, rows):
        """rows: list of dicts field -> value. Unknown/missing -> index 0 / 0.0."""
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for r, md in enumerate(rows):
            off = 0
            for c in self.categorical:
                v = md.get(c["name"], "unknown")
                idx = c["values"].index(v) if v in c["values"] else 0
                out[r, off + idx] = 1.0
                off += len(c["values"])
            for k, n in enumerate(self.numeric):
                v = md.get(n["name"])
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    t = 0.0
                elif n["transform"] == "log1p_zscore":
                    t = (math.log1p(float(v)) - n["mean"]) / n["std"]
                else:
                    t = (float(v) - n["mean"]) / n["std"]
                out[r, off + k] = t
        return out

    def to_json(self):
        return {"categorical": self.categorical, "numeric": self.numeric}


class RefcastVAE(nn.Module):
    """Format 1 when `covariates` is None; format 2 (docs/FORMAT.md) otherwise: the encoder takes the
    covariates beside log-CPM, and the decoder adds a context-free linear map of z_pert to its trunk,
    so a perturbation's main effect is the same in every context. Format 3 once a per-gene
    `denoise_threshold` is set (`set_denoise_threshold`, fit after training by
    evaluate.noise_thresholds): the size of a reference's deviation from its reconstruction that the
    denoised prediction mode treats as noise."""

    def __init__(self, G, latent, enc, dec, prior, prior_specs, n_platform_logvar=0, covariates=None):
        super().__init__()
        self.G, self.latent = G, dict(latent)
        self.specs = prior_specs
        self.covariates = None if covariates is None else PriorSpec([], covariates)
        Dt, Db, Dp = latent["technical"], latent["biological"], latent["perturbation"]
        d_cov = 0 if covariates is None else len(covariates)
        self.encoder = Trunk(G, enc["hidden"], enc["ff"], enc["blocks"], 2 * (Dt + Db), d_cov)
        self.prior = nn.ModuleDict({g: Trunk(prior_specs[g].dim, prior["hidden"], prior["ff"], prior["blocks"],
                                             2 * latent[g]) for g in GROUPS})
        self.decoder = Trunk(Dt + Db + Dp, dec["hidden"], dec["ff"], dec["blocks"], G)
        self.decoder.perturbation = nn.Linear(Dp, G) if covariates is not None else None
        self.decoder_logvar = nn.Parameter(torch.zeros(G))
        # training only: per-dataset likelihood variance (pseudobulks of 20 cells and bulk samples
        # differ by orders of magnitude in noise); the exported decoder.logvar is set from it
        self.train_logvar = nn.Parameter(torch.zeros(n_platform_logvar, G)) if n_platform_logvar else None
        # input standardisation, folded into encoder.input at export
        self.register_buffer("in_mean", torch.zeros(G))
        self.register_buffer("in_std", torch.ones(G))
        self.register_buffer("gene_mean", torch.zeros(G))
        self.register_buffer("denoise_threshold", None)

    @property
    def format_version(self):
        if self.covariates is None:
            return 1
        return 2 if self.denoise_threshold is None else 3

    def set_denoise_threshold(self, threshold):
        """Per-gene thresholds (ln units, >= 0) of the denoised mode; None removes them."""
        if threshold is None:
            self.denoise_threshold = None
            return
        if self.covariates is None:
            raise ValueError("denoising thresholds need a format 2 model (covariates)")
        t = torch.as_tensor(np.asarray(threshold, dtype=np.float32))
        if t.shape != (self.G,) or not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(f"denoising thresholds: {self.G} finite values >= 0 expected")
        self.denoise_threshold = t

    def denoised(self, reference, decoded, control):
        """The denoised prediction: max(0, decoded + soft(reference − control, threshold)), where the
        soft threshold keeps a reference's deviation from its reconstruction beyond the gene's
        threshold (its own profile) and drops the part within it (noise of one measurement). With
        thresholds 0 it is the counterfactual reference + (decoded − control)."""
        t = self.denoise_threshold if self.denoise_threshold is not None else torch.zeros(self.G)
        residual = reference - control
        return torch.clamp(decoded + (residual - torch.maximum(torch.minimum(residual, t), -t)), min=0.0)

    def covariate_input(self, rows):
        """Transformed covariates [n, C] of metadata rows (missing or non-positive library size -> 0,
        the training mean), or None for a format 1 model."""
        if self.covariates is None:
            return None
        clean = [{k: (v if v and v > 0 else None) for k, v in r.items()} for r in rows]
        return torch.from_numpy(self.covariates.encode(clean))

    def encode(self, x, covariate=None):
        if self.covariates is not None and covariate is None:
            covariate = torch.zeros(x.shape[0], self.covariates.dim)
        out = self.encoder((x - self.in_mean) / self.in_std, covariate)
        D = out.shape[1] // 2
        return out[:, :D], out[:, D:]

    def prior_params(self, g, inp):
        out = self.prior[g](inp)
        D = self.latent[g]
        return out[:, :D], out[:, D:]

    def decode(self, z):
        return self.decode_parts(z)[0]

    def decode_parts(self, z):
        """(decoder output, trunk output): the output is the trunk plus, in format 2, the linear
        perturbation path on the last Dp columns of z."""
        trunk = self.decoder(z)
        if self.decoder.perturbation is None:
            return trunk, trunk
        return trunk + self.decoder.perturbation(z[:, -self.latent["perturbation"]:]), trunk

    def logvar(self):
        return self.decoder_logvar.clamp(-7.0, 3.0)


def kl_normal(mu_q, lv_q, mu_p, lv_p):
    return 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1.0).sum(1)
