//! Settings and probes for tests and benchmarks: smaller bindings, the kernel style, poisoned
//! outputs, cache and pool sizes, and the raw random stream of the reparameterize shader.

use super::device::binding_limit;
use super::{Bound, GpuBackend};
use crate::backend::Backend;
use crate::error::Result;
use crate::ops::{self, kernel::KernelStyle, reparameterize::Streams};

impl GpuBackend {
    /// Lowers the largest storage binding used (weights are split into chunks below it); for
    /// tests of the split path. Never raises it above the device limit.
    pub fn set_max_binding_bytes(&mut self, bytes: u64) {
        self.max_binding = bytes.min(binding_limit(&self.device));
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

    /// Compute pipelines created so far (each compiled once, then cached).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// Bytes of GPU memory held by the buffer pool (live and idle).
    pub fn pool_bytes(&self) -> u64 {
        self.pool.0.borrow().allocated
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
        self.dispatch(&k, &[Bound::pooled(&input, flat.len() as u64 * 4)], out.bound())?;
        let words = self.read(&[&out]).await?.remove(0);
        Ok(words.chunks_exact(4).map(|w| [w[0].to_bits(), w[1].to_bits(), w[2].to_bits(), w[3].to_bits()]).collect())
    }
}
