//! `refcast predict` on many-column sample tables: the table is read in one pass and predicted in
//! chunks of columns, the output written as it goes. The chunking changes no byte of the output;
//! a bad value anywhere is refused before anything is written; and the memory stays flat over
//! 10,000 samples, far below what holding the matrix would take.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use refcast::quant::DType;
use refcast::synthetic::{SyntheticSpec, random_model};

/// The tiny synthetic model's genes (GENE0 … GENE159).
const MODEL_GENES: usize = 160;

/// A directory with the tiny model (160 genes, Q8_0).
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir::with_model(SyntheticSpec::tiny(DType::Q8_0))
    }

    fn with_model(spec: SyntheticSpec) -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors"), random_model(spec).to_bytes().unwrap()).unwrap();
        Workdir { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `refcast predict --backend cpu --model … --sample <sample>` with `extra`.
    fn command(&self, sample: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_refcast"));
        cmd.args(["predict", "--backend", "cpu", "--model"]).arg(self.path("model.safetensors")).arg("--sample").arg(self.path(sample)).args(extra);
        cmd
    }

    /// Runs predict; (success, stdout, stderr).
    fn predict(&self, sample: &str, extra: &[&str]) -> (bool, Vec<u8>, String) {
        let out = self.command(sample, extra).output().unwrap();
        (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The names of the files in the directory, sorted.
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }
}

/// Writes a counts table: the model's genes, then `extra` genes the model does not know (read,
/// checked and spilled like the others, then counted as unknown), over `columns` samples, each
/// a scaled copy of one profile so that the columns differ.
fn write_counts(path: &Path, columns: usize, extra: usize) {
    write_counts_for(path, MODEL_GENES, columns, extra);
}

/// [`write_counts`] for a model of `model_genes` genes.
fn write_counts_for(path: &Path, model_genes: usize, columns: usize, extra: usize) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(w, "gene").unwrap();
    for c in 0..columns {
        write!(w, "\tpatient_{c}").unwrap();
    }
    writeln!(w).unwrap();
    // Cells from a table of their text: a 10,000-column file has tens of millions.
    let text: Vec<String> = (0..400).map(|v| v.to_string()).collect();
    for g in 0..model_genes + extra {
        if g < model_genes { write!(w, "GENE{g}") } else { write!(w, "OTHER{g}") }.unwrap();
        let base = 1 + (g * 7919) % 97;
        for c in 0..columns {
            w.write_all(b"\t").unwrap();
            w.write_all(text[base * (1 + c % 4)].as_bytes()).unwrap();
        }
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
}

/// Smallest chunk budget: one row per block while reading, one column per chunk.
const ONE_BY_ONE: &str = "1";

/// Every option that changes what is written gives the same bytes whatever the chunk budget, on
/// standard output and in files, familiarity included; and each column of a many-column run is
/// the prediction of that column alone.
#[test]
fn the_chunk_budget_changes_no_byte_of_the_output() {
    let w = Workdir::new();
    write_counts(&w.path("cohort.tsv"), 7, 13);
    let cases: [&[&str]; 5] = [
        &["--perturbation", "drug_a"],
        &["--perturbation", "drug_a", "--perturbation", "cytokine_c", "--mode", "decoded"],
        &["--perturbation", "drug_b", "--num-samples", "2", "--seed", "7"],
        &["--perturbation", "drug_a", "--versus", "control"],
        &["--perturbation", "drug_a", "--condition-on", "technical", "--set", "cell_type=T"],
    ];
    for extra in cases {
        let (ok, whole, stderr) = w.predict("cohort.tsv", extra);
        assert!(ok, "{extra:?}: {stderr}");
        assert!(whole.len() > 7 * MODEL_GENES * 40, "{extra:?}: {} bytes", whole.len());
        for budget in [ONE_BY_ONE, "4096", "100000"] {
            let (ok, chunked, stderr) = w.predict("cohort.tsv", &[extra, &["--chunk-budget", budget]].concat());
            assert!(ok, "{extra:?} {budget}: {stderr}");
            assert!(chunked == whole, "{extra:?}: budget {budget} changes the output on standard output");
        }
        // Files, with the familiarity table.
        let args = |out: &str, fam: &str, budget: &str| {
            let (out, fam) = (w.path(out).display().to_string(), w.path(fam).display().to_string());
            [extra, &["-o", &out, "--familiarity", &fam, "--chunk-budget", budget]].concat().into_iter().map(String::from).collect::<Vec<_>>()
        };
        for (out, fam, budget) in [("a.tsv", "fa.tsv", "1000000000"), ("b.tsv", "fb.tsv", ONE_BY_ONE)] {
            let owned = args(out, fam, budget);
            let (ok, _, stderr) = w.predict("cohort.tsv", &owned.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(ok, "{owned:?}: {stderr}");
        }
        assert_eq!(std::fs::read(w.path("a.tsv")).unwrap(), whole, "{extra:?}: the file holds what standard output does");
        assert_eq!(std::fs::read(w.path("b.tsv")).unwrap(), whole, "{extra:?}");
        let fam = std::fs::read_to_string(w.path("fa.tsv")).unwrap();
        assert_eq!(fam.lines().count(), 1 + 7, "{fam}");
        assert_eq!(std::fs::read_to_string(w.path("fb.tsv")).unwrap(), fam, "{extra:?}: familiarity");
    }

    // Column 4 alone, as its own file, gives the rows of column 4 in the many-column run.
    let table = std::fs::read_to_string(w.path("cohort.tsv")).unwrap();
    let single: String = table.lines().map(|l| l.split('\t').take(1).chain(l.split('\t').nth(5)).collect::<Vec<_>>().join("\t") + "\n").collect();
    std::fs::write(w.path("patient_4.tsv"), single).unwrap();
    let (ok, alone, stderr) = w.predict("patient_4.tsv", &["--perturbation", "drug_a"]);
    assert!(ok, "{stderr}");
    let (_, many, _) = w.predict("cohort.tsv", &["--perturbation", "drug_a", "--chunk-budget", ONE_BY_ONE]);
    let many = String::from_utf8(many).unwrap();
    let rows: Vec<&str> = many.lines().filter(|l| l.starts_with("patient_4\t")).map(|l| l.splitn(4, '\t').nth(3).unwrap()).collect();
    let alone = String::from_utf8(alone).unwrap();
    assert_eq!(rows.len(), MODEL_GENES);
    assert_eq!(rows, alone.lines().skip(1).collect::<Vec<_>>(), "a column predicted with others is the column predicted alone");
}

/// A bad value in the last line, or in the last column, is refused with the words of the
/// in-memory reader, before the first column is predicted: an existing output is left whole and
/// no temporary is left behind; nothing reaches standard output.
#[test]
fn a_late_bad_value_is_refused_before_anything_is_written() {
    let w = Workdir::new();
    write_counts(&w.path("good.tsv"), 50, 0);
    let good = std::fs::read_to_string(w.path("good.tsv")).unwrap();
    let last_line = good.lines().count();
    let with_last_cell = |cell: &str| {
        let mut t = good.trim_end().to_string();
        let cut = t.rfind('\t').unwrap();
        t.truncate(cut + 1);
        t + cell + "\n"
    };
    // A log-CPM table whose last column holds a value no log-CPM can have.
    let mut log_cpm = String::from("gene");
    for c in 0..30 {
        log_cpm += &format!("\tlog_cpm_{c}");
    }
    for g in 0..MODEL_GENES {
        log_cpm += &format!("\nGENE{g}");
        for c in 0..30 {
            log_cpm += if (g, c) == (MODEL_GENES - 1, 29) { "\t99.5" } else { "\t2.5" };
        }
    }
    log_cpm += "\n";
    let cases = [
        ("negative.tsv", "counts", with_last_cell("-3"), format!("line {last_line}: gene 'GENE159' in sample 'patient_49' has a negative count (-3)")),
        ("text.tsv", "auto", with_last_cell("seven"), format!("line {last_line}, column 51 (gene 'GENE159'): 'seven' is not a number")),
        ("ragged.tsv", "auto", good.clone() + "GENE999\t1\n", format!("line {}: 2 fields, expected 51", last_line + 1)),
        ("duplicate.tsv", "auto", good.clone() + &good.lines().nth(1).unwrap().replace("GENE0", "gene0") + "\n", format!("line {}: gene 'gene0' appears twice (first on line 2)", last_line + 1)),
        ("log_cpm.tsv", "auto", log_cpm, "gene 'GENE159' in sample 'log_cpm_29' has log-CPM 99.5".to_string()),
    ];
    for (name, values, text, want) in cases {
        std::fs::write(w.path(name), text).unwrap();
        std::fs::write(w.path("out.tsv"), "the previous output\n").unwrap();
        let out = w.path("out.tsv").display().to_string();
        let (ok, stdout, stderr) = w.predict(name, &["--perturbation", "drug_a", "--values", values, "--chunk-budget", ONE_BY_ONE, "-o", &out]);
        assert!(!ok && stderr.contains(&want), "{name}: expected {want:?} in\n{stderr}");
        assert!(stdout.is_empty());
        assert!(!stderr.contains("drug_a ("), "{name}: nothing is predicted before the refusal:\n{stderr}");
        assert_eq!(std::fs::read_to_string(w.path("out.tsv")).unwrap(), "the previous output\n", "{name}");
        assert!(w.listing().iter().all(|f| !f.starts_with(".refcast-")), "{name}: a temporary is left: {:?}", w.listing());
        let (ok, stdout, _) = w.predict(name, &["--perturbation", "drug_a", "--values", values, "--chunk-budget", ONE_BY_ONE]);
        assert!(!ok && stdout.is_empty(), "{name}: nothing reaches standard output");
    }
}

/// `VmRSS` or `VmHWM` of a process, in bytes (Linux).
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

const MIB: u64 = 1 << 20;

/// 10,000 samples in chunks with flat memory.
///
/// The model: 64 genes, small networks, so that 10,000 predictions take seconds even in a debug
/// build. The table: 10,000 columns × 2,000 gene rows (the model's 64 and 1,936 it does not
/// know, which are read, checked and spilled like the others). Holding it as `SampleTable` does
/// takes 2,000 × 10,000 × 8 bytes = 160 MB (153 MiB) of f64 values, beside the file's 60 MB of
/// text that `SampleTable::parse` reads whole; the in-memory CLI also kept every prediction
/// until the end. Streamed with an 8 MiB chunk budget, the values held at once are 4 MiB of rows
/// while reading and 8 MiB of columns (4 MiB of values and the bytes they are read through)
/// while predicting. The bound, 64 MiB, leaves the process's own memory (the binary, the model,
/// the worker threads: 13 MiB peak in all in a release build) room, and is well below the
/// 153 MiB the matrix alone would take.
///
/// Flat: the resident memory in the last quarter of the prediction phase exceeds that of the
/// second quarter by at most 8 MiB (allocator noise), where the output (45 MB) would add
/// its size if it were held, and the predictions kept to the end 3.8 MB per half of the run.
#[cfg(target_os = "linux")]
#[test]
fn ten_thousand_samples_stream_with_flat_memory() {
    const COLUMNS: usize = 10_000;
    const GENES: usize = 64;
    const EXTRA_GENES: usize = 2_000 - GENES;
    let w = Workdir::with_model(SyntheticSpec { genes: GENES, hidden: 48, ff: 64, ..SyntheticSpec::tiny(DType::Q8_0) });
    write_counts_for(&w.path("cohort.tsv"), GENES, COLUMNS, EXTRA_GENES);
    let out = w.path("predictions.tsv");
    let mut child = w
        .command("cohort.tsv", &["--perturbation", "drug_a", "--chunk-budget", &(8 * MIB).to_string(), "-o", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The prediction phase begins with the first sample's summary on standard error.
    let predicting: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn({
        let predicting = predicting.clone();
        move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                if line.starts_with("refcast: sample 'patient_0'") {
                    *predicting.lock().unwrap() = Some(Instant::now());
                }
                lines.push(line);
            }
            lines
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut during = Vec::new();
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "refcast still ran after 600 s");
        if let Some(rss) = status_bytes(pid, "VmRSS:") {
            if predicting.lock().unwrap().is_some() {
                during.push(rss);
            }
        }
        // The high-water mark, read while the process still exists.
        peak = status_bytes(pid, "VmHWM:").unwrap_or(peak).max(peak);
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = lines.join().unwrap().join("\n");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(&format!("and {} more samples predicted", COLUMNS - 5)), "{stderr}");
    let written = std::fs::metadata(&out).unwrap().len();
    let lines_out = BufReader::new(std::fs::File::open(&out).unwrap()).lines().count();
    assert_eq!(lines_out, 1 + COLUMNS * GENES);
    assert!(during.len() >= 20, "too few samples of the prediction phase ({}) to judge its memory", during.len());
    let quarter = during.len() / 4;
    let second = *during[quarter..2 * quarter].iter().max().unwrap();
    let last = *during[3 * quarter..].iter().max().unwrap();
    let matrix = (COLUMNS * (GENES + EXTRA_GENES) * 8) as u64;
    eprintln!(
        "peak {} MiB, prediction phase {} → {} MiB over {} polls; matrix {} MiB, output {} MiB",
        peak / MIB,
        second / MIB,
        last / MIB,
        during.len(),
        matrix / MIB,
        written / MIB
    );
    assert!(peak < 64 * MIB, "peak resident memory {} MiB, over the 64 MiB bound (the matrix alone is {} MiB)", peak / MIB, matrix / MIB);
    assert!(matrix > 2 * 64 * MIB, "the bound must be one that holding the matrix would exceed");
    assert!(last <= second + 8 * MIB, "resident memory grows while predicting: {} MiB, then {} MiB", second / MIB, last / MIB);
}
