"""`python -m training.q4_probe`: which layers' Q4_0 rounding moves the predicted responses, and
what the error-compensating rounding changes (training/README.md, "Q4_0 and the encoder's input
layer"): on the encoder's input layer alone, and on every layer (`REFCAST_Q4_ROUNDING=compensated`).

The shipped model's Q8_0 file, dequantized, stands for f32 (its own rounding is far smaller). It
is calibrated as the exporter calibrates (evaluate.calibrate_quantization: up to 40 units per
dataset) on a random half of the training contexts (seed 0), and scored on up to 25 units per
dataset from the other half, each under its own perturbation and under the control: per dataset,
the mean |Δ| of the predicted log fold change (perturbation − control) against the Q8_0 model's,
and 1 − the median correlation of the two, over the perturbed units. Needs `prepare`'s output
and models/refcast-q8_0.safetensors; about a minute on 2 cores and a few GB of memory (the
encoder's input gram and its factor are 15,360 × 15,360).
"""
import copy

import numpy as np
import torch

from . import evaluate as E
from . import infer
from . import train as T
from .config import MODELS
from .export import model_from_file, read_file

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
    test = np.sort(np.concatenate([rng.choice(u, min(25, len(u)), replace=False) for d in range(len(datasets))
                                   if len(u := np.where(~half & (meta.dataset_idx == d).values)[0])]))
    names = sorted(set(meta.dataset[test]))

    doc, arrays = read_file(MODELS / "refcast-q8_0.safetensors")
    ref = model_from_file(doc, arrays)
    ref.fold_mean = ref.gene_mean.clone()              # the file's model is folded already
    ref.fold_std = torch.from_numpy(X[half].std(0).astype(np.float32) + 1e-3)
    # the exporter's calibration on the half (up to 40 units per dataset), keeping every layer's gram
    infer.Q4_ROUNDING = "compensated"
    E.calibrate_quantization(ref, X, masks, datasets, meta, half)
    grams = ref.quant_gram

    def q4_model(compensated):
        """The whole model at Q4_0, the layers named in `compensated` rounded with their grams."""
        ref.quant_gram = {k: g for k, g in grams.items() if k in compensated}
        try:
            return infer.dequantized(ref, "q4_0")
        finally:
            ref.quant_gram = grams

    test_f, test_lib = E.filled(ref, X, masks, datasets, meta, test), E.libraries(meta, test)
    test_p = [E.pert_row(meta, i) for i in test]
    perturbed = np.array([p.get("perturbation", "none").lower() != "none" for p in test_p])

    @torch.no_grad()
    def responses(model):
        return (infer.predict_mean(model, test_f, test_p, library_sizes=test_lib)
                - infer.predict_mean(model, test_f, E.controls(len(test)), library_sizes=test_lib))

    lfc0 = responses(ref)

    def row(label, model):
        lfc, cells = responses(model), []
        for ds in names:
            k = (meta.dataset[test] == ds).values & perturbed
            if k.any():
                r = np.median([np.corrcoef(a, b)[0, 1] for a, b in zip(lfc[k], lfc0[k])])
                cells.append(f"{ds} {np.abs(lfc[k] - lfc0[k]).mean():.4f} / {1 - r:.4f}")
        print(f"{label:26s} " + "  ".join(cells), flush=True)

    print(f"q4_probe: {len(test)} units scored ({perturbed.sum()} perturbed); per dataset: mean |Δ LFC| / "
          "1 − median r, against Q8_0")
    importance = q4_model(())
    for label, chosen in GROUPS_OF_LAYERS.items():
        # this group's weights at Q4_0 (as exported by default), the rest at Q8_0
        m = copy.deepcopy(ref)
        with torch.no_grad():
            for (name, t), q in zip(m.state_dict().items(), importance.state_dict().values()):
                if infer.quantizable(name, t) and chosen(name):
                    t.copy_(q)
            m.encoder.input.bias.copy_(infer.corrected_input_bias(ref, m.encoder.input.weight))
        row(f"only {label}", m)
    row("all layers, importance", importance)
    row("all, encoder.input comp.", q4_model(("encoder.input.weight",)))
    row("all layers, compensated", q4_model(grams))


if __name__ == "__main__":
    main()
