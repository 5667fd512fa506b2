//! `refcast`: predict a sample's response to a perturbation, on this machine.

#[macro_use]
mod cli;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use refcast::backend::BackendKind;
use refcast::format::{Group, MAX_MODEL_BYTES, Metadata, ModelFile, checksum};
use refcast::metadata;
use refcast::sample::{MAX_SAMPLE_BYTES, Reference, SampleTable, ValueKind};
use refcast::{Engine, ScreenOptions};

use cli::input::{Limit, is_dash, read_bounded};
use cli::output::{Output, refuse_output_over_input};
use cli::report::{report_familiarity, summarise, write_familiarity};
use refcast::session::{Baseline, PredictionMode, Request, Sampling, Signature};

/// The model shipped in the repository.
const DEFAULT_MODEL: &str = "models/refcast-q8_0.safetensors";
/// The example sample shipped in the repository.
const DEFAULT_SAMPLE: &str = "examples/kang_cd14_mono_ctrl.tsv";

#[derive(Parser)]
#[command(name = "refcast", version, about = "Predict how a sample responds to a perturbation, on your own machine.", long_about = "\
Predict how a sample responds to a perturbation, on your own machine.

refcast encodes your reference sample (RNA-seq counts or log-CPM, genes as symbols or Ensembl
ids) into the model's technical and biological latents, takes the perturbation's latent from the
model's prior, and decodes the predicted profile. By default (--mode counterfactual) the
prediction is your sample moved by the decoded change from the model's control; --mode decoded
gives the decoded profile itself. Nothing leaves this machine.

Examples:
  refcast info
  refcast predict --sample my_sample.tsv --perturbation IFN-beta
  refcast screen --sample my_sample.tsv --top 10")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a model: genes, metadata the priors know, perturbations, provenance.
    Info {
        /// Model file (.safetensors).
        #[arg(default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Expected SHA-256 of the model file (hex); without it, a SHA256SUMS file beside the
        /// model is used when it lists the model.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Predict the perturbed expression profile of one or more samples.
    Predict(PredictArgs),
    /// Rank every perturbation the model knows by its predicted effect on one sample.
    Screen(ScreenArgs),
}

#[derive(Args)]
struct Common {
    /// Model file (.safetensors).
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Expected SHA-256 of the model file (hex); without it, a SHA256SUMS file beside the model
    /// is used when it lists the model.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Sample file: TSV or CSV, first column genes (symbols or Ensembl ids), then one column per
    /// sample (counts, log-CPM, TPM, FPKM or CPM); a header line is optional. Also read:
    /// gzip-compressed files, featureCounts output, Salmon quant.genes.sf, kallisto
    /// abundance.tsv, and a 10x Genomics filtered_feature_bc_matrix/ directory (pseudobulk).
    /// `-` reads standard input. What the file was read as is printed on standard error.
    #[arg(long, short, default_value = DEFAULT_SAMPLE)]
    sample: PathBuf,
    /// What the sample's values are: auto (from the header or the values), counts, log-cpm
    /// (natural log, ln(1 + CPM)), log2-cpm, log10-cpm, tpm, fpkm or cpm.
    #[arg(long, default_value = "auto")]
    values: ValueKind,
    /// For a 10x matrix directory: a barcode → group table (two columns, tab or comma); each
    /// group's cells are summed into one sample. Without it, all cells make one sample.
    #[arg(long, value_name = "FILE")]
    groups: Option<PathBuf>,
    /// For log-CPM samples: the library size (sum of counts) the values were computed from, so
    /// that a model with a depth covariate knows the sequencing depth. Count samples have theirs.
    #[arg(long, value_name = "READS")]
    library_size: Option<f64>,
    /// Known context by name (see `refcast info`), used by the priors of groups not conditioned on.
    #[arg(long)]
    context: Option<String>,
    /// Extra metadata for the priors, e.g. --set cell_type="CD14 Mono" --set time_hours=6.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// Latent groups taken from the reference (comma-separated: technical, biological).
    #[arg(long, value_delimiter = ',', default_value = "technical,biological")]
    condition_on: Vec<Group>,
    /// auto (GPU when one is found, else CPU), gpu, or cpu.
    #[arg(long, default_value = "auto")]
    backend: BackendKind,
    /// counterfactual: your measured sample moved by the predicted change, reference +
    /// decode(perturbation) − decode(control), floored at 0 (the model's reconstruction error of
    /// your sample cancels); decoded: the decoder's own profile, decode(perturbation).
    #[arg(long, default_value = "counterfactual", value_name = "counterfactual|decoded")]
    mode: PredictionMode,
    /// Log fold changes against the measured reference, or against the model's own prediction
    /// for the control (its reconstruction error of your sample then cancels). Default: the
    /// reference in the counterfactual mode, where your sample is the control and both give
    /// predicted − reference; the control in the decoded mode, where the model has one.
    #[arg(long, value_name = "reference|control")]
    versus: Option<Baseline>,
    /// Write how familiar each sample is to the model as TSV here: reference,
    /// reconstruction_r2, nearest_context, distance, outside (NA where the model has no
    /// familiarity calibration).
    #[arg(long, value_name = "FILE")]
    familiarity: Option<PathBuf>,
}

