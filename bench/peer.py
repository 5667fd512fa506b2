"""One peer runtime on the benchmark spec (bench/run.py writes it), in its own process so that
peak memory is its own; prints one JSON document like refcast_bench's.

    python bench/peer.py ort-f32|ort-int8|torch SPEC.json MODELDIR [--dump out.f32]

Per call, a peer does what refcast's API does: encode the perturbation metadata, run the graph
(encoder, perturbation prior, decoder, log fold change, counts), and for screens rank the rows by
effect size and pick each row's top 10 genes up and down. Only the ONNX Runtime peers import
onnxruntime, only the PyTorch peer imports torch.
"""
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # the repository root in place of bench/ (see run.py)
    sys.path[:] = [REPO] + [p for p in sys.path if os.path.realpath(p) != os.path.realpath(os.path.join(REPO, "bench"))]


def peak_rss():
    """Peak resident set of this process image (VmHWM; ru_maxrss would carry the parent's peak
    across exec on Linux)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def model_doc(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["refcast"])


def encode_prior(spec, rows):
    """refcast's prior input for metadata rows: one-hot per categorical field, then numerics.
    training.model.PriorSpec.encode in numpy alone: the ONNX Runtime peers and the driver do not
    import torch (a peer's peak memory is its own)."""
    dim = sum(len(c["values"]) for c in spec["categorical"]) + len(spec["numeric"])
    out = np.zeros((len(rows), dim), dtype=np.float32)
    for r, md in enumerate(rows):
        off = 0
        for c in spec["categorical"]:
            v = md.get(c["name"], "unknown")
            out[r, off + (c["values"].index(v) if v in c["values"] else 0)] = 1.0
            off += len(c["values"])
        for k, n in enumerate(spec["numeric"]):
            v = md.get(n["name"])
            if v is None:
                t = 0.0
            elif n["transform"] == "log1p_zscore":
                t = (math.log1p(float(v)) - n["mean"]) / n["std"]
            else:
                t = (float(v) - n["mean"]) / n["std"]
            out[r, off + k] = t
    return out


def control_metadata(doc):
    """The model's control perturbation as refcast picks it (`ModelConfig::control`: its first
    known perturbation with a text value "none")."""
    return next(p["metadata"] for p in doc["perturbations"]
                if any(isinstance(v, str) and v.lower() == "none" for v in p["metadata"].values()))


def reference_rows(w):
    """How many references a workload's call takes (a screen: one)."""
    return 1 if w["api"] == "screen" else w["references"]


def workload_inputs(doc, w):
    """A workload's perturbation-prior input and ε as bench/graph.py takes them: the request's
    perturbations, then the control (decoded like refcast's, whose row P draws the stream of an
    extra perturbation)."""
    rows = list(w["perturbations"]) + [control_metadata(doc)]
    return (encode_prior(doc["priors"]["perturbation"], rows),) + noise(doc, w, reference_rows(w), len(rows))


def noise(doc, w, b_n, p_n):
    """ε of refcast's Philox streams (training/philox.py), or zeros for mean estimation."""
    lat = doc["architecture"]["latent"]
    dt, db, dp = lat["technical"], lat["biological"], lat["perturbation"]
    s_n = w.get("samples") or 1
    eps_tb = np.zeros((s_n, b_n, dt + db), np.float32)
    eps_p = np.zeros((s_n, p_n, dp), np.float32)
    if w.get("samples"):
        from training import philox
        for s in range(s_n):
            for b in range(b_n):
                eps_tb[s, b, :dt] = philox.eps(w["seed"], "technical", dt, row=b, sample=s)
                eps_tb[s, b, dt:] = philox.eps(w["seed"], "biological", db, row=b, sample=s)
            for p in range(p_n):
                eps_p[s, p] = philox.eps(w["seed"], "perturbation", dp, row=p, sample=s)
    return eps_tb, eps_p


def rank(lfc):
    """Screen post-processing: effect size per row, descending order, top 10 up / down genes."""
    effect = np.sqrt(np.mean(lfc * lfc, axis=1))
    order = np.argsort(-effect)
    up = np.argpartition(-lfc, 10, axis=1)[:, :10]
    down = np.argpartition(lfc, 10, axis=1)[:, :10]
    return order, up, down


def main(argv):
    t_start = time.perf_counter()
    runtime, spec_path, model_dir = argv[0], argv[1], argv[2]
    dump = argv[argv.index("--dump") + 1] if "--dump" in argv else None
    spec = json.load(open(spec_path))
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))

    # Cold start: model bytes → session → first result.
    if runtime.startswith("ort"):
        import onnxruntime as ort
        path = os.path.join(model_dir, "model.int8.onnx" if runtime == "ort-int8" else "model.onnx")
        # ort-cuda (bench/gpu/run.sh): the f32 export on the CUDA provider, refused rather than run
        # on the CPU where the provider is missing.
        provider = "CUDAExecutionProvider" if runtime == "ort-cuda" else "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise SystemExit(f"{runtime}: onnxruntime {ort.__version__} has no {provider} "
                             f"(available: {', '.join(ort.get_available_providers())}; pip install onnxruntime-gpu)")
        t = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=[provider])
        load_s = time.perf_counter() - t
        describe = f"onnxruntime {ort.__version__} {provider}, {threads} threads"

        def forward(x, lib, pert, eps_tb, eps_p):
            return sess.run(None, {"x": x, "lib": lib, "pert": pert, "eps_tb": eps_tb, "eps_p": eps_p})
    else:
        import torch
        torch.set_num_threads(threads)
        from bench.graph import Graph
        from training.export import model_from_file
        # torch-cuda (bench/gpu/run.sh): the same module on the GPU; outputs copied back to the
        # host inside the timed call, as every other runtime returns host arrays.
        device = "cuda" if runtime == "torch-cuda" else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"{runtime}: PyTorch {torch.__version__} sees no CUDA device")
        path = os.path.join(model_dir, "model.pt")
        t = time.perf_counter()
        arrays = {name: a.numpy() for name, a in torch.load(path).items()}
        graph = Graph(model_from_file(model_doc(spec["model"]), arrays)).eval().to(device)
        load_s = time.perf_counter() - t
        where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {threads} threads"
        describe = f"PyTorch {torch.__version__} eager, {where}"

        def forward(*arrays):
            with torch.inference_mode():
                return [o.cpu().numpy() for o in graph(*(torch.from_numpy(a).to(device) for a in arrays))]

    doc = model_doc(spec["model"])
    genes = doc["architecture"]["genes"]
    refs = np.fromfile(spec["references"], dtype="<f4").reshape(-1, genes)
    prepared = {}

    def call(w):
        b_n = reference_rows(w)
        x = refs[:b_n]
        lib = np.full(b_n, spec["library_size"], np.float32)
        if w["name"] not in prepared:  # ε is an input here; refcast draws it inside predict
            prepared[w["name"]] = workload_inputs(doc, w)
        pert, eps_tb, eps_p = prepared[w["name"]]
        out = forward(x, lib, pert, eps_tb, eps_p)
        if w["api"] == "screen":
            rank(out[2])
        return out[0].shape[0], out[0]

    workloads = [w for w in spec["workloads"] if runtime not in w.get("skip", [])]
    t = time.perf_counter()
    _, first = call(workloads[0])
    first_s = time.perf_counter() - t
    cold_s = time.perf_counter() - t_start
    rss_cold = peak_rss()
    if dump:
        first[0].astype("<f4").tofile(dump)

    results = []
    for w in workloads:
        min_runs, floor = w.get("runs", {}).get(runtime, (spec["min_runs"], spec["floor_runs"]))
        rows = 0
        for _ in range(spec["warmup"]):
            rows, _ = call(w)
        times = []
        t_all = time.perf_counter()
        while len(times) < min_runs and (len(times) < floor or time.perf_counter() - t_all < spec["budget_s"]):
            t = time.perf_counter()
            rows, _ = call(w)
            times.append(time.perf_counter() - t)
        print(f"{runtime}: {w['name']} {len(times)} runs", file=sys.stderr, flush=True)
        results.append({"name": w["name"], "rows": rows, "times_s": times})
    print(json.dumps({
        "runtime": runtime, "describe": describe,
        "cold": {"total_s": cold_s, "load_s": load_s, "first_s": first_s, "first_workload": workloads[0]["name"],
                 "note": "after interpreter start-up and imports"},
        "peak_rss_cold_bytes": rss_cold, "peak_rss_bytes": peak_rss(), "workloads": results,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
