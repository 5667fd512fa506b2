//! The GPU backend (wgpu): every op records one WGSL dispatch (kernels in `crate::ops`, shaders in
//! `shaders/`); [`Backend::read`] submits what was recorded and maps the results back.
//!
//! What it keeps so a warm forward pass creates nothing large:
//! - pipelines, cached by (shader, entry point, defines), over one explicit layout per input count;
//! - bind groups, cached by the buffers they bind, the least recently used leaving first;
//! - a pool of buffers for intermediates, uploaded host arrays and read-back staging;
//! - one uniform buffer of 256-byte parameter slots, bound with a dynamic offset per dispatch and
//!   written once per submission.
//!
//! Dispatches wait in a list and are encoded into one compute pass at submission (at `read`, or
//! when the list is long). The device is requested with WebGPU's default limits, raised only for
//! the storage binding and buffer sizes the adapter allows; a weight matrix larger than one
//! binding is split into row chunks, one binding and dispatch each.
//!
//! Files: `device` (opening the device, its limits and errors), `cache` (pipelines, layouts, bind
//! groups), `record` (recording, submission, read-back), `ops` (the [`Backend`] ops), `web`
//! (compiling pipelines ahead, asynchronously in the browser), `hooks` (settings and probes for
//! tests and benchmarks), `pool` (buffers), `map` (waiting for mapped buffers), `preprocess`
//! (the shaders' `#ifdef`s).

mod cache;
mod device;
mod hooks;
mod map;
mod ops;
mod pool;
mod preprocess;
mod record;
mod web;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};

use crate::ops::kernel::{KernelStyle, PipelineKey, Shader};
use crate::quant::DType;

use cache::BindGroupCache;
use device::Errors;
use pool::{Pool, PooledBuffer};
use record::Pending;

pub use preprocess::preprocess;
pub use web::{Prebuilt, forward_kernels, yield_to_browser};

#[cfg(doc)]
use super::Backend;

/// Bytes per parameter slot (WebGPU's default `minUniformBufferOffsetAlignment`).
const PARAM_SLOT: u64 = 256;

/// A row-major f32 matrix in a pooled GPU buffer. Clones share the buffer (ops never write their
/// inputs); the buffer returns to the pool when the last clone drops.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    rows: usize,
    cols: usize,
    buf: Rc<PooledBuffer>,
}

impl GpuTensor {
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    fn bytes(&self) -> u64 {
        (self.rows * self.cols * 4) as u64
    }
    fn bound(&self) -> Bound<'_> {
        Bound::pooled(&self.buf, self.bytes())
    }
}

/// Weight rows `row0 .. row0 + rows` of a linear layer in one binding.
#[derive(Debug)]
struct Chunk {
    row0: usize,
    rows: usize,
    weights: wgpu::Buffer,
    scales: Option<wgpu::Buffer>,
}

/// A linear layer on the GPU: weights repacked into 32-bit words (see `ops::linear::pack`),
/// split into row chunks that each fit one storage binding, and the f32 bias.
#[derive(Debug)]
pub struct GpuLinear {
    rows: usize,
    cols: usize,
    dtype: DType,
    chunks: Vec<Chunk>,
    bias: wgpu::Buffer,
    /// The backend's bind groups, which hold the buffers they bind: dropping the layer removes
    /// those that bind its weights, so their memory goes with it.
    bind_groups: Weak<RefCell<BindGroupCache>>,
}

impl GpuLinear {
    /// `(out, in)` of the weight.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// How many bindings (and dispatches) the weight was split into.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
    /// Whether `buffer` is one of this layer's own.
    fn owns(&self, buffer: &wgpu::Buffer) -> bool {
        *buffer == self.bias || self.chunks.iter().any(|c| *buffer == c.weights || c.scales.as_ref() == Some(buffer))
    }
}

impl Drop for GpuLinear {
    fn drop(&mut self) {
        // Dispatches recorded but not yet submitted keep their own bind groups, so this is safe
        // at any time. The cache is never borrowed while user code runs; if it were, the entries
        // would still leave by the cache's bound.
        let Some(cache) = self.bind_groups.upgrade() else { return };
        let Ok(mut cache) = cache.try_borrow_mut() else { return };
        cache::forget_buffers(&mut cache, |b| self.owns(b));
    }
}

/// One storage binding: a buffer and the bytes bound from offset 0; `pooled` is the pool's id of
/// the buffer, which the pool tracks for uploads (see [`pool`]).
#[derive(Clone, Copy)]
struct Bound<'a> {
    buffer: &'a wgpu::Buffer,
    size: u64,
    pooled: Option<u64>,
}

impl<'a> Bound<'a> {
    /// The first `bytes` of a pooled buffer.
    fn pooled(buf: &'a PooledBuffer, bytes: u64) -> Self {
        Bound { buffer: &buf.buffer, size: Self::binding_size(bytes), pooled: Some(buf.id) }
    }
    /// All of a buffer owned outside the pool (weights).
    fn owned(buffer: &'a wgpu::Buffer) -> Self {
        Bound { buffer, size: Self::binding_size(buffer.size()), pooled: None }
    }
    fn binding_size(bytes: u64) -> u64 {
        // Bindings must be non-empty multiples of 4 bytes; pooled buffers are at least 256.
        bytes.max(4).next_multiple_of(4)
    }
}

/// The wgpu backend. Construct with [`GpuBackend::new`] (async; on native e.g.
/// `pollster::block_on(GpuBackend::new())`).
pub struct GpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    /// Largest storage binding used (the device limit unless lowered).
    max_binding: u64,
    max_groups: u32,
    modules: HashMap<(Shader, Vec<&'static str>), wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
    /// Pipelines compiled ahead by [`GpuBackend::prebuild`] through the browser's asynchronous
    /// path (not yet in `pipelines`).
    #[cfg(target_arch = "wasm32")]
    prebuilt: std::collections::HashSet<PipelineKey>,
    layouts: HashMap<u32, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    /// Shared (weakly) with every [`GpuLinear`], which removes its own entries when dropped.
    bind_groups: Rc<RefCell<BindGroupCache>>,
    pool: Pool,
    params_buffer: wgpu::Buffer,
    params: Vec<u8>,
    pending: Vec<Pending>,
    errors: Arc<Mutex<Errors>>,
    poison: bool,
    style: KernelStyle,
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend").field("adapter", &self.info.name).field("backend", &self.info.backend).finish()
    }
}

impl GpuBackend {
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The way reductions are written for this adapter (see [`KernelStyle`]).
    pub fn kernel_style(&self) -> KernelStyle {
        self.style
    }

    /// Frees the pool's idle buffers and the cached bind groups (after a large batch, say).
    pub fn release_idle(&mut self) {
        self.submit();
        self.bind_groups.borrow_mut().clear();
        self.pool.clear();
    }
}
