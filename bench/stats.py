"""Summaries of measured run times and their table cells, shared by the report parts and the
scaling table."""
import numpy as np


def stats(times):
    t = np.sort(np.asarray(times))
    return {"median": float(np.median(t)), "p10": float(np.percentile(t, 10)), "p90": float(np.percentile(t, 90)),
            "min": float(t[0]), "max": float(t[-1]), "n": len(t)}


def find(res, rt, name):
    """Runtime rt's measurements of workload `name`, or None."""
    return next((x for x in (res.get(rt) or {}).get("workloads", []) if x["name"] == name), None)


def per_row(res, rt, w):
    """Median seconds per predicted profile (1 / throughput)."""
    x = find(res, rt, w)
    return stats(x["times_s"])["median"] / x["rows"]


def fmt_ms(s):
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_mb(b):
    return "–" if b is None else f"{b / 1e6:.0f} MB"


def timing_cells(x):
    """Table cells: median ms | p10–p90 ms | runs (marked when capped below 30) | predictions/s."""
    s = stats(x["times_s"])
    runs = f"{s['n']}" + (" (capped)" if s["n"] < 30 else "")
    return f"{fmt_ms(s['median'])} | {fmt_ms(s['p10'])}–{fmt_ms(s['p90'])} | {runs} | {x['rows'] / s['median']:.4g}"
