//! The `refcast` metadata document of a model file (docs/FORMAT.md), as Rust types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::quant::DType;

/// The newest format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 3;
/// Every format version this build reads (docs/FORMAT.md).
pub const FORMAT_VERSIONS: [u32; 3] = [1, 2, 3];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelConfig {
    pub format_version: u32,
    #[serde(default)]
    pub name: String,
    pub architecture: Architecture,
    pub genes: Vec<Gene>,
    pub priors: Priors,
    #[serde(default)]
    pub perturbations: Vec<Named>,
    #[serde(default)]
    pub contexts: Vec<Named>,
    pub normalisation: Normalisation,
    #[serde(default)]
    pub provenance: serde_json::Value,
    /// Logical dtype and shape of tensors stored as raw bytes (quantized ones must be here).
    #[serde(default)]
    pub tensors: BTreeMap<String, TensorSpec>,
    /// Format 2: numeric inputs of the encoder beside the log-CPM (sequencing depth), in the
    /// column order of `encoder.covariate.weight`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covariates: Vec<NumericField>,
    /// Format 2, optional: how to tell whether a reference resembles the training data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub familiarity: Option<FamiliarityCalibration>,
}

/// The covariate the runtime reads off a reference: its library size (sum of counts).
pub const LIBRARY_SIZE: &str = "library_size";

/// Where a format 2 model's training samples lie, and how far from them a reference may be
/// before its predictions are extrapolations (docs/FORMAT.md, "familiarity").
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FamiliarityCalibration {
    /// The space of the centroids: `encoder_mean`, the encoder's μ of (technical ‖ biological).
    pub space: String,
    pub centroids: Vec<Centroid>,
    /// Euclidean distance to the nearest centroid above which a reference is outside.
    pub max_distance: f64,
    /// Reconstruction R² below which a reference is outside.
    pub min_reconstruction_r2: f64,
    /// How the thresholds were chosen, for people.
    #[serde(default)]
    pub calibration: String,
}

/// The mean encoder μ of one training context.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Centroid {
    pub context: String,
    /// Training units (samples or pseudobulks) averaged.
    #[serde(default)]
    pub units: u64,
    pub mean: Vec<f64>,
}

/// The only centroid space this build reads.
pub const ENCODER_MEAN_SPACE: &str = "encoder_mean";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Architecture {
    pub genes: usize,
    pub latent: Latent,
    pub activation: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    pub encoder: Trunk,
    pub decoder: Trunk,
    pub prior: Trunk,
}

fn default_eps() -> f32 {
    1e-5
}

/// Widths of the three latent groups.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Latent {
    pub technical: usize,
    pub biological: usize,
    pub perturbation: usize,
}

impl Latent {
    pub fn of(&self, group: Group) -> usize {
        match group {
            Group::Technical => self.technical,
            Group::Biological => self.biological,
            Group::Perturbation => self.perturbation,
        }
    }
    pub fn total(&self) -> usize {
        self.technical + self.biological + self.perturbation
    }
}

/// Shape of a residual MLP trunk.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trunk {
    pub hidden: usize,
    pub ff: usize,
    pub blocks: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Gene {
    pub symbol: String,
    #[serde(default)]
    pub ensembl: Option<String>,
}

/// The three latent groups, in decoder-input order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Technical,
    Biological,
    Perturbation,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Technical, Group::Biological, Group::Perturbation];

    pub fn name(self) -> &'static str {
        match self {
            Group::Technical => "technical",
            Group::Biological => "biological",
            Group::Perturbation => "perturbation",
        }
    }

    /// Noise stream of this group (ops::reparameterize).
    pub fn stream(self) -> u32 {
        self as u32
    }
}

impl std::str::FromStr for Group {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Group::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown latent group '{s}' (expected technical, biological or perturbation)"))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Priors {
    pub technical: PriorSpec,
    pub biological: PriorSpec,
    pub perturbation: PriorSpec,
}

impl Priors {
    pub fn of(&self, group: Group) -> &PriorSpec {
        match group {
            Group::Technical => &self.technical,
            Group::Biological => &self.biological,
            Group::Perturbation => &self.perturbation,
        }
    }
}

/// Metadata fields of one prior network, in the order of its embedding rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PriorSpec {
    #[serde(default)]
    pub categorical: Vec<CategoricalField>,
    #[serde(default)]
    pub numeric: Vec<NumericField>,
}

