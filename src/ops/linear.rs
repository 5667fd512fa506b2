//! Linear layer `y = x · Wᵀ + b` with W `[out, in]` in f32, f16, Q8_0 or Q4_0; quantized weights
//! are dequantized block by block inside the loop, never expanded whole.

use crate::quant::Matrix;

/// CPU twin. `x` is `[m, w.cols]`, `out` is `[m, w.rows]`.
pub fn cpu(x: &[f32], m: usize, w: &Matrix, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    assert_eq!(x.len(), m * k, "linear input");
    assert_eq!(out.len(), m * n, "linear output");
    let mut row = vec![0.0f32; k];
    for j in 0..n {
        // One decoded weight row serves every input row: the weights are read once per call.
        w.decode_row(j, &mut row);
        let b = bias.map_or(0.0, |b| b[j]);
        for i in 0..m {
            out[i * n + j] = dot(&x[i * k..(i + 1) * k], &row) + b;
        }
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/linear.wgsl)

use super::kernel::{Kernel, Shader, u};
use crate::quant::{BLOCK, DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

pub const SHADER: Shader = Shader { name: "linear", source: include_str!("../../shaders/linear.wgsl") };

/// Input rows up to which the matrix–vector entry point is used (it reads the weights once per
/// input row; the tiled one once per 64 rows).
pub const MATVEC_MAX_ROWS: usize = 2;

/// Weight rows of one chunk repacked for the GPU: `words` are f32 bits (F32), f16 pairs (F16),
/// i8 quads (Q8_0) or GGML nibble words (Q4_0); `scales` holds one f32 per block for the
/// quantized types.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub words: Vec<u32>,
    pub scales: Option<Vec<f32>>,
    /// Words per weight row.
    pub row_words: usize,
}

/// Words per row of `w` in the packed layout.
pub fn row_words(dtype: DType, cols: usize) -> usize {
    match dtype {
        DType::F32 => cols,
        DType::F16 => cols.div_ceil(2),
        DType::Q8_0 => cols / 4,
        DType::Q4_0 => cols / 8,
    }
}

/// Packed bytes per weight row (the largest binding of a chunk).
pub fn packed_row_bytes(dtype: DType, cols: usize) -> usize {
    4 * row_words(dtype, cols)
}

/// Repacks rows `row0 .. row0 + rows` of `w` (no values change: quantized blocks keep their
/// quants, the f16 scale becomes the f32 it denotes).
pub fn pack(w: &Matrix, row0: usize, rows: usize) -> Packed {
    let rb = w.row_bytes();
    let bytes = &w.bytes[row0 * rb..(row0 + rows) * rb];
    let row_words = row_words(w.dtype, w.cols);
    let le = |c: &[u8]| u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    let scale = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    match w.dtype {
        DType::F32 => Packed { words: bytes.chunks_exact(4).map(le).collect(), scales: None, row_words },
        DType::F16 => {
            let mut words = Vec::with_capacity(rows * row_words);
            for row in bytes.chunks_exact(rb) {
                let mut padded = row.to_vec();
                padded.resize(row_words * 4, 0);
                words.extend(padded.chunks_exact(4).map(le));
            }
            Packed { words, scales: None, row_words }
        }
        DType::Q8_0 | DType::Q4_0 => {
            let block_bytes = if w.dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
            let blocks = bytes.len() / block_bytes;
            let mut words = Vec::with_capacity(rows * row_words);
            let mut scales = Vec::with_capacity(blocks);
            for b in bytes.chunks_exact(block_bytes) {
                scales.push(scale(b));
                words.extend(b[2..].chunks_exact(4).map(le));
            }
            debug_assert_eq!(words.len(), rows * row_words);
            debug_assert_eq!(scales.len(), rows * w.cols / BLOCK);
            Packed { words, scales: Some(scales), row_words }
        }
    }
}

/// One dispatch of `shaders/linear.wgsl` over a chunk of weight rows. Bindings: x, weight words,
/// (scales,) bias, y.
#[derive(Clone, Copy, Debug)]
pub struct LinearKernel {
    pub dtype: DType,
    /// Input rows.
    pub m: usize,
    /// Input columns.
    pub k: usize,
    /// Output columns of the whole layer.
    pub n_total: usize,
    /// First weight row (output column) of this chunk and its row count.
    pub row0: usize,
    pub rows: usize,
}

impl LinearKernel {
    fn matvec(&self) -> bool {
        self.m <= MATVEC_MAX_ROWS
    }
}

impl Kernel for LinearKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        if self.matvec() { "matvec" } else { "tiled" }
    }
    fn defines(&self) -> Vec<&'static str> {
        match self.dtype {
            DType::F32 => vec!["F32"],
            DType::F16 => vec!["F16"],
            DType::Q8_0 => vec!["Q8_0", "QUANT"],
            DType::Q4_0 => vec!["Q4_0", "QUANT"],
        }
    }
    fn inputs(&self) -> u32 {
        if self.dtype.is_quantized() { 4 } else { 3 }
    }
    fn params(&self) -> Vec<u32> {
        let rw = row_words(self.dtype, self.k);
        vec![u(self.m), u(self.rows), u(self.k), u(self.n_total), u(self.row0), u(rw), 0, 0]
    }
    fn workgroups(&self) -> [u32; 3] {
        if self.matvec() {
            [u(self.rows.div_ceil(8)), u(self.m), 1]
        } else {
            [u(self.rows.div_ceil(64)), u(self.m.div_ceil(64)), 1]
        }
    }
}
