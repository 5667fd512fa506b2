//! The GPU backend (wgpu): every op records one WGSL dispatch (kernels in `crate::ops`, shaders in
//! `shaders/`); [`Backend::read`] submits what was recorded and maps the results back.
//!
//! What it keeps so a warm forward pass creates nothing large:
//! - pipelines, cached by (shader, entry point, defines), over one explicit layout per input count;
//! - bind groups, cached by the buffers they bind (every pooled buffer has a stable id);
//! - a [`pool`] of buffers for intermediates, uploaded host arrays and read-back staging;
//! - one uniform buffer of 256-byte parameter slots, bound with a dynamic offset per dispatch and
//!   written once per submission.
//!
//! Dispatches wait in a list and are encoded into one compute pass at submission (at `read`, or
//! when the list is long). The device is requested with WebGPU's default limits, raised only for
//! the storage binding and buffer sizes the adapter allows; a weight matrix larger than one
//! binding is split into row chunks, one binding and dispatch each.

mod map;
mod pool;
mod preprocess;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use super::Backend;
use crate::error::{Error, Result};
use crate::ops::kernel::{Kernel, KernelStyle, PipelineKey, Shader, grid_for, u};
use crate::ops::{self, Activation, Noise, reparameterize::Streams};
use crate::quant::{DType, Matrix};

use map::MapFuture;
use pool::{Pool, PooledBuffer};
pub use preprocess::preprocess;

/// Bytes per parameter slot (WebGPU's default `minUniformBufferOffsetAlignment`).
const PARAM_SLOT: u64 = 256;
/// Dispatches recorded before a submission is forced (the parameter buffer holds this many slots).
const MAX_PENDING: usize = 512;
/// Bit pattern written into poisoned outputs (a quiet NaN).
const POISON: u32 = 0x7fc0_0000;

const FILL: Shader = Shader { name: "fill", source: include_str!("../../../shaders/fill.wgsl") };

/// Fills a buffer with one word (poisoned outputs in tests). Bindings: y.
struct FillKernel {
    words: usize,
    value: u32,
}

impl Kernel for FillKernel {
    fn shader(&self) -> Shader {
        FILL
    }
    fn entry(&self) -> &'static str {
        "main"
    }
    fn inputs(&self) -> u32 {
        0
    }
    fn params(&self) -> Vec<u32> {
        vec![u(self.words), self.value, 0, 0]
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.words)
    }
}

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
        Bound::new(&self.buf.buffer, self.buf.id, self.bytes())
    }
}

/// A buffer owned outside the pool (weights), with its bind-group cache id.
#[derive(Debug)]
struct Owned {
    buffer: wgpu::Buffer,
    id: u64,
}

impl Owned {
    fn bound(&self) -> Bound<'_> {
        Bound::new(&self.buffer, self.id, self.buffer.size())
    }
}

/// Weight rows `row0 .. row0 + rows` of a linear layer in one binding.
#[derive(Debug)]
struct Chunk {
    row0: usize,
    rows: usize,
    weights: Owned,
    scales: Option<Owned>,
}

/// A linear layer on the GPU: weights repacked into 32-bit words (see `ops::linear::pack`),
/// split into row chunks that each fit one storage binding, and the f32 bias.
#[derive(Debug)]
pub struct GpuLinear {
    rows: usize,
    cols: usize,
    dtype: DType,
    chunks: Vec<Chunk>,
    bias: Owned,
    /// Where the ids of dropped buffers go so the backend can forget their bind groups.
    evicted: Rc<RefCell<Vec<u64>>>,
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
}

impl Drop for GpuLinear {
    fn drop(&mut self) {
        let mut ids = self.evicted.borrow_mut();
        ids.push(self.bias.id);
        for c in &self.chunks {
            ids.push(c.weights.id);
            ids.extend(c.scales.as_ref().map(|s| s.id));
        }
    }
}

/// One storage binding: a buffer, its cache id and the bytes bound (from offset 0).
#[derive(Clone, Copy)]
struct Bound<'a> {
    buffer: &'a wgpu::Buffer,
    id: u64,
    size: u64,
}

impl<'a> Bound<'a> {
    fn new(buffer: &'a wgpu::Buffer, id: u64, bytes: u64) -> Self {
        // Bindings must be non-empty multiples of 4 bytes; pooled buffers are at least 256.
        Bound { buffer, id, size: bytes.max(4).next_multiple_of(4) }
    }
}

/// A recorded dispatch.
struct Pending {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    offset: u32,
    groups: [u32; 3],
}

/// Errors reported by wgpu callbacks.
#[derive(Default)]
struct Errors {
    /// Device loss: every later call fails.
    lost: Option<String>,
    /// Validation or out-of-memory errors not yet reported.
    pending: Vec<String>,
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
    bind_groups: HashMap<(u32, Vec<(u64, u64)>), wgpu::BindGroup>,
    pool: Pool,
    params_buffer: wgpu::Buffer,
    params: Vec<u8>,
    pending: Vec<Pending>,
    errors: Arc<Mutex<Errors>>,
    evicted: Rc<RefCell<Vec<u64>>>,
    poison: bool,
    style: KernelStyle,
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend").field("adapter", &self.info.name).field("backend", &self.info.backend).finish()
    }
}

