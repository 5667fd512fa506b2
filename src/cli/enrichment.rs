//! Gene sets on the command line: `--gene-sets`, `--enrichment FILE`, `screen --rank-by`, and the
//! pathways and GO terms in the summaries. The scores are the library's (`refcast::enrichment`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use refcast::enrichment::{Enrichment, GENE_SETS_FILE, GO_BP, GeneSets, PATHWAYS, SetResult};
use refcast::format::{ModelConfig, checksum};
use refcast::screen::{ScreenEnrichment, ScreenHit};

use super::input::{Limit, read_bounded};
use super::output::Output;

/// Largest gene-set file read (the shipped one is 1.3 MB).
const MAX_GENE_SETS_BYTES: u64 = 256 << 20;
/// Pathways and GO terms listed per direction in a summary.
const SUMMARY_SETS: usize = 5;

#[derive(Args, Clone, Debug, Default)]
pub struct EnrichmentArgs {
    /// Gene-set file (.safetensors, built by `python -m training.genesets`); default: the
    /// refcast-genesets.safetensors beside the model, when there is one.
    #[arg(long, value_name = "FILE")]
    pub gene_sets: Option<PathBuf>,
    /// Write every gene set's score as TSV here: collection (progeny = PROGENy pathway
    /// activity, go_bp = GO biological process), set, name, score (decoupler's ULM t-value of
    /// the fold changes regressed on the set's weights, over the genes the sample measured;
    /// positive = up), p_value, fdr (Benjamini–Hochberg within the collection), size (genes in
    /// the sample), leading_genes (largest contributions in the score's direction, with their
    /// LFC).
    #[arg(long, value_name = "FILE")]
    pub enrichment: Option<PathBuf>,
}

/// Where the gene sets are read from: `--gene-sets`, else beside the model.
pub fn path(args: &EnrichmentArgs, model: &Path) -> PathBuf {
    args.gene_sets.clone().unwrap_or_else(|| model.parent().unwrap_or(Path::new(".")).join(GENE_SETS_FILE))
}

/// The gene sets: `--gene-sets`, else the file beside the model. `None` (said once) when no file
/// is given and none is beside the model, unless `needed` (for `--enrichment`, `--rank-by`).
pub fn load(args: &EnrichmentArgs, model: &Path, config: &ModelConfig, needed: Option<&str>) -> Result<Option<Arc<GeneSets>>> {
    let path = match &args.gene_sets {
        Some(p) => p.clone(),
        None => {
            let beside = path(args, model);
            if !beside.exists() {
                if let Some(option) = needed {
                    bail!("{option} needs gene sets: there is no {GENE_SETS_FILE} beside the model ({}); give --gene-sets FILE", beside.display());
                }
                note!("refcast: no {GENE_SETS_FILE} beside the model; no pathway or GO scores (give --gene-sets FILE)")?;
                return Ok(None);
            }
            beside
        }
    };
    let limit = Limit { what: "gene-set file", bytes: MAX_GENE_SETS_BYTES, fix: "is it a refcast gene-set file (.safetensors)?" };
    let bytes = read_bounded(&path, &limit)?;
    if let checksum::Verified::NotListed(_) | checksum::Verified::Unknown = checksum::verify_file(&path, &bytes, None)? {
        note!("refcast: note: no checksum is known for {}; it is not verified", path.display())?;
    }
    let sets = GeneSets::from_bytes(&bytes, config).with_context(|| path.display().to_string())?;
    Ok(Some(Arc::new(sets)))
}

/// The set `screen --rank-by` names.
pub fn rank_by(sets: &GeneSets, key: &str) -> Result<usize> {
    sets.find(key).context("--rank-by")
}

/// Screen options for gene sets: the pathways of every perturbation, every set with
/// `--enrichment`, ranking with `--rank-by`.
pub fn screen_options(sets: Option<Arc<GeneSets>>, args: &EnrichmentArgs, rank_by_key: Option<&str>) -> Result<Option<ScreenEnrichment>> {
    let Some(gene_sets) = sets else { return Ok(None) };
    let rank_by = rank_by_key.map(|k| rank_by(&gene_sets, k)).transpose()?;
    Ok(Some(ScreenEnrichment { gene_sets, rank_by, all_sets: args.enrichment.is_some() }))
}

fn leading(config: &ModelConfig, leading: &[(usize, f32)]) -> String {
    leading.iter().map(|(g, l)| format!("{}:{:+.2}", config.genes[*g].symbol, l)).collect::<Vec<_>>().join(",")
}

fn set_columns(w: &mut dyn Write, config: &ModelConfig, sets: &GeneSets, r: &SetResult) -> std::io::Result<()> {
    let set = &sets.sets()[r.score.set];
    let s = &r.score;
    write!(w, "{}\t{}\t{}\t{:.4}\t{:.3e}\t{:.3e}\t{}\t{}", set.collection, set.id, set.name, s.score, s.p_value, s.fdr, s.size, leading(config, &r.leading))
}

const COLUMNS: &str = "collection\tset\tname\tscore\tp_value\tfdr\tsize\tleading_genes";

