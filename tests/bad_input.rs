//! Every kind of bad input refcast can be given, one test per row of a table, each asserting the
//! words of the error: the line, gene, field, tensor or limit it names. Model files, sample files
//! and metadata through the library; checksums, size limits, backend fallback and atomic output
//! through the `refcast` command line. (tests/format.rs and tests/predict.rs keep a few older
//! checks of the same kind; this file is the complete list.)
//!
//! The last tests run the bodies of the fuzz targets (fuzz/src/bodies.rs) over deterministic
//! mutations of valid files: a quick stand-in for `cargo fuzz` that needs no extra tools.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use refcast::synthetic::{SyntheticSpec, random_model, random_model_v2, random_model_v3};
use refcast::format::{MAX_HEADER_BYTES, MAX_MODEL_BYTES, ModelFile};
use refcast::quant::DType;
use refcast::sample::{MAX_COLUMNS, MAX_LINE_BYTES, MAX_ROWS, MAX_SAMPLE_BYTES, MAX_STREAM_BYTES, SampleTable, ValueKind};
use refcast::session::{Request, Session};
use refcast::{Metadata, Signature, metadata};

#[path = "../fuzz/src/bodies.rs"]
mod bodies;

// ---------------------------------------------------------------------------------------------
// Inputs

/// A valid tiny model file (160 genes, Q8_0).
fn good() -> &'static [u8] {
    static GOOD: OnceLock<Vec<u8>> = OnceLock::new();
    GOOD.get_or_init(|| random_model(SyntheticSpec::tiny(DType::Q8_0)).to_bytes().unwrap())
}

/// A valid tiny format 2 model file (covariates, perturbation path, familiarity calibration).
fn good_v2() -> &'static [u8] {
    static GOOD: OnceLock<Vec<u8>> = OnceLock::new();
    GOOD.get_or_init(|| random_model_v2(SyntheticSpec::tiny(DType::Q8_0)).to_bytes().unwrap())
}

/// A valid tiny format 3 model file (format 2 and denoising thresholds).
fn good_v3() -> &'static [u8] {
    static GOOD: OnceLock<Vec<u8>> = OnceLock::new();
    GOOD.get_or_init(|| random_model_v3(SyntheticSpec::tiny(DType::Q8_0)).to_bytes().unwrap())
}

/// `bytes` with value `index` of the f32 tensor `name` replaced by `value`.
fn with_tensor_value(bytes: &[u8], name: &str, index: usize, value: f32) -> Vec<u8> {
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len(bytes)]).unwrap();
    let start = 8 + header_len(bytes) + header[name]["data_offsets"][0].as_u64().unwrap() as usize + 4 * index;
    let mut out = bytes.to_vec();
    out[start..start + 4].copy_from_slice(&value.to_le_bytes());
    out
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// Rewrites the JSON header of a file (keeping the data section).
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = header_len(bytes);
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&bytes[8 + n..]);
    out
}

/// Rewrites the refcast document inside the header.
fn with_doc(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    with_header(bytes, |h| {
        let mut doc: serde_json::Value = serde_json::from_str(h["__metadata__"]["refcast"].as_str().unwrap()).unwrap();
        edit(&mut doc);
        h["__metadata__"]["refcast"] = serde_json::Value::String(doc.to_string());
    })
}

/// Replaces the header bytes with `text` (padded with spaces to the same length).
fn with_raw_header(bytes: &[u8], text: &[u8]) -> Vec<u8> {
    let n = header_len(bytes);
    let mut out = bytes.to_vec();
    let mut h = text.to_vec();
    h.resize(n, b' ');
    out[8..8 + n].copy_from_slice(&h);
    out
}

/// `(begin, end)` of a tensor's bytes in the file.
fn span_of(bytes: &[u8], name: &str) -> (usize, usize) {
    let n = header_len(bytes);
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let o = &header[name]["data_offsets"];
    (8 + n + o[0].as_u64().unwrap() as usize, 8 + n + o[1].as_u64().unwrap() as usize)
}

fn model_error(bytes: &[u8]) -> String {
    ModelFile::from_bytes(bytes).expect_err("the model must be rejected").to_string()
}

fn sample_error(text: &[u8]) -> String {
    SampleTable::parse(text, ValueKind::Auto).expect_err("the sample must be rejected").to_string()
}

fn session() -> Session<refcast::CpuBackend> {
    Session::cpu(&ModelFile::from_bytes(good()).unwrap()).unwrap()
}

/// A counts table over the model's genes `0..n` (TSV with a header).
fn counts_table(n: usize) -> String {
    let mut t = String::from("gene\tcount\n");
    for g in 0..n {
        t += &format!("GENE{g}\t{}\n", 1 + g % 17);
    }
    t
}

/// The error of matching a (parseable) sample to the model.
fn reference_error(text: &str, kind: ValueKind) -> String {
    let table = SampleTable::parse(text.as_bytes(), kind).expect("the table itself parses");
    session().reference(&table, 0).expect_err("the sample must be rejected").to_string()
}

/// The error of a request with the given contexts and perturbations (prompt-only, so that the
/// technical and biological priors see the context).
fn metadata_error(context: Metadata, perturbation: Metadata) -> String {
    let req = Request::prompt(vec![context], vec![perturbation]);
    pollster::block_on(session().predict(&req)).expect_err("the metadata must be rejected").to_string()
}

// ---------------------------------------------------------------------------------------------
// The command line

