//! The checks of a model file's `refcast` document: architecture, vocabularies, the named
//! perturbations and contexts (encoded with the priors' own code, `prior::encode`), format 2's
//! additions, and text that a terminal or page would show.

use super::*;

pub(super) fn validate_config(c: &ModelConfig) -> Result<()> {
    let a = &c.architecture;
    let positive = [
        ("genes", a.genes),
        ("latent.technical", a.latent.technical),
        ("latent.biological", a.latent.biological),
        ("latent.perturbation", a.latent.perturbation),
        ("encoder.hidden", a.encoder.hidden),
        ("encoder.ff", a.encoder.ff),
        ("decoder.hidden", a.decoder.hidden),
        ("decoder.ff", a.decoder.ff),
        ("prior.hidden", a.prior.hidden),
        ("prior.ff", a.prior.ff),
    ];
    for (what, v) in positive {
        if v == 0 || v > 1 << 20 {
            return Err(Error::format(format!("architecture.{what} = {v} is outside 1..={}", 1 << 20)));
        }
    }
    for (what, t) in [("encoder", a.encoder), ("decoder", a.decoder), ("prior", a.prior)] {
        if t.blocks > 64 {
            return Err(Error::format(format!("architecture.{what}.blocks = {} exceeds 64", t.blocks)));
        }
    }
    if !(a.layer_norm_eps > 0.0 && a.layer_norm_eps < 1.0) {
        return Err(Error::format(format!("layer_norm_eps = {} must be in (0, 1)", a.layer_norm_eps)));
    }
    if c.genes.len() != a.genes {
        return Err(Error::format(format!("the gene list has {} entries but architecture.genes is {}", c.genes.len(), a.genes)));
    }
    if let Some((i, _)) = c.genes.iter().enumerate().find(|(_, g)| g.symbol.trim().is_empty()) {
        return Err(Error::format(format!("gene {i} has an empty symbol")));
    }
    check_texts(c)?;
    check_version_fields(c)?;
    let mut field_names = HashSet::new();
    for g in Group::ALL {
        let p = c.priors.of(g);
        for f in &p.categorical {
            if f.values.first().map(String::as_str) != Some("unknown") {
                return Err(Error::format(format!("{} prior field '{}': the vocabulary must start with \"unknown\"", g.name(), f.name)));
            }
            let mut seen = HashSet::new();
            if let Some(dup) = f.values.iter().find(|v| !seen.insert(v.as_str())) {
                return Err(Error::format(format!("{} prior field '{}': '{dup}' appears twice", g.name(), f.name)));
            }
            if !field_names.insert(f.name.as_str()) {
                return Err(Error::format(format!("metadata field '{}' is defined twice", f.name)));
            }
        }
        for f in &p.numeric {
            if !(f.std > 0.0 && f.std.is_finite() && f.mean.is_finite() && f.min <= f.max) {
                return Err(Error::format(format!(
                    "{} prior field '{}': needs finite mean, std > 0 and min ≤ max",
                    g.name(),
                    f.name
                )));
            }
            if !field_names.insert(f.name.as_str()) {
                return Err(Error::format(format!("metadata field '{}' is defined twice", f.name)));
            }
        }
    }
    for (list, named) in c.perturbations.iter().map(|n| ("perturbations", n)).chain(c.contexts.iter().map(|n| ("contexts", n))) {
        for key in named.metadata.keys() {
            if !Group::ALL.iter().any(|g| c.priors.of(*g).has_field(key)) {
                return Err(Error::format(format!("'{}' uses metadata field '{key}' that no prior defines", named.name)));
            }
        }
        // Every value must be one the model's own priors accept, or predicting it would fail later
        // with a message about the user's input.
        for g in Group::ALL {
            prior::encode(c.priors.of(g), g, &[&named.metadata])
                .map_err(|e| Error::format(format!("{list} entry '{}': {}", named.name, inner(&e))))?;
        }
    }
    Ok(())
}

/// What format 2 adds (covariates, familiarity) is present only in format 2 files, and valid.
fn check_version_fields(c: &ModelConfig) -> Result<()> {
    if c.format_version < 2 {
        let measured_in = c.perturbations.iter().any(|p| p.measured_in.is_some());
        for (field, present) in [("covariates", !c.covariates.is_empty()), ("familiarity", c.familiarity.is_some()), ("measured_in", measured_in)] {
            if present {
                return Err(Error::format(format!("'{field}' is a format 2 field; this file says format_version {}", c.format_version)));
            }
        }
        return Ok(());
    }
    if c.covariates.is_empty() {
        return Err(Error::format("a format 2 model needs at least one entry in 'covariates'"));
    }
    for (k, f) in c.covariates.iter().enumerate() {
        check_text(&|| format!("the name of covariate {k}"), &f.name)?;
        if f.name != LIBRARY_SIZE {
            return Err(Error::format(format!("covariate '{}' is not one this refcast can supply (it knows: {LIBRARY_SIZE})", f.name)));
        }
        if c.covariates[..k].iter().any(|g| g.name == f.name) {
            return Err(Error::format(format!("covariate '{}' is listed twice", f.name)));
        }
        if !(f.std > 0.0 && f.std.is_finite() && f.mean.is_finite() && f.min <= f.max) {
            return Err(Error::format(format!("covariate '{}': needs finite mean, std > 0 and min ≤ max", f.name)));
        }
        if let Some(u) = &f.unit {
            check_text(&|| format!("covariate '{}': the unit", f.name), u)?;
        }
    }
    if let Some(cal) = &c.familiarity {
        check_familiarity(cal, c.architecture.latent.technical + c.architecture.latent.biological)?;
    }
    check_measured_in(c)
}

