//! Whether the model ever saw a perturbation, at its time and dose, in a context like the
//! sample's. A model learns a perturbation's effect from the contexts it was measured in; in a
//! context unlike those, or at a time or dose never measured, a prediction is an extrapolation
//! however confident its numbers look. A format 2 model with a familiarity calibration may record,
//! for each known perturbation, the training contexts that hold a sample of it (`measured_in`,
//! docs/FORMAT.md); this module compares those contexts with the sample, by the same distance and
//! threshold as [`Familiarity`].

use serde::Serialize;

use crate::familiarity::Familiarity;
use crate::format::{Metadata, ModelConfig, Named, Value};

/// Where a perturbation was measured, as seen from one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Measured {
    /// In a training context within the calibration's distance of the sample.
    Nearby,
    /// Only in training contexts farther from the sample than any trained sample lies from its
    /// nearest context.
    Elsewhere,
    /// Never at this time and dose (or not at all).
    Never,
    /// The model does not record where its perturbations were measured, or there is no sample to
    /// compare with (prompt-only generation).
    Unknown,
}

impl Measured {
    /// The word every front end prints (`measured` column, JS `measured`).
    pub fn as_str(self) -> &'static str {
        match self {
            Measured::Nearby => "nearby",
            Measured::Elsewhere => "elsewhere",
            Measured::Never => "never",
            Measured::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the model knows of one perturbation in one sample's context (serialised with camelCase
/// names, as the JS API gives it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub measured: Measured,
    /// Of the training contexts that hold the perturbation at this time and dose, the one nearest
    /// the sample, and its distance (as [`Familiarity::distance`]).
    pub context: Option<String>,
    pub distance: Option<f32>,
    /// The distance up to which a context counts as like the sample's (the calibration's
    /// `max_distance`).
    pub max_distance: Option<f32>,
    /// For [`Measured::Never`]: the model's measured entries of the same perturbation (other
    /// times or doses), by name.
    pub measured_as: Vec<String>,
}

/// Names listed at most in a message about the entries a perturbation was measured as.
const LISTED: usize = 6;

impl Coverage {
    /// Whether the model records where its perturbations were measured.
    pub fn recorded(config: &ModelConfig) -> bool {
        config.familiarity.is_some() && config.perturbations.iter().any(|p| p.measured_in.is_some())
    }

    /// The coverage of `perturbation` (metadata as predicted: a known entry's, with any changes)
    /// for a sample whose familiarity is `familiarity` (`None` for prompt-only generation). Its
    /// entry is searched for ([`known_entry`]); for a known entry as it is, [`Coverage::of_entry`]
    /// gives the same without the search.
    pub fn assess(config: &ModelConfig, familiarity: Option<&Familiarity>, perturbation: &Metadata) -> Coverage {
        let entry = if Self::recorded(config) { known_entry(config, perturbation) } else { None };
        Self::of_record(config, familiarity, perturbation, entry)
    }

    /// The coverage of `entry`, one of `config.perturbations` (or a copy of one), predicted as it
    /// is: read from its own record, where [`Coverage::assess`] would search the model's list for
    /// it (a screen of every entry would repeat that search for each).
    pub fn of_entry(config: &ModelConfig, familiarity: Option<&Familiarity>, entry: &Named) -> Coverage {
        Self::of_record(config, familiarity, &entry.metadata, Some(entry))
    }

    /// The coverage of `perturbation`, whose known entry is `entry` (`None`: none, or not looked
    /// for in a model without a record).
    fn of_record(config: &ModelConfig, familiarity: Option<&Familiarity>, perturbation: &Metadata, entry: Option<&Named>) -> Coverage {
        let mut c = Coverage { measured: Measured::Unknown, context: None, distance: None, max_distance: None, measured_as: Vec::new() };
        let (Some(cal), true) = (&config.familiarity, Self::recorded(config)) else { return c };
        c.max_distance = Some(cal.max_distance as f32);
        let Some(measured_in) = entry.and_then(|e| e.measured_in.as_ref()).filter(|m| !m.is_empty()) else {
            if entry.is_none_or(|e| e.measured_in.is_some()) {
                c.measured = Measured::Never;
                c.measured_as = same_agent(config, perturbation).map(|n| n.name.clone()).collect();
            }
            return c;
        };
        let Some(distances) = familiarity.map(|f| &f.centroid_distances).filter(|d| d.len() == cal.centroids.len()) else { return c };
        let nearest = measured_in.iter().map(|&i| i as usize).min_by(|&a, &b| distances[a].total_cmp(&distances[b])).expect("not empty");
        c.measured = if distances[nearest] as f64 <= cal.max_distance { Measured::Nearby } else { Measured::Elsewhere };
        c.context = Some(cal.centroids[nearest].context.clone());
        c.distance = Some(distances[nearest]);
        c
    }

