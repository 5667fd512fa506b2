//! Results as JS values: typed arrays for profiles, plain objects for reports and hits.

use std::collections::BTreeMap;

use js_sys::{Array, Float32Array, Object, Uint8Array};
use serde::Serialize;
use wasm_bindgen::JsValue;

use super::js::{set, to_js};
use crate::familiarity::Familiarity;
use crate::format::{Metadata, ModelConfig, Named};
use crate::sample::{Reference, SampleFile};
use crate::screen::ScreenHit;

pub(super) fn reference_js(r: &Reference, file: &SampleFile) -> Object {
    let (o, table) = (Object::new(), &file.table);
    set(&o, "name", r.name.as_str());
    set(&o, "librarySize", r.library_size);
    set(&o, "valueKind", table.kind.name());
    set(&o, "interpretation", file.interpretation.to_string());
    set(&o, "columns", table.samples.iter().map(|s| JsValue::from(s.as_str())).collect::<Array>());
    set(&o, "rows", table.genes.len() as u32);
    set(&o, "logCpm", Float32Array::from(r.log_cpm.as_slice()));
    let measured: Vec<u8> = r.measured.iter().map(|&m| u8::from(m)).collect();
    set(&o, "measured", Uint8Array::from(measured.as_slice()));
    set(&o, "matched", r.report.matched as u32);
    set(&o, "missing", r.report.missing as u32);
    set(&o, "unknown", r.report.unknown as u32);
    set(&o, "unknownExamples", r.report.unknown_examples.iter().map(|s| JsValue::from(s.as_str())).collect::<Array>());
    set(&o, "report", r.report.to_string());
    o
}

/// Familiarity reports as JS objects: the fields of [`Familiarity`], camelCase (`nearestContext`,
/// `distance` and `outside` null for a model without a calibration), and its `summary`.
pub(super) fn familiarity_list(list: &[Familiarity]) -> Result<JsValue, JsValue> {
    #[derive(Serialize)]
    struct WithSummary<'a> {
        #[serde(flatten)]
        familiarity: &'a Familiarity,
        summary: String,
    }
    let list: Vec<WithSummary> = list.iter().map(|f| WithSummary { familiarity: f, summary: f.summary() }).collect();
    to_js(&list)
}

/// `[{index, gene, logFoldChange}]` for (gene, fold change) pairs.
pub(super) fn genes_js(list: &[(usize, f32)], cfg: &ModelConfig) -> Array {
    list.iter()
        .map(|&(g, lfc)| {
            let e = Object::new();
            set(&e, "index", g as u32);
            set(&e, "gene", cfg.genes[g].symbol.as_str());
            set(&e, "logFoldChange", lfc);
            JsValue::from(e)
        })
        .collect()
}

pub(super) fn hit_js(h: &ScreenHit, cfg: &ModelConfig) -> Result<Object, JsValue> {
    let o = Object::new();
    set(&o, "name", h.name.as_str());
    set(&o, "metadata", to_js(&h.metadata)?);
    set(&o, "effectSize", h.effect_size);
    set(&o, "reversal", h.reversal.map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "topUp", genes_js(&h.top_up, cfg));
    set(&o, "topDown", genes_js(&h.top_down, cfg));
    set(&o, "coverage", coverage_js(&h.coverage, &h.name)?);
    Ok(o)
}

/// A [`Coverage`](crate::coverage::Coverage) as a JS object (`measured`, `context`, `distance`,
/// `maxDistance`, `measuredAs`) with its `warning` (null when there is nothing to warn of).
pub(super) fn coverage_js(c: &crate::coverage::Coverage, label: &str) -> Result<JsValue, JsValue> {
    #[derive(Serialize)]
    struct WithWarning<'a> {
        #[serde(flatten)]
        coverage: &'a crate::coverage::Coverage,
        warning: Option<String>,
    }
    to_js(&WithWarning { coverage: c, warning: c.warning(label) })
}

/// `[{column, meaning}]`: the screen's columns and what each means ([`crate::screen::column_legend`]),
/// with the coverage columns for a model that records where its perturbations were measured.
pub(super) fn legend_js(ranked_by_reversal: bool, coverage: bool) -> Array {
    let extra = crate::screen::coverage_legend().into_iter().filter(|_| coverage).map(|(c, m)| (c, m.to_string()));
    crate::screen::column_legend(ranked_by_reversal, crate::screen::TOP_GENES)
        .into_iter()
        .chain(extra)
        .map(|(column, meaning)| {
            let e = Object::new();
            set(&e, "column", column);
            set(&e, "meaning", meaning.as_str());
            JsValue::from(e)
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Info<'a> {
    name: &'a str,
    genes: usize,
    latent: crate::format::Latent,
    metadata: BTreeMap<&'static str, &'a crate::format::PriorSpec>,
    perturbations: Vec<PerturbationInfo<'a>>,
    /// What to predict when the user names nothing ([`ModelConfig::default_perturbation`]).
    default_perturbation: Option<&'a str>,
    contexts: &'a [Named],
    provenance: &'a serde_json::Value,
    /// Format 2: the encoder's covariates (empty in format 1).
    covariates: &'a [crate::format::NumericField],
    /// The familiarity calibration, or null.
    familiarity: Option<CalibrationInfo<'a>>,
}

/// A known perturbation, and whether it is a control ([`ModelConfig::is_control`]).
#[derive(Serialize)]
pub(super) struct PerturbationInfo<'a> {
    name: &'a str,
    metadata: &'a Metadata,
    control: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CalibrationInfo<'a> {
    /// Training contexts with a centroid.
    contexts: Vec<&'a str>,
    max_distance: f64,
    min_reconstruction_r2: f64,
    calibration: &'a str,
}

/// `info()`: name, gene count, latent widths, the priors' vocabularies, known perturbations (with
/// which are controls) and contexts, provenance, covariates and the familiarity calibration.
pub(super) fn info_js(c: &ModelConfig) -> Result<JsValue, JsValue> {
    let metadata = BTreeMap::from([
        ("technical", &c.priors.technical),
        ("biological", &c.priors.biological),
        ("perturbation", &c.priors.perturbation),
    ]);
    to_js(&Info {
        name: &c.name,
        genes: c.architecture.genes,
        latent: c.architecture.latent,
        metadata,
        perturbations: c.perturbations.iter().map(|n| PerturbationInfo { name: &n.name, metadata: &n.metadata, control: ModelConfig::is_control(n) }).collect(),
        default_perturbation: c.default_perturbation().map(|n| n.name.as_str()),
        contexts: &c.contexts,
        provenance: &c.provenance,
        covariates: &c.covariates,
        familiarity: c.familiarity.as_ref().map(|f| CalibrationInfo {
            contexts: f.centroids.iter().map(|c| c.context.as_str()).collect(),
            max_distance: f.max_distance,
            min_reconstruction_r2: f.min_reconstruction_r2,
            calibration: &f.calibration,
        }),
    })
}
