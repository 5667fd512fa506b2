"""The machine a run measured on: CPU, memory, versions, and its measured ceilings (memory copy
bandwidth, f32 matrix product throughput) that the kernel timings are set against."""
import os
import platform
import subprocess
import threading
import time

import numpy as np

from bench.context import have


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        fl = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
        flags = " ".join(f for f in ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni"] if f in fl)
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2 ** 20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "flags": flags, "cores": os.cpu_count(), "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "rustc": rustc}


def versions():
    from importlib.metadata import PackageNotFoundError, version
    v = {"numpy": np.__version__}
    for m in ["onnxruntime", "onnx", "torch", "matplotlib"]:
        try:
            v[m] = version(m)
        except PackageNotFoundError:
            pass
    return v


def ceilings(smoke):
    """Measured: large memory copy (GB/s, read + write) and large f32 matrix product (GFLOP/s)."""
    out = {}
    n = (16 if smoke else 256) << 20
    a = np.ones(n // 4, np.float32)
    b = np.empty_like(a)
    best = 0.0
    for _ in range(2 if smoke else 5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * n / (time.perf_counter() - t) / 1e9)
    out["memcpy_1t_gbs"] = best
    halves = [(a[: a.size // 2], b[: b.size // 2]), (a[a.size // 2:], b[b.size // 2:])]
    best = 0.0
    for _ in range(2 if smoke else 5):
        ths = [threading.Thread(target=np.copyto, args=(d, s)) for s, d in halves]
        t = time.perf_counter()
        [th.start() for th in ths]
        [th.join() for th in ths]
        best = max(best, 2 * n / (time.perf_counter() - t) / 1e9)
    out["memcpy_2t_gbs"] = best
    m = 512 if smoke else 2048
    x = np.random.default_rng(0).standard_normal((m, m)).astype(np.float32)
    best = 0.0
    # Best of many: other processes on these cores only ever make a run slower.
    for _ in range(2 if smoke else 15):
        t = time.perf_counter()
        x @ x
        best = max(best, 2 * m ** 3 / (time.perf_counter() - t) / 1e9)
    out["numpy_sgemm_gflops"] = best
    if not smoke and have("torch"):
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        tx = torch.from_numpy(x)
        best = 0.0
        for _ in range(15):
            t = time.perf_counter()
            torch.mm(tx, tx)
            best = max(best, 2 * m ** 3 / (time.perf_counter() - t) / 1e9)
        out["torch_sgemm_gflops"] = best
    out["memcpy_gbs"] = max(out["memcpy_1t_gbs"], out["memcpy_2t_gbs"])
    out["sgemm_gflops"] = max(out["numpy_sgemm_gflops"], out.get("torch_sgemm_gflops", 0))
    return out
