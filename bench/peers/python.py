"""The Python peers: PyTorch eager and ONNX Runtime (f32, and its dynamic int8 quantization),
each a bench/peer.py process on the spec, on bench/graph.py's export of the Q8_0 weights
(dequantized to f32), cached per content hash of the model file."""
import subprocess
import sys

from bench.context import REPO, have, run_json
from bench.peers import LABEL


def export(run, no_ort, no_torch):
    """Writes the export both peers need (it needs torch and onnx) unless cached; returns
    (ONNX Runtime peers to run, PyTorch peer to run), with a note for each left out."""
    want_ort = not no_ort and have("onnxruntime")
    want_torch = not no_torch and have("torch")
    if (want_ort or want_torch) and not (run.model_dir / "model.onnx").exists():
        if have("torch") and have("onnx"):
            subprocess.run([sys.executable, "bench/graph.py", str(run.model), str(run.model_dir)], cwd=REPO, check=True)
        else:
            # graph.py writes the PyTorch peer's weights too: without onnx neither peer has a model
            run.note("ONNX Runtime and PyTorch peers skipped: their export (bench/graph.py) needs "
                     "torch and onnx, not both installed.")
            want_ort = want_torch = False
    if not want_ort:
        run.note("ONNX Runtime peers not run (--no-ort, or onnxruntime not installed).")
    if not want_torch:
        run.note("PyTorch peer not run (--no-torch, or torch not installed).")
    return want_ort, want_torch


def run_peer(run, rt, file_name):
    """One bench/peer.py process; its results go to run.ctx (a failure fails a smoke run)."""
    dump = run.out_dir / f"dump-{rt}.f32"
    r, err = run_json([sys.executable, "bench/peer.py", rt, run.spec_path, run.model_dir, "--dump", dump], run.timeout)
    if r is None:
        if run.smoke:
            raise SystemExit(f"{rt} failed:\n{err}")
        run.note(f"{LABEL[rt]} failed: {err.strip()[-300:]}")
        return
    run.ctx["results"][rt] = r
    path = run.model_dir / file_name
    run.ctx["files"][rt] = (str(path.relative_to(REPO)), path.stat().st_size)
    run.dumps[rt] = dump


def run_ort(run):
    run_peer(run, "ort-f32", "model.onnx")
    run_peer(run, "ort-int8", "model.int8.onnx")


def run_torch(run):
    run_peer(run, "torch", "model.pt")