/// `REFCAST_GPU_KERNELS=workgroup|flat` if set (native), else what suits the adapter.
fn default_style(info: &wgpu::AdapterInfo) -> KernelStyle {
    match std::env::var("REFCAST_GPU_KERNELS").as_deref() {
        Ok("workgroup") => KernelStyle::Workgroup,
        Ok("flat") => KernelStyle::Flat,
        _ => KernelStyle::for_adapter(info.device_type == wgpu::DeviceType::Cpu, &[&info.name, &info.driver, &info.driver_info]),
    }
}

fn gpu(msg: impl Into<String>) -> Error {
    Error::Gpu(msg.into())
}

impl GpuBackend {
    /// Finds an adapter (the default one, else a fallback/software adapter) and opens a device.
    pub async fn new() -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        // Vulkan, Metal, DX12 and WebGPU unless WGPU_BACKEND says otherwise: the GL backend has
        // no compute on most drivers worth using, and probing it prints EGL noise on headless Linux.
        desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(desc);
        let adapter = match instance.request_adapter(&wgpu::RequestAdapterOptions::default()).await {
            Ok(a) => a,
            Err(first) => {
                let fallback = wgpu::RequestAdapterOptions { force_fallback_adapter: true, ..Default::default() };
                instance
                    .request_adapter(&fallback)
                    .await
                    .map_err(|_| gpu(format!("no GPU adapter found ({first})")))?
            }
        };
        Self::from_adapter(adapter).await
    }

    /// Opens a device on `adapter`: WebGPU's default limits, with the storage binding and buffer
    /// sizes raised to what the adapter allows.
    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let supported = adapter.limits();
        let mut limits = wgpu::Limits::default();
        if !limits.check_limits(&supported) {
            // A downlevel adapter: take what it has; the check below says if kernels cannot run.
            limits = supported.clone();
        }
        limits.max_storage_buffer_binding_size = supported.max_storage_buffer_binding_size;
        limits.max_buffer_size = supported.max_buffer_size;
        let info = adapter.get_info();
        if limits.max_compute_invocations_per_workgroup < ops::kernel::WORKGROUP
            || limits.max_storage_buffers_per_shader_stage < 5
            || limits.max_compute_workgroup_storage_size < 8192
        {
            return Err(gpu(format!("adapter {} ({}) cannot run compute kernels of 256 invocations", info.name, info.backend)));
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("refcast"),
                required_features: wgpu::Features::empty(),
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| gpu(format!("cannot open a device on {}: {e}", info.name)))?;
        Ok(Self::from_device(info, device, queue))
    }

    /// Wraps a device opened elsewhere (it must allow 256 invocations per workgroup).
    pub fn from_device(info: wgpu::AdapterInfo, device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let errors = Arc::new(Mutex::new(Errors::default()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut s) = sink.lock() {
                s.pending.push(e.to_string());
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut s) = sink.lock() {
                let detail = if message.trim().is_empty() { String::new() } else { format!(": {}", message.trim()) };
                s.lost = Some(format!(
                    "the GPU device was lost ({reason:?}{detail}); this session cannot continue: create a new one, or use the CPU backend"
                ));
            }
        });
        let limits = device.limits();
        let style = default_style(&info);
        let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("refcast kernel parameters"),
            size: PARAM_SLOT * MAX_PENDING as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuBackend {
            max_binding: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
            max_groups: limits.max_compute_workgroups_per_dimension,
            device,
            queue,
            info,
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            #[cfg(target_arch = "wasm32")]
            prebuilt: Default::default(),
            layouts: HashMap::new(),
            bind_groups: HashMap::new(),
            pool: Pool::default(),
            params_buffer,
            params: Vec::with_capacity(PARAM_SLOT as usize * MAX_PENDING),
            pending: Vec::new(),
            errors,
            evicted: Rc::new(RefCell::new(Vec::new())),
            poison: false,
            style,
        }
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Lowers the largest storage binding used (weights are split into chunks below it); for
    /// tests of the split path. Never raises it above the device limit.
    pub fn set_max_binding_bytes(&mut self, bytes: u64) {
        let limits = self.device.limits();
        self.max_binding = bytes.min(limits.max_storage_buffer_binding_size.min(limits.max_buffer_size));
    }

    /// The way reductions are written for this adapter (see [`KernelStyle`]).
    pub fn kernel_style(&self) -> KernelStyle {
        self.style
    }

    /// Picks the kernel style (tests run both on one adapter; benchmarks compare them).
    pub fn set_kernel_style(&mut self, style: KernelStyle) {
        self.style = style;
    }

    /// Fills every kernel output with NaN before the kernel runs, so elements a kernel fails to
    /// write show up in tests.
    pub fn set_poison(&mut self, on: bool) {
        self.poison = on;
    }

    /// Compiles the pipelines of `kernels` ahead of their first dispatch (see
    /// [`forward_kernels`]). In the browser they go through `createComputePipelineAsync`, which
    /// compiles off the page's thread once the page yields to the event loop (see
    /// [`yield_to_browser`]), so the compilation overlaps what the page does next — parsing and
    /// uploading the model. The pipelines this backend creates later from the same descriptors
    /// then come from the browser's pipeline cache (Chromium's WebGPU deduplicates identical
    /// pipelines) instead of compiling on the first call. Elsewhere wgpu compiles synchronously
    /// and the pipelines go straight into this backend's cache. Await [`Prebuilt::ready`] before
    /// the first dispatch: a pipeline still compiling would be compiled a second time.
    pub fn prebuild(&mut self, kernels: &[Box<dyn Kernel>]) -> Result<Prebuilt> {
        #[cfg(target_arch = "wasm32")]
        if let Some(device) = self.device.as_webgpu() {
            let device: wasm_bindgen::JsValue = device.clone().into();
            let mut promises = Vec::new();
            let mut modules: HashMap<(Shader, Vec<&'static str>), wasm_bindgen::JsValue> = HashMap::new();
            let mut layouts: HashMap<u32, wasm_bindgen::JsValue> = HashMap::new();
            for k in kernels {
                let key = k.key();
                if self.pipelines.contains_key(&key) || self.prebuilt.contains(&key) {
                    continue;
                }
                let module_key = (key.shader, key.defines.clone());
                if !modules.contains_key(&module_key) {
                    let source = preprocess(key.shader.name, key.shader.source, &key.defines)?;
                    modules.insert(module_key.clone(), web::shader_module(&device, &source)?);
                }
                if !layouts.contains_key(&k.inputs()) {
                    layouts.insert(k.inputs(), web::pipeline_layout(&device, k.inputs(), PARAM_SLOT)?);
                }
                promises.push(web::compute_pipeline_async(&device, &layouts[&k.inputs()], &modules[&module_key], key.entry)?);
                self.prebuilt.insert(key);
            }
            return Ok(Prebuilt { promises });
        }
        for k in kernels {
            self.pipeline(k.as_ref())?;
        }
        Ok(Prebuilt::default())
    }

    /// Compute pipelines created so far (each compiled once, then cached).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// Bytes of GPU memory held by the buffer pool (live and idle).
    pub fn pool_bytes(&self) -> u64 {
        self.pool.0.borrow().allocated
    }

    /// Frees the pool's idle buffers and the cached bind groups (after a large batch, say).
    pub fn release_idle(&mut self) {
        self.submit();
        self.bind_groups.clear();
        self.pool.clear();
    }

    /// Submits the recorded work without waiting for it.
    pub fn submit(&mut self) {
        self.flush(&[]);
    }

    /// Raw Philox4x32-10 blocks for `counters` under `seed`, computed by the reparameterize
    /// shader (checks that the GPU stream is bit-identical to `ops::Philox`).
    pub async fn philox_words(&mut self, seed: u64, counters: &[[u32; 4]]) -> Result<Vec<[u32; 4]>> {
        let flat: Vec<u32> = counters.iter().flatten().copied().collect();
        let input = self.upload(bytemuck::cast_slice(&flat))?;
        let out = self.output(counters.len(), 4)?;
        let k = ops::reparameterize::ReparameterizeKernel {
            rows: 0,
            samples: 0,
            streams: Streams::single(0, 0),
            draw: ops::reparameterize::Draw::Words { seed, blocks: counters.len() },
        };
        self.dispatch(&k, &[Bound::new(&input.buffer, input.id, flat.len() as u64 * 4)], out.bound())?;
        let words = self.read(&[&out]).await?.remove(0);
        Ok(words.chunks_exact(4).map(|w| [w[0].to_bits(), w[1].to_bits(), w[2].to_bits(), w[3].to_bits()]).collect())
    }

    /// Fails with the first error wgpu reported since the last check (device loss stays).
    fn check(&self) -> Result<()> {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lost) = &e.lost {
            return Err(gpu(lost.clone()));
        }
        if !e.pending.is_empty() {
            let all = std::mem::take(&mut e.pending);
            return Err(gpu(all.join("; ")));
        }
        Ok(())
    }

    fn check_binding(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.max_binding {
            return Err(gpu(format!(
                "{what} of {bytes} bytes exceeds the device's storage binding limit of {} bytes",
                self.max_binding
            )));
        }
        Ok(())
    }

    /// A pooled buffer holding `data` (written at the next submission, before its commands).
    fn upload(&mut self, data: &[u8]) -> Result<Rc<PooledBuffer>> {
        self.check_binding(data.len() as u64, "an uploaded array")?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let buf = self.pool.take(&self.device, data.len() as u64, usage, true);
        if !data.is_empty() {
            self.queue.write_buffer(&buf.buffer, 0, data);
        }
        Ok(buf)
    }

    /// A pooled output tensor (poisoned first when asked).
    fn output(&mut self, rows: usize, cols: usize) -> Result<GpuTensor> {
        let bytes = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| gpu(format!("a [{rows}, {cols}] tensor is too large")))? as u64;
        self.check_binding(bytes, &format!("a [{rows}, {cols}] tensor"))?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let buf = self.pool.take(&self.device, bytes, usage, false);
        let t = GpuTensor { rows, cols, buf };
        if self.poison {
            let words = (t.buf.buffer.size() / 4) as usize;
            let full = Bound::new(&t.buf.buffer, t.buf.id, t.buf.buffer.size());
            self.dispatch(&FillKernel { words, value: POISON }, &[], full)?;
        }
        Ok(t)
    }

    /// Host indices as a storage array, checked against `limit`.
    fn upload_index(&mut self, index: &[u32], limit: usize, what: &str) -> Result<Rc<PooledBuffer>> {
        if let Some(&bad) = index.iter().find(|&&i| i as usize >= limit) {
            return Err(Error::request(format!("{what} index {bad} outside the {limit} rows")));
        }
        self.upload(bytemuck::cast_slice(index))
    }

    fn layout(&mut self, inputs: u32) -> &(wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let device = &self.device;
        self.layouts.entry(inputs).or_insert_with(|| {
            let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            };
            let mut entries = vec![wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: wgpu::BufferSize::new(PARAM_SLOT),
                },
                count: None,
            }];
            entries.extend((1..=inputs).map(|b| storage(b, true)));
            entries.push(storage(inputs + 1, false));
            let label = format!("refcast layout ({inputs} inputs)");
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            (bgl, pl)
        })
    }

    fn pipeline(&mut self, k: &dyn Kernel) -> Result<wgpu::ComputePipeline> {
        let key = k.key();
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let module_key = (key.shader, key.defines.clone());
        if !self.modules.contains_key(&module_key) {
            let source = preprocess(key.shader.name, key.shader.source, &key.defines)?;
            let label = format!("shaders/{}.wgsl {:?}", key.shader.name, key.defines);
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            self.check()?;
            self.modules.insert(module_key.clone(), module);
        }
        let layout = self.layout(k.inputs()).1.clone();
        let label = format!("{}::{} {:?}", key.shader.name, key.entry, key.defines);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&layout),
            module: &self.modules[&module_key],
            entry_point: Some(key.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        self.check()?;
        self.pipelines.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn bind_group(&mut self, inputs: u32, bindings: &[Bound<'_>]) -> wgpu::BindGroup {
        {
            let mut evicted = self.evicted.borrow_mut();
            if !evicted.is_empty() {
                self.bind_groups.retain(|(_, ids), _| !ids.iter().any(|(id, _)| evicted.contains(id)));
                evicted.clear();
            }
        }
        let key = (inputs, bindings.iter().map(|b| (b.id, b.size)).collect::<Vec<_>>());
        if let Some(bg) = self.bind_groups.get(&key) {
            return bg.clone();
        }
        let layout = self.layout(inputs).0.clone();
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_buffer,
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        }];
        for (i, b) in bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(b.size),
                }),
            });
        }
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        // Shapes repeat from call to call, so this stays small; a bound guards odd workloads.
        if self.bind_groups.len() >= 4096 {
            self.bind_groups.clear();
        }
        self.bind_groups.insert(key, bg.clone());
        bg
    }

    /// Records one dispatch of `k` with `inputs` and `output`.
    fn dispatch(&mut self, k: &dyn Kernel, inputs: &[Bound<'_>], output: Bound<'_>) -> Result<()> {
        self.check()?;
        debug_assert_eq!(inputs.len() as u32, k.inputs(), "{}::{} bindings", k.shader().name, k.entry());
        let groups = k.workgroups();
        if groups.contains(&0) {
            return Ok(());
        }
        if let Some(&g) = groups.iter().find(|&&g| g > self.max_groups) {
            return Err(gpu(format!(
                "{}::{} needs {g} workgroups in one dimension, over the device limit of {}",
                k.shader().name,
                k.entry(),
                self.max_groups
            )));
        }
        for b in inputs.iter().chain([&output]) {
            self.check_binding(b.size, &format!("a binding of {}::{}", k.shader().name, k.entry()))?;
        }
        let pipeline = self.pipeline(k)?;
        let mut bindings = inputs.to_vec();
        bindings.push(output);
        for b in &bindings {
            self.pool.mark_used(b.id);
        }
        let bind_group = self.bind_group(k.inputs(), &bindings);
        let offset = self.params.len() as u32;
        let words = k.params();
        debug_assert!(words.len() * 4 <= PARAM_SLOT as usize);
        self.params.extend_from_slice(bytemuck::cast_slice(&words));
        self.params.resize(offset as usize + PARAM_SLOT as usize, 0);
        self.pending.push(Pending { pipeline, bind_group, offset, groups });
        if self.pending.len() == MAX_PENDING {
            self.flush(&[]);
        }
        Ok(())
    }

    /// Encodes the recorded dispatches (one compute pass) and then `copies`, and submits.
    fn flush(&mut self, copies: &[(&wgpu::Buffer, &wgpu::Buffer, u64)]) {
        if self.pending.is_empty() && copies.is_empty() {
            return;
        }
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("refcast") });
        if !self.pending.is_empty() {
            self.queue.write_buffer(&self.params_buffer, 0, &self.params);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("refcast ops"), timestamp_writes: None });
            for p in &self.pending {
                pass.set_pipeline(&p.pipeline);
                pass.set_bind_group(0, &p.bind_group, &[p.offset]);
                pass.dispatch_workgroups(p.groups[0], p.groups[1], p.groups[2]);
            }
        }
        for &(src, dst, bytes) in copies {
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
        }
        self.queue.submit([encoder.finish()]);
        self.pending.clear();
        self.params.clear();
        self.pool.advance_epoch();
    }

    /// Uploads one row chunk of a weight matrix.
    fn weight_buffer(&self, label: &str, words: &[u8]) -> Owned {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (words.len() as u64).max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !words.is_empty() {
            self.queue.write_buffer(&buffer, 0, words);
        }
        Owned { buffer, id: self.pool.next_id() }
    }
}

