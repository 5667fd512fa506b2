//! refcast: run generative models of gene expression on your own machine.
//!
//! Layers, top-down: [`format`] (the model file) → [`model`] (the conditional VAE graph) →
//! [`backend`] (CPU twin and wgpu/WGSL) → front ends (the Rust API in [`session`], the CLI, wasm).

pub mod backend;
pub mod familiarity;
pub mod format;
pub mod metadata;
pub mod model;
pub mod error;
pub mod ops;
pub mod quant;
pub mod sample;

pub use error::{Error, Result};
pub mod session;
pub mod signature;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use backend::{Backend, BackendKind, CpuBackend};
pub use familiarity::Familiarity;
pub use format::{Group, Metadata, ModelConfig, ModelFile, Value};
pub use sample::{Reference, SampleTable, ValueKind};
pub use session::{Baseline, Prediction, PredictionMode, Request, Sampling, Screen, ScreenHit, Session, Signature};
