//! Element-wise activations: GELU (tanh approximation, as PyTorch's `approximate="tanh"`) and ReLU.

pub use crate::format::Activation;

impl Activation {
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::GeluTanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v)).tanh())
            }
            Activation::Relu => v.max(0.0),
        }
    }
}

/// CPU twin.
pub fn cpu(act: Activation, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "activation output");
    if act == Activation::GeluTanh {
        return super::math::gelu_tanh(x, out);
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = act.apply(v);
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/activation.wgsl)

use super::kernel::{Kernel, Shader, TypedKernel, Uniform, grid_for, shader, u, uniform};

pub const SHADER: Shader = shader!("activation");

uniform! {
    /// `Params` of shaders/activation.wgsl.
    pub struct ActivationParams {
        pub n: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// One invocation per element. Bindings: x, y.
#[derive(Clone, Copy, Debug)]
pub struct ActivationKernel {
    pub act: Activation,
    pub n: usize,
}

impl Kernel for ActivationKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        match self.act {
            Activation::GeluTanh => "gelu_tanh",
            Activation::Relu => "relu",
        }
    }
    fn inputs(&self) -> u32 {
        1
    }
    fn params(&self) -> Vec<u32> {
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.n)
    }
}

impl TypedKernel for ActivationKernel {
    type Params = ActivationParams;
    fn uniform(&self) -> ActivationParams {
        ActivationParams { n: u(self.n), ..bytemuck::Zeroable::zeroed() }
    }
}