impl PriorSpec {
    /// Rows of the embedding table that are one-hot rows.
    pub fn one_hot_rows(&self) -> usize {
        self.categorical.iter().map(|f| f.values.len()).sum()
    }
    pub fn table_rows(&self) -> usize {
        self.one_hot_rows() + self.numeric.len()
    }
    pub fn has_field(&self, name: &str) -> bool {
        self.categorical.iter().any(|f| f.name == name) || self.numeric.iter().any(|f| f.name == name)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CategoricalField {
    pub name: String,
    /// Vocabulary; entry 0 is "unknown".
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NumericField {
    pub name: String,
    pub transform: NumericTransform,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    #[serde(default)]
    pub unit: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NumericTransform {
    Zscore,
    Log1pZscore,
}

impl NumericTransform {
    /// What the transform does, for people.
    pub fn describe(self) -> &'static str {
        match self {
            NumericTransform::Zscore => "z-score",
            NumericTransform::Log1pZscore => "z-score of ln(1 + value)",
        }
    }
}

impl NumericField {
    /// The value the prior network sees.
    pub fn transform(&self, v: f64) -> f32 {
        let x = match self.transform {
            NumericTransform::Zscore => v,
            NumericTransform::Log1pZscore => v.ln_1p(),
        };
        ((x - self.mean) / self.std) as f32
    }
}

/// An activation function named in the model file's architecture (its CPU twin and kernel are
/// `ops::activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    GeluTanh,
    Relu,
}

/// A metadata value: a vocabulary entry or a number.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(v) => write!(f, "{v}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// Metadata fields by name.
pub type Metadata = BTreeMap<String, Value>;

/// A named metadata combination: a known perturbation, or a known context.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
    pub metadata: Metadata,
    /// A known perturbation of a format 2 model with a familiarity calibration, optionally: the
    /// training contexts (indices into `familiarity.centroids`) that hold a sample of it at this
    /// time and dose (see [`crate::coverage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_in: Option<Vec<u32>>,
}

impl Named {
    /// A combination with no record of where it was measured.
    pub fn new(name: impl Into<String>, metadata: Metadata) -> Named {
        Named { name: name.into(), metadata, measured_in: None }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Normalisation {
    pub input: String,
    pub cpm_scale: f64,
    pub log: String,
    pub missing_genes: String,
}

impl Default for Normalisation {
    fn default() -> Self {
        Normalisation {
            input: "log1p_cpm".into(),
            cpm_scale: 1e6,
            log: "natural".into(),
            missing_genes: "gene_mean".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TensorSpec {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl ModelConfig {
    /// A known perturbation by name (case-insensitive); else the known perturbations whose first
    /// categorical field has that value, spelt exactly as given when any is, else in any case:
    /// the one such entry ("dexamethasone" → "dexamethasone 1 µM 18 h"), or, for several (one
    /// compound at several doses), the fields they all share (name, class; dose and time left to
    /// `--set` or the training mean); else that value alone, to be checked against the
    /// vocabulary when predicting.
    pub fn perturbation(&self, name: &str) -> Named {
        if let Some(n) = find(&self.perturbations, name) {
            return n.clone();
        }
        let field = self.priors.perturbation.categorical.first().map(|f| f.name.clone()).unwrap_or_default();
        let value = name.trim();
        let with = |same: &dyn Fn(&str) -> bool| -> Vec<&Named> {
            self.perturbations.iter().filter(|n| matches!(n.metadata.get(&field), Some(Value::Text(v)) if same(v))).collect()
        };
        let mut matches = with(&|v| v == value);
        if matches.is_empty() {
            matches = with(&|v| v.eq_ignore_ascii_case(value));
        }
        match matches.as_slice() {
            [] => Named::new(name, Metadata::from([(field, Value::Text(value.to_string()))])),
            [only] => (*only).clone(),
            [first, rest @ ..] => {
                let mut shared = first.metadata.clone();
                shared.retain(|k, v| rest.iter().all(|n| n.metadata.get(k) == Some(v)));
                Named::new(name, shared)
            }
        }
    }

    /// A known context by name (case-insensitive).
    pub fn context(&self, name: &str) -> Option<&Named> {
        find(&self.contexts, name)
    }

    /// Whether a perturbation is a control (a field set to "none"): it predicts no change.
    pub fn is_control(named: &Named) -> bool {
        named.metadata.values().any(|v| matches!(v, Value::Text(t) if t.eq_ignore_ascii_case("none")))
    }

    /// The model's control perturbation: its first known perturbation that is a control.
    pub fn control(&self) -> Option<&Named> {
        self.perturbations.iter().find(|n| Self::is_control(n))
    }

    /// What to predict when no perturbation is named: the first that is not a control (a control
    /// would predict no change), else the first.
    pub fn default_perturbation(&self) -> Option<&Named> {
        self.perturbations.iter().find(|n| !Self::is_control(n)).or(self.perturbations.first())
    }
}

fn find<'a>(list: &'a [Named], name: &str) -> Option<&'a Named> {
    list.iter().find(|n| n.name.eq_ignore_ascii_case(name.trim()))
}
