//! Whether the model saw a perturbation, at its time and dose, in a context like the sample's
//! (`perturbations[].measured_in`, docs/FORMAT.md): read and checked from the file, reported by the
//! library's screens, and said by the command line, on the shipped models and real samples.

use refcast::format::Value;
use refcast::quant::DType;
use refcast::sample::{SampleTable, ValueKind};
use refcast::session::Session;
use refcast::synthetic::{SyntheticSpec, random_model_v2};
use refcast::{Measured, Metadata, ModelFile, ScreenOptions};

const MODELS: [&str; 2] = ["models/refcast-q8_0.safetensors", "models/refcast-q4_0.safetensors"];

fn path(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &str) -> Vec<u8> {
    std::fs::read(path(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn refcast(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_refcast")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Each bundled example against the perturbations of its own study: measured nearby; the same
/// sample against a study of another tissue: measured elsewhere. Both files, the library's
/// screen (a few perturbations, so the test stays short).
#[test]
fn the_shipped_models_know_where_their_perturbations_were_measured() {
    let cases = [
        ("examples/kang_cd14_mono_ctrl.tsv", "IFN-beta 6 h", "PBMC (Kang 2018)", "anti-CD3/CD28 24 h"),
        ("examples/airway_N61311_untreated.tsv", "dexamethasone 1 µM 18 h", "airway smooth muscle cells", "influenza vaccine 7 d"),
        ("examples/tcell_D1_unstimulated_24h.tsv", "anti-CD3/CD28 24 h", "T cells (Rade 2023)", "dexamethasone 1 µM 18 h"),
    ];
    for model in MODELS {
        let file = ModelFile::from_bytes(&read(model)).unwrap();
        let cfg = file.config.clone();
        assert!(refcast::Coverage::recorded(&cfg), "{model}: records where its perturbations were measured");
        assert!(cfg.perturbations.iter().all(|p| p.measured_in.as_ref().is_some_and(|m| !m.is_empty())), "{model}: every entry was measured somewhere");
        let mut session = Session::cpu(&file).unwrap();
        for (sample, own, own_context, other) in cases {
            let table = SampleTable::parse(&read(sample)[..], ValueKind::Auto).unwrap();
            let reference = session.reference(&table, 0).unwrap();
            let options = ScreenOptions { perturbations: Some(vec![cfg.perturbation(own), cfg.perturbation(other)]), ..Default::default() };
            let screen = pollster::block_on(session.screen(&reference, &Metadata::new(), &options)).unwrap();
            let hit = |name: &str| screen.hits.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("{sample}: {name} screened"));
            let c = &hit(own).coverage;
            assert_eq!(c.measured, Measured::Nearby, "{model}, {sample}, {own}: {c:?}");
            assert!(c.context.as_deref().is_some_and(|n| n.starts_with(own_context)), "{model}, {sample}: {c:?}");
            assert!(c.distance.unwrap() <= c.max_distance.unwrap());
            let c = &hit(other).coverage;
            assert_eq!(c.measured, Measured::Elsewhere, "{model}, {sample}, {other}: {c:?}");
            assert!(c.distance.unwrap() > c.max_distance.unwrap() && !c.context.as_deref().unwrap().starts_with(own_context), "{c:?}");
            assert!(c.warning(other).unwrap().contains("its prediction here is an extrapolation"));
        }
    }
}

/// The airway screen of the issue that asked for this: the top of an effect-size ranking is
/// perturbations never measured in airway cells, and the table and summary say so, and where the
/// study's own treatment ranks.
#[test]
fn the_screen_table_and_summary_mark_what_was_never_measured_nearby() {
    let (ok, stdout, stderr) = refcast(&["screen", "--backend", "cpu", "-s", "examples/airway_N61311_untreated.tsv", "--top", "1239"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "rank\tperturbation\teffect_size\treversal\ttop_up\ttop_down\tmeasured\tmeasured_context\tmeasured_distance");
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 1239);
    let dex = rows.iter().find(|r| r[1] == "dexamethasone 1 µM 18 h").unwrap();
    assert_eq!(dex[6], "nearby");
    assert!(dex[7].starts_with("airway smooth muscle cells") && dex[8].parse::<f32>().unwrap() < 4.9, "{dex:?}");
    let nearby = rows.iter().filter(|r| r[6] == "nearby").count();
    let elsewhere = rows.iter().filter(|r| r[6] == "elsewhere").count();
    assert_eq!(nearby + elsewhere, 1239, "every shipped entry was measured somewhere");
    assert!((2..50).contains(&nearby), "{nearby} measured in airway-like contexts");
    assert_eq!(rows[0][6], "elsewhere", "the top of the ranking is an extrapolation here: {:?}", rows[0]);
    assert!(stderr.contains(&format!("of the 1239 perturbations screened, {nearby} were measured in training in a context like this sample's, {elsewhere} only in other contexts, 0 never")), "{stderr}");
    let rank = rows.iter().position(|r| r[1] == "dexamethasone 1 µM 18 h").unwrap() + 1;
    assert!(stderr.contains("were never measured in a context like this sample's, so their predictions are extrapolations"), "{stderr}");
    assert!(stderr.contains(&format!("'dexamethasone 1 µM 18 h' (rank {rank})")), "{stderr}");
    for column in ["measured", "measured_context", "measured_distance"] {
        assert!(stderr.contains(&format!("  {column} ")), "the legend explains {column}: {stderr}");
    }
}

/// `--set` to a time never measured: a warning before the prediction;
/// a sample far from a perturbation's contexts: a warning naming the nearest of them.
#[test]
fn predictions_say_when_a_time_or_a_context_was_never_measured() {
    let (ok, _, stderr) = refcast(&["predict", "--backend", "cpu", "-s", "examples/airway_N61311_untreated.tsv", "-p", "dexamethasone 1 µM 18 h", "--set", "time_hours=168", "-o", "/dev/null"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("warning: perturbation dose_um=1 perturbation=dexamethasone perturbation_class=glucocorticoid time_hours=168 is a combination the model was never trained on: an extrapolation"), "{stderr}");
    let (ok, _, stderr) = refcast(&["predict", "--backend", "cpu", "-s", "examples/airway_N61311_untreated.tsv", "-p", "dexamethasone 1 µM 18 h", "-o", "/dev/null"]);
    assert!(ok && !stderr.contains("was never measured") && !stderr.contains("measured only in") && !stderr.contains("never trained on"), "{stderr}");
    // The bare name is airway's entry and TG-GATEs' (other doses and times): what they share, at
    // no time or dose trained on, is said to be an extrapolation.
    let (ok, _, stderr) = refcast(&["predict", "--backend", "cpu", "-s", "examples/airway_N61311_untreated.tsv", "-p", "dexamethasone", "-o", "/dev/null"]);
    assert!(ok && stderr.contains("perturbation=dexamethasone perturbation_class=glucocorticoid is a combination the model was never trained on"), "{stderr}");
    let (ok, _, stderr) = refcast(&["predict", "--backend", "cpu", "-s", "examples/airway_N61311_untreated.tsv", "-p", "IFN-beta 6 h", "-o", "/dev/null"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: sample 'airway_N61311_untreated': 'IFN-beta 6 h' was measured only in training contexts unlike this sample (nearest: PBMC (Kang 2018)"),
        "{stderr}"
    );
}

/// The file's record is checked: indices inside the calibration, ascending, once each, and only
/// in a format 2 model with a calibration; a valid record reads back as written.
#[test]
fn measured_in_is_checked_when_the_model_is_read() {
    let base = random_model_v2(SyntheticSpec::tiny(DType::Q8_0));
    let with = |f: &dyn Fn(&mut ModelFile)| {
        let mut m = base.clone();
        f(&mut m);
        ModelFile::from_bytes(&m.to_bytes().unwrap()).map(|m| m.config).map_err(|e| e.to_string())
    };
    let read = with(&|m| m.config.perturbations.iter_mut().for_each(|p| p.measured_in = Some(vec![0]))).unwrap();
    assert!(read.perturbations.iter().all(|p| p.measured_in.as_deref() == Some(&[0][..])));
    let e = with(&|m| m.config.perturbations[1].measured_in = Some(vec![1])).unwrap_err();
    assert!(e.contains("perturbation 'drug_a 24 h': measured_in names context 1; familiarity.centroids has 1"), "{e}");
    let e = with(&|m| m.config.perturbations[0].measured_in = Some(vec![0, 0])).unwrap_err();
    assert!(e.contains("measured_in must list each context once, in ascending order"), "{e}");
    let e = with(&|m| {
        m.config.perturbations[0].measured_in = Some(vec![0]);
        m.config.familiarity = None;
    })
    .unwrap_err();
    assert!(e.contains("lists where it was measured (measured_in), but the model has no familiarity calibration"), "{e}");
    let mut v1 = refcast::synthetic::random_model(SyntheticSpec::tiny(DType::Q8_0));
    v1.config.perturbations[0].measured_in = Some(vec![0]);
    let e = ModelFile::from_bytes(&v1.to_bytes().unwrap()).err().unwrap().to_string();
    assert!(e.contains("'measured_in' is a format 2 field; this file says format_version 1"), "{e}");
    // A synthetic model with every entry measured in its one context: a time never measured is
    // "never", through the library.
    let cfg = read;
    let mut m = cfg.perturbations[0].metadata.clone();
    m.insert("time_hours".into(), Value::Number(100.0));
    let c = refcast::Coverage::assess(&cfg, None, &m);
    assert_eq!((c.measured, c.measured_as.as_slice()), (Measured::Never, &["drug_a 6 h".to_string(), "drug_a 24 h".to_string()][..]));
}
