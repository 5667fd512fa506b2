"""Build models/refcast-genesets.safetensors: GO biological process and PROGENy footprints mapped
to the shipped model's genes (docs/FORMAT.md, "Gene sets").

    python -m training.genesets           # fetch the pinned packages, build, write the file
    python -m training.genesets --check   # build into memory and compare with the committed file

Sources are Debian packages pinned by version and archive SHA-256, fetched and extracted by
training/fetch.py into the training cache. R data is read without R: org.Hs.eg.db and GO.db are
SQLite files; PROGENy's footprints live in an R lazy-load database (data/Rdata.rdb), read here
with `lazyload` and the PyPI package `rdata`.
"""
import bz2
import gzip
import hashlib
import json
import lzma
import sqlite3
import struct
import sys
import warnings
import zlib

import numpy as np

from .. import config as C
from .. import fetch

FORMAT_VERSION = 1
OUT = C.MODELS / "refcast-genesets.safetensors"
MODEL = C.MODELS / "refcast-q8_0.safetensors"
GO_MIN, GO_MAX = 15, 500          # GO terms with this many of the model's genes
PROGENY_TOP = 500                 # footprint genes per pathway, by p-value (decoupler's default)

SITE = "./usr/lib/R/site-library/"
SOURCES = {
    "orghs": C.SOURCES["orghs"],
    "godb": {
        "kind": "apt", "spec": "r-bioc-go.db=3.16.0-1", "file": "r-bioc-go.db_3.16.0-1_all.deb",
        "sha256": "6cf9c43b97212811ecb7ad0d7cde12e76f984ab7494a59c02455239a9dd3243d",
        "members": [SITE + "GO.db/extdata/GO.sqlite"],
        "name": "GO.db GO term names", "licence": "Artistic-2.0",
    },
    "progeny": {
        "kind": "apt", "spec": "r-bioc-progeny=1.20.0+ds-1", "file": "r-bioc-progeny_1.20.0+ds-1_all.deb",
        "sha256": "3890420f713bf43305f6c7aba18a83f831e53a19a52e233e2f2fa6b589b1df1c",
        "members": [SITE + "progeny/data/Rdata.rdb", SITE + "progeny/data/Rdata.rdx"],
        "name": "PROGENy pathway response footprints", "licence": "Apache-2.0",
    },
}


def lazyload(rdb_path, name):
    """One object of an R lazy-load database (`.rdb` + `.rdx`), converted by `rdata`.

    The `.rdx` is a gzip-compressed serialized list: `variables` maps each name to (offset,
    length) in the `.rdb`; `compressed` says how the blocks are compressed (1 zlib, 2 bzip2,
    3 xz). A block is a 4-byte big-endian uncompressed length, for types 2 and 3 one byte naming
    the method ('Z' zlib, '2' bzip2, 'X' xz, '0' none), then the compressed serialization."""
    import rdata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata: "Unknown file type: assumed RDS" (no magic)
        index = rdata.conversion.convert(rdata.parser.parse_data(
            gzip.decompress(open(rdb_path.with_suffix(".rdx"), "rb").read())))
        variables = {str(k): v for k, v in index["variables"].items()}
        if name not in variables:
            raise SystemExit(f"genesets: {name} not in {rdb_path} (has {sorted(variables)})")
        offset, length = (int(x) for x in variables[name])
        with open(rdb_path, "rb") as f:
            f.seek(offset)
            block = f.read(length)
        size = struct.unpack(">I", block[:4])[0]
        kind = int(index["compressed"][0])
        if kind == 1:
            raw = zlib.decompress(block[4:])
        else:
            method, body = block[4:5], block[5:]
            raw = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress,
                   b"0": lambda b: b}[method](body)
        if len(raw) != size:
            raise SystemExit(f"genesets: {rdb_path}:{name}: {len(raw)} bytes, header says {size}")
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def model_genes(path=MODEL):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    doc = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["refcast"])
    return doc["name"], doc["genes"]


def genes_sha256(genes):
    """SHA-256 of the model's gene list: `symbol\\tensembl\\n` per gene, in model order."""
    text = "".join(f"{g['symbol']}\t{g.get('ensembl') or ''}\n" for g in genes)
    return hashlib.sha256(text.encode()).hexdigest()


def entrez_to_model(orghs, genes):
    """Entrez id -> model gene index, by Ensembl id and by official symbol (both from
    org.Hs.eg.db); an Entrez id matching two model genes keeps the Ensembl match."""
    by_symbol = {g["symbol"]: i for i, g in enumerate(genes)}
    by_ensembl = {g["ensembl"]: i for i, g in enumerate(genes) if g.get("ensembl")}
    out = {}
    for eg, sym in orghs.execute("SELECT g.gene_id, i.symbol FROM genes g JOIN gene_info i USING (_id)"):
        if sym in by_symbol:
            out[eg] = by_symbol[sym]
    for eg, ens in orghs.execute("SELECT g.gene_id, e.ensembl_id FROM genes g JOIN ensembl e USING (_id)"):
        if ens in by_ensembl:
            out[eg] = by_ensembl[ens]
    return out


def go_sets(orghs, godb, genes):
    eg_model = entrez_to_model(orghs, genes)
    members = {}
    for go_id, eg in orghs.execute(
            "SELECT DISTINCT a.go_id, g.gene_id FROM go_bp_all a JOIN genes g USING (_id)"):
        i = eg_model.get(eg)
        if i is not None:
            members.setdefault(go_id, set()).add(i)
    names = dict(godb.execute("SELECT go_id, term FROM go_term WHERE ontology = 'BP'"))
    sets = []
    for go_id in sorted(members):
        idx = sorted(members[go_id])
        if GO_MIN <= len(idx) <= GO_MAX and go_id in names:
            sets.append({"id": go_id, "name": names[go_id], "collection": "go_bp",
                         "indices": idx, "weights": [1.0] * len(idx)})
    return sets


