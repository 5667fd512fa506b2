//! Builds decoder inputs z = (z_tech ‖ z_bio ‖ z_pert): output row `r` takes, for each of the
//! three latent groups, a slice of one row of that group's source matrix. The sources may be the
//! same matrix (the encoder's technical and biological latents share one), so reference ×
//! perturbation batches need no copies.

/// Where one latent group comes from.
#[derive(Clone, Copy, Debug)]
pub struct Part<'a> {
    pub source: &'a [f32],
    /// Columns of `source`.
    pub cols: usize,
    /// First column of this group in `source`.
    pub offset: usize,
    /// Width of this group.
    pub width: usize,
}

/// What every backend checks: `index` is `[rows, 3]` and each part, `((rows, cols) of its source,
/// first column, width)`, lies inside its source, with every index a row of it.
pub fn check(parts: [((usize, usize), usize, usize); 3], index: &[u32]) -> crate::Result<()> {
    use crate::Error;
    if !index.len().is_multiple_of(3) {
        return Err(Error::request(format!("assemble index of {} values is not [rows, 3]", index.len())));
    }
    for (g, ((rows, cols), offset, width)) in parts.into_iter().enumerate() {
        if offset + width > cols {
            return Err(Error::request(format!("assemble part {g}: columns {offset}..{} of {cols}", offset + width)));
        }
        if let Some(bad) = index.iter().skip(g).step_by(3).find(|&&i| i as usize >= rows) {
            return Err(Error::request(format!("assemble part {g}: row {bad} of {rows}")));
        }
    }
    Ok(())
}

/// CPU twin. `index` is `[rows, 3]`: the source row of each group for each output row; `out`
/// is `[rows, Σ widths]`.
pub fn cpu(parts: [Part<'_>; 3], index: &[u32], out: &mut [f32]) {
    let width: usize = parts.iter().map(|p| p.width).sum();
    let rows = index.len() / 3;
    assert_eq!(out.len(), rows * width, "assemble output");
    for r in 0..rows {
        let mut col = 0;
        for (g, p) in parts.iter().enumerate() {
            let src = index[r * 3 + g] as usize * p.cols + p.offset;
            out[r * width + col..r * width + col + p.width].copy_from_slice(&p.source[src..src + p.width]);
            col += p.width;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/assemble.wgsl)

use super::kernel::{Kernel, Shader, TypedKernel, Uniform, grid_for, shader, u, uniform};

pub const SHADER: Shader = shader!("assemble");

uniform! {
    /// `Params` of shaders/assemble.wgsl.
    pub struct AssembleParams {
        pub rows: u32,
        /// Σ widths.
        pub width: u32,
        pub width0: u32,
        pub width1: u32,
        pub width2: u32,
        pub cols0: u32,
        pub cols1: u32,
        pub cols2: u32,
        pub offset0: u32,
        pub offset1: u32,
        pub offset2: u32,
        _pad: u32,
    }
}

/// One invocation per output element. Bindings: source 0, 1, 2, index, y.
#[derive(Clone, Copy, Debug)]
pub struct AssembleKernel {
    pub rows: usize,
    /// `(cols, offset, width)` of each part's source.
    pub parts: [(usize, usize, usize); 3],
}

impl Kernel for AssembleKernel {
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
        grid_for(self.rows * self.parts.iter().map(|p| p.2).sum::<usize>())
    }
}

impl TypedKernel for AssembleKernel {
    type Params = AssembleParams;
    fn uniform(&self) -> AssembleParams {
        let [a, b, c] = self.parts;
        AssembleParams {
            rows: u(self.rows),
            width: u(a.2 + b.2 + c.2),
            width0: u(a.2),
            width1: u(b.2),
            width2: u(c.2),
            cols0: u(a.0),
            cols1: u(b.0),
            cols2: u(c.0),
            offset0: u(a.1),
            offset1: u(b.1),
            offset2: u(c.1),
            ..bytemuck::Zeroable::zeroed()
        }
    }
}
