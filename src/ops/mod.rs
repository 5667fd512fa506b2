//! The model's operations. Each op is one file here with its CPU twin (plain Rust, the oracle
//! for tests and the fallback backend) and, beside it, the Rust type that drives its WGSL kernel
//! in `shaders/<op>.wgsl`.
//!
//! All activations are row-major f32 `[rows, cols]` matrices.

pub mod activation;
pub mod add;
pub mod assemble;
pub mod fill;
pub mod kernel;
pub mod layer_norm;
pub mod linear;
pub mod math;
pub mod output;
pub mod prior_embed;
pub mod reparameterize;
#[cfg(not(target_arch = "wasm32"))]
pub mod workers;

pub use activation::Activation;
pub use reparameterize::{Noise, Philox};

/// Fails on the first index of a row at or past `limit`: every backend checks host indices
/// before an op reads rows by them.
pub fn check_index<'a>(index: impl IntoIterator<Item = &'a u32>, limit: usize, what: &str) -> crate::Result<()> {
    match index.into_iter().find(|&&i| i as usize >= limit) {
        Some(bad) => Err(crate::Error::request(format!("{what} index {bad} outside the {limit} rows"))),
        None => Ok(()),
    }
}
