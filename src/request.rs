//! What a prediction asks for and what it gives back: [`Request`] in, [`Prediction`] out, with
//! the choices between them ([`Sampling`], [`PredictionMode`], [`Baseline`]). The defaults here
//! are every front end's defaults.

use crate::familiarity::Familiarity;
use crate::format::{Group, Metadata};
use crate::ops::Noise;
use crate::sample::Reference;

/// The units of every fold change refcast reports: differences of log-CPM, which is the natural
/// logarithm of CPM + 1. Every front end labels fold changes with this, so that no one reads
/// them as log2 (a log2 fold change is this divided by ln 2).
pub const FOLD_CHANGE_UNITS: &str = "ln fold change";

/// One sentence on the fold changes' log base, for summaries and file headers.
pub const FOLD_CHANGE_NOTE: &str = "fold changes are natural-log (ln) differences of log-CPM = ln(1 + CPM); divide by ln 2 = 0.693 for log2";

/// Mean estimation or seeded sample generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampling {
    /// Latent means: deterministic.
    #[default]
    Mean,
    /// `num_samples` draws of the latents from the stream of `seed`.
    Samples { num_samples: usize, seed: u64 },
}

impl Sampling {
    pub(crate) fn count(self) -> usize {
        match self {
            Sampling::Mean => 1,
            Sampling::Samples { num_samples, .. } => num_samples,
        }
    }
    pub(crate) fn noise(self) -> Option<Noise> {
        match self {
            Sampling::Mean => None,
            Sampling::Samples { seed, .. } => Some(Noise { seed, first_sample: 0 }),
        }
    }
}

/// A prediction request: references (or none, for prompt-only generation) × perturbations.
#[derive(Clone, Debug)]
pub struct Request {
    /// Reference samples; empty for prompt-only generation.
    pub references: Vec<Reference>,
    /// Technical and biological metadata: one per reference, or one for all. Used by the prior
    /// of every group that is not conditioned on; for prompt-only generation one prediction
    /// context per entry.
    pub contexts: Vec<Metadata>,
    pub perturbations: Vec<Metadata>,
    /// Groups taken from the encoder of the reference (technical and/or biological).
    pub condition_on: Vec<Group>,
    pub sampling: Sampling,
    /// Library size for counts of prompt-only predictions.
    pub library_size: f32,
    /// What log fold changes are relative to.
    pub baseline: Baseline,
    /// How a reference-conditioned prediction is formed from the decoder's output (prompt-only
    /// predictions are always decoded).
    pub mode: PredictionMode,
}

/// How a reference-conditioned prediction is formed from the decoder's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PredictionMode {
    /// The counterfactual profile with the reference denoised:
    /// `max(0, decode(z_ref, perturbation) + soft(reference − decode(z_ref, control), τ))`, where
    /// `soft(r, τ) = sign(r)·max(0, |r| − τ)` per gene with the model's thresholds τ (format 3).
    /// A reference differs from its reconstruction by the noise of one measurement, which the
    /// perturbed sample would not share, and by its own biology, which it would: the part within
    /// τ is dropped, the rest kept, so the prediction carries the sample's own profile and the
    /// decoder's reconstruction error moves a fold change by at most τ (≤ 1). The thresholds are
    /// fit on the training pairs (models/EVALUATION.md); a model without them (formats 1 and 2)
    /// predicts the counterfactual profile, τ = 0.
    #[default]
    Denoised,
    /// The measured reference moved by the predicted change:
    /// `max(0, reference + decode(z_ref, perturbation) − decode(z_ref, control))`, both rows decoded
    /// from the same technical and biological latents (the same draw when sampling), the control
    /// being the model's control perturbation (its first known perturbation that is "none"). The
    /// decoder's error in reconstructing the reference cancels whole, so the profile keeps all the
    /// sample measured, its noise included. In both this and the denoised mode the reference
    /// stands for the control, so fold changes against the reference and against the control
    /// ([`Baseline::Control`]) are the same numbers: predicted − reference.
    Counterfactual,
    /// `decode(z_ref, perturbation)`: the decoder's own profile, reconstruction error included.
    Decoded,
}

impl PredictionMode {
    /// Every mode, the default first (for option lists).
    pub const ALL: [PredictionMode; 3] = [PredictionMode::Denoised, PredictionMode::Counterfactual, PredictionMode::Decoded];

