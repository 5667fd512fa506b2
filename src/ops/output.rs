//! Output transforms of a prediction `[rows, genes]` of log-CPM, each row tied to one reference:
//! log fold change against the reference's log-CPM, counts at the reference's library size, and
//! the counterfactual profile (the reference moved by the decoder's change from the control), whole
//! or denoised.

/// What every backend checks before the log fold change (shapes are `(rows, cols)`): one
/// reference row per prediction row, over the same genes.
pub fn check_log_fold_change(pred: (usize, usize), reference: (usize, usize), index: &[u32]) -> crate::Result<()> {
    if index.len() != pred.0 || reference.1 != pred.1 {
        return Err(crate::Error::request(format!(
            "log fold change: [{}, {}] prediction, [{}, {}] reference, {} indices",
            pred.0, pred.1, reference.0, reference.1, index.len()
        )));
    }
    super::check_index(index, reference.0, "reference")
}

/// What every backend checks before counts (`pred` is `(rows, cols)`): one library size per
/// prediction row.
pub fn check_counts(pred: (usize, usize), library_sizes: usize, index: &[u32]) -> crate::Result<()> {
    if index.len() != pred.0 {
        return Err(crate::Error::request(format!("counts: {} indices for {} rows", index.len(), pred.0)));
    }
    super::check_index(index, library_sizes, "library size")
}

/// CPU twin of the log fold change: `out[r, g] = pred[r, g] − reference[index[r], g]`.
pub fn log_fold_change_cpu(pred: &[f32], reference: &[f32], index: &[u32], out: &mut [f32]) {
    let genes = pred.len() / index.len().max(1);
    for (r, &i) in index.iter().enumerate() {
        let i = i as usize;
        for g in 0..genes {
            out[r * genes + g] = pred[r * genes + g] - reference[i * genes + g];
        }
    }
}

/// CPU twin of counts: `out[r, g] = expm1(pred[r, g]) · library_size[index[r]] / 10⁶`.
pub fn counts_cpu(pred: &[f32], library_size: &[f32], index: &[u32], out: &mut [f32]) {
    let genes = pred.len() / index.len().max(1);
    for (r, &i) in index.iter().enumerate() {
        let scale = library_size[i as usize] * 1e-6;
        super::math::expm1_scaled(&pred[r * genes..(r + 1) * genes], scale, &mut out[r * genes..(r + 1) * genes]);
    }
}

/// CPU twin of the counterfactual profile, for rows `r` of `pred` (`[rows, genes]`) with
/// `(reference row, control row) = (index[2r], index[2r + 1])`:
/// `out[r, g] = max(0, reference[index[2r], g] + (pred[r, g] − control[index[2r + 1], g]))`.
/// `control` is the decoder's output for the control perturbation (on the device, rows of the same
/// tensor as `pred`); log-CPM is never negative, hence the clamp.
///
/// With `threshold` (`[genes]`, ≥ 0), the denoised profile instead:
/// `max(0, pred[r, g] + soft(reference − control, threshold[g]))`, `soft(v, t) = v − clamp(v, −t, t)`:
/// the part of the reference's deviation from its reconstruction within the threshold is taken
/// for the noise of one measurement and dropped, the rest (the sample's own profile) is kept.
pub fn counterfactual_cpu(pred: &[f32], control: &[f32], reference: &[f32], threshold: Option<&[f32]>, index: &[u32], out: &mut [f32]) {
    let rows = index.len() / 2;
    let genes = out.len() / rows.max(1);
    for (r, pair) in index.chunks_exact(2).enumerate() {
        let (i, c) = (pair[0] as usize * genes, pair[1] as usize * genes);
        let own = r * genes;
        match threshold {
            None => {
                for g in 0..genes {
                    out[own + g] = (reference[i + g] + (pred[own + g] - control[c + g])).max(0.0);
                }
            }
            Some(t) => {
                for g in 0..genes {
                    let residual = reference[i + g] - control[c + g];
                    out[own + g] = (pred[own + g] + (residual - residual.clamp(-t[g], t[g]))).max(0.0);
                }
            }
        }
    }
}

/// What every backend checks before the counterfactual transform (shapes are `(rows, cols)`): a
/// `[rows, 2]` index of reference rows and rows of `pred`, no more rows than `pred` has, reference,
/// prediction and thresholds (if any, `(1, genes)`) over the same genes.
pub fn check_counterfactual(pred: (usize, usize), reference: (usize, usize), threshold: Option<(usize, usize)>, index: &[u32]) -> crate::Result<()> {
    if !index.len().is_multiple_of(2) || index.len() / 2 > pred.0 || reference.1 != pred.1 {
        return Err(crate::Error::request(format!(
            "counterfactual: [{}, {}] prediction, [{}, {}] reference, {} indices",
            pred.0, pred.1, reference.0, reference.1, index.len()
        )));
    }
    if let Some(t) = threshold.filter(|&t| t != (1, pred.1)) {
        return Err(crate::Error::request(format!("counterfactual: [{}, {}] thresholds for {} genes", t.0, t.1, pred.1)));
    }
    super::check_index(index.iter().step_by(2), reference.0, "counterfactual: reference")?;
    super::check_index(index.iter().skip(1).step_by(2), pred.0, "counterfactual: control")
}

// ---------------------------------------------------------------------------------------------
// GPU kernels (shaders/output.wgsl)

use super::kernel::{Kernel, Shader, TypedKernel, Uniform, grid_for, shader, u, uniform};

pub const SHADER: Shader = shader!("output");

/// Which output transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Bindings: pred, reference log-CPM, index, (unread), y.
    LogFoldChange,
    /// Bindings: pred, library sizes, index, (unread), y.
    Counts,
    /// Bindings: pred (the rows to transform, then the control rows), reference log-CPM,
    /// `[rows, 2]` index of (reference row, control row of pred), thresholds `[genes]`, y.
    Counterfactual,
    /// `Counterfactual` denoised by the thresholds.
    Denoised,
}

uniform! {
    /// `Params` of shaders/output.wgsl.
    pub struct OutputParams {
        pub rows: u32,
        pub genes: u32,
        /// 0: log fold change, 1: counts, 2: counterfactual.
        pub transform: u32,
        /// Counterfactual: 1 to denoise the reference by the thresholds.
        pub denoise: u32,
    }
}

/// One invocation per output element.
#[derive(Clone, Copy, Debug)]
pub struct OutputKernel {
    pub transform: Transform,
    pub rows: usize,
    pub genes: usize,
}

impl Kernel for OutputKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        "main"
    }
    fn inputs(&self) -> u32 {
        4
    }
    fn params(&self) -> Vec<u32> {
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.rows * self.genes)
    }
}

impl TypedKernel for OutputKernel {
    type Params = OutputParams;
    fn uniform(&self) -> OutputParams {
        let (transform, denoise) = match self.transform {
            Transform::LogFoldChange => (0, 0),
            Transform::Counts => (1, 0),
            Transform::Counterfactual => (2, 0),
            Transform::Denoised => (2, 1),
        };
        OutputParams { rows: u(self.rows), genes: u(self.genes), transform, denoise }
    }
}
