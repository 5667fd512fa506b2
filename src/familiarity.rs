//! Whether a reference resembles the samples a model was trained on. A prediction for a sample
//! unlike any training sample is an extrapolation; two numbers say so: how well the model
//! reconstructs the sample (decoded under the control perturbation), and how far the sample's
//! encoding lies from the nearest training context (a format 2 model's `familiarity`
//! calibration, docs/FORMAT.md). The session computes one [`Familiarity`] per reference of a
//! conditioned prediction; front ends only show it.

use serde::Serialize;

use crate::format::FamiliarityCalibration;
use crate::sample::Reference;

/// How familiar one reference is to the model (serialised with camelCase names, as the JS API
/// gives it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Familiarity {
    /// The reference's name.
    pub reference: String,
    /// Squared Pearson r between the reference's log-CPM and the model's decoded profile of it
    /// under the control perturbation, over the genes the sample measured.
    pub reconstruction_r2: f32,
    /// The training context whose centroid is nearest to the reference's encoder μ (models with
    /// a familiarity calibration only).
    pub nearest_context: Option<String>,
    /// Euclidean distance of the reference's encoder μ to that centroid.
    pub distance: Option<f32>,
    /// Whether the reference lies outside what the model was trained on: farther than the
    /// calibration's `max_distance` from every centroid, or reconstructed with an R² below its
    /// `min_reconstruction_r2`. `None` without a calibration.
    pub outside: Option<bool>,
    /// Why it is outside, in plain words; empty when it is not.
    pub reasons: Vec<String>,
    /// The distance to every centroid of the calibration, in its order (empty without one): what
    /// [`crate::coverage::Coverage`] compares the contexts a perturbation was measured in by.
    #[serde(skip)]
    pub centroid_distances: Vec<f32>,
}

impl Familiarity {
    /// The report for `reference`, given the model's decoded control profile of it
    /// (`reconstruction`, one value per model gene) and its encoder μ of (technical ‖ biological).
    pub fn assess(calibration: Option<&FamiliarityCalibration>, reference: &Reference, reconstruction: &[f32], encoder_mean: &[f32]) -> Familiarity {
        let measured = |values: &[f32]| -> Vec<f32> {
            values.iter().zip(&reference.measured).filter(|(_, m)| **m).map(|(v, _)| *v).collect()
        };
        let r = pearson(&measured(&reference.log_cpm), &measured(reconstruction));
        let mut f = Familiarity {
            reference: reference.name.clone(),
            reconstruction_r2: r * r,
            nearest_context: None,
            distance: None,
            outside: None,
            reasons: Vec::new(),
            centroid_distances: Vec::new(),
        };
        let Some(cal) = calibration else { return f };
        let distances: Vec<f64> = cal
            .centroids
            .iter()
            .map(|c| c.mean.iter().zip(encoder_mean).map(|(m, x)| (*x as f64 - m).powi(2)).sum::<f64>().sqrt())
            .collect();
        f.centroid_distances = distances.iter().map(|&d| d as f32).collect();
        let nearest = cal.centroids.iter().zip(distances).min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((centroid, distance)) = nearest {
            if distance > cal.max_distance {
                f.reasons.push(format!(
                    "its profile is far from every sample the model was trained on (nearest: {}; distance {distance:.1}, trained samples reach {:.1})",
                    centroid.context, cal.max_distance
                ));
            }
            f.nearest_context = Some(centroid.context.clone());
            f.distance = Some(distance as f32);
        }
        if (f.reconstruction_r2 as f64) < cal.min_reconstruction_r2 {
            f.reasons.push(format!(
                "the model reconstructs only {} of its profile (R², trained samples ≥ {})",
                percent(f.reconstruction_r2 as f64),
                percent(cal.min_reconstruction_r2)
            ));
        }
        f.outside = Some(!f.reasons.is_empty());
        f
    }

    /// One line for people: a warning when the reference is outside, else where it lies.
    pub fn summary(&self) -> String {
        let r2 = format!("the model reconstructs {} of its profile (R²)", percent(self.reconstruction_r2 as f64));
        match (self.outside, &self.nearest_context, self.distance) {
            (Some(true), ..) => format!(
                "sample '{}' looks unlike anything the model was trained on: {}; predictions for it are extrapolations",
                self.reference,
                self.reasons.join("; and ")
            ),
            (Some(false), Some(context), Some(distance)) => {
                format!("sample '{}' resembles the training data (nearest: {context}, distance {distance:.1}); {r2}", self.reference)
            }
            _ => format!("sample '{}': {r2}; the model has no familiarity calibration to compare it with", self.reference),
        }
    }
}

/// "82 %".
fn percent(fraction: f64) -> String {
    format!("{:.0} %", 100.0 * fraction)
}

