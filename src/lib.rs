//! refcast: run generative models of gene expression on your own machine.
//!
//! Layers, bottom-up; each imports only from the layers below it:
//! - [`format`]: the model file (safetensors + config), its validation and the priors'
//!   vocabularies ([`format::prior`]); [`quant`]: the Q8_0/Q4_0 encodings it stores.
//! - [`ops`]: each operation's CPU twin and WGSL kernel type; [`sample`], [`metadata`],
//!   [`signature`]: what a user brings (samples, metadata, signatures) read against a model.
//! - [`model`]: the conditional VAE graph, written once against [`backend::Backend`];
//!   [`backend`]: the CPU backend and the wgpu/WGSL one.
//! - [`session`] ([`request`], [`screen`], [`familiarity`]): predictions and screens on one
//!   backend; [`engine`]: which backend, decided once for every front end; [`card`]: a model
//!   described for people.
//! - Front ends: the CLI (`src/main.rs`, `src/cli/`), the wasm bindings ([`wasm`]) and the
//!   npm package over them (`js/`).
//!
//! [`enrichment`] scores fold changes against the gene sets shipped beside the model.
//!
//! [`synthetic`] builds models with random weights for tests and benchmarks.

pub mod backend;
pub mod card;
pub mod coverage;
pub mod engine;
pub mod enrichment;
pub mod error;
pub mod familiarity;
pub mod format;
pub mod metadata;
pub mod model;
pub mod ops;
pub mod quant;
pub mod request;
pub mod sample;
pub mod screen;
pub mod session;
pub mod signature;
pub mod sort;
pub mod synthetic;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use backend::{Backend, BackendKind, CpuBackend, CpuKernels};
pub use coverage::{Coverage, Measured};
pub use engine::{BackendChoice, Engine};
pub use error::{Error, Result};
pub use familiarity::Familiarity;
pub use format::{Group, Metadata, ModelConfig, ModelFile, Value};
pub use request::{Baseline, Prediction, PredictionMode, Request, Sampling};
pub use sample::{Reference, SampleTable, ValueKind};
pub use screen::{Screen, ScreenHit, ScreenOptions};
pub use session::Session;
pub use signature::Signature;
