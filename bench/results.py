"""The results document of a run (bench/out/results.json, or bench/out/smoke/ in smoke mode):
saved after a run, loaded again to rewrite the report or to merge a browser-only run into it."""
import json
import time

from bench.context import NOTES


def standing_notes():
    """The items of bench/notes.md: a line that starts with `- ` opens one, the lines indented by
    two spaces that follow continue it."""
    items = []
    for line in NOTES.read_text().splitlines():
        if line.startswith("- "):
            items.append(line[2:])
        elif line.startswith("  ") and items:
            items[-1] += " " + line.strip()
    return items


def finish_notes(ctx):
    """The run's own notes are kept as run_notes; the report's are those plus the standing notes."""
    ctx["run_notes"] = list(ctx["notes"])
    ctx["notes"] += standing_notes()


def load_results(out_dir):
    ctx = json.load(open(out_dir / "results.json"))
    ctx["scaling"] = {tuple(k.split("|")): [tuple(p) for p in v] for k, v in ctx["scaling"].items()}
    ctx["files"] = {k: tuple(v) for k, v in ctx["files"].items()}
    ctx["notes"] = ctx["run_notes"] + standing_notes()
    # A results.json without a date: the time it was written.
    ctx.setdefault("date", time.strftime("%Y-%m-%d %H:%M %Z", time.localtime((out_dir / "results.json").stat().st_mtime)))
    return ctx


def save_results(ctx, out_dir):
    scaling = ctx.get("scaling", {})
    json.dump({k: v for k, v in ctx.items() if k != "scaling"} | {"scaling": {f"{a}|{b}": v for (a, b), v in scaling.items()}},
              open(out_dir / "results.json", "w"), indent=1, default=str)
