//! One error type for the whole crate. Messages name the thing that is wrong (the tensor, the
//! gene, the line, the limit) so that a front end can show them to a person as they are.

/// Everything that can go wrong in refcast.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file is not a valid refcast model.
    #[error("invalid model file: {0}")]
    Format(String),
    /// The sample (reference expression profile) cannot be used.
    #[error("invalid sample: {0}")]
    Sample(String),
    /// The signature to reverse (`screen --signature`) cannot be used.
    #[error("invalid signature: {0}")]
    Signature(String),
    /// The gene-set file beside the model (`enrichment`) is not valid for this model.
    #[error("invalid gene-set file: {0}")]
    GeneSets(String),
    /// Metadata given for a prior network is not known to the model.
    #[error("invalid metadata: {0}")]
    Metadata(String),
    /// A request that does not make sense (empty batch, wrong lengths, …).
    #[error("invalid request: {0}")]
    Request(String),
    /// The GPU backend failed: no adapter, device lost, out of memory, a limit exceeded.
    #[error("GPU backend: {0}")]
    Gpu(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Which part was wrong, as one word for front ends that map errors to their own types (the
    /// `kind` of a JS error): `format`, `sample`, `signature`, `metadata`, `request`, `gpu`, `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Format(_) | Error::GeneSets(_) => "format",
            Error::Sample(_) => "sample",
            Error::Signature(_) => "signature",
            Error::Metadata(_) => "metadata",
            Error::Request(_) => "request",
            Error::Gpu(_) => "gpu",
            Error::Io { .. } => "io",
        }
    }

    pub(crate) fn format(msg: impl Into<String>) -> Self {
        Error::Format(msg.into())
    }
    pub(crate) fn request(msg: impl Into<String>) -> Self {
        Error::Request(msg.into())
    }
}