/// Pipelines being compiled ahead (see [`GpuBackend::prebuild`]).
#[derive(Default)]
pub struct Prebuilt {
    #[cfg(target_arch = "wasm32")]
    promises: Vec<js_sys::Promise>,
}

impl Prebuilt {
    /// Resolves when every pipeline has compiled. A pipeline that fails to compile is not an error
    /// here: the backend creates it again at its first dispatch and reports the error there.
    pub async fn ready(self) {
        #[cfg(target_arch = "wasm32")]
        for p in self.promises {
            let _ = wasm_bindgen_futures::JsFuture::from(p).await;
        }
    }
}

/// Returns to the browser's event loop for one task (a zero-delay timer), which is when it sends
/// the WebGPU commands recorded so far to the GPU process; elsewhere a no-op.
pub async fn yield_to_browser() {
    #[cfg(target_arch = "wasm32")]
    web::next_task().await;
}

/// The kernels a forward pass of one to two input rows records (mean estimation, fold changes
/// against the reference, either prediction mode), for a model whose linear weights have the encodings `dtypes` and
/// whose trunks use `activations`: what [`GpuBackend::prebuild`] compiles before a first
/// prediction. Sizes are placeholders: pipelines depend only on shader, entry point and defines.
pub fn forward_kernels(style: KernelStyle, dtypes: &[DType], activations: &[Activation]) -> Vec<Box<dyn Kernel>> {
    use ops::output::{OutputKernel, Transform};
    let mut out: Vec<Box<dyn Kernel>> = Vec::new();
    for &dtype in dtypes {
        out.push(Box::new(ops::linear::LinearKernel { dtype, m: 1, k: 32, n_total: 1, row0: 0, rows: 1, style }));
    }
    for &act in activations {
        out.push(Box::new(ops::activation::ActivationKernel { act, n: 1 }));
    }
    out.push(Box::new(ops::layer_norm::LayerNormKernel { rows: 1, cols: 1, eps: 1e-5, style }));
    out.push(Box::new(ops::add::AddKernel { n: 1 }));
    out.push(Box::new(ops::prior_embed::PriorEmbedKernel { rows: 1, hidden: 1, fields: 1, numeric_row0: 1, numeric: 0 }));
    out.push(Box::new(ops::reparameterize::ReparameterizeKernel {
        rows: 1,
        samples: 1,
        streams: Streams::single(1, 0),
        draw: ops::reparameterize::Draw::Mean,
    }));
    out.push(Box::new(ops::assemble::AssembleKernel { rows: 1, parts: [(1, 0, 1); 3] }));
    // Counts, fold changes and the counterfactual profile: one entry point, chosen by a parameter.
    out.push(Box::new(OutputKernel { transform: Transform::Counts, rows: 1, genes: 1 }));
    out
}