fn refcast(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_refcast"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run refcast");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A directory with the tiny model and a matching counts sample.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors"), good()).unwrap();
        std::fs::write(dir.path().join("sample.tsv"), counts_table(160)).unwrap();
        Workdir { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    /// Runs `refcast predict` on the CPU with the model and the given extra arguments.
    fn predict(&self, extra: &[&str]) -> (bool, String, String) {
        let args = self.predict_args(&self.arg("sample.tsv"), extra);
        refcast(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    }
    /// The arguments of `refcast predict` on the CPU with the model and `sample`.
    fn predict_args(&self, sample: &str, extra: &[&str]) -> Vec<String> {
        let model = self.arg("model.safetensors");
        let mut args = vec!["predict", "--backend", "cpu", "--model", &model, "--sample", sample];
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    }
    /// Starts `refcast predict` on `sample` with the given standard streams.
    fn spawn_predict(&self, sample: &str, extra: &[&str], stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Child {
        Command::new(env!("CARGO_BIN_EXE_refcast")).args(self.predict_args(sample, extra)).stdin(stdin).stdout(stdout).stderr(stderr).spawn().unwrap()
    }
    /// The names of the files in the directory, sorted.
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }
}

/// The error `refcast` prints (and checks that it failed).
fn cli_error(w: &Workdir, args: &[&str]) -> String {
    let owned: Vec<String> = args.iter().map(|a| a.replace("{dir}", &w.dir.path().display().to_string())).collect();
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let (ok, _, stderr) = refcast(&args, &[]);
    assert!(!ok, "refcast {args:?} must fail; stderr: {stderr}");
    stderr
}

/// A sparse file of `len` bytes (no disk space used) for the size limits.
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The table

macro_rules! bad_inputs {
    ($($name:ident: $error:expr => [$($want:expr),+ $(,)?];)+) => {
        $(
            #[test]
            fn $name() {
                let error: String = $error;
                for want in [$($want.to_string()),+] {
                    assert!(error.contains(&want), "{}: expected {want:?} in the error:\n  {error}", stringify!($name));
                }
            }
        )+
        /// Names of every case in the table.
        const CASES: &[&str] = &[$(stringify!($name)),+];
    };
}

bad_inputs! {
    // ---- model files ----------------------------------------------------------------------
    model_shorter_than_the_header_length:
        model_error(&good()[..5]) => ["5 bytes", "too short for a safetensors header"];
    model_truncated_in_the_data:
        model_error(&good()[..good().len() - 10]) => ["data_offsets", "outside the", "data section", "truncated"];
    model_header_length_over_the_limit:
        model_error(&{ let mut b = good().to_vec(); b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes()); b })
            => ["header length 1099511627776", format!("{MAX_HEADER_BYTES}-byte limit")];
    model_header_length_past_the_end:
        model_error(&{ let mut b = good().to_vec(); b[..8].copy_from_slice(&(good().len() as u64).to_le_bytes()); b })
            => ["runs past the end", format!("{}-byte file", good().len())];
    model_header_not_json:
        model_error(&with_raw_header(good(), b"{\"decoder.logvar\": {\"dtype\": F32}")) => ["header is not valid JSON", "line 1 column"];
    model_header_not_utf8:
        model_error(&with_raw_header(good(), b"{\"\xff\": 1}")) => ["header is not UTF-8", "offset 2"];
    model_offsets_outside_the_file:
        model_error(&with_header(good(), |h| h["input.gene_mean"]["data_offsets"][1] = (1u64 << 40).into()))
            => ["input.gene_mean", "1099511627776", "outside the"];
    model_overlapping_tensors:
        model_error(&with_header(good(), |h| {
            // Two 160-value f32 vectors at the same bytes.
            h["decoder.logvar"]["data_offsets"] = h["input.gene_mean"]["data_offsets"].clone();
        })) => ["'decoder.logvar' and 'input.gene_mean' overlap", "data section is in both"];
    model_offsets_disagree_with_shape:
        model_error(&with_header(good(), |h| h["decoder.logvar"]["shape"] = serde_json::json!([161])))
            => ["'decoder.logvar' spans 640 bytes", "F32 [161] needs 644"];
    model_shape_disagrees_with_the_architecture:
        model_error(&with_header(good(), |h| h["decoder.logvar"]["shape"] = serde_json::json!([16, 10])))
            => ["tensor 'decoder.logvar' has shape [16, 10]", "architecture needs [160]"];
    model_unknown_dtype:
        model_error(&with_header(good(), |h| h["decoder.logvar"]["dtype"] = "Q3_K".into()))
            => ["tensor 'decoder.logvar' has dtype 'Q3_K'", "refcast reads F32, F16 and U8"];
    model_unexpected_tensor:
        model_error(&with_header(good(), |h| {
            let end = (good().len() - 8 - header_len(good())) as u64;
            h["payload.code"] = serde_json::json!({ "dtype": "F32", "shape": [0], "data_offsets": [end, end] });
        })) => ["unexpected tensor 'payload.code'", "not part of the architecture"];
    model_control_character_in_a_gene_symbol:
        model_error(&with_doc(good(), |d| d["genes"][7]["symbol"] = "GENE7\u{1b}]0;pwned\u{7}".into()))
            => ["gene 7's symbol contains the control character U+001B"];
    model_newline_in_a_perturbation_name:
        model_error(&with_doc(good(), |d| d["perturbations"][2]["name"] = "drug_b\n6 h".into()))
            => ["perturbations entry 2's name contains the control character U+000A"];
    model_bidirectional_override_in_a_vocabulary:
        model_error(&with_doc(good(), |d| d["priors"]["biological"]["categorical"][0]["values"][2] = "T\u{202e}".into()))
            => ["biological prior field 'cell_type': value 2 contains the control character U+202E"];
    model_unknown_format_version:
        model_error(&with_doc(good(), |d| d["format_version"] = 4.into())) => ["format version 4 is not supported", "reads versions 1, 2 and 3"];
    model_format3_without_its_thresholds:
        model_error(&with_doc(good_v2(), |d| d["format_version"] = 3.into())) => ["tensor 'denoise.threshold' is missing"];
    model_format2_with_thresholds:
        model_error(&with_doc(good_v3(), |d| d["format_version"] = 2.into()))
            => ["unexpected tensor 'denoise.threshold'", "not part of the architecture"];
    model_negative_denoising_threshold:
        model_error(&with_tensor_value(good_v3(), "denoise.threshold", 3, -0.25))
            => ["tensor 'denoise.threshold': gene 3 has threshold -0.25", "must be ≥ 0"];
    model_format1_with_a_familiarity_calibration:
        model_error(&with_doc(good(), |d| {
            d["familiarity"] = serde_json::json!({ "space": "encoder_mean", "centroids": [], "max_distance": 1, "min_reconstruction_r2": 0.5 });
        }))
            => ["'familiarity' is a format 2 field", "format_version 1"];
    model_format1_with_covariates:
        model_error(&with_doc(good(), |d| d["covariates"] = serde_json::json!([{ "name": "library_size", "transform": "log1p_zscore",
            "mean": 12, "std": 1.5, "min": 0, "max": 1e12 }])))
            => ["'covariates' is a format 2 field", "format_version 1"];
    model_format2_without_its_tensors:
        model_error(&with_doc(good(), |d| {
            d["format_version"] = 2.into();
            d["covariates"] = serde_json::json!([{ "name": "library_size", "transform": "log1p_zscore", "mean": 12, "std": 1.5, "min": 0, "max": 1e12 }]);
        })) => ["tensor 'decoder.perturbation.bias' is missing"];
    model_format2_without_covariates:
        model_error(&with_doc(good_v2(), |d| d["covariates"] = serde_json::json!([])))
            => ["format 2 model needs at least one entry in 'covariates'"];
    model_format2_covariate_the_runtime_cannot_supply:
        model_error(&with_doc(good_v2(), |d| d["covariates"][0]["name"] = "gc_content".into()))
            => ["covariate 'gc_content' is not one this refcast can supply", "knows: library_size"];
    model_format2_covariate_with_zero_std:
        model_error(&with_doc(good_v2(), |d| d["covariates"][0]["std"] = 0.into()))
            => ["covariate 'library_size'", "std > 0"];
    model_quantized_covariate_weight:
        model_error(&with_header(&with_doc(good_v2(), |d| {
            d["tensors"]["encoder.covariate.weight"] = serde_json::json!({ "dtype": "q8_0", "shape": [96, 1] });
        }), |h| {
            h["encoder.covariate.weight"]["dtype"] = "U8".into();
            h["encoder.covariate.weight"]["shape"] = serde_json::json!([384]);
        })) => ["tensor 'encoder.covariate.weight' is q8_0", "must be f32 or f16"];
    model_familiarity_in_an_unknown_space:
        model_error(&with_doc(good_v2(), |d| d["familiarity"]["space"] = "pca".into()))
            => ["familiarity.space is 'pca'", "reads 'encoder_mean'"];
    model_familiarity_without_centroids:
        model_error(&with_doc(good_v2(), |d| d["familiarity"]["centroids"] = serde_json::json!([])))
            => ["familiarity.centroids is empty"];
    model_familiarity_centroid_of_the_wrong_width:
        model_error(&with_doc(good_v2(), |d| { d["familiarity"]["centroids"][0]["mean"].as_array_mut().unwrap().pop(); }))
            => ["familiarity.centroids[0].mean has 7 values", "technical + biological = 8"];
    model_familiarity_centroid_without_a_name:
        model_error(&with_doc(good_v2(), |d| d["familiarity"]["centroids"][0]["context"] = " ".into()))
            => ["familiarity.centroids[0].context is empty"];
    model_familiarity_control_character_in_a_context:
        model_error(&with_doc(good_v2(), |d| d["familiarity"]["centroids"][0]["context"] = "T cells\u{1b}[2J".into()))
            => ["familiarity.centroids[0].context contains the control character U+001B"];
    model_familiarity_negative_distance_threshold:
        model_error(&with_doc(good_v2(), |d| d["familiarity"]["max_distance"] = (-1.5).into()))
            => ["familiarity.max_distance = -1.5", "finite number ≥ 0"];
    model_familiarity_missing_threshold:
        model_error(&with_doc(good_v2(), |d| { d["familiarity"].as_object_mut().unwrap().remove("min_reconstruction_r2"); }))
            => ["refcast metadata", "missing field `min_reconstruction_r2`"];
    model_not_a_refcast_model:
        model_error(&with_header(good(), |h| h["__metadata__"] = serde_json::json!({ "format": "pt" })))
            => ["no 'refcast' entry", "is this a refcast model?"];
    model_gene_vocabulary_size_mismatch:
        model_error(&with_doc(good(), |d| d["genes"].as_array_mut().unwrap().truncate(150)))
            => ["gene list has 150 entries", "architecture.genes is 160"];
    model_prior_vocabulary_size_mismatch:
        model_error(&with_doc(good(), |d| d["priors"]["biological"]["categorical"][0]["values"].as_array_mut().unwrap().push("NK".into())))
            => ["tensor 'prior.biological.embedding'", "has shape [7, 32]", "architecture needs [8, 32]"];
    model_quantized_tensor_size_mismatch:
        model_error(&with_doc(good(), |d| d["tensors"]["decoder.head.weight"]["dtype"] = "q4_0".into()))
            => ["tensor 'decoder.head.weight' holds", "q4_0 [160, 96] needs"];
    model_architecture_out_of_range:
        model_error(&with_doc(good(), |d| d["architecture"]["encoder"]["hidden"] = 0.into())) => ["architecture.encoder.hidden = 0", "outside 1..="];
    model_known_perturbation_outside_its_vocabulary:
        model_error(&with_doc(good(), |d| d["perturbations"][0]["metadata"]["perturbation"] = "drug_z".into()))
            => ["perturbations entry 'drug_a 6 h'", "perturbation 'drug_z' is not known"];
    model_known_perturbation_time_out_of_range:
        model_error(&with_doc(good(), |d| d["perturbations"][1]["metadata"]["time_hours"] = 1000.into()))
            => ["perturbations entry 'drug_a 24 h'", "time_hours = 1000", "[0, 168]"];
    model_nan_weight:
        model_error(&{
            let mut b = good().to_vec();
            let (begin, _) = span_of(&b, "decoder.logvar");
            b[begin + 12..begin + 16].copy_from_slice(&f32::NAN.to_le_bytes());
            b
        }) => ["tensor 'decoder.logvar'", "non-finite value", "element 3"];
    model_infinite_quantization_scale:
        model_error(&{
            let mut b = good().to_vec();
            let (begin, _) = span_of(&b, "decoder.head.weight");
            b[begin + 34..begin + 36].copy_from_slice(&[0x00, 0x7c]); // f16 +infinity
            b
        }) => ["tensor 'decoder.head.weight'", "non-finite value", "element 32"];
    model_wrong_checksum_in_the_manifest: {
        let w = Workdir::new();
        std::fs::write(w.path("SHA256SUMS"), format!("{}  model.safetensors\n", "ab".repeat(32))).unwrap();
        cli_error(&w, &["info", "{dir}/model.safetensors"])
    } => ["model.safetensors: checksum mismatch", "SHA256SUMS says abab", "damaged"];
    model_wrong_checksum_on_the_command_line: {
        let w = Workdir::new();
        cli_error(&w, &["info", "{dir}/model.safetensors", "--sha256", &"0".repeat(64)])
    } => ["checksum mismatch", "--sha256 says 0000"];
    model_gzip_compressed: {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, good()).unwrap();
        model_error(&gz.finish().unwrap())
    } => ["this file is gzip-compressed, not a refcast model (.safetensors): decompress it first"];
    model_excel_workbook: model_error(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00") => ["this file is a ZIP archive, such as an Excel .xlsx workbook, not a refcast model"];
    model_hdf5_file: model_error(b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00") => ["this file is an HDF5 file, such as an AnnData .h5ad or a 10x .h5, not a refcast model"];
    model_checksum_manifest_that_is_a_fifo: {
        let w = Workdir::new();
        mkfifo(&w.path("SHA256SUMS"));
        // Opening a FIFO blocks until a writer comes: the run must not wait for one.
        cli_error(&w, &["info", "{dir}/model.safetensors"])
    } => ["SHA256SUMS: not a regular file, so not a checksum manifest"];
    model_checksum_manifest_that_is_a_directory: {
        let w = Workdir::new();
        std::fs::create_dir(w.path("SHA256SUMS")).unwrap();
        cli_error(&w, &["info", "{dir}/model.safetensors"])
    } => ["SHA256SUMS: not a regular file"];
    model_malformed_checksum_manifest: {
        let w = Workdir::new();
        std::fs::write(w.path("SHA256SUMS"), "# models\nnot-a-digest  model.safetensors\n").unwrap();
        cli_error(&w, &["info", "{dir}/model.safetensors"])
    } => ["SHA256SUMS line 2", "not a SHA-256 digest"];
    model_checksum_manifest_over_its_size_limit: {
        let w = Workdir::new();
        sparse(&w.path("SHA256SUMS"), refcast::format::checksum::MAX_MANIFEST_BYTES + 1);
        cli_error(&w, &["info", "{dir}/model.safetensors"])
    } => ["SHA256SUMS", "too large for a checksum manifest"];
    model_file_over_the_size_limit: {
        let w = Workdir::new();
        sparse(&w.path("huge.safetensors"), MAX_MODEL_BYTES + 1);
        cli_error(&w, &["info", "{dir}/huge.safetensors"])
    } => [format!("{} bytes is over the {MAX_MODEL_BYTES}-byte limit for a model file", MAX_MODEL_BYTES + 1)];

    // ---- sample files ---------------------------------------------------------------------
    sample_empty:
        sample_error(b"") => ["the file is empty"];
    sample_only_comments_and_blank_lines:
        sample_error(b"# exported by a tool\n\n   \n") => ["the file is empty"];
    sample_header_only:
        sample_error(b"gene\tcount\n") => ["header (line 1)", "no gene rows"];
    sample_wrong_delimiter:
        sample_error(b"gene;count\nGENE0;5\n") => ["line 1", "no tab or comma found"];
    sample_mixed_delimiters:
        sample_error(b"gene\tcount\nGENE0\t5\nGENE1,7\n") => ["line 3", "1 fields, expected 2", "separated by commas", "line 1 by tabs"];
    sample_ragged_row:
        sample_error(b"gene,a,b\nGENE0,1,2\nGENE1,3\n") => ["line 3", "2 fields, expected 3"];
    sample_not_utf8:
        sample_error(b"gene\tcount\nGENE0\t1\nGEN\xe9\t2\n") => ["line 3", "not UTF-8"];
    sample_terminal_escape_in_a_gene_name:
        sample_error(b"gene\tcount\nGENE0\t1\nGENE\x1b[2J\t2\n") => ["line 3: contains the control character U+001B"];
    sample_control_character_in_the_header:
        sample_error(b"gene\tcount\x07\nGENE0\t1\n") => ["line 1: contains the control character U+0007"];
    sample_non_numeric:
        sample_error(b"gene\tcount\nGENE0\t1\nGENE1\tseven\n") => ["line 3, column 2", "gene 'GENE1'", "'seven' is not a number"];
    sample_nan:
        sample_error(b"gene\tcount\nGENE0\t1\nGENE1\tNaN\n") => ["line 3, column 2", "'GENE1'", "NaN is not a finite number"];
    sample_infinity:
        sample_error(b"gene,a,b\nGENE0,1,inf\n") => ["line 2, column 3", "'GENE0'", "inf is not a finite number"];
    sample_negative_count:
        sample_error(b"gene\tcount\nGENE0\t1\nGENE1\t-3\n") => ["line 3", "gene 'GENE1'", "negative count (-3)"];
    sample_counts_summing_to_zero:
        sample_error(b"gene\tcount\nGENE0\t0\nGENE1\t0\n") => ["sample 'count'", "library size 0"];
    sample_counts_overflowing_the_library_size:
        sample_error(b"gene\tcount\nGENE0\t1e308\nGENE1\t1e308\n") => ["sample 'count'", "more reads than a sequencing library holds", "gene 'GENE0'"];
    sample_one_implausible_count:
        sample_error(format!("{}GENE999\t1e16\n", counts_table(150)).as_bytes())
            => ["line 152: sample 'count'", "more reads than a sequencing library holds", "gene 'GENE999' with 1.000e16"];
    sample_one_gene_holding_nearly_every_read:
        sample_error(format!("{}GENE999\t1e9\n", counts_table(150)).as_bytes())
            => ["line 152: sample 'count': gene 'GENE999' holds 100.0 % of the sample's", "implausible library"];
    sample_a_300_digit_count_is_quoted_short: {
        let e = sample_error(format!("gene\tcount\nGENE0\t1\nGENE1\t-{}\n", "9".repeat(300)).as_bytes());
        assert!(e.len() < 150, "{e}");
        e
    } => ["line 3", "gene 'GENE1'", "negative count (-1.000000e300)"];
    sample_a_300_digit_log_cpm_is_quoted_short: {
        let e = reference_error(&format!("gene\tlog_cpm\nGENE0\t1{}\n", "0".repeat(300)), ValueKind::LogCpm);
        assert!(e.len() < 200, "{e}");
        e
    } => ["gene 'GENE0'", "has log-CPM 1.000000e300: above 13.9"];
    sample_gene_name_over_the_length_limit: {
        let e = sample_error(format!("gene\tcount\nGENE0\t1\n{}\t2\n", "G".repeat(200_000)).as_bytes());
        assert!(e.len() < 200, "{e}");
        e
    } => ["line 3: a gene name of 200000 bytes ('GGGG", "…'), over the limit of 1024 bytes"];
    sample_name_over_the_length_limit: {
        let e = sample_error(format!("gene\t{}\nGENE0\t1\n", "c".repeat(200_000)).as_bytes());
        assert!(e.len() < 200, "{e}");
        e
    } => ["line 1: a sample name of 200000 bytes ('cccc", "over the limit of 1024 bytes"];
    sample_gzip_compressed:
        sample_error(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03") => ["gzip-compressed", "gunzip"];
    sample_excel_workbook:
        sample_error(b"PK\x03\x04\x14\x00\x06\x00") => ["ZIP archive", ".xlsx", "TSV or CSV"];
    sample_h5ad:
        sample_error(b"\x89HDF\r\n\x1a\n") => ["HDF5", ".h5ad", "read it as a sample file", "--sample"];
    sample_duplicate_column_names:
        sample_error(b"gene\tA\tB\tA\nGENE0\t1\t2\t3\n") => ["line 1", "columns 2 and 4 are both named 'A'", "rename one"];
    sample_long_cell_quoted_in_part:
        sample_error(format!("gene\tcount\nGENE0\t1\nGENE1\t{}\n", "x".repeat(200_000)).as_bytes())
            => ["line 3, column 2", "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' is not a number"];
    signature_gzip_compressed:
        Signature::parse(b"\x1f\x8b\x08\x00", None).unwrap_err().to_string() => ["invalid signature", "gzip-compressed"];
    model_that_is_a_sample_file:
        model_error(counts_table(160).as_bytes()) => ["text file ('gene", "not a refcast model", "a sample or signature given as the model?"];
    model_checksum_manifest_with_escape_codes: {
        let w = Workdir::new();
        std::fs::write(w.path("SHA256SUMS"), "\x1b]0;pwned\x07\x1b[2J\n").unwrap();
        cli_error(&w, &["info", "{dir}/model.safetensors"])
    } => ["SHA256SUMS line 1", "\\u{1b}]0;pwned\\u{7}"];
    sample_negative_log_cpm:
        reference_error("gene\tlog_cpm\nGENE0\t2.5\nGENE1\t-1.5\n", ValueKind::Auto) => ["gene 'GENE1'", "log-CPM -1.5", "never negative"];
    sample_log_cpm_above_the_maximum:
        reference_error("gene\tvalue\nGENE0\t2.5\nGENE1\t5000.5\n", ValueKind::LogCpm) => ["gene 'GENE1'", "log-CPM 5000.5", "above 13.9", "--values counts"];
    sample_duplicate_gene:
        sample_error(b"gene\tcount\nGENE0\t1\nGENE1\t2\ngene0\t3\n") => ["line 4", "gene 'gene0' appears twice", "first on line 2"];
    sample_duplicate_gene_by_symbol_and_ensembl_id:
        reference_error(&format!("{}ENSG00000100000\t4\n", counts_table(160)), ValueKind::Auto)
            => ["gene 'ENSG00000100000' maps to model gene 0", "already gave"];
    sample_no_gene_in_common:
        reference_error("gene\tcount\nTP53\t10\nMYC\t3\n", ValueKind::Auto) => ["no gene of sample 'count'", "first genes: TP53, MYC"];
    sample_too_few_genes:
        reference_error(&counts_table(31), ValueKind::Auto) => ["matches only 31 of the model's 160 genes", "at least 32 (20%)"];
    sample_column_that_does_not_exist: {
        let table = SampleTable::parse(counts_table(160).as_bytes(), ValueKind::Auto).unwrap();
        session().reference(&table, 3).unwrap_err().to_string()
    } => ["no sample 3", "1 value column"];
    sample_too_many_columns:
        sample_error(format!("gene{}\nGENE0{}\n", "\tx".repeat(MAX_COLUMNS + 1), "\t1".repeat(MAX_COLUMNS + 1)).as_bytes())
            => ["line 1", format!("{} value columns, over the limit of {MAX_COLUMNS}", MAX_COLUMNS + 1)];
    sample_too_many_rows:
        sample_error({
            let mut t = String::with_capacity(12 * (MAX_ROWS + 2));
            for g in 0..=MAX_ROWS {
                t += &format!("G{g},1\n");
            }
            t
        }.as_bytes()) => [format!("line {}: more than {MAX_ROWS} gene rows", MAX_ROWS + 1)];
    sample_file_over_the_size_limit: {
        let w = Workdir::new();
        sparse(&w.path("huge.tsv"), MAX_SAMPLE_BYTES as u64 + 1);
        cli_error(&w, &["screen", "--backend", "cpu", "--model", "{dir}/model.safetensors", "--sample", "{dir}/huge.tsv"])
    } => [format!("{} bytes is over the {MAX_SAMPLE_BYTES}-byte limit for a sample file", MAX_SAMPLE_BYTES + 1)];
    streamed_sample_file_over_the_size_limit: {
        let w = Workdir::new();
        sparse(&w.path("huge.tsv"), MAX_STREAM_BYTES + 1);
        cli_error(&w, &["predict", "--backend", "cpu", "--model", "{dir}/model.safetensors", "--sample", "{dir}/huge.tsv"])
    } => [format!("{} bytes is over the {MAX_STREAM_BYTES}-byte limit for a sample file", MAX_STREAM_BYTES + 1)];
    streamed_sample_line_over_the_length_limit: {
        let w = Workdir::new();
        sparse(&w.path("zeros.tsv"), MAX_LINE_BYTES as u64 + 2);
        cli_error(&w, &["predict", "--backend", "cpu", "--model", "{dir}/model.safetensors", "--sample", "{dir}/zeros.tsv"])
    } => [format!("line 1: longer than {MAX_LINE_BYTES} bytes, the limit for a line")];
    sample_endless_standard_input_over_the_size_limit: {
        let w = Workdir::new();
        let args = w.predict_args("-", &[]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_refcast"))
            .arg("screen")
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // An endless pipe, as from `yes`: the writer stops when refcast closes its end.
        std::thread::spawn(move || {
            let chunk = "GENE0\t5\n".repeat(8192);
            while stdin.write_all(chunk.as_bytes()).is_ok() {}
        });
        let (status, _, stderr) = finish_within(child, 60);
        assert_eq!(status.code(), Some(1), "{stderr}");
        stderr
    } => [format!("standard input: more than {MAX_SAMPLE_BYTES} bytes"), "limit for a sample file", "split the samples"];
    streamed_endless_standard_input_stops_at_the_row_limit: {
        let w = Workdir::new();
        let mut child = w.spawn_predict("-", &[], Stdio::piped(), Stdio::null(), Stdio::piped());
        let mut stdin = child.stdin.take().unwrap();
        // Endless distinct genes: the stream holds no table, so the row limit stops it.
        std::thread::spawn(move || {
            let mut text = String::new();
            for g in 0.. {
                text += &format!("G{g}\t5\n");
                if text.len() > 1 << 16 {
                    if stdin.write_all(text.as_bytes()).is_err() {
                        break;
                    }
                    text.clear();
                }
            }
        });
        let (status, _, stderr) = finish_within(child, 120);
        assert_eq!(status.code(), Some(1), "{stderr}");
        stderr
    } => ["standard input", format!("line {}: more than {MAX_ROWS} gene rows, the limit for a sample file", MAX_ROWS + 1)];

    // ---- metadata -------------------------------------------------------------------------
    metadata_unknown_cell_type_suggests_the_nearest:
        metadata_error(metadata! { "cell_type" => "Monoo" }, metadata! { "perturbation" => "drug_a" })
            => ["cell_type 'Monoo' is not known", "did you mean 'Mono'?", "known values: unknown, B, T, Mono"];
    metadata_unknown_perturbation_suggests_the_nearest:
        metadata_error(Metadata::new(), metadata! { "perturbation" => "drug-b" }) => ["perturbation 'drug-b'", "did you mean 'drug_b'?"];
    metadata_unknown_field_suggests_the_nearest:
        metadata_error(metadata! { "celltype" => "B" }, metadata! { "perturbation" => "drug_a" })
            => ["unknown metadata field 'celltype'", "did you mean 'cell_type'?"];
    metadata_time_out_of_range:
        metadata_error(Metadata::new(), metadata! { "perturbation" => "drug_a", "time_hours" => 500.0 })
            => ["time_hours = 500", "outside the range", "[0, 168] h"];
    metadata_time_negative:
        metadata_error(Metadata::new(), metadata! { "perturbation" => "drug_a", "time_hours" => -1.0 }) => ["time_hours = -1", "[0, 168]"];
    metadata_time_not_a_number:
        metadata_error(Metadata::new(), metadata! { "perturbation" => "drug_a", "time_hours" => "soon" })
            => ["time_hours must be a number", "'soon'"];
    metadata_name_where_a_number_is_expected:
        metadata_error(metadata! { "cell_type" => 3.0 }, metadata! { "perturbation" => "drug_a" })
            => ["cell_type (biological field) must be a name", "number 3"];
    request_with_too_many_samples: {
        let table = SampleTable::parse(counts_table(160).as_bytes(), ValueKind::Auto).unwrap();
        let mut s = session();
        let mut req = Request::conditioned(vec![s.reference(&table, 0).unwrap()], vec![metadata! { "perturbation" => "drug_a" }]);
        req.sampling = refcast::Sampling::Samples { num_samples: 1 << 40, seed: 1 };
        pollster::block_on(s.predict(&req)).unwrap_err().to_string()
    } => ["1099511627776 sample(s) × 1 reference(s) × 1 perturbation(s) × 160 genes", "over the limit of 67108864", "split the request"];
    request_with_too_many_samples_on_the_command_line: {
        let w = Workdir::new();
        let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--num-samples", "100000000000000"]);
        assert!(!ok);
        stderr
    } => ["--num-samples 100000000000000: 100000000000000 draws", "over the limit", "draw at most"];
    request_with_a_negative_library_size: {
        let mut req = Request::prompt(vec![Metadata::new()], vec![metadata! { "perturbation" => "drug_a" }]);
        req.library_size = -5.0;
        pollster::block_on(session().predict(&req)).unwrap_err().to_string()
    } => ["library_size must be a positive number, got -5"];
    metadata_unknown_perturbation_on_the_command_line: {
        let w = Workdir::new();
        let (ok, _, stderr) = w.predict(&["--perturbation", "drug_aa"]);
        assert!(!ok);
        stderr
    } => ["perturbation 'drug_aa' is not known", "did you mean 'drug_a'?"];
    metadata_time_out_of_range_on_the_command_line: {
        let w = Workdir::new();
        let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--set", "time_hours=inf"]);
        assert!(!ok);
        stderr
    } => ["time_hours = inf", "[0, 168] h"];
}

#[test]
fn the_table_has_at_least_twenty_cases_of_each_kind_in_all() {
    assert!(CASES.len() >= 20, "{} cases", CASES.len());
    for kind in ["model_", "sample_", "metadata_"] {
        assert!(CASES.iter().filter(|c| c.starts_with(kind)).count() >= 5, "too few {kind} cases");
    }
}

// ---------------------------------------------------------------------------------------------
// Structural promises (SECURITY.md)

#[test]
fn no_networking_crate_in_the_dependency_tree() {
    // The sample must never leave the process: nothing refcast links can open a connection.
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let names: Vec<&str> = lock.lines().filter_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"')).collect();
    assert!(names.contains(&"wgpu") && names.contains(&"sha2"), "Cargo.lock was read");
    let networking = ["hyper", "reqwest", "ureq", "curl", "isahc", "surf", "mio", "socket2", "h2", "rustls", "openssl", "native-tls", "tungstenite"];
    for n in networking {
        assert!(!names.contains(&n), "Cargo.lock contains the networking crate '{n}'");
    }
}

#[test]
fn every_test_security_md_names_exists() {
    // SECURITY.md says which test checks each promise: those tests must exist.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("SECURITY.md")).unwrap();
    let mut sources = String::new();
    for e in std::fs::read_dir(root.join("tests")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            sources += &std::fs::read_to_string(p).unwrap();
        }
    }
    let mut named = 0;
    for row in doc.lines().filter(|l| l.starts_with("| ") && l.as_bytes().get(2).is_some_and(u8::is_ascii_digit)) {
        let checked_by = row.trim_end_matches('|').rsplit('|').next().unwrap();
        for (i, token) in checked_by.split('`').enumerate() {
            let is_name = token.contains('_') && token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '*');
            if i % 2 == 0 || !is_name {
                continue;
            }
            named += 1;
            let target = root.join("fuzz/fuzz_targets").join(format!("{token}.rs"));
            let found = match token.strip_suffix('*') {
                Some(prefix) => sources.contains(&format!("    {prefix}")),
                None => sources.contains(&format!("fn {token}(")) || sources.contains(&format!("\n    {token}:")) || target.exists(),
            };
            assert!(found, "SECURITY.md names `{token}`, which is not a test");
        }
    }
    assert!(named >= 30, "only {named} tests named in SECURITY.md");
}

#[test]
fn no_unsafe_code_in_the_parsers() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, found);
            } else if p.extension().is_some_and(|x| x == "rs") {
                for (i, line) in std::fs::read_to_string(&p).unwrap().lines().enumerate() {
                    let code = line.split("//").next().unwrap();
                    if code.contains("unsafe ") || code.contains("unsafe{") {
                        found.push(format!("{}:{}", p.display(), i + 1));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    walk(&src.join("format"), &mut found);
    walk(&src.join("sample"), &mut found);
    walk(&src.join("cli"), &mut found);
    for file in ["metadata.rs", "signature.rs", "quant.rs", "main.rs"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
        walk(dir.path(), &mut found);
    }
    assert!(found.is_empty(), "unsafe code in: {found:?} (update SECURITY.md if this is intended)");
}

// ---------------------------------------------------------------------------------------------
// Checksums that match, and output files

#[test]
fn a_matching_checksum_passes_and_the_shipped_manifest_matches_the_shipped_models() {
    let w = Workdir::new();
    let digest = refcast::format::checksum::sha256_hex(good());
    std::fs::write(w.path("SHA256SUMS"), format!("{digest} *model.safetensors\n")).unwrap();
    let (ok, _, stderr) = refcast(&["info", &w.arg("model.safetensors")], &[]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = refcast(&["info", &w.arg("model.safetensors"), "--sha256", &digest.to_uppercase()], &[]);
    assert!(ok, "{stderr}");
    // The manifest in models/ is checked on every run of the shipped models: it must be current.
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let manifest = std::fs::read_to_string(models.join("SHA256SUMS")).unwrap();
    for entry in std::fs::read_dir(&models).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let name = path.file_name().unwrap().to_str().unwrap();
            let listed = refcast::format::checksum::manifest_entry(&manifest, name).unwrap();
            let listed = listed.unwrap_or_else(|| panic!("models/SHA256SUMS does not list {name}"));
            assert_eq!(refcast::format::checksum::sha256_hex(&std::fs::read(&path).unwrap()), listed, "{name}");
        }
    }
}

#[test]
fn a_successful_run_writes_the_output_and_leaves_no_temporary_file() {
    let w = Workdir::new();
    let out = w.arg("out.tsv");
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", &out]);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 161, "a header and one line per gene");
    assert_eq!(w.listing(), ["model.safetensors", "out.tsv", "sample.tsv"]);
}

#[test]
fn a_failing_run_leaves_no_partial_output_and_keeps_an_existing_file() {
    let w = Workdir::new();
    let out = w.arg("out.tsv");
    std::fs::write(&out, "previous results\n").unwrap();
    // Fails after the model loads: a bad perturbation, then a bad sample.
    let (ok, _, stderr) = w.predict(&["--perturbation", "no_such_thing", "--output", &out]);
    assert!(!ok && stderr.contains("no_such_thing"), "{stderr}");
    std::fs::write(w.path("bad.tsv"), "gene\tcount\nGENE0\t-1\n").unwrap();
    let (ok, _, stderr) = refcast(
        &["predict", "--backend", "cpu", "--model", &w.arg("model.safetensors"), "--sample", &w.arg("bad.tsv"), "--output", &out],
        &[],
    );
    assert!(!ok && stderr.contains("negative count"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous results\n");
    assert_eq!(w.listing(), ["bad.tsv", "model.safetensors", "out.tsv", "sample.tsv"]);
}

#[test]
fn a_run_that_fails_while_writing_removes_its_temporary_file() {
    let w = Workdir::new();
    // The output path is a directory that is not empty: writing succeeds, the rename fails.
    let out = w.path("results");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", &out.display().to_string()]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("cannot write") && stderr.contains("results"), "{stderr}");
    assert_eq!(w.listing(), ["model.safetensors", "results", "sample.tsv"]);
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "x");
}

#[test]
fn without_a_gpu_adapter_auto_falls_back_to_the_cpu_with_a_message() {
    let w = Workdir::new();
    // A wgpu backend this platform does not have: no adapter can be found.
    let absent = if cfg!(target_os = "macos") { "dx12" } else { "metal" };
    let args = ["predict", "--backend", "auto", "--perturbation", "drug_a", "--model", &w.arg("model.safetensors"), "--sample", &w.arg("sample.tsv")];
    let (ok, stdout, stderr) = refcast(&args, &[("WGPU_BACKEND", absent)]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("no usable GPU") && stderr.contains("using the CPU backend"), "{stderr}");
    assert_eq!(stdout.lines().count(), 161);
    let cpu = refcast(&["predict", "--backend", "cpu", "--perturbation", "drug_a", "--model", &w.arg("model.safetensors"), "--sample", &w.arg("sample.tsv")], &[]);
    assert_eq!(stdout, cpu.1, "the fallback gives the CPU backend's numbers");
    // Asking for the GPU explicitly is an error that says so.
    let mut args = args.to_vec();
    args[2] = "gpu";
    let (ok, _, stderr) = refcast(&args, &[("WGPU_BACKEND", absent)]);
    assert!(!ok && stderr.contains("GPU backend was requested") && stderr.contains("no GPU adapter"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Output that never destroys what it replaces, bounded reads, closed and full standard streams

/// Waits for `child` at most `seconds`, then kills it: a test must fail, never hang.
fn finish_within(mut child: Child, seconds: u64) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("refcast still ran after {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Starts refcast on a sample that is a FIFO, `sample.fifo`: it waits there, blocked, until the
/// test writes the sample.
#[cfg(unix)]
fn spawn_on_a_fifo_sample(w: &Workdir, extra: &[&str]) -> Child {
    let fifo = w.path("sample.fifo");
    mkfifo(&fifo);
    w.spawn_predict(&fifo.display().to_string(), extra, Stdio::null(), Stdio::piped(), Stdio::piped())
}

#[test]
fn an_output_naming_an_input_is_refused_and_the_input_is_untouched() {
    let w = Workdir::new();
    std::fs::hard_link(w.path("model.safetensors"), w.path("same-model.bin")).unwrap();
    for (flag, out, input) in [
        ("--output", "sample.tsv", "the sample"),
        ("--output", "same-model.bin", "the model"),
        ("--familiarity", "sample.tsv", "the sample"),
    ] {
        let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", flag, &w.arg(out)]);
        assert!(!ok, "{flag} {out} must be refused");
        assert!(stderr.contains(&format!("the output {} is {input}", w.arg(out))) && stderr.contains("name another output file"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(w.path("sample.tsv")).unwrap(), counts_table(160));
    assert_eq!(std::fs::read(w.path("model.safetensors")).unwrap(), good());
}

#[cfg(unix)]
#[test]
fn a_replaced_output_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let w = Workdir::new();
    let out = w.path("private.tsv");
    std::fs::write(&out, "previous results\n").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", &w.arg("private.tsv")]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 161);
    assert_eq!(mode(&out), 0o600, "a private file stays private");
}

#[cfg(unix)]
#[test]
fn special_files_and_standard_output_are_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let w = Workdir::new();
    // A device: replacing /dev/null by a plain file would break the system (as root).
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", "/dev/null"]);
    assert!(ok, "{stderr}");
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // A FIFO: its reader gets the prediction, and it stays a FIFO.
    let fifo = w.path("out.fifo");
    mkfifo(&fifo);
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read_to_string(fifo).unwrap()
    });
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", &fifo.display().to_string()]);
    assert!(ok, "{stderr}");
    assert!(is_fifo(&fifo), "the FIFO was replaced");
    assert_eq!(reader.join().unwrap().lines().count(), 161);
    // `-`: standard output, not a file named "-".
    let (ok, stdout, stderr) = w.predict(&["--perturbation", "drug_a", "--output", "-"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 161);
    assert_eq!(w.listing(), ["model.safetensors", "out.fifo", "sample.tsv"]);
}

#[cfg(unix)]
#[test]
fn a_symlinked_output_replaces_the_file_it_names_and_keeps_the_link() {
    let w = Workdir::new();
    std::fs::create_dir(w.path("results")).unwrap();
    std::fs::write(w.path("results/real.tsv"), "previous results\n").unwrap();
    std::os::unix::fs::symlink("results/real.tsv", w.path("link.tsv")).unwrap();
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", &w.arg("link.tsv")]);
    assert!(ok, "{stderr}");
    assert!(std::fs::symlink_metadata(w.path("link.tsv")).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(std::fs::read_to_string(w.path("results/real.tsv")).unwrap().lines().count(), 161);
    assert_eq!(std::fs::read_dir(w.path("results")).unwrap().count(), 1, "no temporary file is left");
    // A link to nothing is refused, not followed to create a file wherever it points.
    std::os::unix::fs::symlink("missing/elsewhere.tsv", w.path("dangling.tsv")).unwrap();
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", &w.arg("dangling.tsv")]);
    assert!(!ok && stderr.contains("symbolic link to missing/elsewhere.tsv, which does not exist"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_link_planted_at_a_guessable_temporary_name_is_not_followed() {
    let w = Workdir::new();
    std::fs::write(w.path("victim.txt"), "precious\n").unwrap();
    let child = spawn_on_a_fifo_sample(&w, &["--perturbation", "drug_a", "--output", &w.arg("out.tsv")]);
    // The name refcast once used for its temporary file: `.NAME.<pid>.tmp`.
    std::os::unix::fs::symlink(w.path("victim.txt"), w.path(&format!(".out.tsv.{}.tmp", child.id()))).unwrap();
    std::fs::write(w.path("sample.fifo"), counts_table(160)).unwrap();
    let (status, _, stderr) = finish_within(child, 120);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read_to_string(w.path("victim.txt")).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(w.path("out.tsv")).unwrap().is_file(), "the output is a file, not the planted link");
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_removes_its_temporary_file() {
    for (signal, status) in [("TERM", 143), ("INT", 130)] {
        let w = Workdir::new();
        let mut child = spawn_on_a_fifo_sample(&w, &["--perturbation", "drug_a", "--output", &w.arg("out.tsv")]);
        // refcast creates its temporary file before it reads the sample: it waits there.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !w.listing().iter().any(|n| n.ends_with(".tmp")) {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("no temporary file appeared: {:?}", w.listing());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(Command::new("kill").args([format!("-{signal}"), child.id().to_string()]).status().unwrap().success());
        let (exit, _, stderr) = finish_within(child, 60);
        assert_eq!(exit.code(), Some(status), "SIG{signal}: {stderr}");
        assert_eq!(w.listing(), ["model.safetensors", "sample.fifo", "sample.tsv"], "SIG{signal}");
    }
}

#[cfg(unix)]
#[test]
fn an_endless_device_as_the_sample_stops_at_the_size_limit() {
    let w = Workdir::new();
    let args = w.predict_args("/dev/zero", &[]);
    let child = Command::new(env!("CARGO_BIN_EXE_refcast")).arg("screen").args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (status, _, stderr) = finish_within(child, 60);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("/dev/zero: more than {MAX_SAMPLE_BYTES} bytes, over the {MAX_SAMPLE_BYTES}-byte limit")), "{stderr}");
    // `predict` streams the sample: the line limit stops a line without end.
    let child = w.spawn_predict("/dev/zero", &[], Stdio::null(), Stdio::null(), Stdio::piped());
    let (status, _, stderr) = finish_within(child, 60);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("/dev/zero: invalid sample: line 1: longer than {MAX_LINE_BYTES} bytes")), "{stderr}");
}

#[test]
fn a_sample_from_standard_input_is_predicted() {
    let w = Workdir::new();
    let mut child = w.spawn_predict("-", &["--perturbation", "drug_a"], Stdio::piped(), Stdio::piped(), Stdio::piped());
    child.stdin.take().unwrap().write_all(counts_table(160).as_bytes()).unwrap();
    let (status, stdout, stderr) = finish_within(child, 120);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, w.predict(&["--perturbation", "drug_a"]).1, "the same prediction as from the file");
}

#[test]
fn a_closed_standard_output_or_error_ends_the_run_quietly() {
    let w = Workdir::new();
    // `refcast predict 2>&1 >/dev/null | head -1`, with the reader gone before the first line.
    let mut child = w.spawn_predict(&w.arg("sample.tsv"), &["--perturbation", "drug_a"], Stdio::null(), Stdio::null(), Stdio::piped());
    drop(child.stderr.take());
    let (status, _, _) = finish_within(child, 120);
    assert_eq!(status.code(), Some(141), "128 + SIGPIPE, not a panic");
    // `refcast predict | head -1`.
    let mut child = w.spawn_predict(&w.arg("sample.tsv"), &["--perturbation", "drug_a"], Stdio::null(), Stdio::piped(), Stdio::piped());
    drop(child.stdout.take());
    let (status, _, stderr) = finish_within(child, 120);
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("error:") && !stderr.contains("panicked"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_standard_output_or_error_is_an_error_that_names_the_stream() {
    let w = Workdir::new();
    let full = || Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap());
    let child = w.spawn_predict(&w.arg("sample.tsv"), &["--perturbation", "drug_a"], Stdio::null(), full(), Stdio::piped());
    let (status, _, stderr) = finish_within(child, 120);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to standard output") && stderr.contains("No space left"), "{stderr}");
    // `2>/dev/full`: the error cannot be shown, but the status says it.
    let child = w.spawn_predict(&w.arg("sample.tsv"), &["--perturbation", "drug_a"], Stdio::null(), Stdio::piped(), full());
    let (status, _, _) = finish_within(child, 120);
    assert_eq!(status.code(), Some(1), "an error status, not a panic's 101");
    // An output file on a full device names the file.
    let (ok, _, stderr) = w.predict(&["--perturbation", "drug_a", "--output", "/dev/full"]);
    assert!(!ok && stderr.contains("cannot write /dev/full") && stderr.contains("No space left"), "{stderr}");
}

#[test]
fn a_set_value_that_changes_a_perturbation_is_in_its_label() {
    let w = Workdir::new();
    let out = w.arg("out.tsv");
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "-p", "drug_a 24 h", "--set", "time_hours=24", "--output", &out]);
    assert!(ok, "{stderr}");
    // On screen and in the file: the 6 h perturbation was computed at 24 h, and says so; the
    // 24 h one is what its name says.
    assert!(stderr.contains("× drug_a 6 h (time_hours=24) (") && stderr.contains("× drug_a 24 h ("), "{stderr}");
    let labels: std::collections::BTreeSet<String> =
        std::fs::read_to_string(&out).unwrap().lines().skip(1).map(|l| l.split('\t').nth(1).unwrap().to_string()).collect();
    assert_eq!(labels, ["drug_a 24 h".to_string(), "drug_a 6 h (time_hours=24)".to_string()].into());
}

// ---------------------------------------------------------------------------------------------
// screen --signature

/// Runs `refcast screen` on the CPU with a signature file of `text` and the extra arguments;
/// success, the ranking's rows (perturbation, score) and standard error.
fn screen_signature(w: &Workdir, text: &str, extra: &[&str]) -> (bool, Vec<(String, String)>, String) {
    std::fs::write(w.path("signature.csv"), text).unwrap();
    let (model, sample, signature) = (w.arg("model.safetensors"), w.arg("sample.tsv"), w.arg("signature.csv"));
    let mut args = vec!["screen", "--backend", "cpu", "--model", &model, "--sample", &sample, "--signature", &signature, "--top", "100"];
    args.extend(extra);
    let (ok, stdout, stderr) = refcast(&args, &[]);
    let rows = stdout.lines().skip(1).map(|l| l.split('\t').collect::<Vec<_>>()).map(|f| (f[1].to_string(), f[2].to_string())).collect();
    (ok, rows, stderr)
}

#[test]
fn a_gene_set_signature_gives_scores_that_tell_perturbations_apart() {
    let w = Workdir::new();
    let (ok, rows, stderr) = screen_signature(&w, "gene\nGENE1\nGENE2\nGENE3\nGENE4\n", &[]);
    assert!(ok, "{stderr}");
    // Once −0.0000 for all (a correlation with equal weights), the control first.
    let scores: std::collections::BTreeSet<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
    assert!(scores.len() > rows.len() / 2 && !scores.contains("-0.0000"), "{rows:?}");
}

#[test]
fn the_weight_column_is_the_one_named_weight_or_chosen() {
    let w = Workdir::new();
    let (ok, plain, stderr) = screen_signature(&w, "gene,weight\nGENE1,2\nGENE2,-1\nGENE3,0.5\nGENE4,1\n", &[]);
    assert!(ok, "{stderr}");
    // p-values beside the weights are not the weights.
    let (ok, with_pval, stderr) = screen_signature(&w, "gene,pval,weight\nGENE1,0.01,2\nGENE2,0.5,-1\nGENE3,0.02,0.5\nGENE4,0.9,1\n", &[]);
    assert!(ok && with_pval == plain, "{stderr}");
    let refused = "gene,pval,logfc\nGENE1,0.01,2\nGENE2,0.5,-1\nGENE3,0.02,0.5\nGENE4,0.9,1\n";
    let (ok, _, stderr) = screen_signature(&w, refused, &[]);
    assert!(!ok && stderr.contains("signature.csv") && stderr.contains("'pval', 'logfc'") && stderr.contains("--signature-column"), "{stderr}");
    let (ok, chosen, stderr) = screen_signature(&w, refused, &["--signature-column", "logfc"]);
    assert!(ok && chosen == plain, "{stderr}");
    // Weights scaled by 1e300 rank the same, with the same scores.
    let (ok, huge, stderr) = screen_signature(&w, "gene,weight\nGENE1,2e300\nGENE2,-1e300\nGENE3,0.5e300\nGENE4,1e300\n", &[]);
    assert!(ok && huge == plain, "{stderr}");
    let (ok, largest, stderr) = screen_signature(&w, "gene,weight\nGENE1,1e308\nGENE2,-1e308\nGENE3,1e308\n", &[]);
    assert!(ok && largest.iter().all(|(_, s)| s.parse::<f32>().unwrap().is_finite()), "{stderr}");
}

#[test]
fn signature_files_with_bad_weights_or_unknown_genes_say_so() {
    let w = Workdir::new();
    for weight in ["nan", "inf"] {
        let (ok, _, stderr) = screen_signature(&w, &format!("gene,weight\nGENE1,1\nGENE2,{weight}\nGENE3,1\n"), &[]);
        assert!(!ok && stderr.contains("signature.csv") && stderr.contains("line 3 (gene 'GENE2')") && stderr.contains("not a finite number"), "{stderr}");
    }
    let (ok, _, stderr) = screen_signature(&w, "gene\nGENE1\nNOPE1\nGENE2\nGENE3\nNOPE2\n", &[]);
    assert!(ok && stderr.contains("2 of the signature's 5 genes are not in the model") && stderr.contains("NOPE1, NOPE2"), "{stderr}");
    let (ok, _, stderr) = screen_signature(&w, "gene\nGENE1\nNOPE1\nGENE2\n", &[]);
    assert!(!ok && stderr.contains("only 2 of the signature's 3 genes"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Fuzz smoke: the fuzz target bodies over deterministic mutations of valid inputs

/// xorshift64*: a small deterministic generator, so a failure names a reproducible iteration.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four byte-level mutations: flips, interesting bytes, insertions, deletions, splices of
/// the input's own bytes, truncation.
fn mutate(rng: &mut Rng, seed: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(seed);
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = *[0u8, 0xff, b'"', b',', b'\t', b'\n', b'-', b'9', b'[', b'}', b'e', b'.'].get(rng.below(12)).unwrap();
            }
            2 => {
                let i = rng.below(len + 1);
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                out.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(16)).min(len - i);
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let (from, to) = (rng.below(len), rng.below(len));
                let n = (1 + rng.below(32)).min(len - from);
                let piece = out[from..from + n].to_vec();
                out.splice(to..to, piece);
            }
            5 if len > 8 => {
                // A header-length word: small changes and extremes.
                let v = u64::from_le_bytes(out[..8].try_into().unwrap());
                let w = [v.wrapping_add(1), v.wrapping_sub(1), 0, u64::MAX, v.wrapping_mul(2), v / 2][rng.below(6)];
                out[..8].copy_from_slice(&w.to_le_bytes());
            }
            _ => {
                let cut = rng.below(len + 1);
                out.truncate(cut);
            }
        }
    }
}

fn smoke(seeds: &[Vec<u8>], iterations: usize, body: fn(&[u8])) {
    let mut rng = Rng(0x5eed_f00d);
    let mut buf = Vec::new();
    for i in 0..iterations {
        let seed = &seeds[i % seeds.len()];
        mutate(&mut rng, seed, &mut buf);
        let caught = std::panic::catch_unwind(|| body(&buf));
        assert!(caught.is_ok(), "iteration {i} panicked on input {:?}", String::from_utf8_lossy(&buf[..buf.len().min(400)]));
    }
}

#[test]
fn fuzz_smoke_model_parser() {
    let seeds: Vec<Vec<u8>> = bodies::model_seeds();
    for s in &seeds {
        ModelFile::from_bytes(s).expect("the seeds are valid models");
    }
    smoke(&seeds, 3000, bodies::model_file);
}

#[test]
fn fuzz_smoke_sample_parser() {
    let seeds = bodies::sample_seeds();
    smoke(&seeds, 20000, bodies::sample_table);
}

#[test]
fn fuzz_smoke_signature_parser() {
    let seeds = bodies::signature_seeds();
    smoke(&seeds, 20000, bodies::signature_file);
}

/// Writes the seed corpora of the cargo-fuzz targets to fuzz/corpus/<target>/.
#[test]
#[ignore = "writes fuzz/corpus: run with --ignored before cargo fuzz"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, seeds) in [("model_file", bodies::model_seeds()), ("sample_table", bodies::sample_seeds()), ("signature_file", bodies::signature_seeds())] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            // The sample target reads its first byte as the value kind.
            let data = if target == "model_file" { seed.clone() } else { [&[i as u8][..], seed].concat() };
            std::fs::write(dir.join(format!("seed{i}")), data).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings that would otherwise do nothing, or give output that cannot be told apart

#[test]
fn settings_without_effect_and_unseen_combinations_are_warned_about() {
    let w = Workdir::new();
    // cell_type belongs to the biological prior, whose latent comes from the sample by default.
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--set", "cell_type=B"]);
    assert!(ok && stderr.contains("warning: cell_type has no effect: the biological latent comes from the sample"), "{stderr}");
    // Taking the biological latent from its prior without a cell type predicts for "unknown".
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--condition-on", "technical"]);
    assert!(ok && stderr.contains("warning: the biological latent comes from its prior, which is given no cell_type"), "{stderr}");
    // A known context fills the cell type; its platform is then the one field without effect.
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--condition-on", "technical", "--context", "T cells (10x)"]);
    assert!(ok && !stderr.contains("given no") && stderr.contains("warning: platform has no effect: the technical latent comes from the sample"), "{stderr}");
    // A known compound at a time it was never trained at.
    let (ok, _, stderr) = w.predict(&["-p", "drug_b 6 h", "--set", "time_hours=168"]);
    assert!(ok && stderr.contains("warning: perturbation perturbation=drug_b time_hours=168 is a combination the model was never trained on"), "{stderr}");
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h"]);
    assert!(ok && !stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_repeated_perturbation_and_a_seed_without_draws_are_refused() {
    let w = Workdir::new();
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "-p", "drug_b 6 h", "-p", "drug_a 6 h"]);
    assert!(!ok && stderr.contains("--perturbation 'drug_a 6 h' is given twice"), "{stderr}");
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--seed", "7"]);
    assert!(!ok && stderr.contains("--seed") && stderr.contains("--num-samples"), "{stderr}");
}

#[test]
fn a_perturbation_given_twice_under_two_names_is_said() {
    let w = Workdir::new();
    // "drug_b" is the one entry with that value: the same perturbation as its full name.
    let (ok, _, stderr) = w.predict(&["-p", "drug_b 6 h", "-p", "drug_b"]);
    let same = "warning: --perturbation 'drug_b' is the same perturbation as 'drug_b 6 h' (perturbation=drug_b time_hours=6): their rows hold the same numbers";
    assert!(ok && stderr.contains(same), "{stderr}");
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "-p", "DRUG_A 6 H"]);
    assert!(ok && stderr.contains("--perturbation 'DRUG_A 6 H' is the same perturbation as 'drug_a 6 h'"), "{stderr}");
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "-p", "drug_a 24 h"]);
    assert!(ok && !stderr.contains("same perturbation"), "{stderr}");
}

