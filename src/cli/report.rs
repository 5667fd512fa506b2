//! What the command line prints about results: familiarity reports, the top genes of a
//! prediction and the screen's table with its legend. The numbers come from the library; this
//! is layout (`refcast info` is `info.rs`).

use std::io::Write;

use anyhow::Result;
use refcast::format::Metadata;
use refcast::request::{FOLD_CHANGE_UNITS, top_changes};
use refcast::screen::{Screen, activity_legend, column_legend, coverage_legend, ranked_legend};
use refcast::{Coverage, Familiarity, Measured, Prediction};

use super::output::Output;

/// One line per sample on standard error: a warning when it lies outside what the model was
/// trained on.
pub fn report_familiarity(f: &Familiarity) -> Result<()> {
    match f.outside {
        Some(true) => note!("warning: {}", f.summary()),
        _ => note!("refcast: {}", f.summary()),
    }
}

/// The familiarity of each sample as TSV.
pub fn write_familiarity<'a>(output: Output, list: impl IntoIterator<Item = &'a Familiarity>) -> Result<()> {
    output.write(|w| {
        write_familiarity_header(w)?;
        list.into_iter().try_for_each(|f| write_familiarity_row(w, f))
    })
}

/// The header of [`write_familiarity`]'s table.
pub fn write_familiarity_header(w: &mut dyn Write) -> Result<()> {
    Ok(writeln!(w, "reference\treconstruction_r2\tnearest_context\tdistance\toutside")?)
}

/// One sample's line of [`write_familiarity`]'s table.
pub fn write_familiarity_row(w: &mut dyn Write, f: &Familiarity) -> Result<()> {
    let or_na = |v: Option<String>| v.unwrap_or_else(|| "NA".to_string());
    Ok(writeln!(
        w,
        "{}\t{:.4}\t{}\t{}\t{}",
        f.reference,
        f.reconstruction_r2,
        or_na(f.nearest_context.clone()),
        or_na(f.distance.map(|d| format!("{d:.4}"))),
        or_na(f.outside.map(|o| o.to_string()))
    )?)
}

/// Top genes per direction for each perturbation, on standard error, with the fold changes' units.
pub fn summarise(cfg: &refcast::ModelConfig, reference: &refcast::Reference, pred: &Prediction, perts: &[(String, Metadata)], top: usize, elapsed: std::time::Duration) -> Result<()> {
    let lfc = pred.log_fold_change.as_ref().expect("references give fold changes");
    for (r, row) in pred.rows.iter().enumerate().filter(|(_, row)| row.sample == 0) {
        let (up, down) = top_changes(Prediction::row(lfc, pred.genes, r), &reference.measured_genes(), top);
        let list = |genes: &[(usize, f32)]| -> String {
            genes.iter().map(|&(g, v)| format!("{} {v:+.2}", cfg.genes[g].symbol)).collect::<Vec<_>>().join(", ")
        };
        note!("refcast: {} × {} ({:.1} ms), top genes by {FOLD_CHANGE_UNITS}", reference.name, perts[row.perturbation].0, elapsed.as_secs_f64() * 1e3)?;
        note!("  up:   {}", list(&up))?;
        note!("  down: {}", list(&down))?;
    }
    note!("refcast: {}", refcast::request::FOLD_CHANGE_NOTE)
}

/// Genes per direction in the CLI's screen table.
pub const SCREEN_TOP_GENES: usize = 5;

/// The screen's table, best first: `rank, perturbation, effect_size, reversal, top_up, top_down`
/// (see [`column_legend`]), `top` perturbations.
pub fn screen_table(cfg: &refcast::ModelConfig, screen: &Screen, top: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut columns: Vec<&str> = column_legend(false, SCREEN_TOP_GENES).into_iter().map(|(c, _)| c).collect();
    let by_activity = screen.hits.first().is_some_and(|h| h.activity.is_some());
    if by_activity {
        columns.push(activity_legend().0);
    }
    let coverage = Coverage::recorded(cfg);
    if coverage {
        columns.extend(coverage_legend().iter().map(|(c, _)| *c));
    }
    writeln!(out, "{}", columns.join("\t"))?;
    let genes = |v: &[(usize, f32)]| v.iter().take(SCREEN_TOP_GENES).map(|(g, l)| format!("{}:{:+.2}", cfg.genes[*g].symbol, l)).collect::<Vec<_>>().join(",");
    for (i, h) in screen.hits.iter().take(top).enumerate() {
        write!(
            out,
            "{}\t{}\t{:.4}\t{}\t{}\t{}",
            i + 1,
            h.name,
            h.effect_size,
            h.reversal.map_or("-".to_string(), |r| format!("{r:.4}")),
            genes(&h.top_up),
            genes(&h.top_down)
        )?;
        if let (Some(a), true) = (h.activity, by_activity) {
            write!(out, "\t{a:.4}")?;
        }
        if coverage {
            let c = &h.coverage;
            write!(out, "\t{}\t{}\t{}", c.measured, c.context.as_deref().unwrap_or("-"), c.distance.map_or("-".to_string(), |d| format!("{d:.2}")))?;
        }
        writeln!(out)?;
    }
    Ok(out)
}