    /// One coverage per (reference, perturbation) of a request, reference-major, as
    /// [`crate::Prediction::familiarity`] lists references; one per perturbation for a
    /// prompt-only request (no familiarity).
    /// Each perturbation's entry is searched for once, not once per reference.
    pub fn of_request(config: &ModelConfig, familiarity: &[Familiarity], perturbations: &[Metadata]) -> Vec<Coverage> {
        let recorded = Self::recorded(config);
        let entries: Vec<Option<&Named>> = perturbations.iter().map(|p| if recorded { known_entry(config, p) } else { None }).collect();
        let references: Vec<Option<&Familiarity>> = if familiarity.is_empty() { vec![None] } else { familiarity.iter().map(Some).collect() };
        let mut out = Vec::with_capacity(references.len() * perturbations.len());
        for f in references {
            out.extend(perturbations.iter().zip(&entries).map(|(p, &e)| Self::of_record(config, f, p, e)));
        }
        out
    }

    /// A warning for people when the prediction of `label` is an extrapolation; `None` when the
    /// model saw it nearby, or cannot say.
    pub fn warning(&self, label: &str) -> Option<String> {
        match self.measured {
            Measured::Nearby | Measured::Unknown => None,
            Measured::Elsewhere => Some(format!(
                "'{label}' was measured only in training contexts unlike this sample (nearest: {}, distance {:.1}; like the sample means within {:.1}): its prediction here is an extrapolation",
                self.context.as_deref().unwrap_or("?"),
                self.distance.unwrap_or(f32::NAN),
                self.max_distance.unwrap_or(f32::NAN)
            )),
            Measured::Never if self.measured_as.is_empty() => {
                Some(format!("'{label}' was never measured in training: its prediction is an extrapolation"))
            }
            Measured::Never => {
                let mut listed = self.measured_as.iter().take(LISTED).map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
                if self.measured_as.len() > LISTED {
                    listed += &format!(" and {} more", self.measured_as.len() - LISTED);
                }
                Some(format!("'{label}' was never measured at this time and dose (the model measured it as {listed}): its prediction is an extrapolation"))
            }
        }
    }
}

/// The model's known perturbation (the first) that `perturbation` describes, by
/// [`same_perturbation`]; `None` for a combination the model was never trained on. The one rule
/// for that question: coverage asks it, and so do [`crate::metadata::request_warnings`].
pub fn known_entry<'a>(config: &'a ModelConfig, perturbation: &Metadata) -> Option<&'a Named> {
    config.perturbations.iter().find(|n| same_perturbation(config, &n.metadata, perturbation))
}

/// Whether two perturbation metadata describe the same treatment: equal in every field of the
/// perturbation prior (numbers to 1e-9 relative), a field missing on one side counting as
/// different.
fn same_perturbation(config: &ModelConfig, a: &Metadata, b: &Metadata) -> bool {
    let prior = &config.priors.perturbation;
    let fields = prior.categorical.iter().map(|f| &f.name).chain(prior.numeric.iter().map(|f| &f.name));
    fields.into_iter().all(|k| match (a.get(k), b.get(k)) {
        (None, None) => true,
        (Some(Value::Number(x)), Some(Value::Number(y))) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        (Some(Value::Text(x)), Some(Value::Text(y))) => x == y,
        _ => false,
    })
}

