//! `refcast info`: the model described for people, laid out from the library's [`ModelCard`];
//! `--genes` lists the genes, `--verbose` adds every perturbation and the raw provenance,
//! `--json` gives the card as JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use refcast::card::{EvaluationStatus, ModelCard, thousands};
use refcast::format::{Group, ModelFile};

use super::input::{Limit, read_bounded};

/// The evaluation read beside a model when none is named.
pub const EVALUATION_FILE: &str = "evaluation.json";

/// Agents listed by name per perturbation class before the rest are counted.
const AGENTS_SHOWN: usize = 8;

/// What `refcast info` shows.
pub struct InfoOptions {
    pub genes: bool,
    pub verbose: bool,
    pub json: bool,
    /// An evaluation named on the command line; else `evaluation.json` beside the model, if any.
    pub evaluation: Option<PathBuf>,
}

/// The model's card, with the evaluation named or found beside `path`.
pub fn card(file: &ModelFile, path: &Path, evaluation: Option<&Path>) -> Result<ModelCard> {
    let card = ModelCard::new(file);
    let beside = path.parent().map(|d| d.join(EVALUATION_FILE)).filter(|p| p.is_file());
    let Some(source) = evaluation.map(Path::to_path_buf).or(beside) else { return Ok(card) };
    let limit = Limit { what: "evaluation file", bytes: 64 << 20, fix: "is it a refcast evaluation.json?" };
    let bytes = read_bounded(&source, &limit)?;
    Ok(card.with_evaluation(file, &bytes, &source.display().to_string())?)
}

/// `refcast info` for the model at `path`.
pub fn info(out: &mut impl Write, file: &ModelFile, path: &Path, options: &InfoOptions) -> Result<()> {
    let card = card(file, path, options.evaluation.as_deref())?;
    if options.json {
        let mut doc = serde_json::to_value(&card)?;
        if options.genes {
            doc["gene_list"] = serde_json::to_value(&file.config.genes)?;
        }
        if options.verbose {
            doc["provenance"] = file.config.provenance.clone();
            doc["perturbation_list"] = serde_json::to_value(&file.config.perturbations)?;
        }
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    if options.genes {
        writeln!(out, "symbol\tensembl")?;
        for g in &file.config.genes {
            writeln!(out, "{}\t{}", g.symbol, g.ensembl.as_deref().unwrap_or(""))?;
        }
        return Ok(());
    }
    describe(out, &card, file, path, options.verbose).context("cannot describe the model")?;
    if options.verbose {
        verbose(out, file)?;
    }
    Ok(())
}

/// Vocabularies listed whole in the description; longer ones are counted (--verbose lists them).
const VALUES_SHOWN: usize = 24;

/// `  label        text`, the text wrapped under itself.
fn field(out: &mut impl Write, label: &str, text: &str) -> Result<()> {
    let label = if label.chars().count() >= 13 { format!("{label} ") } else { format!("{label:<13}") };
    write!(out, "  {label}")?;
    wrap_from(out, text, &" ".repeat(15), 2 + label.chars().count())
}

/// A paragraph wrapped at 96 columns, each line indented by `indent`.
fn wrap(out: &mut impl Write, text: &str, indent: &str) -> Result<()> {
    write!(out, "{indent}")?;
    wrap_from(out, text, indent, indent.len())
}

/// The rest of a paragraph whose first line is already `column` characters in; the next lines
/// start with `indent`.
fn wrap_from(out: &mut impl Write, text: &str, indent: &str, column: usize) -> Result<()> {
    let mut used = column;
    let mut first = true;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if !first && used + 1 + len > 96 {
            write!(out, "\n{indent}")?;
            used = indent.chars().count();
            first = true;
        }
        if !first {
            write!(out, " ")?;
            used += 1;
        }
        write!(out, "{word}")?;
        used += len;
        first = false;
    }
    writeln!(out)?;
    Ok(())
}

