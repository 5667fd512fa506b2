//! refcast: run generative models of gene expression on your own machine.
//!
//! Layers, top-down: [`format`] (the model file) → [`model`] (the conditional VAE graph) →
//! [`backend`] (CPU twin and wgpu/WGSL) → front ends (the Rust API in [`session`], the CLI, wasm).

pub mod backend;
pub mod error;
pub mod ops;
pub mod quant;

pub use error::{Error, Result};