#[derive(Args)]
struct PredictArgs {
    #[command(flatten)]
    common: Common,
    /// Perturbation: a known name or a value of the perturbation field (see `refcast info`);
    /// repeat for several. Default: the first known perturbation that is not a control.
    #[arg(long, short)]
    perturbation: Vec<String>,
    /// Draw this many samples instead of estimating the mean.
    #[arg(long)]
    num_samples: Option<usize>,
    /// Seed of the random stream for --num-samples (default 0).
    #[arg(long, requires = "num_samples")]
    seed: Option<u64>,
    /// Write the full prediction as TSV here (default, or `-`: standard output). A file is
    /// replaced only once the whole prediction is written; a symbolic link's file is replaced and
    /// the link kept; a device or FIFO is written in place. The sample or the model is refused.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Genes to list in the summary, per direction.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Args)]
struct ScreenArgs {
    #[command(flatten)]
    common: Common,
    /// Rank by reversal of this signature instead of effect size. A TSV/CSV with a gene column,
    /// then either no value column (a gene set, up in the state to reverse; a `direction` column
    /// of up/down makes it an up/down set) or a weight column (`weight`, the only value column,
    /// or --signature-column; > 0 = up in the state to reverse). Reversal, positive when the
    /// perturbation moves the genes against the signature: mean predicted log fold change (LFC)
    /// of the down genes − that of the up genes; with weights, −Σ w·LFC / Σ |w|.
    #[arg(long)]
    signature: Option<PathBuf>,
    /// The signature's weight column, when it has several value columns and none is `weight`.
    #[arg(long, value_name = "NAME", requires = "signature")]
    signature_column: Option<String>,
    /// Perturbations to show.
    #[arg(long, default_value_t = 20)]
    top: usize,
}

fn main() {
    let args = Cli::parse();
    let result = cli::signals::remove_temporaries_on_termination()
        .context("cannot set up the removal of temporary files on interruption")
        .and_then(|()| pollster::block_on(run(args)));
    if let Err(e) = result {
        std::process::exit(cli::stdio::report_failure(&e));
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { model, sha256 } => {
            let mut text = Vec::new();
            cli::report::info(&mut text, &load_model(&model, sha256.as_deref())?, &locate(&model))?;
            cli::stdio::to_stdout(&text)
        }
        Command::Predict(args) => {
            refuse_outputs_over_inputs(&args.common, args.output.as_deref(), None)?;
            let file = load_model(&args.common.model, args.common.sha256.as_deref())?;
            predict(open_engine(args.common.backend, file).await?, &args).await
        }
        Command::Screen(args) => {
            refuse_outputs_over_inputs(&args.common, None, args.signature.as_deref())?;
            let file = load_model(&args.common.model, args.common.sha256.as_deref())?;
            screen(open_engine(args.common.backend, file).await?, &args).await
        }
    }
}

/// Refuses `--output` or `--familiarity` naming the model, the sample or the signature.
fn refuse_outputs_over_inputs(common: &Common, output: Option<&Path>, signature: Option<&Path>) -> Result<()> {
    let (model, sample) = (locate(&common.model), locate(&common.sample));
    let mut inputs = vec![("model", model.as_path()), ("sample", sample.as_path())];
    inputs.extend(signature.map(|s| ("signature", s)));
    for out in output.into_iter().chain(common.familiarity.as_deref()) {
        refuse_output_over_input(out, &inputs)?;
    }
    Ok(())
}

/// The model on the backend the library's policy picks for `kind`; a fallback is said.
async fn open_engine(kind: BackendKind, file: ModelFile) -> Result<Engine> {
    let engine = Engine::open(kind, || Ok(file)).await?;
    if engine.choice().fell_back {
        note!("refcast: {}; using the CPU backend", engine.choice().reason)?;
    }
    Ok(engine)
}

/// Resolves a path given relative to the repository when it is not found where the user runs.
fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() || is_dash(path) {
        return path.to_path_buf();
    }
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if shipped.exists() { shipped } else { path.to_path_buf() }
}

