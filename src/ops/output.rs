//! Output transforms of a prediction `[rows, genes]` of log-CPM, each row tied to one reference:
//! log fold change against the reference's log-CPM, and counts at the reference's library size.

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

// ---------------------------------------------------------------------------------------------
// GPU kernels (shaders/output.wgsl)

use super::kernel::{Kernel, Shader, grid_for, u};

pub const SHADER: Shader = Shader { name: "output", source: include_str!("../../shaders/output.wgsl") };

/// Which output transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Bindings: pred, reference log-CPM, index, y.
    LogFoldChange,
    /// Bindings: pred, library sizes, index, y.
    Counts,
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
        3
    }
    fn params(&self) -> Vec<u32> {
        vec![u(self.rows), u(self.genes), u32::from(self.transform == Transform::Counts), 0]
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.rows * self.genes)
    }
}
