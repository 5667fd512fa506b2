//! Results as JS values: typed arrays for profiles, plain objects for reports and hits.

use std::collections::BTreeMap;

use js_sys::{Array, Float32Array, Float64Array, Object, Uint8Array, Uint32Array};
use serde::Serialize;
use wasm_bindgen::JsValue;

use super::js::{set, to_js};
use crate::enrichment::{GeneSets, SetResult};
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
/// `distance` and `outside` null for a model without a calibration), and its `summary`. Set field
/// by field: serde's flattening would cost the wasm module kilobytes.
pub(super) fn familiarity_list(list: &[Familiarity]) -> Result<JsValue, JsValue> {
    let or_null = |v: Option<JsValue>| v.unwrap_or(JsValue::NULL);
    Ok(list
        .iter()
        .map(|f| {
            let o = Object::new();
            set(&o, "reference", f.reference.as_str());
            set(&o, "reconstructionR2", f.reconstruction_r2);
            set(&o, "nearestContext", or_null(f.nearest_context.as_deref().map(JsValue::from)));
            set(&o, "distance", or_null(f.distance.map(JsValue::from)));
            set(&o, "outside", or_null(f.outside.map(JsValue::from)));
            set(&o, "reasons", f.reasons.iter().map(|r| JsValue::from(r.as_str())).collect::<Array>());
            set(&o, "summary", f.summary());
            JsValue::from(o)
        })
        .collect::<Array>()
        .into())
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

/// Gene-set scores as columns (the JS layer makes one object per set from them, which is much
/// faster than building them here): `set` (indices into the file's sets), `score`, `pValue`,
/// `fdr`, `size`, and the leading genes of set i at `leadingOffsets[i]..leadingOffsets[i + 1]` of
/// `leadingGene` (model gene indices) and `leadingLogFoldChange`.
pub(super) fn set_scores_js(results: &[SetResult]) -> Object {
    let o = Object::new();
    let column = |f: fn(&SetResult) -> f64| Float64Array::from(results.iter().map(f).collect::<Vec<f64>>().as_slice());
    set(&o, "set", Uint32Array::from(results.iter().map(|r| r.score.set as u32).collect::<Vec<u32>>().as_slice()));
    set(&o, "score", column(|r| r.score.score));
    set(&o, "pValue", column(|r| r.score.p_value));
    set(&o, "fdr", column(|r| r.score.fdr));
    set(&o, "size", Uint32Array::from(results.iter().map(|r| r.score.size as u32).collect::<Vec<u32>>().as_slice()));
    let mut offsets = vec![0u32];
    offsets.extend(results.iter().scan(0u32, |at, r| {
        *at += r.leading.len() as u32;
        Some(*at)
    }));
    set(&o, "leadingOffsets", Uint32Array::from(offsets.as_slice()));
    set(&o, "leadingGene", Uint32Array::from(results.iter().flat_map(|r| r.leading.iter().map(|l| l.0 as u32)).collect::<Vec<u32>>().as_slice()));
    set(&o, "leadingLogFoldChange", Float32Array::from(results.iter().flat_map(|r| r.leading.iter().map(|l| l.1)).collect::<Vec<f32>>().as_slice()));
    o
}

/// With the screen's gene sets, `hits[].activity` (the rank-by set's score, or null) and, when
/// `set_scores`, `hits[].enrichment` (the sets' scores as [`set_scores_js`]).
pub(super) fn hit_js(h: &ScreenHit, cfg: &ModelConfig, with_sets: bool, set_scores: bool) -> Result<Object, JsValue> {
    let o = Object::new();
    if with_sets {
        set(&o, "activity", h.activity.map(JsValue::from).unwrap_or(JsValue::NULL));
    }
    if set_scores {
        set(&o, "enrichment", set_scores_js(&h.enrichment));
    }
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
/// `maxDistance`, `measuredAs`) with its `warning` (null when there is nothing to warn of). Set
/// field by field: serde's flattening would cost the wasm module kilobytes.
pub(super) fn coverage_js(c: &crate::coverage::Coverage, label: &str) -> Result<JsValue, JsValue> {
    let o = Object::new();
    let or_null = |v: Option<JsValue>| v.unwrap_or(JsValue::NULL);
    set(&o, "measured", c.measured.as_str());
    set(&o, "context", or_null(c.context.as_deref().map(JsValue::from)));
    set(&o, "distance", or_null(c.distance.map(JsValue::from)));
    set(&o, "maxDistance", or_null(c.max_distance.map(JsValue::from)));
    set(&o, "measuredAs", c.measured_as.iter().map(|n| JsValue::from(n.as_str())).collect::<Array>());
    set(&o, "warning", or_null(c.warning(label).map(JsValue::from)));
    Ok(o.into())
}

/// `[{column, meaning}]`: the screen's columns and what each means ([`crate::screen::column_legend`],
/// the activity column when the screen was ranked by a gene set, and the coverage columns for a
/// model that records where its perturbations were measured).
pub(super) fn screen_legend_js(ranked_by_reversal: bool, ranked_by_set: bool, coverage: bool) -> Array {
    legend_js(crate::screen::ranked_legend(ranked_by_reversal, ranked_by_set, coverage, crate::screen::TOP_GENES))
}

/// `[{column, meaning}]` from the library's legend.
pub(super) fn legend_js(legend: Vec<(&'static str, String)>) -> Array {
    legend
        .into_iter()
        .map(|(column, meaning)| {
            let e = Object::new();
            set(&e, "column", column);
            set(&e, "meaning", meaning.as_str());
            JsValue::from(e)
        })
        .collect()
}

/// `loadGeneSets()`: the collections (name, title, method, number of sets), the sources, and
/// every set's `id`, `name` and `collection` (lists in file order, which `set` indices refer to).
pub(super) fn gene_sets_js(sets: &GeneSets) -> Result<JsValue, JsValue> {
    let out = Object::new();
    let list = |f: fn(&crate::enrichment::GeneSet) -> &str| sets.sets().iter().map(|s| JsValue::from(f(s))).collect::<Array>();
    set(&out, "id", list(|s| &s.id));
    set(&out, "name", list(|s| &s.name));
    set(&out, "collection", list(|s| &s.collection));
    let collections: Array = sets
        .collections()
        .iter()
        .map(|c| {
            let o = Object::new();
            set(&o, "name", c.name.as_str());
            set(&o, "title", c.title.as_str());
            set(&o, "method", c.method.as_str());
            set(&o, "sets", sets.sets().iter().filter(|s| s.collection == c.name).count() as u32);
            JsValue::from(o)
        })
        .collect();
    set(&out, "collections", collections);
    set(&out, "sources", to_js(&sets.sources)?);
    Ok(out.into())
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