/// Scores one prediction row (every set, with leading genes).
pub fn score(sets: &GeneSets, lfc: &[f32], measured: &[bool]) -> Result<(Enrichment, Vec<SetResult>)> {
    let e = sets.score(lfc, Some(measured))?;
    let results = sets.results(&e.scores, lfc, Some(measured));
    Ok((e, results))
}

/// `predict --enrichment`'s header; `many`: the prediction has several rows (samples,
/// perturbations or draws), which the sample, perturbation and draw columns then tell apart.
pub fn write_predict_header(w: &mut dyn Write, many: bool) -> Result<()> {
    if many {
        write!(w, "sample\tperturbation\tdraw\t")?;
    }
    Ok(writeln!(w, "{COLUMNS}")?)
}

/// `predict --enrichment`: one line per set of one prediction row, after its labels (sample,
/// perturbation, draw) when the header has them.
pub fn write_predict_row(w: &mut dyn Write, config: &ModelConfig, sets: &GeneSets, labels: Option<&[String; 3]>, results: &[SetResult]) -> Result<()> {
    for r in results {
        if let Some(labels) = labels {
            write!(w, "{}\t", labels.join("\t"))?;
        }
        set_columns(w, config, sets, r)?;
        writeln!(w)?;
    }
    Ok(())
}

/// `screen --enrichment`: per perturbation (in rank order) its pathways and the GO terms kept.
pub fn write_screen(output: Output, config: &ModelConfig, sets: &GeneSets, hits: &[ScreenHit]) -> Result<()> {
    output.write(|w| {
        writeln!(w, "rank\tperturbation\t{COLUMNS}")?;
        for (i, h) in hits.iter().enumerate() {
            for r in &h.enrichment {
                write!(w, "{}\t{}\t", i + 1, h.name)?;
                set_columns(w, config, sets, r)?;
                writeln!(w)?;
            }
        }
        Ok(())
    })
}

fn brief(sets: &GeneSets, r: &SetResult, config: &ModelConfig, with_genes: bool) -> String {
    let set = &sets.sets()[r.score.set];
    let name = if set.collection == GO_BP { format!("{} ({})", set.name, set.id) } else { set.name.clone() };
    let genes: Vec<&str> = r.leading.iter().take(4).map(|(g, _)| config.genes[*g].symbol.as_str()).collect();
    if with_genes && !genes.is_empty() {
        format!("{name} {:+.1} [{}]", r.score.score, genes.join(" "))
    } else {
        format!("{name} {:+.1}", r.score.score)
    }
}

/// The summary lines of one prediction: pathway activities and the GO terms that move most.
pub fn summarise(config: &ModelConfig, sets: &GeneSets, results: &[SetResult]) -> Result<()> {
    let ranked = |collection: &str| {
        let mut v: Vec<&SetResult> = results.iter().filter(|r| sets.sets()[r.score.set].collection == collection).collect();
        v.sort_by(|a, b| b.score.score.total_cmp(&a.score.score).then(a.score.set.cmp(&b.score.set)));
        v
    };
    let pathways = ranked(PATHWAYS);
    if !pathways.is_empty() {
        let up: Vec<String> = pathways.iter().filter(|r| r.score.score > 0.0).take(SUMMARY_SETS).map(|r| brief(sets, r, config, false)).collect();
        let down: Vec<String> = pathways.iter().rev().filter(|r| r.score.score < 0.0).take(3).map(|r| brief(sets, r, config, false)).collect();
        note!("  pathways (PROGENy activity, ULM t): up {}; down {}", or_none(&up), or_none(&down))?;
    }
    let go = ranked(GO_BP);
    let significant = |r: &&&SetResult| r.score.fdr <= 0.05;
    let up: Vec<String> = go.iter().filter(|r| r.score.score > 0.0).filter(significant).take(SUMMARY_SETS).map(|r| brief(sets, r, config, true)).collect();
    let down: Vec<String> = go.iter().rev().filter(|r| r.score.score < 0.0).filter(significant).take(3).map(|r| brief(sets, r, config, true)).collect();
    if !go.is_empty() {
        note!("  GO processes up (FDR ≤ 0.05): {}", or_none(&up))?;
        note!("  GO processes down (FDR ≤ 0.05): {}", or_none(&down))?;
    }
    Ok(())
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() { "none".to_string() } else { v.join(", ") }
}

/// After a screen's table: each shown perturbation's most activated pathways, and what it was
/// ranked by.
pub fn summarise_screen(sets: &GeneSets, hits: &[ScreenHit], top: usize, rank_by: Option<usize>) -> Result<()> {
    if let Some(s) = rank_by {
        let set = &sets.sets()[s];
        note!("refcast: ranked by the activity of {} '{}' ({}): the activity column is its ULM t-value", set.collection, set.id, set.name)?;
    }
    for h in hits.iter().take(top.min(5)) {
        let mut pathways: Vec<&SetResult> = h.enrichment.iter().filter(|r| sets.sets()[r.score.set].collection == PATHWAYS).collect();
        pathways.sort_by(|a, b| b.score.score.total_cmp(&a.score.score));
        let top: Vec<String> = pathways.iter().take(3).map(|r| format!("{} {:+.1}", sets.sets()[r.score.set].name, r.score.score)).collect();
        if !top.is_empty() {
            note!("  {}: pathways {}", h.name, top.join(", "))?;
        }
    }
    Ok(())
}
