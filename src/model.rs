//! The conditional VAE graph (docs/FORMAT.md, "Networks"): an encoder, three prior networks and a
//! decoder, each a residual pre-LayerNorm MLP trunk, uploaded once to a backend.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::{Group, ModelConfig, ModelFile};
use crate::metadata::PriorInputs;
use crate::ops::Activation;
use crate::quant::DType;

/// How a network turns its input into the first hidden state.
enum Input<B: Backend> {
    /// A linear layer on a dense input (encoder: log-CPM; decoder: latents).
    Linear(B::Linear),
    /// A prior's embedding table: one-hot rows, then numeric rows.
    Embedding { table: B::Tensor, numeric_row0: usize, bias: B::Tensor },
}

struct Norm<B: Backend> {
    weight: B::Tensor,
    bias: B::Tensor,
}

struct Block<B: Backend> {
    norm: Norm<B>,
    fc1: B::Linear,
    fc2: B::Linear,
}

/// One residual MLP trunk with its head.
struct Network<B: Backend> {
    input: Input<B>,
    blocks: Vec<Block<B>>,
    norm: Norm<B>,
    head: B::Linear,
}

/// A model whose weights live on backend `B`.
pub struct Model<B: Backend> {
    config: ModelConfig,
    encoder: Network<B>,
    decoder: Network<B>,
    priors: [Network<B>; 3],
    /// Format 2: the encoder's covariate layer, added to its first hidden state.
    covariate: Option<B::Linear>,
    /// Format 2: the decoder's context-free perturbation path, `decoder.perturbation(z_pert)`
    /// added to its output.
    perturbation_path: Option<B::Linear>,
    activation: Activation,
    eps: f32,
    /// Format 3: per-gene thresholds `[1, genes]` of the denoised prediction mode.
    pub denoise_threshold: Option<B::Tensor>,
    /// Per-gene σ of the Normal likelihood on log-CPM.
    pub sigma: Vec<f32>,
    /// Log-CPM standing in for a gene a sample lacks.
    pub gene_mean: Vec<f32>,
}

/// The encodings of the linear weights of a model file (the GPU backend has one kernel variant
/// per encoding), each once.
pub fn linear_dtypes(file: &ModelFile) -> Vec<DType> {
    let mut out: Vec<DType> = Vec::new();
    // Linear layers are `<layer>.weight` + `<layer>.bias`; layer norms are `<…>.norm.weight`.
    for (name, m) in &file.tensors {
        let linear = name.strip_suffix(".weight").is_some_and(|layer| !layer.ends_with(".norm") && file.tensors.contains_key(&format!("{layer}.bias")));
        if linear && !out.contains(&m.dtype) {
            out.push(m.dtype);
        }
    }
    crate::sort::sort_by(&mut out, |a, b| (*a as u8).cmp(&(*b as u8)));
    out
}

struct Loader<'a, B: Backend> {
    backend: &'a mut B,
    file: &'a ModelFile,
}

impl<B: Backend> Loader<'_, B> {
    fn vector(&mut self, name: &str) -> Result<B::Tensor> {
        let v = self.file.vector(name);
        let n = v.len();
        self.backend.tensor(&v, 1, n)
    }

    fn matrix(&mut self, name: &str) -> Result<B::Tensor> {
        let m = self.file.tensor(name);
        self.backend.tensor(&m.to_f32(), m.rows, m.cols)
    }

    fn linear(&mut self, name: &str) -> Result<B::Linear> {
        let bias = self.file.vector(&format!("{name}.bias"));
        self.backend.linear_layer(name, self.file.tensor(&format!("{name}.weight")), &bias)
    }

    fn norm(&mut self, name: &str) -> Result<Norm<B>> {
        Ok(Norm { weight: self.vector(&format!("{name}.weight"))?, bias: self.vector(&format!("{name}.bias"))? })
    }

    fn network(&mut self, net: &str, blocks: usize, input: Input<B>) -> Result<Network<B>> {
        let blocks = (0..blocks)
            .map(|i| {
                let b = format!("{net}.blocks.{i}");
                Ok(Block { norm: self.norm(&format!("{b}.norm"))?, fc1: self.linear(&format!("{b}.fc1"))?, fc2: self.linear(&format!("{b}.fc2"))? })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Network { input, blocks, norm: self.norm(&format!("{net}.norm"))?, head: self.linear(&format!("{net}.head"))? })
    }
}

