"""refcast's own runs: the refcast_bench example (bench/refcast_bench.rs) built with cargo, then
run on the spec with the CPU backend (f32 and integer kernels) and the GPU backend, and (full runs)
the Q4_0 file on the CPU."""
import json
import subprocess
import sys
from pathlib import Path

from bench.context import REPO, log, run_json
from bench.spec import write_spec


def build_refcast(release):
    cmd = ["cargo", "build", "--locked", "--example", "refcast_bench", "--message-format=json"]
    if release:
        cmd.insert(2, "--release")
    log("$", " ".join(cmd))
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit("cargo build failed")
    exe = None
    for line in p.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "refcast_bench" and m.get("executable"):
            exe = m["executable"]
    if not exe:
        raise SystemExit("cargo build did not name the refcast_bench executable")
    return exe


def run_backend(run, name, backend, spec, model_file):
    """One refcast_bench run; its results go to run.ctx. Returns the error text, or None."""
    dump = run.out_dir / f"dump-{name}.f32"
    r, err = run_json([run.exe, "run", "--spec", spec, "--backend", backend, "--dump", dump], run.timeout)
    if r is None:
        return err
    r["runtime"] = name
    run.ctx["results"][name] = r
    run.ctx["files"][name] = (run.originals[Path(model_file).name], Path(model_file).stat().st_size)
    run.dumps[name] = dump
    return None


def run_cpu(run):
    err = run_backend(run, "refcast-cpu", "cpu", run.spec_path, run.model)
    if err:
        raise SystemExit(f"refcast CPU run failed:\n{err}")


def run_cpu_integer(run):
    """The CPU backend with its integer kernels (`--cpu-kernels integer`) on the same spec."""
    err = run_backend(run, "refcast-cpu-int", "cpu-integer", run.spec_path, run.model)
    if err:
        raise SystemExit(f"refcast CPU (integer kernels) run failed:\n{err}")


def run_gpu(run):
    """The GPU backend; without an adapter a note (in smoke mode, any other failure fails the run)."""
    err = run_backend(run, "refcast-gpu", "gpu", run.spec_path, run.model)
    if err:
        run.ctx["gpu_error"] = "no adapter / failed: " + err.strip().splitlines()[-1][:200]
        run.note(f"refcast GPU not measured: {run.ctx['gpu_error']}")
        if run.smoke and "adapter" not in err:
            raise SystemExit(f"refcast GPU run failed:\n{err}")


def run_cpu_q4(run):
    """The Q4_0 file on the CPU backend, a few workloads."""
    spec_q4 = run.out_dir / "spec-q4.json"
    write_spec(spec_q4, run.model_q4, run.refs_path, run.library_size,
               [w for w in run.workloads if w["name"] in ("batch1", "refs64", "refs256")], 30, 30, 3, 30.0)
    err = run_backend(run, "refcast-cpu-q4", "cpu", spec_q4, run.model_q4)
    if err:
        run.note(f"refcast CPU Q4_0 run failed: {err.strip()[-200:]}")
