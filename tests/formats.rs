//! The input formats users have, each read right: files made from the bundled samples by
//! tests/data/formats/make.py (gzip, TPM, log2- and log10-CPM, featureCounts, Salmon, kallisto,
//! a 10x matrix directory; and by make_h5.py, AnnData .h5ad and 10x .h5 files) give the plain
//! counts file's values, or its log-CPM within the
//! rounding of the written numbers; what each was read as is said. Bad inputs are refused with
//! one clear error each. The known answer: airway cells read from a log2-CPM table respond to
//! dexamethasone with the glucocorticoid genes up, as from their counts.

use refcast::sample::hdf5::{self, CellOptions};
use refcast::sample::{self, Format, KindSource, Reference, SampleFile, SampleTable, ValueKind, tenx};
use refcast::session::{Request, Session};
use refcast::{ModelConfig, ModelFile};

const AIRWAY: &str = "examples/airway_N61311_untreated.tsv";
const KANG: &str = "examples/kang_cd14_mono_ctrl.tsv";
const MODEL: &str = "models/refcast-q8_0.safetensors";

fn path(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn bytes(p: &str) -> Vec<u8> {
    std::fs::read(path(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn read(p: &str, kind: ValueKind) -> SampleFile {
    sample::read(&bytes(p), &path(p), kind).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn plain(p: &str) -> SampleTable {
    SampleTable::parse(&bytes(p), ValueKind::Auto).unwrap()
}

fn session() -> Session<refcast::CpuBackend> {
    Session::cpu(&ModelFile::from_bytes(&bytes(MODEL)).unwrap()).unwrap()
}

/// Largest difference between two references' log-CPM over the genes both measured.
fn max_diff(a: &Reference, b: &Reference) -> f32 {
    assert_eq!(a.measured, b.measured);
    a.log_cpm.iter().zip(&b.log_cpm).zip(&a.measured).filter(|(_, m)| **m).map(|((x, y), _)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tools_tables_and_gzip_give_the_counts_themselves() {
    let counts = plain(AIRWAY);
    for (file, format, gzip) in [
        ("tests/data/formats/airway.tsv.gz", Format::Table { delimiter: '\t' }, true),
        ("tests/data/formats/airway_featurecounts.txt.gz", Format::FeatureCounts, true),
        ("tests/data/formats/salmon/N61311/quant.genes.sf.gz", Format::Salmon, true),
        ("tests/data/formats/kallisto/N61311/abundance.tsv.gz", Format::Kallisto, true),
    ] {
        let f = read(file, ValueKind::Auto);
        assert_eq!((&f.interpretation.format, f.interpretation.gzip, f.interpretation.kind), (&format, gzip, ValueKind::Counts), "{file}");
        assert_eq!(f.table.genes, counts.genes, "{file}");
        assert_eq!(f.table.values, counts.values, "{file}: the counts exactly");
        let line = f.interpretation.to_string();
        assert!(line.contains(" (gzip-compressed); values: "), "{file}: {line}");
        if matches!(format, Format::Table { .. }) {
            assert_eq!(f.table.samples, ["airway"], "{file}: named after the file");
            assert!(line.ends_with("values: counts (from the header 'count')"), "{line}");
        } else {
            assert_eq!(f.table.samples, ["N61311"], "{file}: named after the BAM or the tool's directory");
            assert!(line.ends_with("values: counts (the tool's read counts)"), "{line}");
        }
    }
    let line = read("tests/data/formats/airway_featurecounts.txt.gz", ValueKind::Auto).interpretation.to_string();
    assert!(line.contains("featureCounts output (annotation columns Chr, Start, End, Strand, Length skipped)"), "{line}");
}

/// Abundances and log-CPM carry the sample's CPM: the same log-CPM as the counts within the
/// rounding of the written values (6 significant digits for TPM and log10; 4 decimals of log2,
/// at most 5e-5 in log2, 3.5e-5 in ln), so 1e-4 in natural-log CPM.
#[test]
fn abundances_and_log_tables_give_the_counts_log_cpm() {
    let session = session();
    let counts = plain(AIRWAY);
    let from_counts = session.reference(&counts, 0).unwrap();
    for (file, kind, source) in [
        ("tests/data/formats/airway_log2cpm.tsv", ValueKind::Log2Cpm, "values"),
        ("tests/data/formats/airway_log10cpm.tsv.gz", ValueKind::Log10Cpm, "values"),
        ("tests/data/formats/airway_tpm.tsv.gz", ValueKind::Tpm, "header"),
    ] {
        let f = read(file, ValueKind::Auto);
        assert_eq!(f.interpretation.kind, kind, "{file}: {}", f.interpretation);
        match (&f.interpretation.source, source) {
            (KindSource::Values(why), "values") => assert!(why.contains("only this base"), "{why}"),
            (KindSource::Header(h), "header") => assert_eq!(h, "tpm"),
            (other, _) => panic!("{file}: decided by {other:?}"),
        }
        let r = session.reference(&f.table, 0).unwrap();
        if kind == ValueKind::Tpm {
            // TPM is rescaled to 10⁶ over the model's genes: the counts' CPM over those genes.
            assert!(f.interpretation.to_string().ends_with("rescaled to sum to 10⁶ over the model's genes"));
            let index: Vec<usize> = counts.genes.iter().map(|g| session.gene(g).unwrap_or(usize::MAX)).collect();
            let in_model: f64 = counts.values[0].iter().zip(&index).filter(|(_, i)| **i != usize::MAX).map(|(c, _)| c).sum();
            let mut want = from_counts.clone();
            for (c, &i) in counts.values[0].iter().zip(&index).filter(|(_, i)| **i != usize::MAX) {
                want.log_cpm[i] = (c / in_model * 1e6).ln_1p() as f32;
            }
            assert!(max_diff(&r, &want) < 1e-4, "{file}: {}", max_diff(&r, &want));
        } else {
            assert!(max_diff(&r, &from_counts) < 1e-4, "{file}: {}", max_diff(&r, &from_counts));
        }
        assert_eq!(r.sequencing_depth(), None, "{file}: the depth of an abundance or log table is unknown");
    }
}

fn gunzip(p: &str) -> Vec<u8> {
    sample::gunzip(&bytes(p), sample::MAX_SAMPLE_BYTES).unwrap()
}

#[test]
fn a_10x_matrix_summed_over_its_cells_gives_the_pseudobulk_back() {
    let counts = plain(KANG);
    let dir = "tests/data/formats/kang_10x";
    let (matrix, features, barcodes) =
        (gunzip(&format!("{dir}/matrix.mtx.gz")), gunzip(&format!("{dir}/features.tsv.gz")), gunzip(&format!("{dir}/barcodes.tsv.gz")));
    let all = tenx::pseudobulk(&matrix[..], &features, &barcodes, None, "kang").unwrap();
    assert_eq!(all.table.genes, counts.genes, "the antibody feature is left out");
    assert_eq!(all.table.values, counts.values);
    assert_eq!(all.interpretation.format, Format::TenX { cells: 6, groups: None });
    let groups = bytes("tests/data/formats/kang_groups.tsv");
    let by = tenx::pseudobulk(&matrix[..], &features, &barcodes, Some(&groups), "kang").unwrap();
    assert_eq!(by.table.samples, ["a", "b"]);
    let sum: Vec<f64> = by.table.values[0].iter().zip(&by.table.values[1]).map(|(a, b)| a + b).collect();
    assert_eq!(sum, counts.values[0], "the groups' samples add up to all cells");
    assert!(by.interpretation.to_string().contains("6 cells summed into 2 pseudobulk samples by group"), "{}", by.interpretation);
}

fn h5(p: &str, options: CellOptions) -> SampleFile {
    hdf5::read_path(std::path::Path::new(&path(p)), p, &options).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// AnnData and 10x .h5 files made from the same cells as the 10x directory: each matrix (.raw
/// as CSR, a CSC layer, dense X in the older encoding, Cell Ranger's CSC) summed over all cells
/// gives the pseudobulk's counts exactly; grouped, the groups add up to it.
#[test]
fn hdf5_files_summed_over_their_cells_give_the_pseudobulk_back() {
    let counts = plain(KANG);
    let groups = bytes("tests/data/formats/kang_groups.tsv");
    let h5ad = "tests/data/formats/kang.h5ad";
    for (file, options, matrix) in [
        (h5ad, CellOptions::default(), "raw/X"),
        (h5ad, CellOptions { layer: Some("counts"), ..Default::default() }, "layers/counts"),
        (h5ad, CellOptions { layer: Some("raw"), gene_names: Some("feature_name"), ..Default::default() }, "raw/X"),
        ("tests/data/formats/kang_dense_old.h5ad", CellOptions::default(), "X"),
        ("tests/data/formats/kang_10x.h5", CellOptions::default(), ""),
    ] {
        let f = h5(file, options);
        assert_eq!(f.table.genes, counts.genes, "{file} {matrix}: the antibody feature is left out");
        assert_eq!(f.table.values, counts.values, "{file} {matrix}: the counts exactly");
        assert_eq!(f.table.samples.len(), 1);
        let line = f.interpretation.to_string();
        if matrix.is_empty() {
            assert_eq!(f.interpretation.format, Format::TenX { cells: 6, groups: None });
            assert_eq!(f.table.samples, ["kang_10x"]);
        } else {
            assert!(line.starts_with(&format!("read as an AnnData file, 6 cells of {matrix} summed into 1 pseudobulk sample; values: counts")), "{line}");
        }
    }
    for (file, options, by) in [
        (h5ad, CellOptions { groupby: Some("group"), ..Default::default() }, "by obs column 'group'"),
        (h5ad, CellOptions { groups: Some(&groups), ..Default::default() }, "by the group table"),
        ("tests/data/formats/kang_dense_old.h5ad", CellOptions { groupby: Some("group"), ..Default::default() }, "by obs column 'group'"),
        ("tests/data/formats/kang_10x.h5", CellOptions { groups: Some(&groups), ..Default::default() }, "by group"),
    ] {
        let f = h5(file, options);
        assert_eq!(f.table.samples, ["a", "b"], "{file} {by}");
        let sum: Vec<f64> = f.table.values[0].iter().zip(&f.table.values[1]).map(|(a, b)| a + b).collect();
        assert_eq!(sum, counts.values[0], "{file} {by}: the groups' samples add up to all cells");
        assert!(f.interpretation.to_string().contains(&format!("summed into 2 pseudobulk samples {by}")), "{}", f.interpretation);
    }
    // The library's reader of a file's bytes takes the defaults (.raw, all cells).
    assert_eq!(read(h5ad, ValueKind::Auto).table.values, counts.values);
}

/// The CLI reads every one of them and says how, on standard error; the 10x directory's
/// prediction is the counts file's.
#[test]
fn the_cli_reads_each_format_and_says_how() {
    let run = |sample: &str, extra: &[&str]| -> (String, String) {
        let mut args = vec!["predict", "--backend", "cpu", "--sample", sample, "-p", "IFN-beta"];
        args.extend(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_refcast")).args(&args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
        let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
        assert!(out.status.success(), "{sample} {extra:?}: {stderr}");
        (stdout, stderr)
    };
    let (plain_out, stderr) = run(KANG, &[]);
    assert!(stderr.contains(&format!("refcast: {KANG}: read as a TSV table; values: counts (from the header 'count')")), "{stderr}");
    let (tenx_out, stderr) = run("tests/data/formats/kang_10x", &[]);
    assert!(stderr.contains("read as a 10x Genomics matrix, 6 cells summed into one pseudobulk sample (gzip-compressed); values: counts"), "{stderr}");
    let rows = |out: &str| out.lines().skip(1).map(|l| l.split_once('\t').unwrap().1.to_string()).collect::<Vec<_>>();
    assert_eq!(rows(&tenx_out), rows(&plain_out), "the same prediction from the cells as from their pseudobulk");
    let (grouped, stderr) = run("tests/data/formats/kang_10x", &["--groups", "tests/data/formats/kang_groups.tsv"]);
    assert!(stderr.contains("summed into 2 pseudobulk samples by group"), "{stderr}");
    assert!(grouped.starts_with("sample\t"), "one row per group: {}", &grouped[..80]);
    let (h5ad_out, stderr) = run("tests/data/formats/kang.h5ad", &[]);
    assert!(stderr.contains("read as an AnnData file, 6 cells of raw/X summed into 1 pseudobulk sample; values: counts"), "{stderr}");
    assert_eq!(rows(&h5ad_out), rows(&plain_out), "an AnnData file's cells predict as their pseudobulk");
    let (h5_out, stderr) = run("tests/data/formats/kang_10x.h5", &[]);
    assert!(stderr.contains("read as a 10x Genomics matrix, 6 cells summed into one pseudobulk sample; values: counts"), "{stderr}");
    assert_eq!(rows(&h5_out), rows(&plain_out), "a 10x .h5 file's cells predict as their pseudobulk");
    let (by_obs, stderr) = run("tests/data/formats/kang.h5ad", &["--groupby", "group", "--layer", "counts"]);
    assert!(stderr.contains("6 cells of layers/counts summed into 2 pseudobulk samples by obs column 'group'"), "{stderr}");
    assert_eq!(by_obs, grouped, "grouped by obs as by the barcode table");
    let (_, stderr) = run("tests/data/formats/airway_log2cpm.tsv", &[]);
    assert!(stderr.contains("values: log2(1 + CPM) (from the values: only this base brings every sample's CPM to a sum near 10⁶"), "{stderr}");
    let (_, stderr) = run("tests/data/formats/airway_log2cpm.tsv", &["--values", "log2-cpm"]);
    assert!(stderr.contains("values: log2(1 + CPM) (as stated)"), "{stderr}");
}

/// Known answer: dexamethasone on airway smooth muscle cells raises the glucocorticoid response
/// genes (ZBTB16, FKBP5, TSC22D3). Read from a log2-CPM table, the prediction is the counts'
/// (the table's log-CPM is theirs within 1e-4), not the ITGB2 +12.6 of a log2 table read as ln.
#[test]
fn airway_from_a_log2_table_responds_to_dexamethasone_as_from_counts() {
    let mut session = session();
    let dex = session.config().perturbation("dexamethasone 1 µM 18 h").metadata;
    let counts = session.reference(&plain(AIRWAY), 0).unwrap();
    // A log-CPM table does not say its depth; given the counts' library size, the model sees the
    // same sample twice (without it, the depth covariate takes the training data's typical depth
    // and the decoded profile moves by up to a few hundredths).
    let log2 = session.reference(&read("tests/data/formats/airway_log2cpm.tsv", ValueKind::Auto).table, 0).unwrap();
    let log2 = log2.with_library_size(counts.library_size as f64).unwrap();
    let lfc = |session: &mut Session<refcast::CpuBackend>, r: Reference| {
        pollster::block_on(session.predict(&Request::conditioned(vec![r], vec![dex.clone()]))).unwrap().log_fold_change.unwrap()
    };
    let from_log2 = lfc(&mut session, log2);
    let from_counts = lfc(&mut session, counts);
    for gene in ["ZBTB16", "FKBP5", "TSC22D3"] {
        let g = session.gene(gene).unwrap_or_else(|| panic!("{gene} is a model gene"));
        assert!(from_log2[g] > 0.0, "{gene}: {}", from_log2[g]);
    }
    let itgb2 = session.gene("ITGB2").unwrap();
    assert!(from_log2[itgb2].abs() < 2.0, "ITGB2: {}", from_log2[itgb2]);
    // The model maps log-CPM through f32 layers: 1e-4 in the input moves the output by less
    // than 1e-2.
    let worst = from_log2.iter().zip(&from_counts).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-2, "largest difference from the counts' prediction: {worst}");
    assert!(session.config().perturbations.iter().any(ModelConfig::is_control));
}

// ---- bad inputs: one clear error each ------------------------------------------------------

fn error(bytes: &[u8], name: &str) -> String {
    sample::read(bytes, name, ValueKind::Auto).expect_err("the file must be refused").to_string()
}

fn h5_error(file: &str, options: CellOptions) -> String {
    let p = path(&format!("tests/data/formats/{file}"));
    hdf5::read_path(std::path::Path::new(&p), file, &options).expect_err("the file must be refused").to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A gzip file of a few hundred kilobytes that decompresses to one byte over the sample limit.
fn bomb() -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..sample::MAX_SAMPLE_BYTES >> 20 {
        e.write_all(&zeros).unwrap();
    }
    e.write_all(b"0").unwrap();
    e.finish().unwrap()
}

/// `n` genes whose values fit no log base (every sample's back-transformed sum is far from 10⁶).
fn ambiguous(n: usize) -> Vec<u8> {
    let mut t = String::from("gene\tS1\n");
    for g in 0..n {
        t.push_str(&format!("GENE{g}\t0.5\n"));
    }
    t.into_bytes()
}

/// Each bad input, the words its error must hold (SECURITY.md names the cases).
const REFUSED: &[(&str, fn() -> String, &[&str])] = &[
    (
        "gzip_bomb",
        || {
            let b = bomb();
            assert!(b.len() < 1 << 20);
            error(&b, "x.tsv.gz")
        },
        &["decompresses to more than 268435456 bytes", "decompression bomb"],
    ),
    (
        "gzip_truncated",
        || {
            let b = bytes("tests/data/formats/airway.tsv.gz");
            error(&b[..b.len() / 2], "airway.tsv.gz")
        },
        &["the gzip stream is truncated", "copy it again"],
    ),
    (
        "gzip_bad_crc",
        || {
            let mut b = bytes("tests/data/formats/airway.tsv.gz");
            let n = b.len();
            b[n - 8] ^= 0xff;
            error(&b, "airway.tsv.gz")
        },
        &["the gzip data is corrupt"],
    ),
    ("log_base_ambiguous", || error(&ambiguous(6000), "x.tsv"), &["no single log base", "base 2: 2.485e3", "base e:", "base 10:", "--values log2-cpm"]),
    ("log_base_of_too_few_genes", || error(&ambiguous(50), "x.tsv"), &["50 genes are too few", "--values"]),
    (
        "log_header_contradicted_by_the_values",
        || {
            let t = String::from_utf8(bytes("tests/data/formats/airway_log2cpm.tsv")).unwrap().replacen("gene\tN61311", "gene\tlog_cpm", 1);
            error(t.as_bytes(), "x.tsv")
        },
        &["the header 'log_cpm' reads as ln(1 + CPM), but only log2(1 + CPM) brings", "--values"],
    ),
    ("log_base_stated_against_the_values", || {
        let b = bytes("tests/data/formats/airway_log2cpm.tsv");
        sample::read(&b, "x.tsv", ValueKind::LogCpm).unwrap_err().to_string()
    }, &["--values log-cpm reads the values as ln(1 + CPM), but only log2(1 + CPM) brings", "base 2: 1.000e6"]),
    ("hdf5_truncated", || error(b"\x89HDF\r\n\x1a\n\0\0\0\0", "pbmc.h5ad"), &["not a readable HDF5 file"]),
    ("loom", || error(b"\x89HDF\r\n\x1a\n\0\0\0\0", "pbmc.loom"), &["a loom file", "anndata.read_loom"]),
    (
        "anndata_normalized_x",
        || h5_error("kang.h5ad", CellOptions { layer: Some("X"), ..Default::default() }),
        &["X holds 0.00947", "for cell 'GTTGTCTATGCCAGGG-1', gene 'ZZZ3': not a raw count", "X looks normalized (it holds decimals)", "Name the matrix that holds raw counts: --layer counts, --layer raw"],
    ),
    (
        "anndata_missing_obs_column",
        || h5_error("kang.h5ad", CellOptions { groupby: Some("cell_type"), ..Default::default() }),
        &["obs has no column 'cell_type'; its columns: group, n_counts"],
    ),
    (
        "anndata_missing_layer",
        || h5_error("kang.h5ad", CellOptions { layer: Some("spliced"), ..Default::default() }),
        &["no layer 'spliced' in the file; name one of: --layer counts, --layer raw, --layer X"],
    ),
    (
        "anndata_missing_var_column",
        || h5_error("kang.h5ad", CellOptions { gene_names: Some("gene_symbols"), ..Default::default() }),
        &["raw/var has no column 'gene_symbols'"],
    ),
    (
        "hdf5_not_anndata",
        || h5_error("not_anndata.h5", CellOptions::default()),
        &["neither an AnnData .h5ad (X, obs and var at its top level) nor a 10x Genomics .h5 matrix (/matrix); its top level holds: values"],
    ),
    (
        "tenx_h5_with_an_obs_column",
        || h5_error("kang_10x.h5", CellOptions { groupby: Some("group"), ..Default::default() }),
        &["a 10x Genomics .h5 matrix has no obs columns or layers", "--groups"],
    ),
    ("seurat_rds", || error(&gzip(b"X\n\0\0\0\x03\0\x04\x04\0"), "seurat.rds"), &["an R data file (.rds/.RData)", "write.table"]),
    ("r_data", || error(b"RDX3\nX\n\0\0\0\x03", "session.RData"), &["an R data file", "export its counts in R"]),
    ("excel_xlsx", || error(b"PK\x03\x04\x14\0\x06\0", "counts.xlsx"), &["Excel .xlsx", "save the sheet as TSV or CSV"]),
    ("excel_xls", || error(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "counts.xls"), &["Excel .xls", "save the sheet as TSV or CSV"]),
    ("xz", || error(b"\xfd7zXZ\0\0\x04", "counts.tsv.xz"), &["xz-compressed", "xz -d"]),
    ("bzip2", || error(b"BZh91AY&SY", "counts.tsv.bz2"), &["bzip2-compressed", "bunzip2"]),
    ("zstd", || error(b"\x28\xb5\x2f\xfd\x04\0", "counts.tsv.zst"), &["zstd-compressed", "zstd -d"]),
    (
        "tenx_dir_with_a_wrong_size",
        || {
            let m = b"%%MatrixMarket matrix coordinate integer general\n5 2 1\n1 1 3\n";
            tenx::pseudobulk(&m[..], b"G1\tA\tGene Expression\n", b"AAA-1\nCCC-1\n", None, "s").unwrap_err().to_string()
        },
        &["matrix.mtx", "the matrix is 5 × 2, but features.tsv lists 1 features and barcodes.tsv 2 barcodes"],
    ),
];

#[test]
fn bad_inputs_are_refused_with_one_clear_error_each() {
    for (name, error, wants) in REFUSED {
        let error = error();
        for want in *wants {
            assert!(error.contains(want), "{name}: expected {want:?} in the error:\n  {error}");
        }
    }
}
