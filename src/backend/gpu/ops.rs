//! The model's operations on the GPU: each op's shape guard (`ops::<op>::check…`, the one the CPU
//! backend calls), then one dispatch (a linear layer one per row chunk of its weight).

use std::rc::Rc;

use super::device::gpu;
use super::{Bound, Chunk, GpuBackend, GpuLinear, GpuTensor};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::{self, Activation, Noise, reparameterize::Streams};
use crate::quant::Matrix;

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
        ops::linear::check_weights((weight.rows, weight.cols), bias.len())?;
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
            bind_groups: Rc::downgrade(&self.bind_groups),
        })
    }

    fn linear(&mut self, x: &GpuTensor, w: &GpuLinear) -> Result<GpuTensor> {
        ops::linear::check((x.rows, x.cols), (w.rows, w.cols))?;
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
            let mut inputs = vec![x.bound(), Bound::owned(&c.weights)];
            inputs.extend(c.scales.as_ref().map(Bound::owned));
            inputs.push(Bound::owned(&w.bias));
            self.dispatch(&k, &inputs, out.bound())?;
        }
        Ok(out)
    }

    fn layer_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, bias: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        ops::layer_norm::check((x.rows, x.cols), weight.rows * weight.cols, bias.rows * bias.cols)?;
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
        ops::add::check((a.rows, a.cols), (b.rows, b.cols))?;
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
        ops::prior_embed::check((table.rows, table.cols), numeric_row0, bias.rows * bias.cols, index, numeric.len(), rows)?;
        let (hidden, k) = (table.cols, table.rows - numeric_row0);
        let fields = index.len().checked_div(rows).unwrap_or(0);
        let idx = self.upload(bytemuck::cast_slice(index))?;
        let num = self.upload(bytemuck::cast_slice(numeric))?;
        let out = self.output(rows, hidden)?;
        let kernel = ops::prior_embed::PriorEmbedKernel { rows, hidden, fields, numeric_row0, numeric: k };
        let inputs = [
            table.bound(),
            bias.bound(),
            Bound::pooled(&idx, index.len() as u64 * 4),
            Bound::pooled(&num, numeric.len() as u64 * 4),
        ];
        self.dispatch(&kernel, &inputs, out.bound())?;
        Ok(out)
    }

    fn reparameterize(&mut self, head: &GpuTensor, streams: Streams, noise: Option<Noise>, samples: usize) -> Result<GpuTensor> {
        ops::reparameterize::check((head.rows, head.cols), streams)?;
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
        ops::assemble::check(parts.map(|(t, offset, width)| ((t.rows, t.cols), offset, width)), index)?;
        let rows = index.len() / 3;
        let width = parts.iter().map(|p| p.2).sum();
        let idx = self.upload(bytemuck::cast_slice(index))?;
        let out = self.output(rows, width)?;
        let k = ops::assemble::AssembleKernel { rows, parts: parts.map(|(t, offset, width)| (t.cols, offset, width)) };
        let inputs = [parts[0].0.bound(), parts[1].0.bound(), parts[2].0.bound(), Bound::pooled(&idx, index.len() as u64 * 4)];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    fn log_fold_change(&mut self, pred: &GpuTensor, reference: &GpuTensor, index: &[u32]) -> Result<GpuTensor> {
        ops::output::check_log_fold_change((pred.rows, pred.cols), (reference.rows, reference.cols), index)?;
        let idx = self.upload(bytemuck::cast_slice(index))?;
        let out = self.output(pred.rows, pred.cols)?;
        let k = ops::output::OutputKernel { transform: ops::output::Transform::LogFoldChange, rows: pred.rows, genes: pred.cols };
        // The thresholds' binding is unread: `pred` stands in.
        let inputs = [pred.bound(), reference.bound(), Bound::pooled(&idx, index.len() as u64 * 4), pred.bound()];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    fn counterfactual(&mut self, pred: &GpuTensor, reference: &GpuTensor, threshold: Option<&GpuTensor>, index: &[u32]) -> Result<GpuTensor> {
        ops::output::check_counterfactual((pred.rows, pred.cols), (reference.rows, reference.cols), threshold.map(|t| (t.rows, t.cols)), index)?;
        let rows = index.len() / 2;
        let idx = self.upload(bytemuck::cast_slice(index))?;
        let out = self.output(rows, pred.cols)?;
        let transform = if threshold.is_some() { ops::output::Transform::Denoised } else { ops::output::Transform::Counterfactual };
        let k = ops::output::OutputKernel { transform, rows, genes: pred.cols };
        // Without thresholds the binding is unread: `pred` stands in.
        let inputs = [pred.bound(), reference.bound(), Bound::pooled(&idx, index.len() as u64 * 4), threshold.unwrap_or(pred).bound()];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    fn counts(&mut self, pred: &GpuTensor, library_size: &[f32], index: &[u32]) -> Result<GpuTensor> {
        ops::output::check_counts((pred.rows, pred.cols), library_size.len(), index)?;
        let idx = self.upload(bytemuck::cast_slice(index))?;
        let lib = self.upload(bytemuck::cast_slice(library_size))?;
        let out = self.output(pred.rows, pred.cols)?;
        let k = ops::output::OutputKernel { transform: ops::output::Transform::Counts, rows: pred.rows, genes: pred.cols };
        let inputs = [
            pred.bound(),
            Bound::pooled(&lib, library_size.len() as u64 * 4),
            Bound::pooled(&idx, index.len() as u64 * 4),
            pred.bound(),
        ];
        self.dispatch(&k, &inputs, out.bound())?;
        Ok(out)
    }

    async fn read(&mut self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
        self.read_back(tensors).await
    }
}
