//! Opening the device: finding an adapter, the limits requested, and the errors wgpu reports
//! through callbacks rather than return values (device loss, validation, out of memory).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use super::cache::{BIND_GROUPS, BindGroupCache};
use super::pool::Pool;
use super::record::MAX_PENDING;
use super::{GpuBackend, PARAM_SLOT};
use crate::error::{Error, Result};
use crate::ops::{self, kernel::KernelStyle};

/// Errors reported by wgpu callbacks.
#[derive(Default)]
pub(super) struct Errors {
    /// Device loss: every later call fails.
    lost: Option<String>,
    /// Validation or out-of-memory errors not yet reported.
    pending: Vec<String>,
}

pub(super) fn gpu(msg: impl Into<String>) -> Error {
    Error::Gpu(msg.into())
}

/// `REFCAST_GPU_KERNELS=workgroup|flat` if set (native), else what suits the adapter.
fn default_style(info: &wgpu::AdapterInfo) -> KernelStyle {
    match std::env::var("REFCAST_GPU_KERNELS").as_deref() {
        Ok("workgroup") => KernelStyle::Workgroup,
        Ok("flat") => KernelStyle::Flat,
        _ => KernelStyle::for_adapter(info.device_type == wgpu::DeviceType::Cpu, &[&info.name, &info.driver, &info.driver_info]),
    }
}

/// The largest storage binding the device allows.
pub(super) fn binding_limit(device: &wgpu::Device) -> u64 {
    let limits = device.limits();
    limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)
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
        let style = default_style(&info);
        let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("refcast kernel parameters"),
            size: PARAM_SLOT * MAX_PENDING as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuBackend {
            max_binding: binding_limit(&device),
            max_groups: device.limits().max_compute_workgroups_per_dimension,
            device,
            queue,
            info,
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            #[cfg(target_arch = "wasm32")]
            prebuilt: Default::default(),
            layouts: HashMap::new(),
            bind_groups: Rc::new(RefCell::new(BindGroupCache::new(BIND_GROUPS))),
            pool: Pool::default(),
            params_buffer,
            params: Vec::with_capacity(PARAM_SLOT as usize * MAX_PENDING),
            pending: Vec::new(),
            errors,
            poison: false,
            style,
        }
    }

    /// Fails with the first error wgpu reported since the last check (device loss stays).
    pub(super) fn check(&self) -> Result<()> {
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

    /// Fails if `bytes` would not fit one storage binding.
    pub(super) fn check_binding(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.max_binding {
            return Err(gpu(format!(
                "{what} of {bytes} bytes exceeds the device's storage binding limit of {} bytes",
                self.max_binding
            )));
        }
        Ok(())
    }
}