    /// Whether the prediction is the reference moved by a decoded change (denoised or not).
    pub fn anchored(self) -> bool {
        self != PredictionMode::Decoded
    }
}

impl std::str::FromStr for PredictionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "denoised" => Ok(PredictionMode::Denoised),
            "counterfactual" => Ok(PredictionMode::Counterfactual),
            "decoded" => Ok(PredictionMode::Decoded),
            other => Err(format!("unknown prediction mode '{other}' (expected denoised, counterfactual or decoded)")),
        }
    }
}

impl std::fmt::Display for PredictionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PredictionMode::Denoised => "denoised",
            PredictionMode::Counterfactual => "counterfactual",
            PredictionMode::Decoded => "decoded",
        })
    }
}

/// What a prediction's log fold changes are relative to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Baseline {
    /// The reference sample as measured: GEM-1's predicted differential expression.
    #[default]
    Reference,
    /// The model's own prediction for the same reference under the control perturbation (the
    /// model's first known perturbation that is "none"). The decoder's reconstruction error of
    /// the reference is common to both and cancels, leaving the perturbation's effect; prompt-only
    /// predictions get fold changes this way too. In the counterfactual mode the control is the
    /// reference itself, so these are the fold changes against the reference.
    Control,
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Baseline::Reference => "reference",
            Baseline::Control => "control",
        })
    }
}

impl std::str::FromStr for Baseline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "reference" | "sample" => Ok(Baseline::Reference),
            "control" => Ok(Baseline::Control),
            other => Err(format!("unknown baseline '{other}' (expected reference or control)")),
        }
    }
}

impl Request {
    /// Reference conditioning on the technical and biological latents, mean estimation.
    pub fn conditioned(references: Vec<Reference>, perturbations: Vec<Metadata>) -> Request {
        Request {
            references,
            contexts: vec![],
            perturbations,
            condition_on: vec![Group::Technical, Group::Biological],
            sampling: Sampling::Mean,
            library_size: 1e6,
            baseline: Baseline::Reference,
            mode: PredictionMode::default(),
        }
    }

    /// Prompt-only generation: every latent from its prior.
    pub fn prompt(contexts: Vec<Metadata>, perturbations: Vec<Metadata>) -> Request {
        Request { contexts, condition_on: vec![], ..Request::conditioned(vec![], perturbations) }
    }

    pub(crate) fn bases(&self) -> usize {
        if self.references.is_empty() { self.contexts.len().max(1) } else { self.references.len() }
    }
}

/// Which reference, perturbation and sample a prediction row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Index into `references` (or `contexts` for prompt-only).
    pub reference: usize,
    pub perturbation: usize,
    pub sample: usize,
}

/// Predicted profiles, one row per (sample, reference, perturbation), in that nesting order.
#[derive(Clone, Debug, Default)]
pub struct Prediction {
    pub genes: usize,
    pub rows: Vec<Row>,
    /// `[rows, genes]` predicted log-CPM (natural log of CPM + 1), formed as the request's
    /// [`PredictionMode`] says.
    pub log_cpm: Vec<f32>,
    /// `[rows, genes]` expected counts at the reference's library size.
    pub counts: Vec<f32>,
    /// `[rows, genes]` predicted − reference log-CPM (or − the predicted control, see
    /// [`Baseline`]): natural-log fold changes ([`FOLD_CHANGE_UNITS`]); absent for prompt-only
    /// generation unless against the control.
    pub log_fold_change: Option<Vec<f32>>,
    /// `[rows, technical + biological + perturbation]` latents fed to the decoder for the rows'
    /// perturbations.
    pub latents: Vec<f32>,
    /// `[genes]` σ of the model's Normal likelihood on log-CPM.
    pub sigma: Vec<f32>,
    /// One per reference of a request with references (none for prompt-only generation, or for
    /// a model that lists no control perturbation): whether the reference resembles the
    /// training data ([`Familiarity`]).
    pub familiarity: Vec<Familiarity>,
}

impl Prediction {
    pub fn row(values: &[f32], genes: usize, r: usize) -> &[f32] {
        &values[r * genes..(r + 1) * genes]
    }
}