fn load_model(path: &Path, sha256: Option<&str>) -> Result<ModelFile> {
    let path = locate(path);
    let limit = Limit { what: "model file", bytes: MAX_MODEL_BYTES, fix: "is it a refcast model (.safetensors)?" };
    let bytes = read_bounded(&path, &limit)?;
    verify_checksum(&path, &bytes, sha256)?;
    ModelFile::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

/// Checks a model against `--sha256`, or else against a SHA256SUMS manifest beside it that lists
/// it; says so when a manifest does not list it.
fn verify_checksum(path: &Path, bytes: &[u8], sha256: Option<&str>) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match checksum::verify_file(path, bytes, sha256)? {
        checksum::Verified::NotListed(manifest) => {
            note!("refcast: note: {} does not list {name}; its checksum is not verified", manifest.display())
        }
        checksum::Verified::Unknown => {
            note!("refcast: note: no checksum is known for {name} (no --sha256, no {} beside it); it is not verified", checksum::MANIFEST)
        }
        _ => Ok(()),
    }
}

/// The reference with `--library-size`, when given.
fn with_library_size(reference: Reference, library_size: Option<f64>) -> Result<Reference> {
    Ok(match library_size {
        Some(reads) => reference.with_library_size(reads).context("--library-size")?,
        None => reference,
    })
}

fn load_sample(common: &Common) -> Result<SampleTable> {
    Ok(cli::sample::load(&locate(&common.sample), common.values, common.groups.as_deref())?.table)
}

/// Reads a signature file (see `screen --help`); `column` names its weight column.
fn load_signature(path: &Path, column: Option<&str>) -> Result<Signature> {
    let path = locate(path);
    let limit = Limit { what: "signature file", bytes: MAX_SAMPLE_BYTES as u64, fix: "keep the genes of the signature only" };
    let bytes = read_bounded(&path, &limit)?;
    Signature::parse(&bytes, column).with_context(|| cli::input::display(&path))
}

/// The `--set FIELD=VALUE` fields.
fn parse_set(set: &[String]) -> Result<Metadata> {
    set.iter().map(|s| metadata::parse_assignment(s).with_context(|| format!("--set {s}"))).collect()
}

/// Context metadata from --context and the --set fields of the technical and biological priors.
fn context_metadata(cfg: &refcast::ModelConfig, common: &Common) -> Result<Metadata> {
    let mut m = match &common.context {
        None => Metadata::new(),
        Some(name) => metadata::context_named(cfg, name)?,
    };
    m.extend(metadata::split_fields(cfg, parse_set(&common.set)?).0);
    Ok(m)
}

