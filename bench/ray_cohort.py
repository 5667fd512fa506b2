"""Cohort screens on Ray Data against one process: samples screened per second (every known
perturbation for each), single-process (``refcast.ray.screen_locally``) and ``screen_cohort``
on a local Ray cluster with 1, 2, … actors, each actor's CPU backend on one thread.

    python bench/ray_cohort.py --samples 200 --repeats 3          # needs the refcast wheel and ray[data]
    python bench/ray_cohort.py --samples 200 --every 10           # every 10th known perturbation

The cohort is thinned from the bundled Kang sample (``refcast.ray.thinned_cohort``), written to
Parquet and read back by each Ray run, whose results are written to Parquet: the times are
end to end (read, screen, write), medians of ``--repeats`` runs after one warm-up run that
starts the actors' worker processes; the single-process times leave out loading the model. Every run's rows are checked against the single-process
ones. The single-process run is timed with the CPU backend on one thread and on every core.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# bench/'s own modules (spec, stats, …) must not shadow installed modules of the same names.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def local_run(cohort: Path, threads: int, repeats: int, every: int) -> tuple[list[float], pd.DataFrame]:
    """screen_locally in a child process with REFCAST_THREADS set (the library reads it once per
    process): seconds per run (the model loaded before) and the last run's rows."""
    out = Path(tempfile.mkdtemp()) / "local.parquet"
    code = (
        "import sys, time, refcast, refcast.ray as rr\n"
        "model = refcast.load(backend='cpu')\n"
        "names = [p['name'] for p in model.info()['perturbations']][::int(sys.argv[4])]\n"
        "times = []\n"
        "for _ in range(int(sys.argv[3])):\n"
        "    t = time.perf_counter(); rows = rr.screen_locally(sys.argv[1], model=model, perturbations=names); times.append(time.perf_counter() - t)\n"
        "rows.to_parquet(sys.argv[2]); print(' '.join(map(str, times)))\n"
    )
    env = {**os.environ, "REFCAST_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", code, str(cohort), str(out), str(repeats), str(every)], env=env, check=True, capture_output=True, text=True)
    return [float(t) for t in done.stdout.split()], pd.read_parquet(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="screen every N-th known perturbation (default: all of them)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="the Ray cluster's CPUs (default: every core)")
    args = parser.parse_args()

    import ray

    import refcast
    import refcast.ray as rr

    kang = pd.read_csv(REPO / "examples" / "kang_cd14_mono_ctrl.tsv", sep="\t", index_col=0)["count"].rename("kang")
    work = Path(tempfile.mkdtemp())
    cohort = work / "cohort.parquet"
    rr.thinned_cohort(kang, args.samples, seed=1).to_parquet(cohort, row_group_size=25)

    rows = []
    one, want = local_run(cohort, 1, args.repeats, args.every)
    rows.append(("one process, 1 thread", one))
    every, _ = local_run(cohort, args.cpus, args.repeats, args.every)
    rows.append((f"one process, {args.cpus} threads", every))
    key = ["sample", "rank"]
    want = want.sort_values(key).reset_index(drop=True)

    ray.init(num_cpus=args.cpus, include_dashboard=False, object_store_memory=512 << 20, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    names = [p["name"] for p in refcast.load(backend="cpu").info()["perturbations"]][:: args.every]
    for actors in args.actors:
        # Each actor reserves less than a CPU's share so that read and write tasks find one.
        pool = {"num_actors": actors, "num_cpus": min(1.0, 0.9 * args.cpus / actors), "threads": 1, "batch_size": 10}
        times = []
        for run in range(args.repeats + 1):
            out = work / f"ray{actors}_{run}"
            t = time.perf_counter()
            rr.screen_cohort(rr.read_cohort(cohort), perturbations=names, output=out, **pool)
            if run:
                times.append(time.perf_counter() - t)
        got = pd.read_parquet(out).sort_values(key).reset_index(drop=True)
        assert got[["sample", "rank", "perturbation", "effect_size"]].equals(want[["sample", "rank", "perturbation", "effect_size"]]), "Ray's rows differ from one process's"
        rows.append((f"Ray Data, {actors} actor{'s' if actors > 1 else ''} × 1 thread", times))
    ray.shutdown()

    print(f"\n{args.samples} samples × {len(names)} perturbations ({'every known one' if args.every == 1 else f'every {args.every}th known one'}), screened; {cpu_model()}, {os.cpu_count()} cores; Ray cluster of {args.cpus} CPUs; medians of {args.repeats} runs\n")
    base = args.samples / statistics.median(one)
    print("| run | median s | samples/s | vs one process, 1 thread |")
    print("|---|---|---|---|")
    for name, times in rows:
        rate = args.samples / statistics.median(times)
        print(f"| {name} | {statistics.median(times):.2f} | {rate:.1f} | {rate / base:.2f}× |")


if __name__ == "__main__":
    main()