#[test]
fn a_screen_refuses_a_perturbation_field_it_would_ignore() {
    let w = Workdir::new();
    let (model, sample) = (w.arg("model.safetensors"), w.arg("sample.tsv"));
    let screen = |extra: &[&str]| {
        let mut args = vec!["screen", "--backend", "cpu", "--model", &model, "--sample", &sample];
        args.extend(extra);
        refcast(&args, &[])
    };
    let (ok, _, stderr) = screen(&["--set", "time_hours=24"]);
    assert!(!ok && stderr.contains("--set time_hours: a perturbation's field, which screen does not take") && stderr.contains("predict -p NAME --set time_hours="), "{stderr}");
    let (ok, _, stderr) = screen(&["--set", "cell_type=B"]);
    assert!(ok && stderr.contains("warning: cell_type has no effect"), "{stderr}");
}

#[test]
fn draws_over_the_limit_are_refused_before_the_sample_is_read_and_a_large_output_is_announced() {
    let w = Workdir::new();
    // The limit is per sample: 2^26 values / (1 perturbation × 160 genes) = 419,430 draws.
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--num-samples", "419431"]);
    assert!(!ok && stderr.contains("--num-samples 419431: 419431 draws × 1 perturbation(s) × 160 genes") && stderr.contains("draw at most 419430"), "{stderr}");
    assert!(!stderr.contains("read as"), "refused before the sample is read: {stderr}");
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--num-samples", "0"]);
    assert!(!ok && stderr.contains("--num-samples 0: draw at least 1"), "{stderr}");
    // 100,000 draws × 160 genes are 16 million lines: said before a byte is written (here to
    // /dev/full, which ends the run at the first write).
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--num-samples", "100000", "-o", "/dev/full"]);
    assert!(!ok && stderr.contains("refcast: writing 16000000 lines, about 1.3 GB, to /dev/full"), "{stderr}");
}

