//! Adds a `[cols]` bias to every row of a `[rows, cols]` matrix.

/// CPU twin.
pub fn cpu(x: &[f32], bias: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "bias output");
    for (xr, or) in x.chunks_exact(bias.len()).zip(out.chunks_exact_mut(bias.len())) {
        for ((o, v), b) in or.iter_mut().zip(xr).zip(bias) {
            *o = v + b;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/bias.wgsl)

use super::kernel::{Kernel, Shader, grid_for, u};

pub const SHADER: Shader = Shader { name: "bias", source: include_str!("../../shaders/bias.wgsl") };

/// One invocation per element. Bindings: x, bias, y.
#[derive(Clone, Copy, Debug)]
pub struct BiasKernel {
    pub rows: usize,
    pub cols: usize,
}

impl Kernel for BiasKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        "main"
    }
    fn inputs(&self) -> u32 {
        2
    }
    fn params(&self) -> Vec<u32> {
        vec![u(self.rows * self.cols), u(self.cols.max(1)), 0, 0]
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.rows * self.cols)
    }
}
