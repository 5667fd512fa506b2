"""The model as the peers run it: one PyTorch module over the training code's network
(training/model.py), with the weights of a refcast file dequantized to f32, and its ONNX export.

The module computes what `Session::predict` computes for reference-conditioned requests in its
default mode (denoised): every perturbation row and the control row are decoded, and the
prediction is decode(z_ref, perturbation) + soft(reference − decode(z_ref, control), τ), clamped
at 0 — the same decoder work as refcast, whose control row also gives each reference's
familiarity (its reconstruction):

    inputs   x [B, G] reference log-CPM, lib [B] library sizes, pert [P + 1, dP] perturbation-prior
             input (one-hot ‖ transformed numeric) of the request's perturbations and then the
             control, eps_tb [S, B, Dt+Db], eps_p [S, P + 1, Dp] (zeros for mean estimation)
    outputs  log_cpm, counts, lfc [S·B·P, G] and z [S·B·P, Dt+Db+Dp], rows nested
             (sample, reference, perturbation) like refcast's

    python bench/graph.py MODEL.safetensors OUTDIR    # OUTDIR/model.onnx, model.int8.onnx, model.pt
"""
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # the repository root in place of bench/ (see run.py)
    sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p).resolve() != REPO / "bench"]

from training.export import model_from_file  # noqa: E402
from training.quantize import QUANT  # noqa: E402


def read_file(path):
    """A refcast file -> (metadata document, {name: f32 array in its logical shape}); quantized
    tensors (named in the document's `tensors` table) are dequantized. Unlike
    training.export.read_file, it takes files whose table names only the quantized tensors
    (refcast's synthetic models of the scaling runs)."""
    import json
    import struct

    from safetensors.numpy import load_file
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        doc = json.loads(json.loads(f.read(n))["__metadata__"]["refcast"])
    out = {}
    for name, a in load_file(str(path)).items():
        info = doc["tensors"].get(name)
        quantized = info is not None and info["dtype"] in QUANT
        out[name] = QUANT[info["dtype"]][1](a, tuple(info["shape"])) if quantized else a.astype("float32")
    return doc, out


class Graph(nn.Module):
    """refcast's decoded prediction over the training code's network `vae` (a RefcastVAE): its
    encoder (a format 2 depth covariate at its mean, as for references of unknown depth), its
    perturbation prior and its decoder (with, in format 2, the perturbation path)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        lat = vae.latent
        self.dtb = lat["technical"] + lat["biological"]
        self.dp = lat["perturbation"]

    def forward(self, x, lib, pert, eps_tb, eps_p):
        mu, lv = self.vae.encode(x)                                 # [B, Dtb]
        z_tb = mu[None] + torch.exp(0.5 * lv)[None] * eps_tb        # [S, B, Dtb]
        mp, lp = self.vae.prior_params("perturbation", pert)        # [P, Dp]
        z_p = mp[None] + torch.exp(0.5 * lp)[None] * eps_p          # [S, P, Dp]
        s, b, p = eps_tb.shape[0], x.shape[0], pert.shape[0]     # p = P + 1 (the control last)
        z = torch.cat([z_tb[:, :, None, :].expand(s, b, p, self.dtb),
                       z_p[:, None, :, :].expand(s, b, p, self.dp)], -1)
        g = x.shape[1]
        y4 = self.vae.decode(z.reshape(-1, self.dtb + self.dp)).reshape(s, b, p, g)
        decoded, control = y4[:, :, :-1], y4[:, :, -1:]
        y4 = self.vae.denoised(x[None, :, None, :], decoded, control)   # [S, B, P, G]
        y = y4.reshape(-1, g)
        lfc = (y4 - x[None, :, None, :]).reshape(-1, g)
        counts = ((torch.exp(y4) - 1.0) * (lib[None, :, None, None] / 1e6)).reshape(-1, g)
        return y, counts, lfc, z[:, :, :-1].reshape(-1, self.dtb + self.dp)  # exp − 1: ONNX has no expm1


def load_graph(model_path):
    """A refcast file's metadata document and its Graph, the weights dequantized to f32."""
    doc, arrays = read_file(model_path)
    return doc, Graph(model_from_file(doc, arrays)).eval(), arrays


def example_inputs(doc):
    a = doc["architecture"]
    lat = a["latent"]
    spec = doc["priors"]["perturbation"]
    dp_in = sum(len(c["values"]) for c in spec["categorical"]) + len(spec["numeric"])
    g = a["genes"]
    return (torch.zeros(2, g), torch.full((2,), 1e6), torch.zeros(3, dp_in),
            torch.zeros(1, 2, lat["technical"] + lat["biological"]), torch.zeros(1, 3, lat["perturbation"]))


def export(model_path, outdir, int8=True):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    doc, graph, arrays = load_graph(model_path)
    # The PyTorch peer's weights: the file's tensors, dequantized, for training.export.model_from_file.
    torch.save({name: torch.from_numpy(a) for name, a in arrays.items()}, outdir / "model.pt")
    names_in = ["x", "lib", "pert", "eps_tb", "eps_p"]
    names_out = ["log_cpm", "counts", "lfc", "z"]
    axes = {"x": {0: "B"}, "lib": {0: "B"}, "pert": {0: "P"}, "eps_tb": {0: "S", 1: "B"}, "eps_p": {0: "S", 1: "P"},
            "log_cpm": {0: "R"}, "counts": {0: "R"}, "lfc": {0: "R"}, "z": {0: "R"}}
    t = time.time()
    onnx_path = outdir / "model.onnx"
    # The TorchScript-based exporter gives plain MatMul/Gemm nodes that onnxruntime's dynamic
    # quantizer understands; one file with the weights inside.
    torch.onnx.export(graph, example_inputs(doc), str(onnx_path), input_names=names_in, output_names=names_out,
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    print(f"export: {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.1f} MB, {time.time() - t:.1f} s)", flush=True)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        q_path = outdir / "model.int8.onnx"
        quantize_dynamic(str(onnx_path), str(q_path), weight_type=QuantType.QInt8, per_channel=False)
        print(f"export: {q_path} ({os.path.getsize(q_path) / 1e6:.1f} MB)", flush=True)
    return doc


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count() or 1)
    export(sys.argv[1], sys.argv[2], int8="--no-int8" not in sys.argv)
