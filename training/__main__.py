"""python -m training build|fetch|prepare|train|evaluate|export|smoke"""
import sys
import time


def main(argv):
    stages = ["fetch", "prepare", "train", "evaluate", "export"]
    cmd = argv[0] if argv else "build"
    todo = stages if cmd == "build" else [cmd]
    if any(s not in stages + ["smoke"] for s in todo):
        raise SystemExit(__doc__)
    for s in todo:
        t0 = time.time()
        mod = __import__(f"training.{s}", fromlist=["main"])
        mod.main()
        print(f"== {s}: {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
