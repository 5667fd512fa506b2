//! `refcast`: predict a sample's response to a perturbation, on this machine.

#[macro_use]
mod cli;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use refcast::backend::{BackendKind, CpuKernels};
use refcast::format::{Group, MAX_MODEL_BYTES, Metadata, ModelFile, checksum};
use refcast::metadata;
use refcast::sample::{DEFAULT_CHUNK_BUDGET, MAX_SAMPLE_BYTES, Reference, SampleTable, ValueKind};
use refcast::{Engine, ScreenOptions};

use cli::input::{Limit, is_dash, read_bounded};
use cli::output::{Output, refuse_output_over_input};
use cli::report::{report_familiarity, summarise, write_familiarity, write_familiarity_header, write_familiarity_row};
use refcast::session::{Baseline, MAX_PREDICTION_VALUES, PredictionMode, Request, Sampling, Signature};

/// The model shipped in the repository.
const DEFAULT_MODEL: &str = "models/refcast-q8_0.safetensors";
/// The example sample shipped in the repository.
const DEFAULT_SAMPLE: &str = "examples/kang_cd14_mono_ctrl.tsv";

#[derive(Parser)]
#[command(name = "refcast", version, about = "Predict how a sample responds to a perturbation, on your own machine.", long_about = "\
Predict how a sample responds to a perturbation, on your own machine.

