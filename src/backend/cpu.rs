//! The CPU backend: every op runs its plain-Rust twin immediately. Large tensors take their
//! buffers from a small pool that dropped tensors return to (see `pool`).

use super::Backend;
use crate::error::{Error, Result};
use crate::ops::{self, Activation, Noise, reparameterize::Streams};
use crate::ops::linear::int8::Bits;
use crate::quant::Matrix;

/// A row-major f32 matrix in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTensor {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Drop for CpuTensor {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.data));
    }
}

/// Freed buffers of large tensors, per thread. A forward pass asks for the same shapes again
/// and again; a fresh allocation of that size costs page faults and zero-filling each time (the
/// allocator returns large blocks to the system), a pooled one costs nothing.
mod pool {
    use std::cell::RefCell;

    /// Smaller buffers come from the allocator's free lists cheaply.
    const MIN_LEN: usize = 16 << 10;
    /// Bytes the pool keeps at most; beyond that freed buffers go back to the allocator.
    const MAX_BYTES: usize = 256 << 20;

    thread_local! {
        static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `len` values with unspecified contents (every op writes all of its output).
    pub fn take(len: usize) -> Vec<f32> {
        if len >= MIN_LEN {
            let found = FREE
                .try_with(|f| {
                    let mut f = f.borrow_mut();
                    // Best fit, and no more than twice the size, so small tensors do not pin
                    // the large buffers.
                    let best = (0..f.len())
                        .filter(|&i| (len..=2 * len).contains(&f[i].capacity()))
                        .min_by_key(|&i| f[i].capacity())?;
                    Some(f.swap_remove(best))
                })
                .ok()
                .flatten();
            if let Some(mut v) = found {
                // Only the part never written before is zeroed.
                v.resize(len, 0.0);
                return v;
            }
        }
        vec![0.0; len]
    }

    pub fn give(v: Vec<f32>) {
        if v.capacity() < MIN_LEN {
            return;
        }
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            let held: usize = f.iter().map(|b| 4 * b.capacity()).sum();
            if held + 4 * v.capacity() <= MAX_BYTES {
                f.push(v);
            }
        });
    }
}

/// A linear layer as stored in the model file.
#[derive(Clone, Debug)]
pub struct CpuLinear {
    pub weight: ops::linear::Weights,
    pub bias: Vec<f32>,
    /// Runs on the integer path (`ops::linear::int8`) with inputs quantized to these bits,
    /// rather than on the f32 twin.
    pub integer: Option<Bits>,
}

/// How the CPU backend multiplies quantized (Q8_0 / Q4_0) weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuKernels {
    /// The f32 twins: inputs stay f32, weights are dequantized block by block. The oracle, and
    /// the same numbers as the GPU backend.
    #[default]
    F32,
    /// The integer path: each layer's inputs quantized in blocks of 32 to 16 bits and multiplied
    /// with the weights' 8- or 4-bit quants in integer arithmetic (i32 sums per block). Predicted
    /// log-CPM within [`CpuKernels::INTEGER_ERROR_BOUND`] of the f32 path (tests/int8.rs).
    Integer,
}

impl CpuKernels {
    /// Max |Δ| of predicted log-CPM of `Integer` against `F32` that tests/int8.rs asserts on the
    /// shipped models' golden cases and on random references.
    pub const INTEGER_ERROR_BOUND: f32 = 0.02;

    /// How layer `name` (as in the model file, without `.weight`) quantizes its inputs, or `None`
    /// for the f32 path. 8-bit inputs (GGML's Q8_0) moved predicted log-CPM by up to 0.08 from a
    /// single layer of the shipped models (tests/int8.rs, `layer_by_layer_errors`), so every layer
    /// takes 16 bits.
    pub fn layer_bits(self, name: &str) -> Option<Bits> {
        let _ = name;
        match self {
            CpuKernels::F32 => None,
            CpuKernels::Integer => Some(Bits::Sixteen),
        }
    }
}

impl std::str::FromStr for CpuKernels {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(CpuKernels::F32),
            "integer" => Ok(CpuKernels::Integer),
            other => Err(format!("unknown CPU kernels '{other}' (expected f32 or integer)")),
        }
    }
}

impl std::fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuKernels::F32 => "f32",
            CpuKernels::Integer => "integer",
        })
    }
}

/// Which quantized layers (by name) take the integer path, with how many bits of input.
type LayerBits = Box<dyn Fn(&str) -> Option<Bits> + Send + Sync>;

/// Plain-Rust backend: the reference for tests and the fallback where no GPU adapter exists.
pub struct CpuBackend {
    integer: LayerBits,
    kernels: Option<CpuKernels>,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend").field("kernels", &self.kernels).finish()
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new()
    }
}