#[test]
fn a_model_without_a_known_checksum_is_said_to_be_unverified() {
    let w = Workdir::new();
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h"]);
    assert!(ok && stderr.contains("no checksum is known for model.safetensors"), "{stderr}");
}

#[test]
fn a_long_top_list_never_lists_a_decrease_under_up() {
    let w = Workdir::new();
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--top", "100000"]);
    assert!(ok, "{stderr}");
    let values = |line: &str| -> Vec<f64> { line.split(", ").filter_map(|e| e.rsplit(' ').next()?.parse().ok()).collect() };
    let up = stderr.lines().find_map(|l| l.strip_prefix("  up:   ")).unwrap();
    let down = stderr.lines().find_map(|l| l.strip_prefix("  down: ")).unwrap();
    let (up, down) = (values(up), values(down));
    assert!(!up.is_empty() && up.iter().all(|&v| v > 0.0), "{up:?}");
    assert!(!down.is_empty() && down.iter().all(|&v| v < 0.0), "{down:?}");
    assert!(up.len() + down.len() <= 160);
}

/// A value refused when the sample's columns are checked names the file, as a parse error does.
#[test]
fn a_log_cpm_value_out_of_range_names_the_file() {
    let w = Workdir::new();
    let (ok, _, stderr) = w.predict(&["-p", "drug_a 6 h", "--values", "log-cpm"]);
    assert!(!ok && stderr.contains(&format!("error: {}: invalid sample: gene '", w.arg("sample.tsv"))) && stderr.contains("above 13.9"), "{stderr}");
}