impl<B: Backend> Model<B> {
    /// Uploads every weight of a validated model file to the backend.
    pub fn load(backend: &mut B, file: &ModelFile) -> Result<Model<B>> {
        let a = file.config.architecture.clone();
        let mut l = Loader { backend, file };
        let input = Input::Linear(l.linear("encoder.input")?);
        let encoder = l.network("encoder", a.encoder.blocks, input)?;
        let input = Input::Linear(l.linear("decoder.input")?);
        let decoder = l.network("decoder", a.decoder.blocks, input)?;
        let mut prior = |g: Group| -> Result<Network<B>> {
            let net = format!("prior.{}", g.name());
            let input = Input::Embedding {
                table: l.matrix(&format!("{net}.embedding"))?,
                numeric_row0: file.config.priors.of(g).one_hot_rows(),
                bias: l.vector(&format!("{net}.input.bias"))?,
            };
            l.network(&net, a.prior.blocks, input)
        };
        let priors = [prior(Group::Technical)?, prior(Group::Biological)?, prior(Group::Perturbation)?];
        let (covariate, perturbation_path) = if file.config.format_version >= 2 {
            (Some(l.linear("encoder.covariate")?), Some(l.linear("decoder.perturbation")?))
        } else {
            (None, None)
        };
        let denoise_threshold =
            if file.config.format_version >= 3 { Some(l.vector(crate::format::DENOISE_THRESHOLD)?) } else { None };
        Ok(Model {
            covariate,
            perturbation_path,
            denoise_threshold,
            sigma: file.vector("decoder.logvar").iter().map(|lv| (0.5 * lv).exp()).collect(),
            gene_mean: file.vector("input.gene_mean"),
            config: file.config.clone(),
            encoder,
            decoder,
            priors,
            activation: a.activation,
            eps: a.layer_norm_eps,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Encoder head `[rows, 2·(Dt+Db)]` for log-CPM `[rows, genes]` and, in format 2, the
    /// transformed covariates `[rows, covariates]` (`metadata::covariates`; empty in format 1).
    pub fn encode(&self, be: &mut B, log_cpm: &B::Tensor, covariates: &[f32]) -> Result<B::Tensor> {
        let Input::Linear(input) = &self.encoder.input else { unreachable!("the encoder has a linear input") };
        let mut h = be.linear(log_cpm, input)?;
        let (rows, width) = (be.shape(log_cpm).0, self.config.covariates.len());
        if covariates.len() != rows * width {
            return Err(Error::request(format!("{} covariate values for {rows} rows of {width} covariates", covariates.len())));
        }
        if let Some(layer) = &self.covariate {
            let c = be.tensor(covariates, rows, width)?;
            let c = be.linear(&c, layer)?;
            h = be.add(&h, &c)?;
        }
        self.trunk(be, &self.encoder, h)
    }

    /// Prior head `[rows, 2·Dg]` of `group` for encoded metadata.
    pub fn prior(&self, be: &mut B, group: Group, inputs: &PriorInputs) -> Result<B::Tensor> {
        let net = &self.priors[group as usize];
        let Input::Embedding { table, numeric_row0, bias } = &net.input else { unreachable!("priors embed") };
        let h = be.prior_embed(table, *numeric_row0, bias, &inputs.index, &inputs.numeric, inputs.rows)?;
        self.trunk(be, net, h)
    }

    /// Decoder mean log-CPM `[rows, genes]` for latents `[rows, Dt+Db+Dp]`: the trunk's output,
    /// plus in format 2 the perturbation path on z_pert (the last Dp columns).
    pub fn decode(&self, be: &mut B, z: &B::Tensor) -> Result<B::Tensor> {
        let Input::Linear(input) = &self.decoder.input else { unreachable!("the decoder has a linear input") };
        let h = be.linear(z, input)?;
        let out = self.trunk(be, &self.decoder, h)?;
        let Some(path) = &self.perturbation_path else { return Ok(out) };
        let lat = self.config.architecture.latent;
        // assemble with empty first two parts and an identity index slices the z_pert columns.
        let rows = be.shape(z).0 as u32;
        let index: Vec<u32> = (0..rows).flat_map(|r| [r, r, r]).collect();
        let z_pert = be.assemble([(z, 0, 0), (z, 0, 0), (z, lat.technical + lat.biological, lat.perturbation)], &index)?;
        let p = be.linear(&z_pert, path)?;
        be.add(&out, &p)
    }

    fn trunk(&self, be: &mut B, net: &Network<B>, mut h: B::Tensor) -> Result<B::Tensor> {
        for block in &net.blocks {
            let t = be.layer_norm(&h, &block.norm.weight, &block.norm.bias, self.eps)?;
            let t = be.linear(&t, &block.fc1)?;
            let t = be.activation(&t, self.activation)?;
            let t = be.linear(&t, &block.fc2)?;
            h = be.add(&h, &t)?;
        }
        let h = be.layer_norm(&h, &net.norm.weight, &net.norm.bias, self.eps)?;
        be.linear(&h, &net.head)
    }
}
