//! Layer normalisation over the last dimension, with affine weight and bias.

/// What every backend checks: `x` is `(rows, cols)`, weight and bias hold one value per column.
pub fn check(x: (usize, usize), weight: usize, bias: usize) -> crate::Result<()> {
    for (len, name) in [(weight, "weight"), (bias, "bias")] {
        if len != x.1 {
            return Err(crate::Error::request(format!("layer norm {name} of {len} values for {} columns", x.1)));
        }
    }
    Ok(())
}

/// CPU twin. `x` and `out` are `[rows, cols]`; `weight`, `bias` are `[cols]`.
pub fn cpu(x: &[f32], cols: usize, weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "layer norm output");
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mean = xr.iter().sum::<f32>() / cols as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / cols as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, v), w), b) in or.iter_mut().zip(xr).zip(weight).zip(bias) {
            *o = (v - mean) * inv * w + b;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/layer_norm.wgsl)

use super::kernel::{Kernel, KernelStyle, Shader, TypedKernel, Uniform, grid, shader, u, uniform};

pub const SHADER: Shader = shader!("layer_norm");

uniform! {
    /// `Params` of shaders/layer_norm.wgsl.
    pub struct LayerNormParams {
        pub rows: u32,
        pub cols: u32,
        pub eps: f32,
        _pad: u32,
    }
}

/// One workgroup per row (`KernelStyle::Workgroup`) or one invocation per row (`Flat`).
/// Bindings: x, weight, bias, y.
#[derive(Clone, Copy, Debug)]
pub struct LayerNormKernel {
    pub rows: usize,
    pub cols: usize,
    pub eps: f32,
    pub style: KernelStyle,
}

impl Kernel for LayerNormKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        match self.style {
            KernelStyle::Workgroup => "main",
            KernelStyle::Flat => "main_flat",
        }
    }
    fn inputs(&self) -> u32 {
        3
    }
    fn params(&self) -> Vec<u32> {
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        match self.style {
            KernelStyle::Workgroup => grid(u(self.rows)),
            KernelStyle::Flat => grid(u(self.rows.div_ceil(64))),
        }
    }
}

impl TypedKernel for LayerNormKernel {
    type Params = LayerNormParams;
    fn uniform(&self) -> LayerNormParams {
        LayerNormParams { rows: u(self.rows), cols: u(self.cols), eps: self.eps, ..bytemuck::Zeroable::zeroed() }
    }
}
