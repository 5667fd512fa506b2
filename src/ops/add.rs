//! Element-wise sum of two equally shaped matrices: the residual connection.

/// What every backend checks before the sum (shapes are `(rows, cols)`).
pub fn check(a: (usize, usize), b: (usize, usize)) -> crate::Result<()> {
    if a != b {
        return Err(crate::Error::request(format!("add: shapes [{}, {}] and [{}, {}] differ", a.0, a.1, b.0, b.1)));
    }
    Ok(())
}

/// CPU twin.
pub fn cpu(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len(), "add shapes");
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/add.wgsl)

use super::kernel::{Kernel, Shader, TypedKernel, Uniform, grid_for, shader, u, uniform};

pub const SHADER: Shader = shader!("add");

uniform! {
    /// `Params` of shaders/add.wgsl.
    pub struct AddParams {
        pub n: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// One invocation per element. Bindings: a, b, y.
#[derive(Clone, Copy, Debug)]
pub struct AddKernel {
    pub n: usize,
}

impl Kernel for AddKernel {
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
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.n)
    }
}

impl TypedKernel for AddKernel {
    type Params = AddParams;
    fn uniform(&self) -> AddParams {
        AddParams { n: u(self.n), ..bytemuck::Zeroable::zeroed() }
    }
}