/// What the screen's columns mean, on standard error after the table.
pub fn screen_legend(screen: &Screen) -> Result<()> {
    let ranked_by_reversal = screen.hits.first().is_some_and(|h| h.reversal.is_some());
    let ranked_by_set = screen.hits.first().is_some_and(|h| h.activity.is_some());
    let coverage = screen.hits.first().is_some_and(|h| h.coverage.measured != Measured::Unknown);
    let legend = ranked_legend(ranked_by_reversal, ranked_by_set, coverage, SCREEN_TOP_GENES);
    let width = legend.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    note!("refcast: what the columns mean ({}):", refcast::request::FOLD_CHANGE_NOTE)?;
    for (column, meaning) in legend {
        note!("  {column:<width$}  {meaning}")?;
    }
    Ok(())
}

/// How many of a screen's perturbations the model saw in a context like the sample's, a warning
/// when the first `top` include some it did not (a high rank there is an extrapolation), and where
/// those it did see rank.
pub fn screen_coverage(cfg: &refcast::ModelConfig, screen: &Screen, top: usize) -> Result<()> {
    if !Coverage::recorded(cfg) || screen.familiarity.is_empty() {
        return Ok(());
    }
    let count = |m: Measured| screen.hits.iter().filter(|h| h.coverage.measured == m).count();
    note!(
        "refcast: of the {} perturbations screened, {} were measured in training in a context like this sample's, {} only in other contexts, {} never at that time and dose (column 'measured')",
        screen.hits.len(),
        count(Measured::Nearby),
        count(Measured::Elsewhere),
        count(Measured::Never)
    )?;
    let shown = top.min(screen.hits.len());
    let unseen = screen.hits[..shown].iter().filter(|h| h.coverage.measured != Measured::Nearby).count();
    if unseen == 0 {
        return Ok(());
    }
    let nearby: Vec<String> = screen
        .hits
        .iter()
        .enumerate()
        .filter(|(_, h)| h.coverage.measured == Measured::Nearby && !refcast::ModelConfig::is_control(&refcast::format::Named::new(h.name.clone(), h.metadata.clone())))
        .take(5)
        .map(|(rank, h)| format!("'{}' (rank {})", h.name, rank + 1))
        .collect();
    let seen = if nearby.is_empty() { "none of the others either".to_string() } else { format!("those measured there rank: {}", nearby.join(", ")) };
    note!("refcast: warning: {unseen} of the top {shown} were never measured in a context like this sample's, so their predictions are extrapolations; {seen}")
}

/// Warnings for the perturbations of one sample's prediction that the model measured only in
/// contexts unlike the sample's.
pub fn measured_elsewhere(cfg: &refcast::ModelConfig, pred: &Prediction, perts: &[(String, Metadata)]) -> Result<()> {
    let metadata: Vec<Metadata> = perts.iter().map(|(_, m)| m.clone()).collect();
    let coverage = Coverage::of_request(cfg, &pred.familiarity, &metadata);
    // reference-major, as of_request lists them; no familiarity (prompt-only): nothing to say
    for (c, (f, (label, _))) in coverage.iter().zip(pred.familiarity.iter().flat_map(|f| perts.iter().map(move |p| (f, p)))) {
        if let (Measured::Elsewhere, Some(w)) = (c.measured, c.warning(label)) {
            note!("refcast: warning: sample '{}': {w}", f.reference)?;
        }
    }
    Ok(())
}