/// The summary rows left out are said, by name, where the file's reading is.
#[test]
fn read_counter_summary_rows_are_named_on_standard_error() {
    let w = Workdir::new();
    let sample = w.path("htseq.tsv");
    std::fs::write(&sample, format!("{}__no_feature\t500000\n__ambiguous\t1000\n", counts_table(160))).unwrap();
    let args = w.predict_args(&sample.display().to_string(), &["-p", "drug_a 6 h"]);
    let (ok, _, stderr) = refcast(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(ok && stderr.contains("; __no_feature and __ambiguous: read-counter summary rows, left out of the genes and the library size"), "{stderr}");
}

/// HTSeq's and STAR's summary rows are not genes: left out of the genes and the library size.
#[test]
fn read_counter_summary_rows_are_left_out_of_the_library() {
    let plain = SampleTable::parse(counts_table(160).as_bytes(), ValueKind::Auto).unwrap();
    let htseq = format!("{}__no_feature\t500000\n__ambiguous\t1000\n__alignment_not_unique\t20000\n", counts_table(160));
    let star = format!("N_unmapped\t1000\nN_multimapping\t2000\nN_noFeature\t3000\nN_ambiguous\t4000\n{}", counts_table(160).lines().skip(1).collect::<Vec<_>>().join("\n"));
    for (text, rows) in [(htseq, 3), (star, 4)] {
        let t = SampleTable::parse(text.as_bytes(), ValueKind::Counts).unwrap();
        assert_eq!(t.summary_rows.len(), rows, "{:?}", t.summary_rows);
        assert_eq!(t.genes, plain.genes);
        assert_eq!(t.values, plain.values);
        let s = session();
        assert_eq!(s.reference(&t, 0).unwrap().library_size, s.reference(&plain, 0).unwrap().library_size);
    }
}