/// The browser's WebGPU objects that wgpu does not create: the same descriptors as
/// [`GpuBackend::pipeline`] builds through wgpu, with asynchronous pipeline creation.
#[cfg(target_arch = "wasm32")]
mod web {
    use js_sys::{Array, Function, Object, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};

    use crate::error::{Error, Result};

    fn failed(what: &str, e: JsValue) -> Error {
        Error::Gpu(format!("{what}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))))
    }

    fn object(fields: &[(&str, JsValue)]) -> JsValue {
        let o = Object::new();
        for (k, v) in fields {
            let _ = Reflect::set(&o, &(*k).into(), v);
        }
        o.into()
    }

    fn call(target: &JsValue, method: &str, arg: &JsValue) -> Result<JsValue> {
        let f: Function = Reflect::get(target, &method.into()).and_then(|f| f.dyn_into()).map_err(|e| failed(method, e))?;
        f.call1(target, arg).map_err(|e| failed(method, e))
    }

    pub fn shader_module(device: &JsValue, code: &str) -> Result<JsValue> {
        call(device, "createShaderModule", &object(&[("code", code.into())]))
    }

    /// The layout of `GpuBackend::layout(inputs)`: uniform parameters with a dynamic offset,
    /// `inputs` read-only storage buffers, one read-write storage buffer; compute stage only.
    pub fn pipeline_layout(device: &JsValue, inputs: u32, param_slot: u64) -> Result<JsValue> {
        const COMPUTE: u32 = 4;
        let entry = |binding: u32, buffer: JsValue| object(&[("binding", binding.into()), ("visibility", COMPUTE.into()), ("buffer", buffer)]);
        let entries = Array::new();
        entries.push(&entry(
            0,
            object(&[("type", "uniform".into()), ("hasDynamicOffset", true.into()), ("minBindingSize", (param_slot as f64).into())]),
        ));
        for b in 1..=inputs {
            entries.push(&entry(b, object(&[("type", "read-only-storage".into()), ("hasDynamicOffset", false.into())])));
        }
        entries.push(&entry(inputs + 1, object(&[("type", "storage".into()), ("hasDynamicOffset", false.into())])));
        let bgl = call(device, "createBindGroupLayout", &object(&[("entries", entries.into())]))?;
        call(device, "createPipelineLayout", &object(&[("bindGroupLayouts", Array::of1(&bgl).into())]))
    }

    pub fn compute_pipeline_async(device: &JsValue, layout: &JsValue, module: &JsValue, entry: &str) -> Result<Promise> {
        let stage = object(&[("module", module.clone()), ("entryPoint", entry.into())]);
        let p = call(device, "createComputePipelineAsync", &object(&[("layout", layout.clone()), ("compute", stage)]))?;
        p.dyn_into().map_err(|e| failed("createComputePipelineAsync", e))
    }

    pub async fn next_task() {
        let promise = Promise::new(&mut |resolve, _| {
            let global = js_sys::global();
            if let Ok(f) = Reflect::get(&global, &"setTimeout".into()).and_then(|f| f.dyn_into::<Function>()) {
                let _ = f.call2(&global, &resolve, &0.into());
            } else {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Linear = GpuLinear;

    fn describe(&self) -> String {
        format!("GPU: {} via {}", self.info.name, self.info.backend)
    }

    fn shape(&self, t: &GpuTensor) -> (usize, usize) {
        (t.rows, t.cols)
    }

    fn tensor(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<GpuTensor> {
        if data.len() != rows * cols {
            return Err(Error::request(format!("tensor of [{rows}, {cols}] given {} values", data.len())));
        }
        self.check()?;
        let buf = self.upload(bytemuck::cast_slice(data))?;
        Ok(GpuTensor { rows, cols, buf })
    }

    fn linear_weights(&mut self, weight: &Matrix, bias: &[f32]) -> Result<GpuLinear> {
        if bias.len() != weight.rows {
            return Err(Error::request(format!("bias of {} for {} outputs", bias.len(), weight.rows)));
        }
        self.check()?;
        let row_bytes = ops::linear::packed_row_bytes(weight.dtype, weight.cols).max(1) as u64;
        let rows_per_chunk = (self.max_binding / row_bytes) as usize;
        if rows_per_chunk == 0 {
            return Err(gpu(format!(
                "one row of a {} × {} {} weight ({row_bytes} bytes) exceeds the storage binding limit of {} bytes",
                weight.rows, weight.cols, weight.dtype, self.max_binding
            )));
        }
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < weight.rows || (weight.rows == 0 && chunks.is_empty()) {
            let rows = rows_per_chunk.min(weight.rows - row0);
            let packed = ops::linear::pack(weight, row0, rows);
            let weights = self.weight_buffer("refcast weight", bytemuck::cast_slice(&packed.words));
            let scales = packed.scales.as_ref().map(|s| self.weight_buffer("refcast weight scales", bytemuck::cast_slice(s)));
            chunks.push(Chunk { row0, rows, weights, scales });
            row0 += rows;
            if rows == 0 {
                break;
            }
        }
        let bias = self.weight_buffer("refcast bias", bytemuck::cast_slice(bias));
        self.check()?;
        Ok(GpuLinear {
            rows: weight.rows,
            cols: weight.cols,
            dtype: weight.dtype,
            chunks,
            bias,
            evicted: self.evicted.clone(),
        })
    }

    fn linear(&mut self, x: &GpuTensor, w: &GpuLinear) -> Result<GpuTensor> {
        if x.cols != w.cols {
            return Err(Error::request(format!("linear: input has {} columns, weight expects {}", x.cols, w.cols)));
        }
        let out = self.output(x.rows, w.rows)?;
        for c in &w.chunks {
            let k = ops::linear::LinearKernel {
                dtype: w.dtype,
                m: x.rows,
                k: w.cols,
                n_total: w.rows,
                row0: c.row0,
                rows: c.rows,
                style: self.style,
            };
            let mut inputs = vec![x.bound(), c.weights.bound()];
            inputs.extend(c.scales.as_ref().map(Owned::bound));
            inputs.push(w.bias.bound());
            self.dispatch(&k, &inputs, out.bound())?;
        }
        Ok(out)
    }

    fn layer_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, bias: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        for (t, name) in [(weight, "weight"), (bias, "bias")] {
            if t.rows * t.cols != x.cols {
                return Err(Error::request(format!("layer norm {name} of {} values for {} columns", t.rows * t.cols, x.cols)));
            }
        }
        let out = self.output(x.rows, x.cols)?;
        let k = ops::layer_norm::LayerNormKernel { rows: x.rows, cols: x.cols, eps, style: self.style };
        self.dispatch(&k, &[x.bound(), weight.bound(), bias.bound()], out.bound())?;
        Ok(out)
    }

    fn activation(&mut self, x: &GpuTensor, act: Activation) -> Result<GpuTensor> {
        let out = self.output(x.rows, x.cols)?;
        self.dispatch(&ops::activation::ActivationKernel { act, n: x.rows * x.cols }, &[x.bound()], out.bound())?;
        Ok(out)
    }

    fn add(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(Error::request(format!("add: shapes [{}, {}] and [{}, {}] differ", a.rows, a.cols, b.rows, b.cols)));
        }
        let out = self.output(a.rows, a.cols)?;
        self.dispatch(&ops::add::AddKernel { n: a.rows * a.cols }, &[a.bound(), b.bound()], out.bound())?;
        Ok(out)
    }

    fn prior_embed(
        &mut self,
        table: &GpuTensor,
        numeric_row0: usize,
        bias: &GpuTensor,
        index: &[u32],
        numeric: &[f32],
        rows: usize,
    ) -> Result<GpuTensor> {
        let hidden = table.cols;
        let k = table.rows.checked_sub(numeric_row0).ok_or_else(|| {
            Error::request(format!("prior table of {} rows has no numeric row {numeric_row0}", table.rows))
        })?;
        if bias.rows * bias.cols != hidden {
            return Err(Error::request(format!("prior bias of {} values for width {hidden}", bias.rows * bias.cols)));
        }
        if numeric.len() != rows * k {
            return Err(Error::request(format!("prior numeric inputs: {} values for {rows} rows × {k} fields", numeric.len())));
        }
        let fields = index.len().checked_div(rows).unwrap_or(0);
        if index.len() != rows * fields {
            return Err(Error::request(format!("prior index of {} values for {rows} rows", index.len())));
        }
        let idx = self.upload_index(index, numeric_row0, "prior")?;
        let num = self.upload(bytemuck::cast_slice(numeric))?;
        let out = self.output(rows, hidden)?;
        let kernel = ops::prior_embed::PriorEmbedKernel { rows, hidden, fields, numeric_row0, numeric: k };
        let inputs = [
            table.bound(),
            bias.bound(),
            Bound::new(&idx.buffer, idx.id, index.len() as u64 * 4),
            Bound::new(&num.buffer, num.id, numeric.len() as u64 * 4),
        ];
        self.dispatch(&kernel, &inputs, out.bound())?;
        Ok(out)
    }

    fn reparameterize(&mut self, head: &GpuTensor, streams: Streams, noise: Option<Noise>, samples: usize) -> Result<GpuTensor> {
        if head.cols != 2 * streams.latent {
            return Err(Error::request(format!("reparameterize: head has {} columns for latent {}", head.cols, streams.latent)));
        }
        let out = self.output(samples * head.rows, streams.latent)?;
        let draw = match noise {
            None => ops::reparameterize::Draw::Mean,
            Some(n) => ops::reparameterize::Draw::Sample(n),
        };
        let k = ops::reparameterize::ReparameterizeKernel { rows: head.rows, samples, streams, draw };
        self.dispatch(&k, &[head.bound()], out.bound())?;
        Ok(out)
    }

    fn assemble(&mut self, parts: [(&GpuTensor, usize, usize); 3], index: &[u32]) -> Result<GpuTensor> {
        if !index.len().is_multiple_of(3) {
            return Err(Error::request(format!("assemble index of {} values is not [rows, 3]", index.len())));
        }
        let rows = index.len() / 3;
        for (g, (t, offset, width)) in parts.iter().enumerate() {
            if offset + width > t.cols {
                return Err(Error::request(format!("assemble part {g}: columns {offset}..{} of {}", offset + width, t.cols)));
            }
            if let Some(bad) = index.iter().skip(g).step_by(3).find(|&&i| i as usize >= t.rows) {
                return Err(Error::request(format!("assemble part {g}: row {bad} of {}", t.rows)));
            }
        }
        let width = parts.iter().map(|p| p.2).sum();
        let idx = self.upload(bytemuck::cast_slice(index))?;
        let out = self.output(rows, width)?;
        let k = ops::assemble::AssembleKernel { rows, parts: parts.map(|(t, offset, width)| (t.cols, offset, width)) };
        let inputs = [parts[0].0.bound(), parts[1].0.bound(), parts[2].0.bound(), Bound::new(&idx.buffer, idx.id, index.len() as u64 * 4)];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    fn log_fold_change(&mut self, pred: &GpuTensor, reference: &GpuTensor, index: &[u32]) -> Result<GpuTensor> {
        if index.len() != pred.rows || reference.cols != pred.cols {
            return Err(Error::request(format!(
                "log fold change: [{}, {}] prediction, [{}, {}] reference, {} indices",
                pred.rows, pred.cols, reference.rows, reference.cols, index.len()
            )));
        }
        let idx = self.upload_index(index, reference.rows, "reference")?;
        let out = self.output(pred.rows, pred.cols)?;
        let k = ops::output::OutputKernel { transform: ops::output::Transform::LogFoldChange, rows: pred.rows, genes: pred.cols };
        let inputs = [pred.bound(), reference.bound(), Bound::new(&idx.buffer, idx.id, index.len() as u64 * 4)];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    fn counterfactual(&mut self, pred: &GpuTensor, reference: &GpuTensor, index: &[u32]) -> Result<GpuTensor> {
        ops::output::check_counterfactual((pred.rows, pred.cols), (reference.rows, reference.cols), index)?;
        let rows = index.len() / 2;
        let idx = self.upload(bytemuck::cast_slice(index))?;
        let out = self.output(rows, pred.cols)?;
        let k = ops::output::OutputKernel { transform: ops::output::Transform::Counterfactual, rows, genes: pred.cols };
        let inputs = [pred.bound(), reference.bound(), Bound::new(&idx.buffer, idx.id, index.len() as u64 * 4)];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    fn counts(&mut self, pred: &GpuTensor, library_size: &[f32], index: &[u32]) -> Result<GpuTensor> {
        if index.len() != pred.rows {
            return Err(Error::request(format!("counts: {} indices for {} rows", index.len(), pred.rows)));
        }
        let idx = self.upload_index(index, library_size.len(), "library size")?;
        let lib = self.upload(bytemuck::cast_slice(library_size))?;
        let out = self.output(pred.rows, pred.cols)?;
        let k = ops::output::OutputKernel { transform: ops::output::Transform::Counts, rows: pred.rows, genes: pred.cols };
        let inputs = [
            pred.bound(),
            Bound::new(&lib.buffer, lib.id, library_size.len() as u64 * 4),
            Bound::new(&idx.buffer, idx.id, index.len() as u64 * 4),
        ];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    async fn read(&mut self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
        self.check()?;
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let staging: Vec<Option<Rc<PooledBuffer>>> = tensors
            .iter()
            .map(|t| (t.bytes() > 0).then(|| self.pool.take(&self.device, t.bytes(), usage, false)))
            .collect();
        let copies: Vec<_> = tensors
            .iter()
            .zip(&staging)
            .filter_map(|(t, s)| s.as_ref().map(|s| (&t.buf.buffer, &s.buffer, t.bytes())))
            .collect();
        self.flush(&copies);
        let maps: Vec<Option<MapFuture>> = tensors
            .iter()
            .zip(&staging)
            .map(|(t, s)| s.as_ref().map(|s| MapFuture::map_read(&s.buffer, t.bytes())))
            .collect();
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu(format!("waiting for the device: {e}")))?;
        // Every mapped buffer is unmapped before it returns to the pool, errors or not.
        let mut out = Vec::with_capacity(tensors.len());
        let mut failure = None;
        for ((t, s), m) in tensors.iter().zip(&staging).zip(maps) {
            let (Some(s), Some(m)) = (s, m) else {
                out.push(Vec::new());
                continue;
            };
            #[cfg(not(target_arch = "wasm32"))]
            if !m.is_done() {
                failure.get_or_insert_with(|| gpu("reading a result: the device finished without mapping the buffer"));
                continue;
            }
            if let Err(e) = m.await {
                failure.get_or_insert_with(|| gpu(format!("reading a result: {e}")));
                continue;
            }
            match s.buffer.slice(..t.bytes()).get_mapped_range() {
                Ok(view) => out.push(bytemuck::pod_collect_to_vec::<u8, f32>(&view)),
                Err(e) => {
                    failure.get_or_insert_with(|| gpu(format!("reading a result: {e}")));
                }
            }
            s.buffer.unmap();
        }
        self.check()?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
