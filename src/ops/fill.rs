//! Fills a buffer with one 32-bit pattern: how tests poison outputs before a kernel writes them,
//! so that an element the kernel skips shows up as the pattern (a NaN) rather than a stale value.

/// CPU twin.
pub fn cpu(value: u32, out: &mut [u32]) {
    out.fill(value);
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/fill.wgsl)

use super::kernel::{Kernel, Shader, TypedKernel, Uniform, grid_for, shader, u, uniform};

pub const SHADER: Shader = shader!("fill");

uniform! {
    /// `Params` of shaders/fill.wgsl.
    pub struct FillParams {
        pub n: u32,
        pub value: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// One invocation per word. Bindings: y.
#[derive(Clone, Copy, Debug)]
pub struct FillKernel {
    pub words: usize,
    pub value: u32,
}

impl Kernel for FillKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        "main"
    }
    fn inputs(&self) -> u32 {
        0
    }
    fn params(&self) -> Vec<u32> {
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.words)
    }
}

impl TypedKernel for FillKernel {
    type Params = FillParams;
    fn uniform(&self) -> FillParams {
        FillParams { n: u(self.words), value: self.value, ..bytemuck::Zeroable::zeroed() }
    }
}
