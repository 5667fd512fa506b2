//! Backends run the model's operations. The model graph (`crate::model`) is written once against
//! [`Backend`]; the CPU backend executes each op at once, the GPU backend records WGSL dispatches
//! and only waits for the device in [`Backend::read`].

pub mod cpu;
pub mod gpu;

use crate::error::Result;
use crate::ops::{Activation, Noise, reparameterize::Streams};
use crate::quant::Matrix;

pub use cpu::{CpuBackend, CpuKernels};
pub use gpu::GpuBackend;

/// The operations a model needs, over a backend's own tensor type (row-major f32 matrices).
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// An f32 `[rows, cols]` matrix living on the backend.
    type Tensor;
    /// A linear layer's weight (in its stored encoding) and bias, uploaded once.
    type Linear;

    /// A human-readable description: backend and adapter.
    fn describe(&self) -> String;
    /// `(rows, cols)` of a tensor.
    fn shape(&self, t: &Self::Tensor) -> (usize, usize);

    /// Uploads f32 data: model parameters (kept) and inputs.
    fn tensor(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor>;
    /// `tensor` from values the caller no longer needs (the CPU backend adopts the buffer).
    fn tensor_owned(&mut self, data: Vec<f32>, rows: usize, cols: usize) -> Result<Self::Tensor> {
        self.tensor(&data, rows, cols)
    }
    /// Uploads a linear layer; `bias` has `weight.rows` values.
    fn linear_weights(&mut self, weight: &Matrix, bias: &[f32]) -> Result<Self::Linear>;
    /// Uploads the model's linear layer `name` (as in the model file, without `.weight`): the
    /// CPU backend's integer path is chosen per layer.
    fn linear_layer(&mut self, name: &str, weight: &Matrix, bias: &[f32]) -> Result<Self::Linear> {
        let _ = name;
        self.linear_weights(weight, bias)
    }

    /// `x · Wᵀ + b`.
    fn linear(&mut self, x: &Self::Tensor, w: &Self::Linear) -> Result<Self::Tensor>;
    fn layer_norm(&mut self, x: &Self::Tensor, weight: &Self::Tensor, bias: &Self::Tensor, eps: f32) -> Result<Self::Tensor>;
    fn activation(&mut self, x: &Self::Tensor, act: Activation) -> Result<Self::Tensor>;
    fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// Prior input layer (see `ops::prior_embed`); `index` is `[rows, fields]`, `numeric` is
    /// `[rows, table rows − numeric_row0]`.
    fn prior_embed(
        &mut self,
        table: &Self::Tensor,
        numeric_row0: usize,
        bias: &Self::Tensor,
        index: &[u32],
        numeric: &[f32],
        rows: usize,
    ) -> Result<Self::Tensor>;
    /// `[samples · rows, D]` latents from a `[rows, 2·D]` head (see `ops::reparameterize`).
    fn reparameterize(&mut self, head: &Self::Tensor, streams: Streams, noise: Option<Noise>, samples: usize) -> Result<Self::Tensor>;
    /// Decoder inputs from three `(source, first column, width)` parts and a `[rows, 3]` index.
    fn assemble(&mut self, parts: [(&Self::Tensor, usize, usize); 3], index: &[u32]) -> Result<Self::Tensor>;
    /// `pred − reference[index[r]]` per row.
    fn log_fold_change(&mut self, pred: &Self::Tensor, reference: &Self::Tensor, index: &[u32]) -> Result<Self::Tensor>;
    /// The counterfactual profile of the first `index.len() / 2` rows of `pred`:
    /// `max(0, reference[index[2r]] + (pred[r] − pred[index[2r + 1]]))` per row `r`, where row
    /// `index[2r + 1]` of `pred` is the decoder's output for the control; with `threshold`
    /// (`[1, genes]`) the denoised profile (see `ops::output::counterfactual_cpu`).
    fn counterfactual(&mut self, pred: &Self::Tensor, reference: &Self::Tensor, threshold: Option<&Self::Tensor>, index: &[u32]) -> Result<Self::Tensor>;
    /// `expm1(pred) · library_size[index[r]] / 10⁶` per row.
    fn counts(&mut self, pred: &Self::Tensor, library_size: &[f32], index: &[u32]) -> Result<Self::Tensor>;

    /// Copies tensors back to the host, waiting for the work that produces them.
    async fn read(&mut self, tensors: &[&Self::Tensor]) -> Result<Vec<Vec<f32>>>;
    /// [`Backend::read`] of tensors no longer needed: a backend whose tensors already live in
    /// host memory hands their buffers over instead of copying them.
    async fn read_owned(&mut self, tensors: Vec<Self::Tensor>) -> Result<Vec<Vec<f32>>> {
        let refs: Vec<&Self::Tensor> = tensors.iter().collect();
        self.read(&refs).await
    }
}

/// Which backend a session should use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// The GPU when wgpu finds an adapter, else the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "gpu" | "webgpu" => Ok(BackendKind::Gpu),
            "cpu" => Ok(BackendKind::Cpu),
            other => Err(format!("unknown backend '{other}' (expected auto, gpu or cpu)")),
        }
    }
}
