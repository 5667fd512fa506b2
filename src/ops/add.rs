//! Element-wise sum of two equally shaped matrices: the residual connection.

/// CPU twin.
pub fn cpu(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len(), "add shapes");
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/add.wgsl)

use super::kernel::{Kernel, Shader, grid_for, u};

pub const SHADER: Shader = Shader { name: "add", source: include_str!("../../shaders/add.wgsl") };

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
        vec![u(self.n), 0, 0, 0]
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.n)
    }
}
