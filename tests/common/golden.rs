//! The golden vectors of the shipped models (tests/golden, written by the training pipeline from
//! the same quantized weights, dequantized in PyTorch): their cases as requests.

use refcast::format::{Group, Metadata, ModelFile};
use refcast::sample::{MatchReport, Reference};
use refcast::session::{PredictionMode, Request, Sampling};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Golden {
    #[serde(default = "format_1")]
    pub golden_format: u32,
    pub model: String,
    pub cases: Vec<Case>,
}

fn format_1() -> u32 {
    1
}

#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub mode: String,
    /// `decoded` or `counterfactual` (format 2); decoded when absent (format 1).
    pub prediction: Option<String>,
    pub reference: Option<GoldenReference>,
    pub condition_on: Vec<Group>,
    pub technical: Metadata,
    pub biological: Metadata,
    pub perturbation: Metadata,
    pub seed: Option<u64>,
    pub sample_index: Option<usize>,
    pub expected: Expected,
}

#[derive(Deserialize)]
pub struct GoldenReference {
    pub log_cpm: Vec<f32>,
    pub library_size: f32,
    /// Whether the library size is a sequencing depth (format 2 covariate and technical prior).
    #[serde(default)]
    pub from_counts: bool,
}

/// What the runtime must report for a reference (golden files of format 2 models with a
/// familiarity calibration; every gene counts as measured).
#[derive(Deserialize)]
pub struct GoldenFamiliarity {
    pub reconstruction_r2: f32,
    pub nearest_context: String,
    pub distance: f32,
    pub outside: bool,
}

#[derive(Deserialize)]
pub struct Expected {
    pub z: Vec<f32>,
    /// The prediction: the decoded profile, or the counterfactual one.
    pub log_cpm: Vec<f32>,
    /// Counterfactual cases: decode(perturbation) and decode(control).
    pub decoded_log_cpm: Option<Vec<f32>>,
    pub control_log_cpm: Option<Vec<f32>>,
    pub familiarity: Option<GoldenFamiliarity>,
}

impl Case {
    pub fn prediction(&self) -> PredictionMode {
        self.prediction.as_deref().unwrap_or("decoded").parse().unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// The request the case describes, and the draw it holds.
    pub fn request(&self) -> (Request, usize) {
        let mut context = self.technical.clone();
        context.extend(self.biological.clone());
        let mut req = Request::prompt(vec![context], vec![self.perturbation.clone()]);
        if let Some(r) = &self.reference {
            req.references = vec![Reference {
                name: "golden".into(),
                log_cpm: r.log_cpm.clone(),
                library_size: r.library_size,
                depth_known: r.from_counts,
                measured: vec![true; r.log_cpm.len()],
                report: MatchReport::default(),
            }];
        }
        req.condition_on = self.condition_on.clone();
        req.mode = self.prediction();
        let draw = self.sample_index.unwrap_or(0);
        if self.mode == "sample" {
            req.sampling = Sampling::Samples { num_samples: draw + 1, seed: self.seed.unwrap() };
        }
        (req, draw)
    }
}

pub fn load(name: &str) -> (Golden, ModelFile) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let golden: Golden = serde_json::from_slice(&std::fs::read(format!("{dir}/tests/golden/{name}")).unwrap()).unwrap();
    let file = ModelFile::from_bytes(&std::fs::read(format!("{dir}/{}", golden.model)).unwrap()).unwrap();
    (golden, file)
}

