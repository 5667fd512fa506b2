//! The GPU backend (wgpu): see the kernel types in `crate::ops` and the shaders in `shaders/`.

/// Placeholder type until the wgpu backend lands in this module.
#[derive(Debug)]
pub struct GpuBackend;
