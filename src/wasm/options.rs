//! The options JS passes, as serde types, and their resolution against a model: names to
//! metadata (the library's lookups), columns to indices, strings to the library's enums.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::js::{refcast_error, usage};
use crate::format::{Group, Metadata, ModelConfig, Named};
use crate::metadata;
use crate::request::{Baseline, PredictionMode};
use crate::sample::{self, SampleFile, SampleTable, ValueKind};
use crate::signature::Signature;

/// A metadata combination given by name (a known perturbation or context) or as fields.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum NameOrMetadata {
    Name(String),
    Metadata(Metadata),
}

/// A sample column by position or by name.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Column {
    Index(usize),
    Name(String),
}

/// Several sample columns: `'all'`, or a list of positions and names.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Columns {
    List(Vec<Column>),
    All(String),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SampleOptions {
    /// `auto`, `counts`, `log-cpm`, `log2-cpm`, `log10-cpm`, `tpm`, `fpkm` or `cpm`.
    pub(super) values: Option<String>,
    pub(super) column: Option<Column>,
    /// The file's name, to name a lone generic column ("count") after it.
    pub(super) file_name: Option<String>,
    /// The bytes were gzip-compressed (the JS layer decompressed them).
    pub(super) gzip: Option<bool>,
    /// The sample bytes are a 10x `matrix.mtx`; these are its other files.
    pub(super) tenx: Option<TenxJs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PredictOptions {
    pub(super) values: Option<String>,
    pub(super) column: Option<Column>,
    pub(super) file_name: Option<String>,
    pub(super) gzip: Option<bool>,
    /// The sample bytes are a 10x `matrix.mtx`; these are its other files.
    pub(super) tenx: Option<TenxJs>,
    pub(super) columns: Option<Columns>,
    pub(super) context: Option<NameOrMetadata>,
    #[serde(default)]
    pub(super) contexts: Vec<NameOrMetadata>,
    #[serde(default)]
    pub(super) perturbations: Vec<NameOrMetadata>,
    pub(super) condition_on: Option<Vec<Group>>,
    pub(super) num_samples: Option<usize>,
    pub(super) seed: Option<f64>,
    /// A log-CPM sample's library size (as the CLI's `--library-size`); without a sample, the
    /// library size of the predicted counts.
    pub(super) library_size: Option<f64>,
    /// `denoised` (default), `counterfactual` or `decoded` (see [`PredictionMode`]).
    pub(super) mode: Option<String>,
    /// `reference` or `control`; by default the library's choice for the mode
    /// ([`Baseline::default_for`]).
    pub(super) baseline: Option<String>,
    /// Also list each row's `top` genes per direction (`topUp`, `topDown` per row).
    pub(super) top: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ScreenOptionsJs {
    pub(super) values: Option<String>,
    pub(super) column: Option<Column>,
    pub(super) file_name: Option<String>,
    pub(super) gzip: Option<bool>,
    /// The sample bytes are a 10x `matrix.mtx`; these are its other files.
    pub(super) tenx: Option<TenxJs>,
    /// For a log-CPM sample: the library size its values were computed from.
    pub(super) library_size: Option<f64>,
    pub(super) context: Option<NameOrMetadata>,
    pub(super) perturbations: Option<Vec<NameOrMetadata>>,
    pub(super) signature: Option<SignatureJs>,
    /// `denoised` (default), `counterfactual` or `decoded` (see [`PredictionMode`]).
    pub(super) mode: Option<String>,
    /// `reference` or `control`; by default the library's choice for the mode.
    pub(super) baseline: Option<String>,
    pub(super) condition_on: Option<Vec<Group>>,
    /// Rank by this gene set's activity (`pathway:NAME`, `go:GO:…`; see `GeneSets::find`).
    pub(super) rank_by: Option<String>,
    /// Give each hit its pathways' scores (`hits[].enrichment`).
    pub(super) pathways: Option<bool>,
    /// Give each hit every gene set's score (else the pathways only), keeping the GO terms that
    /// move most.
    pub(super) all_sets: Option<bool>,
}

/// The text files beside a 10x Genomics `matrix.mtx` (decompressed by the JS layer), for
/// [`sample::tenx::pseudobulk`]: every cell summed into one sample called `name`, or one sample
/// per group of a barcode → group table.
#[derive(Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(super) struct TenxJs {
    features: String,
    barcodes: String,
    groups: Option<String>,
    name: Option<String>,
}

/// A signature to reverse: `{up: [genes], down: [genes]}` sets, a list of genes (an up set), or
/// `{gene: weight}` (> 0: up in the state to reverse); see [`Signature`].
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum SignatureJs {
    // Tried in this order: a map of numbers is a weighted signature (even a gene named "up"),
    // and only an object whose values are lists is a pair of sets.
    Genes(Vec<String>),
    Weighted(BTreeMap<String, f64>),
    Sets {
        #[serde(default)]
        up: Vec<String>,
        #[serde(default)]
        down: Vec<String>,
    },
}

impl From<SignatureJs> for Signature {
    fn from(s: SignatureJs) -> Signature {
        match s {
            SignatureJs::Sets { up, down } => Signature::Sets { up, down },
            SignatureJs::Genes(up) => Signature::Sets { up, down: vec![] },
            SignatureJs::Weighted(m) => Signature::Weighted(m.into_iter().collect()),
        }
    }
}

/// A perturbation by name (see `ModelConfig::perturbation`) or by its fields.
pub(super) fn perturbation(cfg: &ModelConfig, p: NameOrMetadata) -> Named {
    match p {
        NameOrMetadata::Metadata(metadata) => Named::new(metadata::describe(&metadata), metadata),
        NameOrMetadata::Name(name) => cfg.perturbation(&name),
    }
}

pub(super) fn context(cfg: &ModelConfig, c: NameOrMetadata) -> Result<Metadata, JsValue> {
    match c {
        NameOrMetadata::Metadata(m) => Ok(m),
        NameOrMetadata::Name(name) => metadata::context_named(cfg, &name).map_err(refcast_error),
    }
}

/// A sample file read as the library reads any ([`sample::read_decompressed`]: featureCounts,
/// Salmon, kallisto or a plain table; the value kind from `values`, the header or the values).
/// `file_name` names a lone generic column ("count") after the file; `gzip` says the JS layer
/// decompressed it (with `DecompressionStream`), for the interpretation.
/// With `tenx`, the bytes are a 10x matrix (Matrix Market), summed over cells as the CLI sums a
/// 10x directory.
pub(super) fn read_sample(bytes: &[u8], values: Option<&str>, file_name: Option<&str>, gzip: Option<bool>, tenx: Option<&TenxJs>) -> Result<SampleFile, JsValue> {
    let kind: ValueKind = match values {
        None => ValueKind::Auto,
        Some(v) => v.parse().map_err(|e: String| usage(e))?,
    };
    if let Some(t) = tenx {
        if !matches!(kind, ValueKind::Auto | ValueKind::Counts) {
            return Err(usage(format!("a 10x Genomics matrix holds counts; values '{}' does not apply", kind.name())));
        }
        let groups = t.groups.as_deref().map(str::as_bytes);
        let mut file = sample::tenx::pseudobulk(bytes, t.features.as_bytes(), t.barcodes.as_bytes(), groups, t.name.as_deref().unwrap_or("pseudobulk")).map_err(refcast_error)?;
        file.interpretation.gzip = gzip.unwrap_or(false);
        return Ok(file);
    }
    sample::read_decompressed(bytes, file_name.unwrap_or(""), kind, gzip.unwrap_or(false)).map_err(refcast_error)
}

pub(super) fn prediction_mode(mode: Option<&str>) -> Result<PredictionMode, JsValue> {
    mode.map_or(Ok(PredictionMode::default()), |m| m.parse().map_err(|e: String| usage(e)))
}

pub(super) fn baseline(b: Option<&str>) -> Result<Option<Baseline>, JsValue> {
    b.map(|b| b.parse().map_err(|e: String| usage(e))).transpose()
}

pub(super) fn column(table: &SampleTable, c: Option<&Column>) -> Result<usize, JsValue> {
    match c {
        None => Ok(0),
        Some(Column::Index(i)) if *i < table.samples.len() => Ok(*i),
        Some(Column::Index(i)) => Err(usage(format!("column {i} asked for, the sample has {} value column(s)", table.samples.len()))),
        Some(Column::Name(n)) => table.samples.iter().position(|s| s == n).ok_or_else(|| {
            usage(format!("no sample column named '{n}' (the file has: {})", table.samples.join(", ")))
        }),
    }
}

/// The columns a prediction takes its references from: `column` (one, default the first) or
/// `columns` (several, in the order given).
pub(super) fn columns(table: &SampleTable, one: Option<&Column>, many: Option<&Columns>) -> Result<Vec<usize>, JsValue> {
    match (one, many) {
        (Some(_), Some(_)) => Err(usage("give either column or columns, not both")),
        (_, None) => Ok(vec![column(table, one)?]),
        (None, Some(Columns::All(a))) if a == "all" => Ok((0..table.samples.len()).collect()),
        (None, Some(Columns::All(a))) => Err(usage(format!("columns must be 'all' or a list of columns, got '{a}'"))),
        (None, Some(Columns::List(list))) if list.is_empty() => Err(usage("columns is an empty list")),
        (None, Some(Columns::List(list))) => list.iter().map(|c| column(table, Some(c))).collect(),
    }
}