/// Where each perturbation was measured: indices into the familiarity centroids, ascending, each
/// once; only in a model with a calibration (without one there are no contexts to point at).
fn check_measured_in(c: &ModelConfig) -> Result<()> {
    for p in &c.perturbations {
        let Some(list) = &p.measured_in else { continue };
        let Some(cal) = &c.familiarity else {
            return Err(Error::format(format!(
                "perturbation '{}' lists where it was measured (measured_in), but the model has no familiarity calibration whose contexts it could name",
                p.name
            )));
        };
        if let Some(&i) = list.iter().find(|&&i| i as usize >= cal.centroids.len()) {
            return Err(Error::format(format!(
                "perturbation '{}': measured_in names context {i}; familiarity.centroids has {}",
                p.name,
                cal.centroids.len()
            )));
        }
        if list.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::format(format!("perturbation '{}': measured_in must list each context once, in ascending order", p.name)));
        }
    }
    Ok(())
}

/// The familiarity calibration: centroids of `width` finite values with safe, non-empty names,
/// and finite thresholds.
fn check_familiarity(cal: &FamiliarityCalibration, width: usize) -> Result<()> {
    if cal.space != ENCODER_MEAN_SPACE {
        return Err(Error::format(format!(
            "familiarity.space is '{}'; this refcast reads '{ENCODER_MEAN_SPACE}' (the encoder's μ of technical ‖ biological)",
            cal.space.escape_debug()
        )));
    }
    if cal.centroids.is_empty() {
        return Err(Error::format("familiarity.centroids is empty; a calibration needs at least one training context"));
    }
    for (i, centroid) in cal.centroids.iter().enumerate() {
        if centroid.context.trim().is_empty() {
            return Err(Error::format(format!("familiarity.centroids[{i}].context is empty")));
        }
        check_text(&|| format!("familiarity.centroids[{i}].context"), &centroid.context)?;
        if centroid.mean.len() != width {
            return Err(Error::format(format!(
                "familiarity.centroids[{i}].mean has {} values; the encoder's μ has technical + biological = {width}",
                centroid.mean.len()
            )));
        }
        if let Some(j) = centroid.mean.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(format!("familiarity.centroids[{i}].mean[{j}] is not a finite number")));
        }
    }
    if !(cal.max_distance.is_finite() && cal.max_distance >= 0.0) {
        return Err(Error::format(format!("familiarity.max_distance = {} must be a finite number ≥ 0", cal.max_distance)));
    }
    if !cal.min_reconstruction_r2.is_finite() {
        return Err(Error::format(format!("familiarity.min_reconstruction_r2 = {} must be a finite number", cal.min_reconstruction_r2)));
    }
    check_text(&|| "familiarity.calibration".into(), &cal.calibration.replace(['\n', '\t'], " "))
}

/// Whether a character could change what a terminal or a table shows: control characters (tabs
/// and newlines included, which would also break TSV output) and bidirectional overrides.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn check_text(what: &dyn Fn() -> String, text: &str) -> Result<()> {
    match text.chars().find(|&c| is_unsafe_char(c)) {
        Some(ch) => Err(Error::format(format!("{} contains the control character U+{:04X}", what(), ch as u32))),
        None => Ok(()),
    }
}

/// Every name a model gives (printed by `refcast info`, written into TSV output, shown in errors)
/// is free of control characters. Messages name the place, never the text itself.
fn check_texts(c: &ModelConfig) -> Result<()> {
    check_text(&|| "the model name".into(), &c.name)?;
    for (i, g) in c.genes.iter().enumerate() {
        check_text(&|| format!("gene {i}'s symbol"), &g.symbol)?;
        if let Some(e) = &g.ensembl {
            check_text(&|| format!("gene {i}'s Ensembl id"), e)?;
        }
    }
    for g in Group::ALL {
        let p = c.priors.of(g);
        for (k, f) in p.categorical.iter().enumerate() {
            check_text(&|| format!("the name of {} prior categorical field {k}", g.name()), &f.name)?;
            for (j, v) in f.values.iter().enumerate() {
                check_text(&|| format!("{} prior field '{}': value {j}", g.name(), f.name), v)?;
            }
        }
        for (k, f) in p.numeric.iter().enumerate() {
            check_text(&|| format!("the name of {} prior numeric field {k}", g.name()), &f.name)?;
            if let Some(u) = &f.unit {
                check_text(&|| format!("{} prior field '{}': the unit", g.name(), f.name), u)?;
            }
        }
    }
    for (list, items) in [("perturbations", &c.perturbations), ("contexts", &c.contexts)] {
        for (i, n) in items.iter().enumerate() {
            check_text(&|| format!("{list} entry {i}'s name"), &n.name)?;
            for (key, value) in &n.metadata {
                check_text(&|| format!("{list} entry '{}': a metadata key", n.name), key)?;
                if let Value::Text(t) = value {
                    check_text(&|| format!("{list} entry '{}': the value of '{key}'", n.name), t)?;
                }
            }
        }
    }
    Ok(())
}

pub(super) fn inner(e: &Error) -> String {
    match e {
        Error::Format(m) | Error::Sample(m) | Error::Metadata(m) | Error::Request(m) | Error::Gpu(m) => m.clone(),
        other => other.to_string(),
    }
}