/// The known perturbations with the same first categorical value (the agent) as `perturbation`.
fn same_agent<'a>(config: &'a ModelConfig, perturbation: &'a Metadata) -> impl Iterator<Item = &'a Named> + 'a {
    let field = config.priors.perturbation.categorical.first().map(|f| f.name.as_str());
    let agent = field.and_then(|f| perturbation.get(f));
    config.perturbations.iter().filter(move |n| agent.is_some() && field.and_then(|f| n.metadata.get(f)) == agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Centroid, ENCODER_MEAN_SPACE, FamiliarityCalibration};
    use crate::quant::DType;
    use crate::synthetic::{SyntheticSpec, random_model_v2};

    /// The synthetic format 2 model with three centroids, "a", "b", "c", and where each of its
    /// perturbations was measured.
    fn config(measured_in: &[(&str, &[u32])]) -> ModelConfig {
        let mut c = random_model_v2(SyntheticSpec::tiny(DType::F32)).config;
        let centroid = |name: &str| Centroid { context: name.into(), units: 4, mean: vec![0.0; 2] };
        c.familiarity = Some(FamiliarityCalibration {
            space: ENCODER_MEAN_SPACE.into(),
            centroids: vec![centroid("a"), centroid("b"), centroid("c")],
            max_distance: 2.0,
            min_reconstruction_r2: 0.5,
            calibration: String::new(),
        });
        for (name, list) in measured_in {
            c.perturbations.iter_mut().find(|p| p.name == *name).unwrap().measured_in = Some(list.to_vec());
        }
        c
    }

    fn sample(distances: [f32; 3]) -> Familiarity {
        Familiarity {
            reference: "s".into(),
            reconstruction_r2: 0.9,
            nearest_context: None,
            distance: None,
            outside: Some(false),
            reasons: vec![],
            centroid_distances: distances.to_vec(),
        }
    }

    fn metadata(c: &ModelConfig, name: &str) -> Metadata {
        c.perturbations.iter().find(|p| p.name == name).unwrap().metadata.clone()
    }

    #[test]
    fn the_nearest_measured_context_decides_nearby_or_elsewhere() {
        let c = config(&[("drug_a 6 h", &[1, 2]), ("drug_a 24 h", &[0]), ("drug_b 6 h", &[2]), ("cytokine_c 6 h", &[0, 1]), ("none (control)", &[0, 1, 2])]);
        // The sample lies 3.0 from a, 1.5 from b, 9.0 from c; "like the sample" is within 2.0.
        let s = sample([3.0, 1.5, 9.0]);
        let cov = |name: &str| Coverage::assess(&c, Some(&s), &metadata(&c, name));
        let a6 = cov("drug_a 6 h");
        assert_eq!((a6.measured, a6.context.as_deref(), a6.distance, a6.max_distance), (Measured::Nearby, Some("b"), Some(1.5), Some(2.0)));
        assert_eq!(a6.warning("drug_a 6 h"), None);
        let a24 = cov("drug_a 24 h");
        assert_eq!((a24.measured, a24.context.as_deref(), a24.distance), (Measured::Elsewhere, Some("a"), Some(3.0)));
        assert_eq!(
            a24.warning("drug_a 24 h").unwrap(),
            "'drug_a 24 h' was measured only in training contexts unlike this sample (nearest: a, distance 3.0; like the sample means within 2.0): its prediction here is an extrapolation"
        );
        assert_eq!(cov("drug_b 6 h").measured, Measured::Elsewhere);
        // Exactly at the threshold is still like the sample.
        let edge = sample([2.0, 5.0, 5.0]);
        assert_eq!(Coverage::assess(&c, Some(&edge), &metadata(&c, "drug_a 24 h")).measured, Measured::Nearby);
    }

    #[test]
    fn a_time_or_dose_never_measured_is_never_and_names_what_was() {
        let c = config(&[("drug_a 6 h", &[0]), ("drug_a 24 h", &[1]), ("none (control)", &[0, 1, 2])]);
        let s = sample([0.5, 0.5, 0.5]);
        let mut at_168 = metadata(&c, "drug_a 6 h");
        at_168.insert("time_hours".into(), Value::Number(168.0));
        let cov = Coverage::assess(&c, Some(&s), &at_168);
        assert_eq!((cov.measured, cov.context.as_deref()), (Measured::Never, None));
        assert_eq!(cov.measured_as, ["drug_a 6 h", "drug_a 24 h"]);
        assert_eq!(
            cov.warning("drug_a 6 h (time_hours=168)").unwrap(),
            "'drug_a 6 h (time_hours=168)' was never measured at this time and dose (the model measured it as 'drug_a 6 h', 'drug_a 24 h'): its prediction is an extrapolation"
        );
        // 6 h given as 6.0000000001 is the same time; a missing time is not.
        let mut near_6 = metadata(&c, "drug_a 6 h");
        near_6.insert("time_hours".into(), Value::Number(6.0 + 1e-12));
        assert_eq!(Coverage::assess(&c, Some(&s), &near_6).measured, Measured::Nearby);
        near_6.remove("time_hours");
        assert_eq!(Coverage::assess(&c, Some(&s), &near_6).measured, Measured::Never);
        // An entry with an empty list was measured nowhere.
        let c = config(&[("drug_b 6 h", &[])]);
        let cov = Coverage::assess(&c, Some(&s), &metadata(&c, "drug_b 6 h"));
        assert_eq!(cov.measured, Measured::Never);
        assert_eq!(cov.warning("drug_b 6 h").unwrap(), "'drug_b 6 h' was never measured at this time and dose (the model measured it as 'drug_b 6 h'): its prediction is an extrapolation");
    }

    #[test]
    fn an_entry_read_directly_or_once_per_request_has_the_coverage_its_search_finds() {
        // Every kind of record: lists, an empty one (measured nowhere), none at all (drug_b 6 h);
        // and a model without a record.
        let recorded = config(&[("drug_a 6 h", &[1, 2]), ("drug_a 24 h", &[]), ("cytokine_c 6 h", &[0]), ("none (control)", &[0, 1, 2])]);
        // The last sample's distances are not the calibration's (one context short): unknown.
        let short = Familiarity { centroid_distances: vec![1.0, 1.0], ..sample([0.0; 3]) };
        let samples = [Some(sample([3.0, 1.5, 9.0])), Some(sample([9.0, 9.0, 9.0])), None, Some(short)];
        let mut seen = Vec::new();
        for c in [recorded, config(&[])] {
            for s in &samples {
                for e in &c.perturbations {
                    let direct = Coverage::of_entry(&c, s.as_ref(), e);
                    assert_eq!(direct, Coverage::assess(&c, s.as_ref(), &e.metadata), "{}, {s:?}", e.name);
                    seen.push(direct.measured);
                }
            }
            // A request's coverage (each entry searched once) is each pair's own, reference-major;
            // an edited time among the perturbations.
            let mut metadata: Vec<Metadata> = c.perturbations.iter().map(|e| e.metadata.clone()).collect();
            let mut later = metadata[0].clone();
            later.insert("time_hours".into(), Value::Number(1000.0));
            metadata.push(later);
            let references: Vec<Familiarity> = samples.iter().flatten().cloned().collect();
            let (config, metadata) = (&c, &metadata);
            let each: Vec<Coverage> = references.iter().flat_map(|f| metadata.iter().map(move |m| Coverage::assess(config, Some(f), m))).collect();
            assert_eq!(Coverage::of_request(config, &references, metadata), each);
            let prompt_only: Vec<Coverage> = metadata.iter().map(|m| Coverage::assess(&c, None, m)).collect();
            assert_eq!(Coverage::of_request(config, &[], metadata), prompt_only);
        }
        for m in [Measured::Nearby, Measured::Elsewhere, Measured::Never, Measured::Unknown] {
            assert!(seen.contains(&m), "{m} among the cases");
        }
    }

    #[test]
    fn without_a_record_or_a_sample_coverage_is_unknown() {
        let mut c = config(&[]);
        let s = sample([0.5, 0.5, 0.5]);
        let cov = Coverage::assess(&c, Some(&s), &metadata(&c, "drug_a 6 h"));
        assert_eq!((cov.measured, cov.max_distance), (Measured::Unknown, None));
        assert!(!Coverage::recorded(&c));
        c.perturbations[0].measured_in = Some(vec![0]);
        // Recorded, but no sample (prompt-only): a measured entry is unknown, a new time is never.
        let first = c.perturbations[0].metadata.clone();
        assert_eq!(Coverage::assess(&c, None, &first).measured, Measured::Unknown);
        let mut other = first.clone();
        other.insert("time_hours".into(), Value::Number(1000.0));
        assert_eq!(Coverage::assess(&c, None, &other).measured, Measured::Never);
        // A request's coverage runs reference-major.
        let far = sample([9.0, 9.0, 9.0]);
        let all = Coverage::of_request(&c, &[s.clone(), far], &[first.clone(), other.clone()]);
        assert_eq!(all.iter().map(|c| c.measured).collect::<Vec<_>>(), [Measured::Nearby, Measured::Never, Measured::Elsewhere, Measured::Never]);
        assert_eq!(Coverage::of_request(&c, &[], &[first]).len(), 1);
    }
}