/// Each perturbation's label and metadata: a known perturbation's name, or a value of the
/// `perturbation` field, with the --set fields of the perturbation prior on top.
fn perturbation_metadata(cfg: &refcast::ModelConfig, names: &[String], set: &[String]) -> Result<Vec<(String, Metadata)>> {
    let extra = metadata::split_fields(cfg, parse_set(set)?).1;
    let names: Vec<String> = if names.is_empty() {
        let first = cfg.default_perturbation().ok_or_else(|| anyhow!("the model lists no perturbations; pass --perturbation"))?;
        vec![first.name.clone()]
    } else {
        names.to_vec()
    };
    let perts: Vec<(String, Metadata)> = names
        .iter()
        .map(|name| {
            let known = cfg.perturbation(name).metadata;
            let mut m = known.clone();
            m.extend(extra.clone());
            (metadata::label(name, &known, &m), m)
        })
        .collect();
    for (i, (label, _)) in perts.iter().enumerate() {
        if perts[..i].iter().any(|(other, _)| other == label) {
            bail!("--perturbation '{label}' is given twice: its rows could not be told apart; give it once");
        }
    }
    Ok(perts)
}

async fn predict(mut engine: Engine, args: &PredictArgs) -> Result<()> {
    let t0 = Instant::now();
    let cfg = engine.config().clone();
    // Outputs first: a directory that cannot be written to fails before the work is done.
    let output = Output::prepare(args.output.as_deref().unwrap_or(Path::new("-")))?;
    let familiarity = args.common.familiarity.as_deref().map(Output::prepare).transpose()?;
    let table = load_sample(&args.common)?;
    let context = context_metadata(&cfg, &args.common)?;
    let perts = perturbation_metadata(&cfg, &args.perturbation, &args.common.set)?;
    let requested: Vec<Metadata> = perts.iter().map(|p| p.1.clone()).collect();
    for w in metadata::request_warnings(&cfg, &context, &args.common.condition_on, &requested) {
        note!("refcast: warning: {w}")?;
    }
    let sampling = match args.num_samples {
        None => Sampling::Mean,
        Some(n) => Sampling::Samples { num_samples: n, seed: args.seed.unwrap_or(0) },
    };
    note!("refcast: {} on {}", cfg.name, engine.describe())?;
    let progress = ProgressBar::new(table.samples.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} predicting [{bar:30}] {pos}/{len} samples {eta}").expect("template").progress_chars("=> "),
    );
    if table.samples.len() < 4 {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut results = Vec::with_capacity(table.samples.len());
    for s in 0..table.samples.len() {
        let reference = with_library_size(engine.reference(&table, s)?, args.common.library_size)?;
        note!("refcast: sample '{}': {}", reference.name, reference.report)?;
        let mut req = Request::conditioned(vec![reference.clone()], perts.iter().map(|p| p.1.clone()).collect());
        req.contexts = vec![context.clone()];
        req.condition_on = args.common.condition_on.clone();
        req.sampling = sampling;
        req.mode = args.common.mode;
        req.baseline = args.common.versus.unwrap_or_else(|| Baseline::default_for(req.mode, cfg.control().is_some()));
        let t = Instant::now();
        let pred = engine.predict(&req).await?;
        progress.suspend(|| pred.familiarity.iter().try_for_each(report_familiarity))?;
        results.push((reference, pred, t.elapsed()));
        progress.inc(1);
    }
    progress.finish_and_clear();
    if let Some(output) = familiarity {
        write_familiarity(output, results.iter().flat_map(|(_, pred, _)| &pred.familiarity))?;
    }

    let genes = &cfg.genes;
    let many = results.len() > 1 || perts.len() > 1 || args.num_samples.is_some();
    let write_tsv = |w: &mut dyn Write| -> Result<()> {
        if many {
            write!(w, "sample\tperturbation\tdraw\t")?;
        }
        writeln!(w, "gene\treference\tpredicted\tlog_fold_change\tcounts\tsigma\tmeasured")?;
        for (reference, pred, _) in &results {
            let lfc = pred.log_fold_change.as_ref().expect("references give fold changes");
            for (r, row) in pred.rows.iter().enumerate() {
                for g in 0..pred.genes {
                    if many {
                        write!(w, "{}\t{}\t{}\t", reference.name, perts[row.perturbation].0, row.sample)?;
                    }
                    let i = r * pred.genes + g;
                    writeln!(
                        w,
                        "{}\t{:.5}\t{:.5}\t{:.5}\t{:.3}\t{:.5}\t{}",
                        genes[g].symbol,
                        reference.log_cpm[g],
                        pred.log_cpm[i],
                        lfc[i],
                        pred.counts[i],
                        pred.sigma[g],
                        u8::from(reference.measured[g])
                    )?;
                }
            }
        }
        Ok(())
    };
    // Tens of bytes per line: a sampled prediction of many genes is gigabytes, said before it is.
    let lines: usize = results.iter().map(|(_, pred, _)| pred.rows.len() * pred.genes).sum();
    let bytes = lines as f64 * if many { 80.0 } else { 60.0 };
    if bytes > 1e9 {
        let target = args.output.as_deref().filter(|p| !is_dash(p)).map_or("standard output".to_string(), |p| p.display().to_string());
        note!("refcast: writing {lines} lines, about {:.1} GB, to {target}", bytes / 1e9)?;
    }
    output.write(write_tsv)?;
    for (reference, pred, elapsed) in &results {
        summarise(&cfg, reference, pred, &perts, args.top, *elapsed)?;
    }
    note!("refcast: done in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3)
}

async fn screen(mut engine: Engine, args: &ScreenArgs) -> Result<()> {
    let cfg = engine.config().clone();
    let familiarity = args.common.familiarity.as_deref().map(Output::prepare).transpose()?;
    let signature = args.signature.as_deref().map(|path| load_signature(path, args.signature_column.as_deref())).transpose()?;
    let table = load_sample(&args.common)?;
    if table.samples.len() != 1 {
        bail!("screen takes one sample; the file has {} columns ({})", table.samples.len(), table.samples.join(", "));
    }
    let context = context_metadata(&cfg, &args.common)?;
    for w in metadata::request_warnings(&cfg, &context, &args.common.condition_on, &[]) {
        note!("refcast: warning: {w}")?;
    }
    let reference = with_library_size(engine.reference(&table, 0)?, args.common.library_size)?;
    note!("refcast: {} on {}", cfg.name, engine.describe())?;
    note!("refcast: sample '{}': {}", reference.name, reference.report)?;
    let t = Instant::now();
    let options = ScreenOptions {
        signature: signature.clone(),
        mode: args.common.mode,
        baseline: args.common.versus,
        condition_on: Some(args.common.condition_on.clone()),
        ..Default::default()
    };
    let progress = ProgressBar::new(cfg.perturbations.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} screening [{bar:30}] {pos}/{len} perturbations {eta}").expect("template").progress_chars("=> "),
    );
    let screen = engine.screen(&reference, &context, &options, &mut |done, _| progress.set_position(done as u64)).await?;
    progress.finish_and_clear();
    let elapsed = t.elapsed();
    screen.familiarity.iter().try_for_each(report_familiarity)?;
    let unknown = &screen.signature_unknown;
    if let Some(signature) = signature.as_ref().filter(|_| !unknown.is_empty()) {
        let examples = unknown.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", ");
        let more = if unknown.len() > 5 { ", …" } else { "" };
        note!("refcast: {} of the signature's {} genes are not in the model and are left out of the scores: {examples}{more}", unknown.len(), signature.genes().len())?;
    }
    if let Some(output) = familiarity {
        write_familiarity(output, &screen.familiarity)?;
    }
    let hits = &screen.hits;
    let mut out = Vec::new();
    writeln!(out, "rank\tperturbation\tscore\teffect_size\treversal\ttop_up\ttop_down")?;
    for (i, h) in hits.iter().take(args.top).enumerate() {
        let genes = |v: &[(usize, f32)]| v.iter().take(5).map(|(g, l)| format!("{}:{:+.2}", cfg.genes[*g].symbol, l)).collect::<Vec<_>>().join(",");
        writeln!(
            out,
            "{}\t{}\t{:.4}\t{:.4}\t{}\t{}\t{}",
            i + 1,
            h.name,
            h.score,
            h.effect_size,
            h.reversal.map_or("-".to_string(), |r| format!("{r:.4}")),
            genes(&h.top_up),
            genes(&h.top_down)
        )?;
    }
    cli::stdio::to_stdout(&out)?;
    note!("refcast: screened {} perturbations in {:.1} ms", hits.len(), elapsed.as_secs_f64() * 1e3)
}