def progeny_sets(rdb, orghs, genes):
    df = lazyload(rdb, "model_human_full")
    by_symbol = {g["symbol"]: i for i, g in enumerate(genes)}
    # Aliases that name exactly one model gene (the footprints use older symbols for a few genes).
    alias = {}
    for a, sym in orghs.execute("SELECT a.alias_symbol, i.symbol FROM alias a JOIN gene_info i USING (_id)"):
        if sym in by_symbol:
            alias.setdefault(a, set()).add(by_symbol[sym])
    df = df.rename(columns={"p.value": "p_value"})
    df["pathway"] = df["pathway"].astype(str)
    df["gene"] = df["gene"].astype(str)
    sets = []
    for pathway in sorted(df["pathway"].unique()):
        top = df[df["pathway"] == pathway].sort_values("p_value", kind="mergesort").head(PROGENY_TOP)
        w = {}
        for g, weight in zip(top["gene"], top["weight"]):
            i = by_symbol.get(g)
            if i is None and len(alias.get(g, ())) == 1:
                i = next(iter(alias[g]))
            if i is not None and i not in w:
                w[i] = float(weight)
        idx = sorted(w)
        sets.append({"id": pathway, "name": pathway, "collection": "progeny",
                     "indices": idx, "weights": [w[i] for i in idx]})
    return sets


def build():
    paths = {}
    for key, src in SOURCES.items():
        path = fetch.download(src)
        fetch.extract(src, path)
        paths[key] = [C.EXTRACT / m for m in src["members"]]
    model_name, genes = model_genes()
    orghs = sqlite3.connect(f"file:{paths['orghs'][0]}?mode=ro", uri=True)
    godb = sqlite3.connect(f"file:{paths['godb'][0]}?mode=ro", uri=True)
    sets = progeny_sets(paths["progeny"][0], orghs, genes) + go_sets(orghs, godb, genes)
    offsets = np.cumsum([0] + [len(s["indices"]) for s in sets]).astype(np.uint32)
    indices = np.concatenate([np.asarray(s["indices"], dtype=np.uint16) for s in sets])
    # Weights are stored for the leading weighted sets only; every later membership weighs 1.
    weighted = sum(1 for s in sets if any(w != 1.0 for w in s["weights"]))
    if any(w != 1.0 for s in sets[weighted:] for w in s["weights"]):
        raise SystemExit("genesets: weighted sets must come first")
    weights = np.concatenate([np.asarray(s["weights"], dtype=np.float32) for s in sets[:weighted]])
    meta = dict(orghs.execute("SELECT name, value FROM metadata"))
    doc = {
        "format_version": FORMAT_VERSION,
        "model": {"name": model_name, "genes": len(genes), "genes_sha256": genes_sha256(genes)},
        "collections": [
            {"name": "progeny", "title": "PROGENy pathway activity",
             "method": f"top {PROGENY_TOP} footprint genes per pathway by p-value "
                       "(model_human_full), signed weights; genes outside the model dropped",
             "source": "progeny"},
            {"name": "go_bp", "title": "GO biological process",
             "method": f"go_bp_all (genes annotated to the term or a descendant, any evidence), "
                       f"terms with {GO_MIN}-{GO_MAX} of the model's genes; weight 1",
             "source": "orghs+godb",
             "dates": {"go": meta.get("GOSOURCEDATE"), "entrez": meta.get("GOEGSOURCEDATE")}},
        ],
        "sources": [{"key": k, "name": s["name"], "package": s["spec"], "registry": "Debian",
                     "archive": s["file"], "sha256": s["sha256"], "licence": s.get("licence", "Artistic-2.0")}
                    for k, s in SOURCES.items()],
        "weighted_sets": weighted,
        "builder": "python -m training.genesets",
        "sets": [{"id": s["id"], "name": s["name"], "collection": s["collection"]} for s in sets],
    }
    return {"offsets": offsets, "indices": indices, "weights": weights}, doc


def serialize(arrays, doc):
    from safetensors.numpy import save
    return save(arrays, metadata={"refcast_genesets": json.dumps(doc, separators=(",", ":"), ensure_ascii=False)})


def main(argv):
    arrays, doc = build()
    data = serialize(arrays, doc)
    counts = {}
    for s in doc["sets"]:
        counts[s["collection"]] = counts.get(s["collection"], 0) + 1
    summary = (f"{len(doc['sets'])} sets ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
               f"{len(arrays['indices'])} memberships, {len(data)} bytes")
    if "--check" in argv:
        have = OUT.read_bytes()
        if have != data:
            raise SystemExit(f"genesets: {OUT} differs from the builder's output ({summary}; "
                             f"file sha256 {hashlib.sha256(have).hexdigest()[:16]}, built "
                             f"{hashlib.sha256(data).hexdigest()[:16]})")
        print(f"genesets: {OUT.name} matches the builder: {summary}")
        return
    OUT.write_bytes(data)
    print(f"genesets: wrote {OUT}: {summary}")
    sums = C.MODELS / "SHA256SUMS"
    if sums.exists():
        lines = [l for l in sums.read_text().splitlines() if not l.endswith("  " + OUT.name)]
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {OUT.name}")
        sums.write_text("\n".join(lines) + "\n")