fn describe(out: &mut impl Write, card: &ModelCard, file: &ModelFile, path: &Path, verbose_values: bool) -> Result<()> {
    let c = &file.config;
    writeln!(out, "{} ({})", card.name, path.display())?;
    wrap(out, &card.description, "  ")?;

    writeln!(out, "\nmodel")?;
    field(out, "genes", &format!("{} (`refcast info --genes` lists them)", thousands(card.genes)))?;
    field(out, "latents", &card.latents)?;
    field(out, "networks", &card.networks)?;
    field(out, "activation", &card.activation)?;
    let weights: Vec<String> = card.weights.iter().map(|w| format!("{}: {} parameters", w.encoding, thousands(w.parameters))).collect();
    field(out, "weights", &weights.join("; "))?;
    field(out, "values", &card.values)?;

    writeln!(out, "\ntraining data ({} source{})", card.datasets.len(), if card.datasets.len() == 1 { "" } else { "s" })?;
    for d in &card.datasets {
        writeln!(out, "  {}", d.name)?;
        let mut about = vec![d.source.clone()];
        about.extend(d.size.as_ref().map(|s| format!("{s} download")));
        about.extend(d.licence.as_ref().map(|l| format!("licence {l}")));
        writeln!(out, "      {}", about.join("; "))?;
        for link in &d.links {
            writeln!(out, "      {link}")?;
        }
    }
    if !card.training.is_empty() {
        let units: u64 = card.training.iter().map(|g| g.units).sum();
        writeln!(out, "  trained on {} contexts ({} training units: samples or pseudobulks):", card.training.iter().map(|g| g.contexts).sum::<usize>(), thousands(units as usize))?;
        for g in &card.training {
            let contexts = format!("{} context{}", g.contexts, if g.contexts == 1 { "" } else { "s" });
            writeln!(out, "      {:<46}{contexts:>12}, {:>4} units", g.dataset, g.units)?;
        }
    }
    if let Some(notes) = &card.notes {
        wrap(out, notes, "  ")?;
    }

    evaluation(out, card)?;

    writeln!(out, "\nperturbations ({} known, in {} classes)", thousands(card.perturbation_count), card.perturbations.len())?;
    for class in &card.perturbations {
        let agents = class.agents.len();
        let count = if agents == class.entries { format!("{agents}") } else { format!("{} entries, {agents} agent{}", class.entries, if agents == 1 { "" } else { "s" }) };
        if agents > AGENTS_SHOWN {
            let names: Vec<&str> = class.agents.iter().take(AGENTS_SHOWN).map(|a| a.name.as_str()).collect();
            writeln!(out, "  {} ({count}) at {}", class.class, class.settings)?;
            wrap(out, &format!("{}, … and {} more (--verbose lists every one)", names.join(", "), agents - AGENTS_SHOWN), "      ")?;
            continue;
        }
        writeln!(out, "  {} ({count})", class.class)?;
        for a in &class.agents {
            let settings = if a.settings.is_empty() { String::new() } else { format!(" at {}", a.settings) };
            let measured = if a.measured_in.is_empty() { String::new() } else { format!("; evaluated in {}", a.measured_in.join(", ")) };
            writeln!(out, "      {}{settings}{measured}", a.name)?;
        }
    }

    writeln!(out, "\ncontexts ({} known, from {} source{})", card.context_count, card.contexts.len(), if card.contexts.len() == 1 { "" } else { "s" })?;
    for g in &card.contexts {
        writeln!(out, "  {}", if g.source.is_empty() { "(no technical fields)" } else { g.source.as_str() })?;
        wrap(out, &g.contexts.join("; "), "      ")?;
    }

    writeln!(out, "\nmetadata the priors read (--set FIELD=VALUE)")?;
    for g in Group::ALL {
        let p = c.priors.of(g);
        writeln!(out, "  {}", g.name())?;
        for f in &p.categorical {
            // Entry 0 of a vocabulary is "unknown".
            let values = &f.values[1.min(f.values.len())..];
            let text = if values.len() <= VALUES_SHOWN || verbose_values {
                values.join(", ")
            } else {
                format!("{} values: {}, … (--verbose lists them)", values.len(), values[..VALUES_SHOWN / 2].join(", "))
            };
            field(out, &format!("  {}", f.name), &text)?;
        }
        for f in &p.numeric {
            let unit = f.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            field(out, &format!("  {}", f.name), &format!("a number in [{}, {}]{unit}", f.min, f.max))?;
        }
    }
    for f in &c.covariates {
        let unit = f.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
        field(
            out,
            "encoder",
            &format!("{}: the sample's sum of counts, as the {}; trained on [{}, {}]{unit} (a log-CPM sample enters at the training mean)", f.name, f.transform.describe(), f.min, f.max),
        )?;
    }

    match &c.familiarity {
        Some(cal) => {
            writeln!(out, "\nfamiliarity")?;
            wrap(
                out,
                &format!(
                    "A sample is flagged as unlike the training data when its encoding is farther than {} from the centroid of every one of the {} training contexts, or when the model reconstructs less than {:.0} % of its profile (R²). {}",
                    cal.max_distance,
                    cal.centroids.len(),
                    100.0 * cal.min_reconstruction_r2,
                    cal.calibration.trim()
                ),
                "  ",
            )?;
        }
        None => writeln!(out, "\nfamiliarity: not calibrated (only how well the model reconstructs a sample is reported)")?,
    }
    Ok(())
}

fn evaluation(out: &mut impl Write, card: &ModelCard) -> Result<()> {
    let Some(e) = &card.evaluation else {
        writeln!(out, "\nevaluation: none found (no {EVALUATION_FILE} beside the model; --evaluation FILE names one)")?;
        return Ok(());
    };
    writeln!(out, "\nevaluation ({}; {})", e.source, e.method)?;
    match &e.status {
        EvaluationStatus::Stale(reasons) => {
            writeln!(out, "  STALE: this evaluation is of another model; its numbers do not describe this one:")?;
            for r in reasons {
                writeln!(out, "    - {r}")?;
            }
        }
        EvaluationStatus::Unlinked => wrap(
            out,
            "note: the evaluation does not name the model it scored; it agrees with this one on genes and perturbations",
            "  ",
        )?,
        EvaluationStatus::Current => {}
    }
    wrap(out, &e.metric, "  ")?;
    writeln!(out, "  {:<14}{:<10}{:>9}  {:<24}best baseline", "dataset", "held out", "contexts", "r [95 % interval]")?;
    for r in &e.rows {
        let baseline = r.best_baseline.as_ref().map_or("-".to_string(), |(m, v)| format!("{m} {v:.3}"));
        let score = format!("{:.3} [{:.3}, {:.3}]", r.score.mean, r.score.lo, r.score.hi);
        writeln!(out, "  {:<14}{:<10}{:>9}  {score:<24}{baseline}", r.dataset, r.protocol, r.contexts)?;
    }
    Ok(())
}

/// `--verbose`: every perturbation with its metadata, and the raw provenance.
fn verbose(out: &mut impl Write, file: &ModelFile) -> Result<()> {
    let c = &file.config;
    writeln!(out, "\nevery perturbation ({})", c.perturbations.len())?;
    let width = c.perturbations.iter().map(|n| n.name.chars().count()).max().unwrap_or(0) + 2;
    for n in &c.perturbations {
        writeln!(out, "  {:<width$}{}", n.name, refcast::metadata::describe(&n.metadata))?;
    }
    writeln!(out, "\nprovenance (as recorded in the model file)")?;
    writeln!(out, "{}", serde_json::to_string_pretty(&c.provenance)?)?;
    Ok(())
}