impl CpuBackend {
    /// The f32 twins (`CpuKernels::F32`).
    pub fn new() -> Self {
        CpuBackend::with_kernels(CpuKernels::F32)
    }

    pub fn with_kernels(kernels: CpuKernels) -> Self {
        CpuBackend { integer: Box::new(move |name| kernels.layer_bits(name)), kernels: Some(kernels) }
    }

    /// The integer path for exactly the quantized layers `bits` gives bits for (by name:
    /// `encoder.input`, `decoder.blocks.0.fc1`, …): for measuring the error layer by layer.
    pub fn with_integer_layers(bits: impl Fn(&str) -> Option<Bits> + Send + Sync + 'static) -> Self {
        CpuBackend { integer: Box::new(bits), kernels: None }
    }

    /// The kernels chosen (`None`: a per-layer choice of `with_integer_layers`).
    pub fn kernels(&self) -> Option<CpuKernels> {
        self.kernels
    }
}

/// Values from which an element- or row-wise op is split across the worker threads.
#[cfg(not(target_arch = "wasm32"))]
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// Runs `f(first_row, rows_of_out)` over `out` (`[rows, cols]`): in one call, or, on native
/// targets when the op is large, in one part of whole rows per worker thread.
fn split_rows(rows: usize, cols: usize, out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = ops::workers::threads().min(rows);
        if threads > 1 && rows * cols >= PARALLEL_MIN_VALUES {
            let step = rows.div_ceil(threads);
            let parts: Vec<_> = out.chunks_mut(step * cols).enumerate().collect();
            return ops::workers::for_each(parts, |(p, o)| f(p * step, o));
        }
    }
    let _ = (rows, cols);
    f(0, out)
}

