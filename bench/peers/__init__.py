"""The native peers, a module each: refcast's CPU and GPU backends (refcast.py, through
refcast_bench), PyTorch and ONNX Runtime (python.py, bench/peer.py processes on bench/graph.py's
export of the same weights), and the browser runtimes (browser.py, one headless Chromium)."""
import numpy as np

ORDER = ["refcast-gpu", "refcast-cpu", "refcast-cpu-int", "refcast-cpu-q4", "torch", "ort-f32", "ort-int8"]
LABEL = {
    "refcast-gpu": "refcast GPU (wgpu)",
    "refcast-cpu": "refcast CPU",
    "refcast-cpu-int": "refcast CPU, integer kernels",
    "refcast-cpu-q4": "refcast CPU, Q4_0 file",
    "torch": "PyTorch eager CPU",
    "ort-f32": "ONNX Runtime CPU f32",
    "ort-int8": "ONNX Runtime CPU int8",
    # bench/gpu/run.sh only
    "ort-cuda": "ONNX Runtime CUDA f32",
    "torch-cuda": "PyTorch eager CUDA",
}


def error_cell(ctx, rt):
    """The error column of a latency table: batch-1 max |Δ log-CPM| against refcast CPU (f32)."""
    if rt == "refcast-cpu":
        return "0 (reference)"
    if rt == "refcast-cpu-q4":
        return "other weights (Q4_0)"
    v = ctx["verify"].get(rt)
    return "–" if v is None else f"{v:.1e}"


def max_difference(dump, base):
    """Max |difference| of a runtime's batch-1 log-CPM dump to the baseline's."""
    return float(np.abs(np.fromfile(dump, dtype="<f4") - base).max())


def verify(run):
    """Every runtime's batch-1 log-CPM against refcast CPU's (the Q4_0 file is another model)."""
    base = np.fromfile(run.dumps["refcast-cpu"], dtype="<f4")
    for rt, path in run.dumps.items():
        if rt not in ("refcast-cpu", "refcast-cpu-q4"):
            run.ctx["verify"][rt] = max_difference(path, base)
    if "ort-f32" in run.ctx["verify"] and run.ctx["verify"]["ort-f32"] > 1e-4:
        run.note(f"ONNX Runtime f32 differs from refcast CPU by {run.ctx['verify']['ort-f32']:.2e} > 1e-4")