/// Pearson correlation; 0 when either side is constant.
pub fn pearson(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().map(|&v| v as f64).sum::<f64>() / n, y.iter().map(|&v| v as f64).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a as f64 - mx, b as f64 - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 { 0.0 } else { (sxy / (sxx * syy).sqrt()) as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Centroid, ENCODER_MEAN_SPACE};
    use crate::sample::MatchReport;

    fn reference(log_cpm: Vec<f32>) -> Reference {
        let n = log_cpm.len();
        let measured = (0..n).map(|g| g % 5 != 4).collect();
        Reference { name: "s1".into(), log_cpm, library_size: 1e6, depth_known: false, measured, report: MatchReport::default() }
    }

    fn calibration(max_distance: f64, min_reconstruction_r2: f64) -> FamiliarityCalibration {
        let centroid = |context: &str, mean: Vec<f64>| Centroid { context: context.into(), units: 3, mean };
        FamiliarityCalibration {
            space: ENCODER_MEAN_SPACE.into(),
            centroids: vec![centroid("far", vec![10.0, 10.0, 10.0]), centroid("near", vec![0.0, 3.0, 4.0])],
            max_distance,
            min_reconstruction_r2,
            calibration: String::new(),
        }
    }

    #[test]
    fn a_perfect_reconstruction_at_a_centroid_is_inside() {
        let profile: Vec<f32> = (0..40).map(|g| (g as f32 * 0.37).sin() * 3.0 + 4.0).collect();
        let f = Familiarity::assess(Some(&calibration(1.0, 0.9)), &reference(profile.clone()), &profile, &[0.0, 3.0, 4.0]);
        assert!((f.reconstruction_r2 - 1.0).abs() < 1e-6, "{f:?}");
        assert_eq!((f.nearest_context.as_deref(), f.distance, f.outside), (Some("near"), Some(0.0), Some(false)));
        assert!(f.reasons.is_empty());
        assert!(f.summary().contains("resembles the training data (nearest: near, distance 0.0)"), "{}", f.summary());
    }

    #[test]
    fn outside_follows_each_threshold_and_says_why() {
        let profile: Vec<f32> = (0..40).map(|g| (g as f32 * 0.37).sin() * 3.0 + 4.0).collect();
        // Unmeasured genes do not count: spoiling them leaves R² at 1.
        let mut spoiled = profile.clone();
        (4..40).step_by(5).for_each(|g| spoiled[g] = 100.0);
        let origin = [0.0, 0.0, 0.0];
        // Distance 5 from "near": inside up to max_distance 5, outside below it.
        let f = Familiarity::assess(Some(&calibration(5.0, 0.9)), &reference(profile.clone()), &spoiled, &origin);
        assert_eq!((f.distance, f.outside), (Some(5.0), Some(false)));
        let f = Familiarity::assess(Some(&calibration(4.9, 0.9)), &reference(profile.clone()), &spoiled, &origin);
        assert_eq!(f.outside, Some(true));
        assert_eq!(f.reasons, ["its profile is far from every sample the model was trained on (nearest: near; distance 5.0, trained samples reach 4.9)"]);
        // A reconstruction with r = 0.5 has R² 0.25.
        let x: Vec<f32> = (0..40).map(|g| if g % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let noise: Vec<f32> = (0..40).map(|g| if g % 4 < 2 { 1.0 } else { -1.0 }).collect();
        let measured_r = |y: &[f32]| {
            let keep = |v: &[f32]| v.iter().enumerate().filter(|(g, _)| g % 5 != 4).map(|(_, v)| *v).collect::<Vec<_>>();
            pearson(&keep(&x), &keep(y))
        };
        let y: Vec<f32> = x.iter().zip(&noise).map(|(a, b)| a + b).collect();
        let r = measured_r(&y);
        let f = Familiarity::assess(Some(&calibration(100.0, 0.82)), &reference(x.clone()), &y, &origin);
        assert!((f.reconstruction_r2 - r * r).abs() < 1e-6 && f.reconstruction_r2 < 0.82, "{f:?}");
        assert_eq!(f.outside, Some(true));
        assert_eq!(f.reasons, [format!("the model reconstructs only {} of its profile (R², trained samples ≥ 82 %)", percent((r * r) as f64))]);
        assert!(f.summary().starts_with("sample 's1' looks unlike anything the model was trained on: the model reconstructs only"), "{}", f.summary());
        assert!(f.summary().ends_with("; predictions for it are extrapolations"));
    }

    #[test]
    fn without_a_calibration_only_the_reconstruction_is_reported() {
        let profile: Vec<f32> = (0..40).map(|g| g as f32).collect();
        let f = Familiarity::assess(None, &reference(profile.clone()), &profile, &[9.0, 9.0, 9.0]);
        assert!((f.reconstruction_r2 - 1.0).abs() < 1e-6);
        assert_eq!((f.nearest_context.as_deref(), f.distance, f.outside), (None, None, None));
        assert!(f.summary().contains("reconstructs 100 % of its profile (R²); the model has no familiarity calibration"), "{}", f.summary());
    }
}
