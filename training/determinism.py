"""One place that makes a training or evaluation run repeatable: a fixed thread count (float sums
depend on how work is split among threads), deterministic torch kernels, the BLAS/OpenMP pools
limited to match, and seeded global random generators.

Bitwise-equal results need the same thread count, the same locked packages
(training/requirements.lock) and the same CPU kernel family (torch picks AVX2 or AVX-512 code by
the processor; `ATEN_CPU_CAPABILITY=avx2`, set before Python starts, pins it): `configure` prints
all three. Python's string hashing is randomised per process, so code that must be repeatable
never depends on the iteration order of a set of strings (or runs under PYTHONHASHSEED=0).
"""
import os
import random
import sys

# Thread pools that read their size from the environment when they start: set for libraries loaded
# after `configure` (and for child processes); the ones already loaded are limited by threadpoolctl.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def configure(threads=None, seed=None):
    """Sets up the process for a repeatable run and returns the thread count.

    threads: torch's intra-op threads and the BLAS/OpenMP pool size; default $REFCAST_THREADS,
    else os.cpu_count(). Results are bitwise repeatable only between runs with the same count, so
    it is printed (and a run that must match another sets REFCAST_THREADS).
    seed: for Python's, numpy's and torch's global generators; default config.SEED. Training
    seeds each model itself as well (train.fold_seed)."""
    source = "argument"
    if threads is None:
        env = os.environ.get("REFCAST_THREADS", "").strip()
        threads, source = (env, "REFCAST_THREADS") if env else (os.cpu_count() or 1, "cpu count")
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"thread count must be at least 1, not {threads}")
    for k in THREAD_ENV:
        os.environ[k] = str(threads)
    # numba reads NUMBA_NUM_THREADS once, at import; once imported, it is limited by its own call.
    if "numba" in sys.modules:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    # cuBLAS needs a fixed workspace for deterministic results on a GPU (ignored on the CPU).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from . import config as C

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    threadpool_limits(limits=threads)

    seed = C.SEED if seed is None else int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"determinism: {threads} thread(s) ({source}), seed {seed}, deterministic torch algorithms, "
          f"torch {torch.__version__} {cpu} kernels", flush=True)
    return threads
