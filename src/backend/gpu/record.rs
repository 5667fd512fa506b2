//! Recording and submission: buffers for uploads and outputs, dispatches kept in a list with their
//! parameters, one compute pass per submission, and reading results back.

use std::rc::Rc;

use super::device::gpu;
use super::map::MapFuture;
use super::pool::PooledBuffer;
use super::{Bound, GpuBackend, GpuTensor, PARAM_SLOT};
use crate::error::Result;
use crate::ops::fill::FillKernel;
use crate::ops::kernel::Kernel;

/// Dispatches recorded before a submission is forced (the parameter buffer holds this many slots).
pub(super) const MAX_PENDING: usize = 512;
/// Bit pattern written into poisoned outputs (a quiet NaN).
const POISON: u32 = 0x7fc0_0000;

/// A recorded dispatch.
pub(super) struct Pending {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    offset: u32,
    groups: [u32; 3],
}

impl GpuBackend {
    /// Submits the recorded work without waiting for it.
    pub fn submit(&mut self) {
        self.flush(&[]);
    }

    /// A pooled buffer holding `data` (written at the next submission, before its commands).
    pub(super) fn upload(&mut self, data: &[u8]) -> Result<Rc<PooledBuffer>> {
        self.check_binding(data.len() as u64, "an uploaded array")?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let buf = self.pool.take(&self.device, data.len() as u64, usage, true);
        if !data.is_empty() {
            self.queue.write_buffer(&buf.buffer, 0, data);
        }
        Ok(buf)
    }

    /// A pooled output tensor (poisoned first when asked).
    pub(super) fn output(&mut self, rows: usize, cols: usize) -> Result<GpuTensor> {
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
            let full = Bound::pooled(&t.buf, t.buf.buffer.size());
            self.dispatch(&FillKernel { words, value: POISON }, &[], full)?;
        }
        Ok(t)
    }

    /// A buffer outside the pool holding one row chunk of a weight matrix (or a bias).
    pub(super) fn weight_buffer(&self, label: &str, words: &[u8]) -> wgpu::Buffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (words.len() as u64).max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !words.is_empty() {
            self.queue.write_buffer(&buffer, 0, words);
        }
        buffer
    }

    /// Records one dispatch of `k` with `inputs` and `output`.
    pub(super) fn dispatch(&mut self, k: &dyn Kernel, inputs: &[Bound<'_>], output: Bound<'_>) -> Result<()> {
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
        for id in bindings.iter().filter_map(|b| b.pooled) {
            self.pool.mark_used(id);
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

    /// Submits the recorded work with copies of `tensors` into staging buffers, and maps those
    /// back (see [`crate::backend::Backend::read`]).
    pub(super) async fn read_back(&mut self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
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
