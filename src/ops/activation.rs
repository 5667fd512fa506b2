//! Element-wise activations: GELU (tanh approximation, as PyTorch's `approximate="tanh"`) and ReLU.

/// An activation function named in the model file's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    GeluTanh,
    Relu,
}

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
    for (o, &v) in out.iter_mut().zip(x) {
        *o = act.apply(v);
    }
}
