//! A request's metadata (`{"cell_type": "CD14 Mono", "perturbation": "IFN-beta", …}`): which
//! fields exist, names resolved to known contexts, fields routed to their prior, labels that say
//! what was computed, and what a reference adds (its sequencing depth, the encoder's covariates).
//! How values encode against a prior's vocabulary is `format::prior`, shared with the checks of
//! model files.

use crate::error::{Error, Result};
use crate::format::prior::{listing, outside_training_range};
use crate::format::{Group, LIBRARY_SIZE, Metadata, ModelConfig, Value};

pub use crate::format::prior::{PriorInputs, encode, suggest};
use crate::sample::Reference;

/// Checks that every key of `metadata` is a field of some prior of the model.
pub fn check_fields(config: &ModelConfig, metadata: &Metadata) -> Result<()> {
    for key in metadata.keys() {
        if !Group::ALL.iter().any(|g| config.priors.of(*g).has_field(key)) {
            let known: Vec<&str> = Group::ALL
                .iter()
                .flat_map(|g| {
                    let p = config.priors.of(*g);
                    p.categorical.iter().map(|f| f.name.as_str()).chain(p.numeric.iter().map(|f| f.name.as_str()))
                })
                .collect();
            return Err(Error::Metadata(format!(
                "unknown metadata field '{key}'{} (the model knows: {})",
                suggest(key, known.iter().copied()),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// What a reference-conditioned request's context and perturbations do not do, in words, so that
/// no setting is silently without effect:
/// - context fields of a group taken from the reference (`condition_on`), which its prior never
///   sees (a `library_size` given in the context too: the context is the caller's, and the
///   sample's own depth reaches the prior only when the context leaves it unset);
/// - context fields of the perturbation prior, which a context never reaches (they belong to a
///   perturbation);
/// - a group taken from its prior (not conditioned on) whose categorical fields the context
///   leaves out: the prior predicts for "unknown";
/// - perturbations whose fields make a combination the model was never trained on (no known
///   perturbation has the same values in every field of the perturbation prior, as
///   [`crate::coverage::known_entry`] decides for coverage too), e.g. a known compound at another
///   time, or a name several entries share with their differing time or dose left out (the prior
///   then predicts for the training mean).
pub fn request_warnings(config: &ModelConfig, context: &Metadata, condition_on: &[Group], perturbations: &[Metadata]) -> Vec<String> {
    let mut out = Vec::new();
    let in_group = |k: &String, g: Group| config.priors.of(g).has_field(k);
    let perturbation_only: Vec<&str> = context
        .keys()
        .filter(|k| in_group(k, Group::Perturbation) && !in_group(k, Group::Technical) && !in_group(k, Group::Biological))
        .map(String::as_str)
        .collect();
    if !perturbation_only.is_empty() {
        out.push(format!(
            "{} {} no effect in a context: {} a perturbation's field; give {} with the perturbation",
            perturbation_only.join(", "),
            have(perturbation_only.len()),
            if perturbation_only.len() == 1 { "it is" } else { "they are" },
            if perturbation_only.len() == 1 { "it" } else { "them" },
        ));
    }
    for g in [Group::Technical, Group::Biological] {
        let prior = config.priors.of(g);
        let only_here = |k: &String| prior.has_field(k) && !Group::ALL.iter().any(|o| *o != g && config.priors.of(*o).has_field(k));
        let given: Vec<&str> = context.keys().filter(|k| only_here(k)).map(String::as_str).collect();
        if condition_on.contains(&g) {
            if !given.is_empty() {
                out.push(format!(
                    "{} {} no effect: the {} latent comes from the sample (conditioned on {}); condition on fewer groups for the {} prior to use {}",
                    given.join(", "),
                    have(given.len()),
                    g.name(),
                    g.name(),
                    g.name(),
                    if given.len() == 1 { "it" } else { "them" },
                ));
            }
        } else if !prior.categorical.is_empty() && !prior.categorical.iter().any(|f| context.contains_key(&f.name)) {
            let names: Vec<&str> = prior.categorical.iter().map(|f| f.name.as_str()).collect();
            out.push(format!(
                "the {} latent comes from its prior, which is given no {}: it predicts for an unknown one; give a context or set {}",
                g.name(),
                names.join(" or "),
                names.join(", ")
            ));
        }
    }
    for m in perturbations {
        if !m.is_empty() && crate::coverage::known_entry(config, m).is_none() {
            out.push(format!("perturbation {} is a combination the model was never trained on: an extrapolation", describe(m)));
        }
    }
    out
}

/// "has" for one field, "have" for several.
fn have(n: usize) -> &'static str {
    if n == 1 { "has" } else { "have" }
}

/// The encoder's covariates (format 2) of each reference, `[references, covariates]`: the
/// transformed value, or 0 (the training mean, as for a missing numeric prior field) where the
/// reference does not give one — a log-CPM sample has no library size. Empty in format 1.
pub fn covariates(config: &ModelConfig, references: &[Reference]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(references.len() * config.covariates.len());
    for r in references {
        for field in &config.covariates {
            debug_assert_eq!(field.name, LIBRARY_SIZE, "the format checks that covariates are known");
            out.push(match r.sequencing_depth() {
                None => 0.0,
                Some(depth) if (field.min..=field.max).contains(&(depth as f64)) => field.transform(depth as f64),
                Some(depth) => {
                    return Err(Error::Sample(format!("sample '{}': {}", r.name, outside_training_range(field, depth as f64))));
                }
            });
        }
    }
    Ok(out)
}

/// The technical prior's context for a reference of known `depth` (or a prompt-only request's
/// library size): `library_size` is filled in when the prior has that field and the context does
/// not set it, so the prior sees the sequencing depth the prediction is for.
pub fn with_depth(config: &ModelConfig, context: &Metadata, depth: Option<f32>) -> Metadata {
    let mut m = context.clone();
    if let Some(depth) = depth.filter(|_| config.priors.technical.has_field(LIBRARY_SIZE)) {
        m.entry(LIBRARY_SIZE.to_string()).or_insert(Value::Number(depth as f64));
    }
    m
}

/// `field=value field=value`: metadata given as fields, named for people.
pub fn describe(m: &Metadata) -> String {
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// A known context by name (case-insensitive), or an error that lists the known ones and
/// suggests the nearest.
pub fn context_named(config: &ModelConfig, name: &str) -> Result<Metadata> {
    match config.context(name) {
        Some(n) => Ok(n.metadata.clone()),
        None => {
            let names: Vec<String> = config.contexts.iter().map(|c| c.name.clone()).collect();
            let known = if names.is_empty() { "the model lists no contexts".to_string() } else { format!("known: {}", listing(&names)) };
            Err(Error::Metadata(format!("unknown context '{name}'{}; {known}", suggest(name, names.iter().map(String::as_str)))))
        }
    }
}

/// `FIELD=VALUE` as given on a command line: the value is a number when it reads as one.
pub fn parse_assignment(text: &str) -> Result<(String, Value)> {
    let (k, v) = text.split_once('=').ok_or_else(|| Error::Metadata(format!("expected FIELD=VALUE, got '{text}'")))?;
    let v = v.trim();
    let value = v.parse::<f64>().map(Value::Number).unwrap_or_else(|_| Value::Text(v.to_string()));
    Ok((k.trim().to_string(), value))
}

/// Fields given for a whole request, split between the ones of the perturbation prior and the
/// rest (technical and biological: the context's).
pub fn split_fields(config: &ModelConfig, fields: Metadata) -> (Metadata, Metadata) {
    fields.into_iter().partition(|(k, _)| !config.priors.perturbation.has_field(k))
}

/// A perturbation's name followed by the fields set on top of it that changed it, so that the
/// label says what was computed: "IFN-beta 6 h (time_hours=24)".
pub fn label(name: &str, known: &Metadata, computed: &Metadata) -> String {
    let changed: Vec<String> = computed.iter().filter(|&(k, v)| known.get(k) != Some(v)).map(|(k, v)| format!("{k}={v}")).collect();
    if changed.is_empty() { name.to_string() } else { format!("{name} ({})", changed.join(", ")) }
}

/// Builds a [`Metadata`] map: `metadata! { "cell_type" => "B", "time_hours" => 6.0 }`.
#[macro_export]
macro_rules! metadata {
    ($($k:expr => $v:expr),* $(,)?) => {{
        let mut m = $crate::format::Metadata::new();
        $( m.insert($k.to_string(), $crate::metadata::IntoValue::into_value($v)); )*
        m
    }};
}

/// Conversion used by [`metadata!`].
pub trait IntoValue {
    fn into_value(self) -> crate::format::Value;
}
impl IntoValue for &str {
    fn into_value(self) -> crate::format::Value {
        crate::format::Value::Text(self.to_string())
    }
}
impl IntoValue for String {
    fn into_value(self) -> crate::format::Value {
        crate::format::Value::Text(self)
    }
}
impl IntoValue for f64 {
    fn into_value(self) -> crate::format::Value {
        crate::format::Value::Number(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Metadata, Value};

    fn named(name: &str, fields: &[(&str, Value)]) -> crate::format::Named {
        crate::format::Named::new(name, fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn text(v: &str) -> Value {
        Value::Text(v.into())
    }

    /// A model whose perturbation list has one compound in two spellings and at several doses.
    fn config() -> crate::format::ModelConfig {
        let mut cfg = crate::synthetic::random_model(crate::synthetic::SyntheticSpec::tiny(crate::quant::DType::F32)).config;
        cfg.perturbations = vec![
            named("none (control)", &[("perturbation", text("none"))]),
            named("dexamethasone 1 µM 18 h", &[("perturbation", text("dexamethasone")), ("class", text("glucocorticoid")), ("dose_um", Value::Number(1.0))]),
            named("Dexamethasone 10 µM 24 h", &[("perturbation", text("Dexamethasone")), ("class", text("compound")), ("dose_um", Value::Number(10.0))]),
            named("Dexamethasone 100 µM 24 h", &[("perturbation", text("Dexamethasone")), ("class", text("compound")), ("dose_um", Value::Number(100.0))]),
        ];
        cfg
    }

    #[test]
    fn a_perturbation_is_found_by_name_then_by_its_value_spelt_exactly_then_in_any_case() {
        let cfg = config();
        assert_eq!(cfg.perturbation("DEXAMETHASONE 10 µM 24 H").name, "Dexamethasone 10 µM 24 h");
        // the exact spelling picks the one airway entry although another study spells it otherwise
        assert_eq!(cfg.perturbation("dexamethasone").name, "dexamethasone 1 µM 18 h");
        // two entries share the exact spelling: the fields they agree on, dose left out
        let shared = cfg.perturbation("Dexamethasone").metadata;
        assert_eq!(shared, Metadata::from([("perturbation".to_string(), text("Dexamethasone")), ("class".to_string(), text("compound"))]));
        // no exact spelling: one case-insensitive match is taken
        assert_eq!(cfg.perturbation(" NONE ").metadata.get("perturbation"), Some(&text("none")));
        // unknown: the value alone, for the vocabulary check to name
        assert_eq!(cfg.perturbation("cisplatin").metadata, Metadata::from([("perturbation".to_string(), text("cisplatin"))]));
    }

    #[test]
    fn contexts_are_found_by_name_and_unknown_ones_named_with_a_suggestion() {
        let cfg = config();
        let known = cfg.contexts[0].name.clone();
        assert_eq!(context_named(&cfg, &known.to_uppercase()).unwrap(), cfg.contexts[0].metadata);
        let misspelt = format!("{known}x");
        let e = context_named(&cfg, &misspelt).unwrap_err();
        assert!(matches!(e, crate::Error::Metadata(_)), "{e}");
        let e = e.to_string();
        assert!(e.contains(&format!("unknown context '{misspelt}'")) && e.contains(&format!("did you mean '{known}'?")) && e.contains("known: "), "{e}");
    }

    #[test]
    fn set_fields_are_parsed_routed_to_their_prior_and_shown_in_labels() {
        let cfg = config();
        assert_eq!(parse_assignment(" time_hours = 24").unwrap(), ("time_hours".to_string(), Value::Number(24.0)));
        assert_eq!(parse_assignment("cell_type=CD14 Mono").unwrap(), ("cell_type".to_string(), text("CD14 Mono")));
        let e = parse_assignment("time_hours").unwrap_err().to_string();
        assert!(e.contains("expected FIELD=VALUE"), "{e}");
        let fields = Metadata::from([("time_hours".to_string(), Value::Number(24.0)), ("cell_type".to_string(), text("T"))]);
        let (context, perturbation) = split_fields(&cfg, fields);
        assert_eq!(context.keys().collect::<Vec<_>>(), ["cell_type"]);
        assert_eq!(perturbation.keys().collect::<Vec<_>>(), ["time_hours"]);
        let known = Metadata::from([("perturbation".to_string(), text("IFN-beta")), ("time_hours".to_string(), Value::Number(6.0))]);
        let mut computed = known.clone();
        assert_eq!(label("IFN-beta 6 h", &known, &computed), "IFN-beta 6 h");
        computed.insert("time_hours".into(), Value::Number(24.0));
        assert_eq!(label("IFN-beta 6 h", &known, &computed), "IFN-beta 6 h (time_hours=24)");
        assert_eq!(describe(&known), "perturbation=IFN-beta time_hours=6");
    }

    #[test]
    fn every_context_field_without_effect_is_warned_about_by_name() {
        let mut cfg = crate::synthetic::random_model(crate::synthetic::SyntheticSpec::tiny(crate::quant::DType::F32)).config;
        cfg.priors.technical.numeric.push(crate::synthetic::library_size_field());
        let both = [Group::Technical, Group::Biological];
        // A library size given by the caller goes only to the technical prior: without effect
        // when the technical latent comes from the sample.
        let w = request_warnings(&cfg, &Metadata::from([(LIBRARY_SIZE.to_string(), Value::Number(2e7))]), &both, &[]);
        assert_eq!(w, ["library_size has no effect: the technical latent comes from the sample (conditioned on technical); condition on fewer groups for the technical prior to use it"]);
        // Two fields: "have", "them".
        let two: Metadata = cfg.priors.biological.categorical.iter().take(2).map(|f| (f.name.clone(), text("x"))).collect();
        assert_eq!(two.len(), 2);
        let w = request_warnings(&cfg, &two, &both, &[]);
        assert!(w.len() == 1 && w[0].contains(" have no effect: the biological latent") && w[0].ends_with("to use them"), "{w:?}");
        // A perturbation's field in a context reaches no prior.
        let time = cfg.priors.perturbation.numeric[0].name.clone();
        let w = request_warnings(&cfg, &Metadata::from([(time.clone(), Value::Number(24.0))]), &both, &[]);
        assert_eq!(w, [format!("{time} has no effect in a context: it is a perturbation's field; give it with the perturbation")]);
        assert!(request_warnings(&cfg, &Metadata::new(), &both, &[]).is_empty());
    }

    /// "Never trained on" is coverage's `never`: the same rule ([`crate::coverage::known_entry`]).
    #[test]
    fn a_combination_is_never_trained_on_exactly_when_coverage_says_never() {
        let mut cfg = crate::synthetic::random_model_v2(crate::synthetic::SyntheticSpec::tiny(crate::quant::DType::F32)).config;
        cfg.perturbations.iter_mut().for_each(|p| p.measured_in = Some(vec![0]));
        let warnings = |m: &Metadata| request_warnings(&cfg, &Metadata::new(), &[Group::Technical, Group::Biological], std::slice::from_ref(m));
        let at = |name: &str, hours: Option<f64>| {
            let mut m = cfg.perturbation(name).metadata;
            match hours {
                Some(h) => m.insert("time_hours".into(), Value::Number(h)),
                None => m.remove("time_hours"),
            };
            m
        };
        let cases = [
            (cfg.perturbation("drug_a 6 h").metadata, false),
            (at("drug_a 6 h", Some(6.0 + 1e-12)), false),
            (at("drug_a 6 h", Some(168.0)), true),
            // Two entries share drug_a: their time left out, the prior predicts for the mean time.
            (cfg.perturbation("drug_a").metadata, true),
            (at("drug_b 6 h", None), true),
        ];
        for (m, never) in cases {
            let w = warnings(&m);
            let want: Vec<String> = if never { vec![format!("perturbation {} is a combination the model was never trained on: an extrapolation", describe(&m))] } else { vec![] };
            assert_eq!(w, want);
            assert_eq!(crate::Coverage::assess(&cfg, None, &m).measured == crate::Measured::Never, never, "{m:?}");
        }
        for e in &cfg.perturbations {
            assert!(warnings(&e.metadata).is_empty(), "{}", e.name);
        }
    }

    #[test]
    fn the_default_perturbation_is_the_first_that_is_not_a_control() {
        let cfg = config();
        assert_eq!(cfg.control().unwrap().name, "none (control)");
        assert_eq!(cfg.default_perturbation().unwrap().name, "dexamethasone 1 µM 18 h");
    }
}
