//! Synthetic models with random weights, of any size: for tests (before and beside the trained
//! model) and for benchmarks at gene counts the shipped model does not have.

use std::collections::BTreeMap;

use crate::format::*;
use crate::ops::Philox;
use crate::quant::{DType, Matrix};

/// Sizes of a synthetic model.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticSpec {
    pub genes: usize,
    pub hidden: usize,
    pub ff: usize,
    pub blocks: usize,
    pub latent: Latent,
    /// Encoding of the large linear weights (those with a multiple-of-32 input width).
    pub dtype: DType,
    pub seed: u64,
}

impl SyntheticSpec {
    /// A small model that runs quickly everywhere (odd sizes on purpose).
    pub fn tiny(dtype: DType) -> SyntheticSpec {
        SyntheticSpec {
            genes: 160,
            hidden: 96,
            ff: 128,
            blocks: 1,
            latent: Latent { technical: 3, biological: 5, perturbation: 4 },
            dtype,
            seed: 1,
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Builds a synthetic model: valid config, random weights scaled like a trained network's.
pub fn random_model(spec: SyntheticSpec) -> ModelFile {
    let cat = |name: &str, values: &[&str]| CategoricalField {
        name: name.into(),
        values: std::iter::once("unknown").chain(values.iter().copied()).map(String::from).collect(),
    };
    let priors = Priors {
        technical: PriorSpec { categorical: vec![cat("platform", &["rnaseq", "microarray", "10x"])], numeric: vec![] },
        biological: PriorSpec { categorical: vec![cat("cell_type", &["B", "T", "Mono"]), cat("tissue", &["blood", "airway"])], numeric: vec![] },
        perturbation: PriorSpec {
            categorical: vec![cat("perturbation", &["none", "drug_a", "drug_b", "cytokine_c"])],
            numeric: vec![NumericField {
                name: "time_hours".into(),
                transform: NumericTransform::Log1pZscore,
                mean: 1.5,
                std: 1.0,
                min: 0.0,
                max: 168.0,
                unit: Some("h".into()),
            }],
        },
    };
    let pert = |name: &str, p: &str, t: f64| Named::new(name, BTreeMap::from([("perturbation".into(), text(p)), ("time_hours".into(), Value::Number(t))]));
    let config = ModelConfig {
        format_version: 1,
        name: format!("synthetic-{}genes", spec.genes),
        architecture: Architecture {
            genes: spec.genes,
            latent: spec.latent,
            activation: Activation::GeluTanh,
            layer_norm_eps: 1e-5,
            encoder: Trunk { hidden: spec.hidden, ff: spec.ff, blocks: spec.blocks },
            decoder: Trunk { hidden: spec.hidden, ff: spec.ff, blocks: spec.blocks },
            prior: Trunk { hidden: 32, ff: 64, blocks: 1 },
        },
        genes: (0..spec.genes)
            .map(|i| Gene { symbol: format!("GENE{i}"), ensembl: Some(format!("ENSG{:011}", 100_000 + i)) })
            .collect(),
        priors,
        perturbations: vec![
            pert("drug_a 6 h", "drug_a", 6.0),
            pert("drug_a 24 h", "drug_a", 24.0),
            pert("drug_b 6 h", "drug_b", 6.0),
            pert("cytokine_c 6 h", "cytokine_c", 6.0),
            pert("none (control)", "none", 0.0),
        ],
        contexts: vec![Named::new("T cells (10x)", BTreeMap::from([("platform".into(), text("10x")), ("cell_type".into(), text("T"))]))],
        normalisation: Normalisation::default(),
        provenance: serde_json::json!({ "data": "random weights", "seed": spec.seed }),
        tensors: BTreeMap::new(),
        covariates: vec![],
        familiarity: None,
    };

    let philox = Philox::new(spec.seed);
    let tensors = expected_tensors(&config)
        .into_iter()
        .enumerate()
        .map(|(i, (name, (rows, cols)))| {
            let m = random_tensor(&philox, &name, rows, cols, i as u32, spec.dtype);
            (name, m)
        })
        .collect();
    ModelFile { config, tensors }
}

/// A format 2 model: [`random_model`]'s (the same tensors), with a `library_size` covariate,
/// the decoder's perturbation path and a familiarity calibration with one centroid per known
/// context.
pub fn random_model_v2(spec: SyntheticSpec) -> ModelFile {
    let mut m = random_model(spec);
    let c = &mut m.config;
    c.format_version = 2;
    c.name = format!("synthetic-v2-{}genes", spec.genes);
    c.covariates = vec![library_size_field()];
    let width = spec.latent.technical + spec.latent.biological;
    let philox = Philox::new(spec.seed ^ 0x5eed_f00d);
    c.familiarity = Some(FamiliarityCalibration {
        space: ENCODER_MEAN_SPACE.into(),
        centroids: c
            .contexts
            .iter()
            .enumerate()
            .map(|(k, ctx)| Centroid {
                context: ctx.name.clone(),
                units: 12,
                mean: (0..width).map(|j| 0.5 * philox.normal(0, j as u32, k as u32, 1) as f64).collect(),
            })
            .collect(),
        max_distance: 3.0,
        min_reconstruction_r2: 0.5,
        calibration: "random centroids of a synthetic model".into(),
    });
    // New streams, so the tensors the two formats share keep their values.
    let first_stream = 1 << 16;
    let new: Vec<(String, (usize, usize))> = expected_tensors(&m.config).into_iter().filter(|(n, _)| !m.tensors.contains_key(n)).collect();
    for (i, (name, (rows, cols))) in new.into_iter().enumerate() {
        let t = random_tensor(&philox, &name, rows, cols, first_stream + i as u32, spec.dtype);
        m.tensors.insert(name, t);
    }
    m
}

/// A format 3 model: `random_model_v2` plus denoising thresholds, 3·|N(0, 1)| (wide: a random
/// model reconstructs nothing well) and 0 for every 5th gene.
pub fn random_model_v3(spec: SyntheticSpec) -> ModelFile {
    let mut m = random_model_v2(spec);
    m.config.format_version = 3;
    m.config.name = format!("synthetic-v3-{}genes", spec.genes);
    let philox = Philox::new(spec.seed ^ 0xde_0153);
    let threshold: Vec<f32> = (0..spec.genes).map(|g| if g % 5 == 0 { 0.0 } else { 3.0 * philox.normal(0, g as u32, 0, 3).abs() }).collect();
    m.tensors.insert(crate::format::DENOISE_THRESHOLD.into(), Matrix::encode(1, spec.genes, &threshold, DType::F32));
    m
}

/// A `library_size` numeric field (log1p z-score around e¹² reads), as the synthetic covariate
/// and for technical priors that take the depth.
pub fn library_size_field() -> NumericField {
    NumericField {
        name: LIBRARY_SIZE.into(),
        transform: NumericTransform::Log1pZscore,
        mean: 12.0,
        std: 1.5,
        min: 0.0,
        max: 1e12,
        unit: Some("reads".into()),
    }
}

/// One tensor of random values scaled like a trained network's: linear weights and embeddings
/// by 1/√fan-in, norms around 1, the rest small; linear weights whose width is a multiple of 32
/// in `dtype`, everything else f32.
fn random_tensor(philox: &Philox, name: &str, rows: usize, cols: usize, stream: u32, dtype: DType) -> Matrix {
    let n = rows * cols;
    let scale = if name.ends_with(".weight") && rows > 1 || name.ends_with(".embedding") {
        1.0 / (cols.max(rows.min(cols)) as f32).sqrt()
    } else {
        0.1
    };
    let mut values: Vec<f32> = (0..n).map(|j| scale * philox.normal(0, j as u32, stream, 0)).collect();
    if name.ends_with("norm.weight") {
        values.iter_mut().for_each(|v| *v += 1.0);
    }
    if name == "input.gene_mean" {
        values.iter_mut().for_each(|v| *v = 2.0 + 10.0 * v.abs());
    }
    if name == "decoder.logvar" {
        values.iter_mut().for_each(|v| *v = -2.0 + *v);
    }
    let quantize = name.ends_with(".weight") && rows > 1 && cols % crate::quant::BLOCK == 0 && name != "encoder.covariate.weight";
    Matrix::encode(rows, cols, &values, if quantize { dtype } else { DType::F32 })
}
