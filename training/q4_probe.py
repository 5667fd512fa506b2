"""`python -m training.q4_probe`: which layers' Q4_0 rounding moves the predicted responses, and
what the error-compensating rounding changes (training/README.md, "Q4_0 and the encoder's input
layer"): on the encoder's input layer alone, and on every layer (`REFCAST_Q4_ROUNDING=compensated`).

The shipped model's Q8_0 file, dequantized, stands for f32 (its own rounding is far smaller). It
is calibrated as the exporter calibrates (infer.calibrate_quantization) on up to 40 units per
dataset from a random half of the training contexts (seed 0), and scored on up to 25 units per
dataset from the other half, each under its own perturbation and under the control: per dataset,
the mean |Δ| of the predicted log fold change (perturbation − control) against the Q8_0 model's,
and 1 − the median correlation of the two, over the perturbed units. Needs `prepare`'s output
and models/refcast-q8_0.safetensors; 3 minutes on 2 cores, several GB of memory (the encoder's
input gram and its factors are 15,360 × 15,360).
"""
import copy

import numpy as np
import torch

from . import evaluate as E
from . import infer
from . import train as T
from .config import MODELS
from .export import model_from_file, read_file
from .quantize import roundtrip

GROUPS_OF_LAYERS = {
    "encoder.input": lambda n: n == "encoder.input.weight",
    "encoder, the rest": lambda n: n.startswith("encoder.") and n != "encoder.input.weight",
    "decoder.head": lambda n: n == "decoder.head.weight",
    "decoder.perturbation": lambda n: n == "decoder.perturbation.weight",
    "decoder, the rest": lambda n: n.startswith("decoder.") and n not in ("decoder.head.weight", "decoder.perturbation.weight"),
    "priors": lambda n: n.startswith("prior."),
}


def main():
    X, masks, datasets, meta, _genes, _kang = T.load()
    rng = np.random.default_rng(0)
    contexts = np.array(sorted(set(meta.context)))
    half = meta.context.isin(set(rng.choice(contexts, len(contexts) // 2, replace=False))).values

    def pick(mask, per):
        idx = []
        for d in range(len(datasets)):
            units = np.where(mask & (meta.dataset_idx == d).values)[0]
            if len(units):
                idx.append(rng.choice(units, min(per, len(units)), replace=False))
        return np.sort(np.concatenate(idx))

    cal, test = pick(half, 40), pick(~half, 25)
    names = sorted(set(meta.dataset[test]))

    def reference():
        doc, arrays = read_file(MODELS / "refcast-q8_0.safetensors")
        m = model_from_file(doc, arrays)
        m.fold_mean = m.gene_mean.clone()              # the file's model is folded already
        m.fold_std = torch.from_numpy(X[cal].std(0).astype(np.float32) + 1e-3)
        return m

    def responses(model, ref):
        f = E.filled(ref, X, masks, datasets, meta, test)
        lib = E.libraries(meta, test)
        with torch.no_grad():
            return (infer.predict_mean(model, f, [E.pert_row(meta, i) for i in test], library_sizes=lib)
                    - infer.predict_mean(model, f, E.controls(len(test)), library_sizes=lib))

    perturbed = np.array([E.pert_row(meta, i).get("perturbation", "none").lower() != "none" for i in test])

    def row(label, lfc, lfc0):
        cells = []
        for ds in names:
            k = (meta.dataset[test] == ds).values & perturbed
            if k.any():
                r = np.median([np.corrcoef(a, b)[0, 1] for a, b in zip(lfc[k], lfc0[k])])
                cells.append(f"{ds} {np.abs(lfc[k] - lfc0[k]).mean():.4f} / {1 - r:.4f}")
        print(f"{label:24s} " + "  ".join(cells), flush=True)

    print(f"q4_probe: {len(cal)} calibration units, {len(test)} scored ({perturbed.sum()} perturbed); "
          "per dataset: mean |Δ LFC| / 1 − median r, against Q8_0")
    for rounding in ("importance", "compensated"):
        infer.Q4_ROUNDING = rounding                   # what REFCAST_Q4_ROUNDING sets
        ref = reference()
        lfc0 = responses(ref, ref)
        infer.calibrate_quantization(ref, E.filled(ref, X, masks, datasets, meta, cal),
                                     [E.pert_row(meta, i) for i in cal], E.libraries(meta, cal))
        if rounding == "importance":
            for label, chosen in GROUPS_OF_LAYERS.items():
                m = copy.deepcopy(ref)
                with torch.no_grad():
                    for name, t in m.state_dict().items():
                        if infer.quantizable(name, t) and chosen(name):
                            t.copy_(torch.from_numpy(roundtrip(t.numpy(), "q4_0", ref.quant_importance.get(name))))
                    m.encoder.input.bias.copy_(infer.corrected_input_bias(ref, m.encoder.input.weight))
                row(f"only {label}", responses(m, ref), lfc0)
        if rounding == "compensated":
            # the encoder's input layer compensated, the others as `importance` rounds them
            m = copy.deepcopy(infer.dequantized(ref, "q4_0"))
            with torch.no_grad():
                for name, t in m.state_dict().items():
                    if infer.quantizable(name, t) and name != "encoder.input.weight":
                        t.copy_(torch.from_numpy(roundtrip(ref.state_dict()[name].numpy(), "q4_0", ref.quant_importance.get(name))))
            row("all, encoder.input comp.", responses(m, ref), lfc0)
        row(f"all layers, {rounding}", responses(infer.dequantized(ref, "q4_0"), ref), lfc0)


if __name__ == "__main__":
    main()