refcast encodes your reference sample (RNA-seq counts or log-CPM, genes as symbols or Ensembl
ids) into the model's technical and biological latents, takes the perturbation's latent from the
model's prior, and decodes the predicted profile. By default (--mode denoised) the prediction
is your sample moved by the decoded change from the model's control, with its differences from
the model's reconstruction that are within measurement noise removed; --mode counterfactual keeps
them, --mode decoded gives the decoded profile itself. Nothing leaves this machine.

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
    /// Describe a model: what it is, its training data, how well it did on held-out data, the
    /// perturbations and contexts it knows; --genes lists its genes.
    Info {
        /// Model file (.safetensors).
        #[arg(default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Expected SHA-256 of the model file (hex); without it, a SHA256SUMS file beside the
        /// model is used when it lists the model.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// List the model's genes (symbol and Ensembl id, TSV) instead of the description.
        #[arg(long)]
        genes: bool,
        /// Also list every perturbation with its metadata, and the raw provenance.
        #[arg(long, short)]
        verbose: bool,
        /// The description as JSON (with --genes, the gene list too).
        #[arg(long)]
        json: bool,
        /// The model's evaluation (default: evaluation.json beside the model, if there is one).
        #[arg(long, value_name = "FILE")]
        evaluation: Option<PathBuf>,
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
    /// abundance.tsv, a 10x Genomics filtered_feature_bc_matrix/ directory or .h5 file, and an
    /// AnnData .h5ad file (their cells' raw counts summed: pseudobulk).
    /// `-` reads standard input. What the file was read as is printed on standard error.
    #[arg(long, short, default_value = DEFAULT_SAMPLE)]
    sample: PathBuf,
    /// What the sample's values are: auto (from the header or the values), counts, log-cpm
    /// (natural log, ln(1 + CPM)), log2-cpm, log10-cpm, tpm, fpkm or cpm.
    #[arg(long, default_value = "auto")]
    values: ValueKind,
    /// For single-cell samples (a 10x matrix directory or .h5, an AnnData .h5ad): a barcode →
    /// group table (two columns, tab or comma); each group's cells are summed into one sample.
    /// Without it (or --groupby), all cells make one sample.
    #[arg(long, value_name = "FILE")]
    groups: Option<PathBuf>,
    /// For an AnnData .h5ad: the obs column whose values group the cells (one sample each).
    #[arg(long, value_name = "COLUMN")]
    groupby: Option<String>,
    /// For an AnnData .h5ad: the matrix of raw counts: X, raw (.raw.X) or a layer's name.
    /// Default: raw when the file has it, else X (refused when it holds normalized values).
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// For an AnnData .h5ad: the var column holding gene names or Ensembl ids (e.g.
    /// gene_symbols, feature_name); default: the var index.
    #[arg(long, value_name = "COLUMN")]
    gene_names: Option<String>,
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
    /// How the CPU backend multiplies the model's quantized weights. f32: inputs stay f32, the
    /// same numbers as the GPU backend (the reference). integer: inputs quantized per block of
    /// 32 to 16 bits and multiplied in integer arithmetic, within 0.02 of predicted log-CPM
    /// (2 % in CPM; tested against f32 on the shipped models, measured 4e-4); about as fast as
    /// f32 for one sample, slower for many (BENCHMARKS.md).
    #[arg(long, default_value = "f32", value_name = "f32|integer")]
    cpu_kernels: CpuKernels,
    /// denoised: your measured sample moved by the predicted change, decode(perturbation) +
    /// soft(reference − decode(control), τ), floored at 0: its differences from the model's
    /// reconstruction beyond each gene's noise threshold τ are kept, those within it (the noise of
    /// one measurement) dropped; counterfactual: reference + decode(perturbation) −
    /// decode(control), floored at 0 (the reconstruction error cancels whole, your sample's noise
    /// is kept); decoded: the decoder's own profile, decode(perturbation).
    #[arg(long, default_value = "denoised", value_name = "denoised|counterfactual|decoded")]
    mode: PredictionMode,
    /// Log fold changes against the measured reference, or against the model's own prediction
    /// for the control (its reconstruction error of your sample then cancels). Default: the
    /// reference in the denoised and counterfactual modes, where your sample is the control and
    /// both give predicted − reference; the control in the decoded mode, where the model has one.
    #[arg(long, value_name = "reference|control")]
    versus: Option<Baseline>,
    /// Write how familiar each sample is to the model as TSV here: reference,
    /// reconstruction_r2, nearest_context, distance, outside (NA where the model has no
    /// familiarity calibration).
    #[arg(long, value_name = "FILE")]
    familiarity: Option<PathBuf>,
    #[command(flatten)]
    sets: cli::enrichment::EnrichmentArgs,
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
    /// Write the full prediction as TSV here (default, or `-`: standard output); its
    /// log_fold_change column is a natural-log (ln) fold change, not log2. A file is
    /// replaced only once the whole prediction is written; a symbolic link's file is replaced and
    /// the link kept; a device or FIFO is written in place. The sample or the model is refused.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Genes to list in the summary, per direction.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Also write a self-contained HTML report here (volcano plots and top-gene tables; it
    /// loads nothing, so it opens offline).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Bytes of sample values held at once: the sample is read in blocks of rows and predicted
    /// in chunks of columns of about this size (for tests).
    #[arg(long, default_value_t = DEFAULT_CHUNK_BUDGET, hide = true)]
    chunk_budget: usize,
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
    /// Also write a self-contained HTML report here (every perturbation ranked, a chart of the
    /// first, what the columns mean; it loads nothing, so it opens offline).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Rank by the activity of a gene set instead: pathway:NAME (a PROGENy pathway, e.g.
    /// pathway:JAK-STAT) or go:ID (a GO biological process term, e.g. go:GO:0034340); the score
    /// is the set's ULM t-value (see --enrichment), highest first.
    #[arg(long, value_name = "pathway:NAME|go:ID", conflicts_with = "signature")]
    rank_by: Option<String>,
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
        Command::Info { model, sha256, genes, verbose, json, evaluation } => {
            let mut text = Vec::new();
            let options = cli::info::InfoOptions { genes, verbose, json, evaluation: evaluation.as_deref().map(locate) };
            cli::info::info(&mut text, &load_model(&model, sha256.as_deref())?, &locate(&model), &options)?;
            cli::stdio::to_stdout(&text)
        }
        Command::Predict(args) => {
            refuse_outputs_over_inputs(&args.common, &[args.output.as_deref(), args.report.as_deref()], None)?;
            let file = load_model(&args.common.model, args.common.sha256.as_deref())?;
            predict(open_engine(args.common.backend, args.common.cpu_kernels, file).await?, &args).await
        }
        Command::Screen(args) => {
            refuse_outputs_over_inputs(&args.common, &[args.report.as_deref()], args.signature.as_deref())?;
            let file = load_model(&args.common.model, args.common.sha256.as_deref())?;
            screen(open_engine(args.common.backend, args.common.cpu_kernels, file).await?, &args).await
        }
    }
}

/// Refuses `--output`, `--report`, `--familiarity` or `--enrichment` naming the model, the
/// sample, the gene sets or the signature.
fn refuse_outputs_over_inputs(common: &Common, outputs: &[Option<&Path>], signature: Option<&Path>) -> Result<()> {
    let (model, sample) = (locate(&common.model), locate(&common.sample));
    let sets = cli::enrichment::path(&common.sets, &model);
    let mut inputs = vec![("model", model.as_path()), ("sample", sample.as_path()), ("gene-set file", sets.as_path())];
    inputs.extend(signature.map(|s| ("signature", s)));
    for out in outputs.iter().flatten().copied().chain(common.familiarity.as_deref()).chain(common.sets.enrichment.as_deref()) {
        refuse_output_over_input(out, &inputs)?;
    }
    Ok(())
}

