//! What the command line prints about a model and its results: `refcast info`, familiarity
//! reports and the top genes of a prediction. The numbers come from the library; this is layout.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use refcast::format::{Group, Metadata, ModelFile};
use refcast::request::top_changes;
use refcast::{Familiarity, Prediction};

use super::output::Output;

/// `refcast info`: the model at `path` (as the user named it, found at `path`).
pub fn info(out: &mut impl Write, file: &ModelFile, path: &Path) -> Result<()> {
    let c = &file.config;
    let a = &c.architecture;
    writeln!(out, "model         {} ({})", c.name, path.display())?;
    writeln!(out, "genes         {}", a.genes)?;
    writeln!(
        out,
        "latents       technical {}, biological {}, perturbation {}",
        a.latent.technical, a.latent.biological, a.latent.perturbation
    )?;
    writeln!(
        out,
        "networks      encoder {}×{} ({} blocks), decoder {}×{} ({} blocks), priors {}×{} ({} block{}), {:?}",
        a.encoder.hidden, a.encoder.ff, a.encoder.blocks, a.decoder.hidden, a.decoder.ff, a.decoder.blocks,
        a.prior.hidden, a.prior.ff, a.prior.blocks, if a.prior.blocks == 1 { "" } else { "s" }, a.activation
    )?;
    let mut dtypes = std::collections::BTreeMap::<String, usize>::new();
    for m in file.tensors.values() {
        *dtypes.entry(m.dtype.to_string()).or_default() += m.rows * m.cols;
    }
    let summary: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} {n}")).collect();
    writeln!(out, "parameters    {}", summary.join(", "))?;
    for g in Group::ALL {
        let p = c.priors.of(g);
        writeln!(out, "\n{} metadata", g.name())?;
        for f in &p.categorical {
            writeln!(out, "  {:<14}{}", f.name, f.values.join(", "))?;
        }
        for f in &p.numeric {
            let unit = f.unit.as_deref().unwrap_or("");
            writeln!(out, "  {:<14}number in [{}, {}] {unit}", f.name, f.min, f.max)?;
        }
    }
    if !c.covariates.is_empty() {
        writeln!(out, "\nencoder covariates (from the sample; a log-CPM sample enters at the training mean)")?;
        for f in &c.covariates {
            let unit = f.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            writeln!(out, "  {:<14}the sample's sum of counts, as the {}; trained on [{}, {}]{unit}", f.name, f.transform.describe(), f.min, f.max)?;
        }
    }
    match &c.familiarity {
        Some(cal) => {
            let n = cal.centroids.len();
            writeln!(out, "\nfamiliarity   {n} training context{}; a sample is flagged as unlike the training data when its", if n == 1 { "" } else { "s" })?;
            writeln!(out, "              encoding is farther than {} from every context's centroid, or when the model", cal.max_distance)?;
            writeln!(out, "              reconstructs less than {:.0} % of its profile (R²)", 100.0 * cal.min_reconstruction_r2)?;
            if !cal.calibration.trim().is_empty() {
                writeln!(out, "              calibration: {}", cal.calibration.trim().replace('\n', "\n              "))?;
            }
        }
        None => writeln!(out, "\nfamiliarity   not calibrated (only how well the model reconstructs a sample is reported)")?,
    }
    for (title, list) in [("perturbations", &c.perturbations), ("contexts", &c.contexts)] {
        writeln!(out, "\n{title} ({})", list.len())?;
        let width = list.iter().map(|n| n.name.chars().count()).max().unwrap_or(0) + 2;
        for n in list {
            writeln!(out, "  {:<width$}{}", n.name, refcast::metadata::describe(&n.metadata))?;
        }
    }
    writeln!(out, "\nprovenance    {}", serde_json::to_string_pretty(&c.provenance)?.replace('\n', "\n              "))?;
    Ok(())
}

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

/// Top genes per direction for each perturbation, on standard error.
pub fn summarise(cfg: &refcast::ModelConfig, reference: &refcast::Reference, pred: &Prediction, perts: &[(String, Metadata)], top: usize, elapsed: std::time::Duration) -> Result<()> {
    let lfc = pred.log_fold_change.as_ref().expect("references give fold changes");
    for (r, row) in pred.rows.iter().enumerate().filter(|(_, row)| row.sample == 0) {
        let (up, down) = top_changes(Prediction::row(lfc, pred.genes, r), &reference.measured_genes(), top);
        let list = |genes: &[(usize, f32)]| -> String {
            genes.iter().map(|&(g, v)| format!("{} {v:+.2}", cfg.genes[g].symbol)).collect::<Vec<_>>().join(", ")
        };
        note!("refcast: {} × {} ({:.1} ms)", reference.name, perts[row.perturbation].0, elapsed.as_secs_f64() * 1e3)?;
        note!("  up:   {}", list(&up))?;
        note!("  down: {}", list(&down))?;
    }
    Ok(())
}