/// An output tensor whose every value the op then writes.
fn output(rows: usize, cols: usize) -> CpuTensor {
    CpuTensor { rows, cols, data: pool::take(rows * cols) }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Linear = CpuLinear;

    fn describe(&self) -> String {
        match self.kernels {
            Some(CpuKernels::F32) => "CPU (plain Rust)".to_string(),
            Some(CpuKernels::Integer) => "CPU (plain Rust, integer kernels)".to_string(),
            None => "CPU (plain Rust, integer kernels on chosen layers)".to_string(),
        }
    }

    fn shape(&self, t: &CpuTensor) -> (usize, usize) {
        (t.rows, t.cols)
    }

    fn tensor(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<CpuTensor> {
        if data.len() != rows * cols {
            return Err(Error::request(format!("tensor of [{rows}, {cols}] given {} values", data.len())));
        }
        let mut t = output(rows, cols);
        t.data.copy_from_slice(data);
        Ok(t)
    }

    fn tensor_owned(&mut self, data: Vec<f32>, rows: usize, cols: usize) -> Result<CpuTensor> {
        if data.len() != rows * cols {
            return Err(Error::request(format!("tensor of [{rows}, {cols}] given {} values", data.len())));
        }
        Ok(CpuTensor { rows, cols, data })
    }

    fn linear_weights(&mut self, weight: &Matrix, bias: &[f32]) -> Result<CpuLinear> {
        ops::linear::check_weights((weight.rows, weight.cols), bias.len())?;
        Ok(CpuLinear { weight: ops::linear::Weights::new(weight.clone()), bias: bias.to_vec(), integer: None })
    }

    fn linear_layer(&mut self, name: &str, weight: &Matrix, bias: &[f32]) -> Result<CpuLinear> {
        let mut layer = self.linear_weights(weight, bias)?;
        layer.integer = (self.integer)(name).filter(|_| ops::linear::int8::takes(weight.dtype));
        if layer.integer.is_some() {
            layer.weight = layer.weight.with_block_scales();
        }
        Ok(layer)
    }

    fn linear(&mut self, x: &CpuTensor, w: &CpuLinear) -> Result<CpuTensor> {
        ops::linear::check((x.rows, x.cols), (w.weight.rows, w.weight.cols))?;
        let mut out = output(x.rows, w.weight.rows);
        if let Some(bits) = w.integer {
            ops::linear::int8::cpu(&x.data, x.rows, &w.weight, bits, Some(&w.bias), &mut out.data);
            return Ok(out);
        }
        ops::linear::cpu_weights(&x.data, x.rows, &w.weight, Some(&w.bias), &mut out.data);
        Ok(out)
    }

    fn layer_norm(&mut self, x: &CpuTensor, weight: &CpuTensor, bias: &CpuTensor, eps: f32) -> Result<CpuTensor> {
        ops::layer_norm::check((x.rows, x.cols), weight.rows * weight.cols, bias.rows * bias.cols)?;
        let mut out = output(x.rows, x.cols);
        let c = x.cols;
        split_rows(x.rows, c, &mut out.data, |r, o| {
            ops::layer_norm::cpu(&x.data[r * c..r * c + o.len()], c, &weight.data, &bias.data, eps, o)
        });
        Ok(out)
    }

    fn activation(&mut self, x: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        let mut out = output(x.rows, x.cols);
        let c = x.cols;
        split_rows(x.rows, c, &mut out.data, |r, o| ops::activation::cpu(act, &x.data[r * c..r * c + o.len()], o));
        Ok(out)
    }

    fn add(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        ops::add::check((a.rows, a.cols), (b.rows, b.cols))?;
        let mut out = output(a.rows, a.cols);
        let c = a.cols;
        split_rows(a.rows, c, &mut out.data, |r, o| {
            let span = r * c..r * c + o.len();
            ops::add::cpu(&a.data[span.clone()], &b.data[span], o)
        });
        Ok(out)
    }

    fn prior_embed(
        &mut self,
        table: &CpuTensor,
        numeric_row0: usize,
        bias: &CpuTensor,
        index: &[u32],
        numeric: &[f32],
        rows: usize,
    ) -> Result<CpuTensor> {
        ops::prior_embed::check((table.rows, table.cols), numeric_row0, bias.rows * bias.cols, index, numeric.len(), rows)?;
        let mut out = output(rows, table.cols);
        ops::prior_embed::cpu(&table.data, table.cols, numeric_row0, &bias.data, index, numeric, &mut out.data);
        Ok(out)
    }

    fn reparameterize(&mut self, head: &CpuTensor, streams: Streams, noise: Option<Noise>, samples: usize) -> Result<CpuTensor> {
        ops::reparameterize::check((head.rows, head.cols), streams)?;
        let mut out = output(samples * head.rows, streams.latent);
        ops::reparameterize::cpu(&head.data, streams, noise, &mut out.data);
        Ok(out)
    }

    fn assemble(&mut self, parts: [(&CpuTensor, usize, usize); 3], index: &[u32]) -> Result<CpuTensor> {
        ops::assemble::check(parts.map(|(t, offset, width)| ((t.rows, t.cols), offset, width)), index)?;
        let width = parts.iter().map(|p| p.2).sum();
        let mut out = output(index.len() / 3, width);
        let parts = parts.map(|(t, offset, width)| ops::assemble::Part { source: &t.data, cols: t.cols, offset, width });
        ops::assemble::cpu(parts, index, &mut out.data);
        Ok(out)
    }

    fn log_fold_change(&mut self, pred: &CpuTensor, reference: &CpuTensor, index: &[u32]) -> Result<CpuTensor> {
        ops::output::check_log_fold_change((pred.rows, pred.cols), (reference.rows, reference.cols), index)?;
        let mut out = output(pred.rows, pred.cols);
        let c = pred.cols;
        split_rows(pred.rows, c, &mut out.data, |r, o| {
            let n = o.len() / c;
            ops::output::log_fold_change_cpu(&pred.data[r * c..r * c + o.len()], &reference.data, &index[r..r + n], o)
        });
        Ok(out)
    }

    fn counterfactual(&mut self, pred: &CpuTensor, reference: &CpuTensor, threshold: Option<&CpuTensor>, index: &[u32]) -> Result<CpuTensor> {
        ops::output::check_counterfactual((pred.rows, pred.cols), (reference.rows, reference.cols), threshold.map(|t| (t.rows, t.cols)), index)?;
        let mut out = output(index.len() / 2, pred.cols);
        let c = pred.cols;
        let threshold = threshold.map(|t| &t.data[..]);
        split_rows(out.rows, c, &mut out.data, |r, o| {
            let n = o.len() / c;
            ops::output::counterfactual_cpu(&pred.data[r * c..r * c + o.len()], &pred.data, &reference.data, threshold, &index[2 * r..2 * (r + n)], o)
        });
        Ok(out)
    }

    fn counts(&mut self, pred: &CpuTensor, library_size: &[f32], index: &[u32]) -> Result<CpuTensor> {
        ops::output::check_counts((pred.rows, pred.cols), library_size.len(), index)?;
        let mut out = output(pred.rows, pred.cols);
        let c = pred.cols;
        split_rows(pred.rows, c, &mut out.data, |r, o| {
            let n = o.len() / c;
            ops::output::counts_cpu(&pred.data[r * c..r * c + o.len()], library_size, &index[r..r + n], o)
        });
        Ok(out)
    }

    async fn read(&mut self, tensors: &[&CpuTensor]) -> Result<Vec<Vec<f32>>> {
        Ok(tensors.iter().map(|t| t.data.clone()).collect())
    }

    async fn read_owned(&mut self, tensors: Vec<CpuTensor>) -> Result<Vec<Vec<f32>>> {
        // The emptied tensors give nothing back to the pool when they drop.
        Ok(tensors.into_iter().map(|mut t| std::mem::take(&mut t.data)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::DType;

    /// Ops write every value of a recycled buffer: outputs after the pool was filled with NaN
    /// buffers of every size equal the twins' outputs into fresh zeroed vectors.
    #[test]
    fn recycled_buffers_do_not_leak_into_outputs() {
        let (rows, cols, genes) = (40, 512, 1030);
        let philox = ops::Philox::new(9);
        let rand = |n: usize, s: u32| -> Vec<f32> { (0..n).map(|j| philox.normal(0, j as u32, s, 0)).collect() };
        let mut be = CpuBackend::new();
        let x = be.tensor(&rand(rows * cols, 1), rows, cols).unwrap();
        let w = Matrix::encode(genes, cols, &rand(genes * cols, 2), DType::Q8_0);
        let bias = rand(genes, 3);
        let lin = be.linear_weights(&w, &bias).unwrap();
        let ones = be.tensor(&vec![1.0; cols], 1, cols).unwrap();
        let zeros = be.tensor(&vec![0.0; cols], 1, cols).unwrap();
        let index: Vec<u32> = (0..rows as u32).map(|r| r % 3).collect();
        for len in [rows * cols, rows * genes, rows * genes + 7] {
            pool::give(vec![f32::NAN; len]);
        }
        let y = be.linear(&x, &lin).unwrap();
        let mut want = vec![0.0; rows * genes];
        ops::linear::cpu(&x.data, rows, &w, Some(&bias), &mut want);
        assert_eq!(y.data, want);
        let n = be.layer_norm(&x, &ones, &zeros, 1e-5).unwrap();
        let mut want = vec![0.0; rows * cols];
        ops::layer_norm::cpu(&x.data, cols, &ones.data, &zeros.data, 1e-5, &mut want);
        assert_eq!(n.data, want);
        let a = be.activation(&x, Activation::GeluTanh).unwrap();
        ops::activation::cpu(Activation::GeluTanh, &x.data, &mut want);
        assert_eq!(a.data, want);
        let s = be.add(&x, &a).unwrap();
        ops::add::cpu(&x.data, &a.data, &mut want);
        assert_eq!(s.data, want);
        let c = be.counts(&y, &[1e4, 2e4, 3e4], &index).unwrap();
        let mut want = vec![0.0; rows * genes];
        ops::output::counts_cpu(&y.data, &[1e4, 2e4, 3e4], &index, &mut want);
        assert_eq!(c.data, want);
        let reference = be.tensor(&rand(3 * genes, 4), 3, genes).unwrap();
        let l = be.log_fold_change(&y, &reference, &index).unwrap();
        ops::output::log_fold_change_cpu(&y.data, &reference.data, &index, &mut want);
        assert_eq!(l.data, want);
        // Rows 0..rows−4 against controls among the last four rows.
        let pairs: Vec<u32> = (0..rows as u32 - 4).flat_map(|r| [r % 3, rows as u32 - 4 + r % 4]).collect();
        let x = be.counterfactual(&y, &reference, None, &pairs).unwrap();
        let mut want = vec![0.0; (rows - 4) * genes];
        ops::output::counterfactual_cpu(&y.data[..(rows - 4) * genes], &y.data, &reference.data, None, &pairs, &mut want);
        assert_eq!(x.data, want);
        let threshold = be.tensor(&rand(genes, 5).iter().map(|v| v.abs()).collect::<Vec<_>>(), 1, genes).unwrap();
        let x = be.counterfactual(&y, &reference, Some(&threshold), &pairs).unwrap();
        ops::output::counterfactual_cpu(&y.data[..(rows - 4) * genes], &y.data, &reference.data, Some(&threshold.data), &pairs, &mut want);
        assert_eq!(x.data, want);
        let read = pollster::block_on(be.read(&[&y, &l])).unwrap();
        assert!(read[0] == y.data && read[1] == l.data && !y.data.iter().any(|v| v.is_nan()));
        let (y_data, l_data) = (y.data.clone(), l.data.clone());
        let owned = pollster::block_on(be.read_owned(vec![y, l])).unwrap();
        assert!(owned[0] == y_data && owned[1] == l_data);
    }
}
