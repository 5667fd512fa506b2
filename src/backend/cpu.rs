//! The CPU backend: every op runs its plain-Rust twin immediately.

use super::Backend;
use crate::error::{Error, Result};
use crate::ops::{self, Activation, Noise, reparameterize::Streams};
use crate::quant::Matrix;

/// A row-major f32 matrix in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTensor {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// A linear layer as stored in the model file.
#[derive(Clone, Debug)]
pub struct CpuLinear {
    pub weight: Matrix,
    pub bias: Vec<f32>,
}

/// Plain-Rust backend: the reference for tests and the fallback where no GPU adapter exists.
#[derive(Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

fn same_shape(a: &CpuTensor, b: &CpuTensor, op: &str) -> Result<()> {
    if (a.rows, a.cols) != (b.rows, b.cols) {
        return Err(Error::request(format!(
            "{op}: shapes [{}, {}] and [{}, {}] differ",
            a.rows, a.cols, b.rows, b.cols
        )));
    }
    Ok(())
}

fn output(rows: usize, cols: usize) -> CpuTensor {
    CpuTensor { rows, cols, data: vec![0.0; rows * cols] }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Linear = CpuLinear;

    fn describe(&self) -> String {
        "CPU (plain Rust)".to_string()
    }

    fn shape(&self, t: &CpuTensor) -> (usize, usize) {
        (t.rows, t.cols)
    }

    fn tensor(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<CpuTensor> {
        if data.len() != rows * cols {
            return Err(Error::request(format!("tensor of [{rows}, {cols}] given {} values", data.len())));
        }
        Ok(CpuTensor { rows, cols, data: data.to_vec() })
    }

    fn linear_weights(&mut self, weight: &Matrix, bias: &[f32]) -> Result<CpuLinear> {
        if bias.len() != weight.rows {
            return Err(Error::request(format!("bias of {} for {} outputs", bias.len(), weight.rows)));
        }
        Ok(CpuLinear { weight: weight.clone(), bias: bias.to_vec() })
    }

    fn linear(&mut self, x: &CpuTensor, w: &CpuLinear) -> Result<CpuTensor> {
        if x.cols != w.weight.cols {
            return Err(Error::request(format!("linear: input has {} columns, weight expects {}", x.cols, w.weight.cols)));
        }
        let mut out = output(x.rows, w.weight.rows);
        ops::linear::cpu(&x.data, x.rows, &w.weight, Some(&w.bias), &mut out.data);
        Ok(out)
    }

    fn layer_norm(&mut self, x: &CpuTensor, weight: &CpuTensor, bias: &CpuTensor, eps: f32) -> Result<CpuTensor> {
        let mut out = output(x.rows, x.cols);
        ops::layer_norm::cpu(&x.data, x.cols, &weight.data, &bias.data, eps, &mut out.data);
        Ok(out)
    }

    fn activation(&mut self, x: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        let mut out = output(x.rows, x.cols);
        ops::activation::cpu(act, &x.data, &mut out.data);
        Ok(out)
    }

    fn add(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        same_shape(a, b, "add")?;
        let mut out = output(a.rows, a.cols);
        ops::add::cpu(&a.data, &b.data, &mut out.data);
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
        if let Some(&bad) = index.iter().find(|&&i| i as usize >= numeric_row0) {
            return Err(Error::request(format!("prior index {bad} outside the {numeric_row0} one-hot rows")));
        }
        let mut out = output(rows, table.cols);
        ops::prior_embed::cpu(&table.data, table.cols, numeric_row0, &bias.data, index, numeric, &mut out.data);
        Ok(out)
    }

    fn reparameterize(&mut self, head: &CpuTensor, streams: Streams, noise: Option<Noise>, samples: usize) -> Result<CpuTensor> {
        let mut out = output(samples * head.rows, streams.latent);
        ops::reparameterize::cpu(&head.data, streams, noise, &mut out.data);
        Ok(out)
    }

    fn assemble(&mut self, parts: [(&CpuTensor, usize, usize); 3], index: &[u32]) -> Result<CpuTensor> {
        let width = parts.iter().map(|p| p.2).sum();
        let mut out = output(index.len() / 3, width);
        let parts = parts.map(|(t, offset, width)| ops::assemble::Part { source: &t.data, cols: t.cols, offset, width });
        ops::assemble::cpu(parts, index, &mut out.data);
        Ok(out)
    }

    fn log_fold_change(&mut self, pred: &CpuTensor, reference: &CpuTensor, index: &[u32]) -> Result<CpuTensor> {
        let mut out = output(pred.rows, pred.cols);
        ops::output::log_fold_change_cpu(&pred.data, &reference.data, index, &mut out.data);
        Ok(out)
    }

    fn counts(&mut self, pred: &CpuTensor, library_size: &[f32], index: &[u32]) -> Result<CpuTensor> {
        let mut out = output(pred.rows, pred.cols);
        ops::output::counts_cpu(&pred.data, library_size, index, &mut out.data);
        Ok(out)
    }

    async fn read(&mut self, tensors: &[&CpuTensor]) -> Result<Vec<Vec<f32>>> {
        Ok(tensors.iter().map(|t| t.data.clone()).collect())
    }
}
