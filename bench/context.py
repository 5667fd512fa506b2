"""What every part of a benchmark run shares: the repository's paths, the run's settings and
inputs (`Run`, passed to each part), and running a peer process."""
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
MODEL = REPO / "models" / "refcast-q8_0.safetensors"
MODEL_Q4 = REPO / "models" / "refcast-q4_0.safetensors"
EXAMPLE = REPO / "examples" / "kang_cd14_mono_ctrl.tsv"
NOTES = REPO / "bench" / "notes.md"


@dataclass
class Run:
    """One run's settings, its inputs once written, and `ctx`: the results document that
    bench/out/results.json keeps and the report is written from."""
    smoke: bool
    out_dir: Path
    ctx: dict
    # CI=true: a missing Chromium or WebGPU adapter fails the run instead of being skipped.
    ci: bool = field(default_factory=lambda: os.environ.get("CI") in ("true", "1"))
    exe: str = None                     # refcast_bench
    # The model files every runtime reads: the snapshot of models/ (see snapshot_models).
    model: Path = MODEL
    model_q4: Path = MODEL_Q4
    originals: dict = field(default_factory=dict)   # snapshot file name → its path in models/
    doc: dict = None                    # the Q8_0 file's metadata document
    refs_path: Path = None
    library_size: float = None
    workloads: list = None
    spec_path: Path = None
    model_dir: Path = None              # the ONNX export and PyTorch weights of `model`
    dumps: dict = field(default_factory=dict)       # runtime → its batch-1 log-CPM dump

    @property
    def timeout(self):
        return 300 if self.smoke else 1200

    def note(self, text):
        self.ctx["notes"].append(text)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def have(module):
    """Whether a module is installed (found, not imported: the driver stays small)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def run_json(cmd, timeout, env=None):
    """Runs a peer process; returns (parsed JSON of its last stdout line or None, stderr)."""
    log("$", " ".join(str(c) for c in cmd))
    try:
        p = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        return None, p.stderr[-3000:]
    return json.loads(lines[-1]), p.stderr