/// The model on the backend the library's policy picks for `kind`; a fallback is said.
async fn open_engine(kind: BackendKind, kernels: CpuKernels, file: ModelFile) -> Result<Engine> {
    let engine = Engine::open_with(kind, kernels, || Ok(file)).await?;
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

impl Common {
    fn cells(&self) -> cli::sample::Cells<'_> {
        cli::sample::Cells { groups: self.groups.as_deref(), groupby: self.groupby.as_deref(), layer: self.layer.as_deref(), gene_names: self.gene_names.as_deref() }
    }
}

fn load_sample(common: &Common) -> Result<SampleTable> {
    Ok(cli::sample::load(&locate(&common.sample), common.values, &common.cells())?.table)
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
    for (i, (label, m)) in perts.iter().enumerate() {
        if perts[..i].iter().any(|(other, _)| other == label) {
            bail!("--perturbation '{label}' is given twice: its rows could not be told apart; give it once");
        }
        // Told apart by their labels, but the same numbers: said.
        if let Some((other, _)) = perts[..i].iter().find(|(_, earlier)| earlier == m) {
            note!(
                "refcast: warning: --perturbation '{label}' is the same perturbation as '{other}' ({}): their rows hold the same numbers",
                metadata::describe(m)
            )?;
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
    let report = args.report.as_deref().map(Output::prepare).transpose()?;
    let enrichment = args.common.sets.enrichment.as_deref().map(Output::prepare).transpose()?;
    let gene_sets = cli::enrichment::load(&args.common.sets, &locate(&args.common.model), &cfg, enrichment.as_ref().map(|_| "--enrichment"))?;
    let perts = perturbation_metadata(&cfg, &args.perturbation, &args.common.set)?;
    check_draws(args.num_samples, perts.len(), cfg.genes.len())?;
    let mut table = cli::sample::for_predict(&locate(&args.common.sample), args.common.values, &args.common.cells(), args.chunk_budget)?;
    let context = context_metadata(&cfg, &args.common)?;
    let requested: Vec<Metadata> = perts.iter().map(|p| p.1.clone()).collect();
    for w in metadata::request_warnings(&cfg, &context, &args.common.condition_on, &requested) {
        note!("refcast: warning: {w}")?;
    }
    // What a column can fail on is refused before anything is written.
    let sample_path = cli::input::display(&locate(&args.common.sample));
    table.check_columns(|chunk, s| {
        let reference = engine.reference(chunk, s).with_context(|| sample_path.clone())?;
        with_library_size(reference, args.common.library_size).map(drop)
    })?;
    let sampling = match args.num_samples {
        None => Sampling::Mean,
        Some(n) => Sampling::Samples { num_samples: n, seed: args.seed.unwrap_or(0) },
    };
    note!("refcast: {} on {}", cfg.name, engine.describe())?;
    let samples = table.samples().len();
    let progress = ProgressBar::new(samples as u64).with_style(
        ProgressStyle::with_template("{spinner} predicting [{bar:30}] {pos}/{len} samples {eta}").expect("template").progress_chars("=> "),
    );
    if samples < 4 {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let many = samples > 1 || perts.len() > 1 || args.num_samples.is_some();
    // Tens of bytes per line: a sampled prediction of many genes is gigabytes, said before it is.
    let lines = samples as f64 * perts.len() as f64 * args.num_samples.unwrap_or(1) as f64 * cfg.genes.len() as f64;
    let bytes = lines * if many { 80.0 } else { 60.0 };
    if bytes > 1e9 {
        let target = args.output.as_deref().filter(|p| !is_dash(p)).map_or("standard output".to_string(), |p| p.display().to_string());
        note!("refcast: writing {lines} lines, about {:.1} GB, to {target}", bytes / 1e9)?;
    }
    let mut out = output.begin()?;
    out.write(|w| write_prediction_header(w, many))?;
    let mut familiarity = familiarity.map(Output::begin).transpose()?;
    if let Some(f) = familiarity.as_mut() {
        f.write(write_familiarity_header)?;
    }
    let mut enrichment = enrichment.map(Output::begin).transpose()?;
    if let Some(e) = enrichment.as_mut() {
        e.write(|w| cli::enrichment::write_predict_header(w, many))?;
    }
    // The report shows the samples the summary shows.
    let mut reported = Vec::new();
    let mut outside = 0;
    for range in table.chunks() {
        let first = range.start;
        let chunk = table.read_columns(range)?;
        for s in 0..chunk.samples.len() {
            // The first few samples are summarised on standard error; the output has them all.
            let shown = first + s < SUMMARISED_SAMPLES;
            let reference = with_library_size(engine.reference(&chunk, s)?, args.common.library_size)?;
            if shown {
                progress.suspend(|| note!("refcast: sample '{}': {}", reference.name, reference.report))?;
            }
            let mut req = Request::conditioned(vec![reference], perts.iter().map(|p| p.1.clone()).collect());
            req.contexts = vec![context.clone()];
            req.condition_on = args.common.condition_on.clone();
            req.sampling = sampling;
            req.mode = args.common.mode;
            req.baseline = args.common.versus.unwrap_or_else(|| Baseline::default_for(req.mode, cfg.control().is_some()));
            let t = Instant::now();
            let pred = engine.predict(&req).await?;
            let elapsed = t.elapsed();
            let reference = &req.references[0];
            outside += pred.familiarity.iter().filter(|f| f.outside == Some(true)).count();
            if shown {
                progress.suspend(|| pred.familiarity.iter().try_for_each(report_familiarity))?;
                progress.suspend(|| cli::report::measured_elsewhere(&cfg, &pred, &perts))?;
            }
            out.write(|w| write_prediction(w, &cfg.genes, reference, &pred, &perts, many))?;
            if let Some(f) = familiarity.as_mut() {
                f.write(|w| pred.familiarity.iter().try_for_each(|fam| write_familiarity_row(w, fam)))?;
            }
            if shown {
                progress.suspend(|| summarise(&cfg, reference, &pred, &perts, args.top, elapsed))?;
            }
            if let (Some(sets), Some(lfc)) = (&gene_sets, &pred.log_fold_change) {
                for (r, row) in pred.rows.iter().enumerate() {
                    let (_, scored) = cli::enrichment::score(sets, refcast::Prediction::row(lfc, pred.genes, r), &reference.measured)?;
                    if shown && row.sample == 0 {
                        progress.suspend(|| {
                            note!("refcast: gene sets, {} × {}", reference.name, perts[row.perturbation].0)?;
                            cli::enrichment::summarise(&cfg, sets, &scored)
                        })?;
                    }
                    if let Some(e) = enrichment.as_mut() {
                        let labels = [reference.name.clone(), perts[row.perturbation].0.clone(), row.sample.to_string()];
                        e.write(|w| cli::enrichment::write_predict_row(w, &cfg, sets, many.then_some(&labels), &scored))?;
                    }
                }
            }
            if shown && report.is_some() {
                reported.push((reference.clone(), pred));
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    out.finish()?;
    familiarity.map(|f| f.finish()).transpose()?;
    enrichment.map(|e| e.finish()).transpose()?;
    if let Some(report) = report {
        let names: Vec<&str> = perts.iter().map(|p| p.0.as_str()).collect();
        let baseline = args.common.versus.unwrap_or_else(|| Baseline::default_for(args.common.mode, cfg.control().is_some()));
        let data = cli::html::prediction_data(&cfg, reported.iter().map(|(r, p)| (r, p)), &names, baseline, &args.common.mode.to_string());
        cli::html::write(report, "refcast prediction", &data)?;
        if samples > SUMMARISED_SAMPLES {
            note!("refcast: the report shows the first {SUMMARISED_SAMPLES} samples")?;
        }
    }
    if samples > SUMMARISED_SAMPLES {
        let more = samples - SUMMARISED_SAMPLES;
        note!("refcast: … and {more} more sample{} predicted, not summarised here; the output has every sample", if more == 1 { "" } else { "s" })?;
    }
    if outside > 0 && samples > SUMMARISED_SAMPLES {
        note!("refcast: warning: {outside} of the {samples} samples look unlike anything the model was trained on (--familiarity FILE lists each)")?;
    }
    note!("refcast: done in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3)
}

/// Refuses `--num-samples` of 0, or of more draws than one sample's prediction may hold
/// ([`MAX_PREDICTION_VALUES`] values), before the sample is read.
fn check_draws(num_samples: Option<usize>, perturbations: usize, genes: usize) -> Result<()> {
    let Some(n) = num_samples else { return Ok(()) };
    if n == 0 {
        bail!("--num-samples 0: draw at least 1 (or leave it out for the mean)");
    }
    let per_draw = (perturbations * genes).max(1);
    let values = n as u128 * per_draw as u128;
    if values > MAX_PREDICTION_VALUES as u128 {
        bail!(
            "--num-samples {n}: {n} draws × {perturbations} perturbation(s) × {genes} genes = {values} values per sample, over the \
             limit of {MAX_PREDICTION_VALUES} predicted values per request; draw at most {} with {perturbations} perturbation(s)",
            (MAX_PREDICTION_VALUES / per_draw).max(1)
        );
    }
    Ok(())
}

/// Samples summarised on standard error (the top genes, familiarity, gene matching).
const SUMMARISED_SAMPLES: usize = 5;

/// The header of the prediction table; `many`: with `sample, perturbation, draw` columns.
fn write_prediction_header(w: &mut dyn Write, many: bool) -> Result<()> {
    if many {
        write!(w, "sample\tperturbation\tdraw\t")?;
    }
    Ok(writeln!(w, "gene\treference\tpredicted\tlog_fold_change\tcounts\tsigma\tmeasured")?)
}

/// The lines of one reference's prediction.
fn write_prediction(w: &mut dyn Write, genes: &[refcast::format::Gene], reference: &Reference, pred: &refcast::Prediction, perts: &[(String, Metadata)], many: bool) -> Result<()> {
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
    Ok(())
}

async fn screen(mut engine: Engine, args: &ScreenArgs) -> Result<()> {
    let cfg = engine.config().clone();
    // A screen ranks the perturbations as the model knows them: a perturbation's field set for
    // all of them would be silently without effect.
    let perturbation_fields = metadata::split_fields(&cfg, parse_set(&args.common.set)?).1;
    if !perturbation_fields.is_empty() {
        let fields: Vec<&str> = perturbation_fields.keys().map(String::as_str).collect();
        bail!(
            "--set {}: a perturbation's field, which screen does not take (it ranks every perturbation the model knows, each \
             as trained); to predict one at another value, use predict -p NAME --set {}=…",
            fields.join(", "),
            fields[0]
        );
    }
    let familiarity = args.common.familiarity.as_deref().map(Output::prepare).transpose()?;
    let report = args.report.as_deref().map(Output::prepare).transpose()?;
    let enrichment = args.common.sets.enrichment.as_deref().map(Output::prepare).transpose()?;
    let needed = args.rank_by.as_ref().map(|_| "--rank-by").or(enrichment.as_ref().map(|_| "--enrichment"));
    let gene_sets = cli::enrichment::load(&args.common.sets, &locate(&args.common.model), &cfg, needed)?;
    let sets_options = cli::enrichment::screen_options(gene_sets.clone(), &args.common.sets, args.rank_by.as_deref())?;
    let signature = args.signature.as_deref().map(|path| load_signature(path, args.signature_column.as_deref())).transpose()?;
    let table = load_sample(&args.common)?;
    if table.samples.len() != 1 {
        bail!("screen takes one sample; the file has {} columns ({})", table.samples.len(), table.samples.join(", "));
    }
    let context = context_metadata(&cfg, &args.common)?;
    for w in metadata::request_warnings(&cfg, &context, &args.common.condition_on, &[]) {
        note!("refcast: warning: {w}")?;
    }
    let reference = engine.reference(&table, 0).with_context(|| cli::input::display(&locate(&args.common.sample)))?;
    let reference = with_library_size(reference, args.common.library_size)?;
    note!("refcast: {} on {}", cfg.name, engine.describe())?;
    note!("refcast: sample '{}': {}", reference.name, reference.report)?;
    let t = Instant::now();
    let options = ScreenOptions {
        signature: signature.clone(),
        mode: args.common.mode,
        baseline: args.common.versus,
        condition_on: Some(args.common.condition_on.clone()),
        enrichment: sets_options.clone(),
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
    let out = cli::report::screen_table(&cfg, &screen, args.top)?;
    cli::stdio::to_stdout(&out)?;
    cli::report::screen_legend(&screen)?;
    cli::report::screen_coverage(&cfg, &screen, args.top.min(10))?;
    if let Some(sets) = &gene_sets {
        cli::enrichment::summarise_screen(sets, hits, args.top, sets_options.as_ref().and_then(|o| o.rank_by))?;
        if let Some(output) = enrichment {
            cli::enrichment::write_screen(output, &cfg, sets, hits)?;
        }
    }
    if let Some(report) = report {
        cli::html::write(report, "refcast screen", &cli::html::screen_data(&cfg, &screen, &reference.name))?;
    }
    note!("refcast: screened {} perturbations in {:.1} ms", hits.len(), elapsed.as_secs_f64() * 1e3)
}