impl Baseline {
    /// What fold changes are measured against when the caller does not say: the reference, in
    /// the counterfactual mode (where it stands for the control); in the decoded mode the
    /// model's own prediction for the control, where the model has one, because against the
    /// measured reference the decoder's reconstruction error would dominate every effect.
    pub fn default_for(mode: PredictionMode, model_has_control: bool) -> Baseline {
        match mode {
            PredictionMode::Decoded if model_has_control => Baseline::Control,
            _ => Baseline::Reference,
        }
    }
}

/// The at most `n` genes of `genes` with the largest increase in `lfc`, largest first, and the at
/// most `n` with the largest decrease, most negative first: the ends of a stable descending sort
/// (ties: the lower gene first among increases, the higher among decreases), with their values.
/// Only increases (> 0) are listed as increases and decreases (< 0) as decreases, however large
/// `n` is.
pub fn top_changes(lfc: &[f32], genes: &[usize], n: usize) -> (Vec<(usize, f32)>, Vec<(usize, f32)>) {
    let (rising, falling): (Vec<usize>, Vec<usize>) = genes.iter().filter(|&&g| lfc[g] != 0.0).partition(|&&g| lfc[g] > 0.0);
    let up = extremes(lfc, &rising, n, |a, b| lfc[b].total_cmp(&lfc[a]).then(a.cmp(&b)));
    let down = extremes(lfc, &falling, n, |a, b| lfc[a].total_cmp(&lfc[b]).then(b.cmp(&a)));
    (up, down)
}

/// The first `n` of `genes` in the order `cmp` (a total order), with their values: a selection
/// then a sort of `n`, not a sort of every gene.
fn extremes(row: &[f32], genes: &[usize], n: usize, cmp: impl Fn(usize, usize) -> std::cmp::Ordering) -> Vec<(usize, f32)> {
    let mut order = genes.to_vec();
    if order.len() > n {
        order.select_nth_unstable_by(n, |&a, &b| cmp(a, b));
        order.truncate(n);
    }
    crate::sort::sort_by(&mut order, |&a, &b| cmp(a, b));
    order.into_iter().map(|g| (g, row[g])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_profiles_are_measured_against_the_predicted_control_where_there_is_one() {
        assert_eq!(Baseline::default_for(PredictionMode::Denoised, true), Baseline::Reference);
        assert_eq!(Baseline::default_for(PredictionMode::Counterfactual, true), Baseline::Reference);
        assert_eq!(Baseline::default_for(PredictionMode::Decoded, true), Baseline::Control);
        assert_eq!(Baseline::default_for(PredictionMode::Decoded, false), Baseline::Reference);
    }

    /// The selection gives exactly the ends of a stable descending sort, ties and short lists
    /// included.
    #[test]
    fn extremes_match_the_ends_of_a_full_sort() {
        let philox = crate::ops::Philox::new(4);
        for (len, levels) in [(3usize, 0u32), (25, 4), (1000, 7), (1000, 0)] {
            // Few distinct values make many ties.
            let row: Vec<f32> = (0..len)
                .map(|j| {
                    let v = philox.normal(0, j as u32, 1, 0);
                    if levels > 0 { (v * levels as f32).round() } else { v }
                })
                .collect();
            let genes: Vec<usize> = (0..len).filter(|g| g % 7 != 3).collect();
            let mut order = genes.clone();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let want_up: Vec<(usize, f32)> = order.iter().take(10).map(|&g| (g, row[g])).collect();
            let want_down: Vec<(usize, f32)> = order.iter().rev().take(10).map(|&g| (g, row[g])).collect();
            assert_eq!(extremes(&row, &genes, 10, |a, b| row[b].total_cmp(&row[a]).then(a.cmp(&b))), want_up, "len {len}");
            assert_eq!(extremes(&row, &genes, 10, |a, b| row[a].total_cmp(&row[b]).then(b.cmp(&a))), want_down, "len {len}");
        }
    }

    /// However many are asked for, increases are listed as increases and decreases as decreases.
    #[test]
    fn top_changes_never_list_a_decrease_as_an_increase() {
        let lfc = [0.5, -0.25, 0.0, 2.0, -3.0];
        let genes = [0, 1, 2, 3, 4];
        let (up, down) = top_changes(&lfc, &genes, 100_000);
        assert_eq!(up, [(3, 2.0), (0, 0.5)]);
        assert_eq!(down, [(4, -3.0), (1, -0.25)]);
        let (up, down) = top_changes(&lfc, &genes, 1);
        assert_eq!((up, down), (vec![(3, 2.0)], vec![(4, -3.0)]));
    }
}
