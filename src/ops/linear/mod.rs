//! Linear layer `y = x · Wᵀ + b` with W `[out, in]` in f32, f16, Q8_0 or Q4_0; quantized weights
//! are dequantized block by block inside the loop, never expanded whole.
//!
//! CPU twin layout:
//! - large layers are split across the persistent worker threads of `ops::workers` (native
//!   targets), by input rows when there are enough of them, else by output columns (`threads.rs`);
//! - up to 24 input rows (AVX2/FMA/F16C, detected at run time, `avx2.rs`) or 3 (wasm SIMD in the
//!   wasm build, `simd128.rs`) take dot products straight off the stored quantized blocks;
//! - more rows decode a panel of weight rows × a slice of the input width to f32 once and sweep
//!   every input row over it: on x86-64 as a packed outer-product GEMM (`gemm_avx2.rs`, 6 × 16
//!   register tiles), elsewhere as 4 × 3 tiles of dot products;
//! - `simd.rs` picks the instruction set of the inner loops and holds their portable versions;
//! - `int8.rs` is the integer path (inputs quantized in blocks to i8 or i16, integer dot products
//!   in i32), a different function chosen per backend (`CpuKernels::Integer`), not a faster twin.
//!
//! On the GPU, [`LinearKernel`] runs `shaders/linear.wgsl` over weights repacked into 32-bit
//! words (`gpu_pack.rs`).

use crate::quant::{BLOCK, DType, Matrix, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod gemm_avx2;
mod gpu_pack;
pub mod int8;
mod simd;
mod weights;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod int8_simd128;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(not(target_arch = "wasm32"))]
mod threads;

pub use gpu_pack::{Packed, pack, packed_row_bytes, row_words};
use simd::Simd;
pub use weights::Weights;
#[cfg(not(target_arch = "wasm32"))]
pub use threads::threads;

/// Input rows from which the panel path is used (where quantized rows are not read directly).
const PANEL_MIN_ROWS: usize = 4;
/// Input rows up to which the AVX2 path reads quantized rows straight off their blocks, each
/// block decoded once per group of up to eight rows (measured: an 18-row screen is faster so, 32
/// rows per thread of a 64-row batch faster through the GEMM, whose packing pays off there).
const DIRECT_MAX_ROWS: usize = 24;
/// Weight rows and input columns of one decoded panel (36 × 512 f32 = 72 KiB).
const NC: usize = 36;
const KC: usize = 512;

/// What every backend checks before a layer is uploaded (`weight` is `(rows, cols)`): one bias
/// value per output.
pub fn check_weights(weight: (usize, usize), bias: usize) -> crate::Result<()> {
    if bias != weight.0 {
        return Err(crate::Error::request(format!("bias of {bias} for {} outputs", weight.0)));
    }
    Ok(())
}

/// What every backend checks before `x · Wᵀ + b` (shapes are `(rows, cols)`).
pub fn check(x: (usize, usize), weight: (usize, usize)) -> crate::Result<()> {
    if x.1 != weight.1 {
        return Err(crate::Error::request(format!("linear: input has {} columns, weight expects {}", x.1, weight.1)));
    }
    Ok(())
}

/// CPU twin. `x` is `[m, w.cols]`, `out` is `[m, w.rows]`.
pub fn cpu(x: &[f32], m: usize, w: &Matrix, bias: Option<&[f32]>, out: &mut [f32]) {
    cpu_weights(x, m, &Weights::new(w.clone()), bias, out)
}

/// The CPU twin on prepared weights (what the CPU backend holds).
pub fn cpu_weights(x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, out: &mut [f32]) {
    run(Simd::detect(), x, m, w, bias, out)
}

fn run(simd: Simd, x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    assert_eq!(x.len(), m * k, "linear input");
    assert_eq!(out.len(), m * n, "linear output");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "linear bias");
    }
    #[cfg(not(target_arch = "wasm32"))]
    match threads::plan(m, n, k) {
        Some(threads::Split::Rows(t)) => return threads::split_by_rows(simd, x, m, w, bias, out, t),
        Some(threads::Split::Columns(t)) => return threads::split_by_columns(simd, x, m, w, bias, out, t),
        None => {}
    }
    columns(simd, x, m, w, bias, 0, n, out, n);
}

/// Output columns `j0..j1` into `out[i · ld + (j − j0)]`.
#[allow(clippy::too_many_arguments)]
fn columns(simd: Simd, x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, j0: usize, j1: usize, out: &mut [f32], ld: usize) {
    let k = w.cols;
    let direct = matches!(w.dtype, DType::Q8_0 | DType::Q4_0) && m <= simd.direct_rows();
    #[cfg(target_arch = "x86_64")]
    if direct && simd.avx2 {
        return avx2::direct_columns(x, m, w, bias, j0, j1, out, ld);
    }
    if direct || m < PANEL_MIN_ROWS {
        let rb = w.row_bytes();
        let mut row = vec![0.0f32; k];
        for j in j0..j1 {
            let b = bias.map_or(0.0, |b| b[j]);
            if direct {
                let sums = simd.dot_quant(w.dtype, &w.bytes[j * rb..(j + 1) * rb], x, m);
                for (i, s) in sums.iter().enumerate().take(m) {
                    out[i * ld + j - j0] = s + b;
                }
                continue;
            }
            w.decode_row(j, &mut row);
            for i in 0..m {
                out[i * ld + j - j0] = simd.dot(&x[i * k..(i + 1) * k], &row) + b;
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd.avx2 {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked in `detect`).
        return unsafe { gemm_avx2::columns(simd, x, m, w, bias, j0, j1, out, ld) };
    }
    for i in 0..m {
        for j in j0..j1 {
            out[i * ld + j - j0] = bias.map_or(0.0, |b| b[j]);
        }
    }
    let mut panel = vec![0.0f32; NC * KC];
    for jc in (j0..j1).step_by(NC) {
        let nc = NC.min(j1 - jc);
        for kc in (0..k).step_by(KC) {
            let kl = KC.min(k - kc);
            for r in 0..nc {
                decode_range(simd, w, jc + r, kc, &mut panel[r * KC..r * KC + kl]);
            }
            let mut i = 0;
            while i < m {
                let mr = 4.min(m - i);
                let xs: [&[f32]; 4] = std::array::from_fn(|a| {
                    let r = i + a.min(mr - 1);
                    &x[r * k + kc..r * k + kc + kl]
                });
                let mut jj = 0;
                while jj < nc {
                    let nr = 3.min(nc - jj);
                    let ws: [&[f32]; 3] = std::array::from_fn(|c| {
                        let r = jj + c.min(nr - 1);
                        &panel[r * KC..r * KC + kl]
                    });
                    let sums = simd.tile(xs, ws);
                    for (a, row) in sums.iter().enumerate().take(mr) {
                        for (c, v) in row.iter().enumerate().take(nr) {
                            out[(i + a) * ld + jc + jj + c - j0] += v;
                        }
                    }
                    jj += nr;
                }
                i += mr;
            }
        }
    }
}

/// Decodes `out.len()` values of weight row `r` from column `c0` (a multiple of 32 for the
/// quantized types).
fn decode_range(simd: Simd, w: &Matrix, r: usize, c0: usize, out: &mut [f32]) {
    let rb = w.row_bytes();
    let row = &w.bytes[r * rb..(r + 1) * rb];
    match w.dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(row[4 * c0..].chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(row[2 * c0..].chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::Q8_0 | DType::Q4_0 => {
            let bb = if w.dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
            let blocks = &row[c0 / BLOCK * bb..];
            for (o, b) in out.chunks_exact_mut(BLOCK).zip(blocks.chunks_exact(bb)) {
                simd.decode_block(w.dtype, b, o);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/linear.wgsl)

use super::kernel::{Kernel, KernelStyle, Shader, TypedKernel, Uniform, shader, u, uniform};
pub const SHADER: Shader = shader!("linear");

/// Input rows up to which the matrix–vector entry point is used (it reads the weights once per
/// input row; the tiled one once per 64 rows).
pub const MATVEC_MAX_ROWS: usize = 2;

uniform! {
    /// `Params` of shaders/linear.wgsl.
    pub struct LinearParams {
        /// Input rows.
        pub m: u32,
        /// Weight rows in this chunk.
        pub n: u32,
        /// Input columns.
        pub k: u32,
        /// Output columns of the whole layer.
        pub out_stride: u32,
        /// First output column (and bias index) of this chunk.
        pub out_offset: u32,
        /// Words per packed weight row.
        pub row_words: u32,
        _pad0: u32,
        _pad1: u32,
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
    /// The entry points without workgroup memory (`KernelStyle::Flat`).
    pub style: KernelStyle,
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
        match (self.style, self.matvec()) {
            (KernelStyle::Workgroup, true) => "matvec",
            (KernelStyle::Workgroup, false) => "tiled",
            (KernelStyle::Flat, true) => "matvec_flat",
            (KernelStyle::Flat, false) => "tiled_flat",
        }
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
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        match (self.style, self.matvec()) {
            (KernelStyle::Workgroup, true) => [u(self.rows.div_ceil(8)), u(self.m), 1],
            (KernelStyle::Workgroup, false) => [u(self.rows.div_ceil(64)), u(self.m.div_ceil(64)), 1],
            (KernelStyle::Flat, true) => [u(self.rows.div_ceil(64)), u(self.m), 1],
            // 8 × 8 invocations of 4 × 4 outputs each.
            (KernelStyle::Flat, false) => [u(self.rows.div_ceil(32)), u(self.m.div_ceil(32)), 1],
        }
    }
}

impl TypedKernel for LinearKernel {
    type Params = LinearParams;
    fn uniform(&self) -> LinearParams {
        LinearParams {
            m: u(self.m),
            n: u(self.rows),
            k: u(self.k),
            out_stride: u(self.n_total),
            out_offset: u(self.row0),
            row_words: u(row_words(self.dtype, self.k)),
            ..bytemuck::Zeroable::zeroed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked, threaded (by rows and by columns), SIMD and portable paths against a plain
    /// f64 loop over decoded rows.
    #[test]
    fn every_path_matches_a_plain_loop() {
        let philox = crate::ops::Philox::new(5);
        // Tails of every tile: rows (6-row and 4-row tiles), weight rows (16-wide strips) and,
        // for the float types, input columns (8-wide transposes; quantized ones come in 32s).
        let shapes = [(1, 37, 64), (2, 45, 96), (3, 33, 32), (4, 70, 64), (5, 33, 288), (9, 70, 544), (1, 1100, 1024), (64, 300, 512), (67, 41, 1056), (2, 1100, 1024), (7, 19, 37), (13, 35, 301), (6, 16, 5), (17, 45, 96), (24, 20, 64), (261, 40, 160)];
        for ((m, n, k), simd) in shapes.into_iter().flat_map(|s| [(s, Simd::detect()), (s, Simd::portable())]) {
            for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0].into_iter().filter(|d| k % 32 == 0 || !d.is_quantized()) {
                let values: Vec<f32> = (0..n * k).map(|j| 0.1 * philox.normal(0, j as u32, 1, 0)).collect();
                let x: Vec<f32> = (0..m * k).map(|j| philox.normal(1, j as u32, 2, 0)).collect();
                let bias: Vec<f32> = (0..n).map(|j| philox.normal(2, j as u32, 3, 0)).collect();
                let w = Matrix::encode(n, k, &values, dtype);
                let mut got = vec![f32::NAN; m * n];
                run(simd, &x, m, &Weights::new(w.clone()), Some(&bias), &mut got);
                let mut row = vec![0.0; k];
                for j in 0..n {
                    w.decode_row(j, &mut row);
                    for i in 0..m {
                        let xi = &x[i * k..(i + 1) * k];
                        let want: f64 = xi.iter().zip(&row).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() + bias[j] as f64;
                        let mag: f64 = xi.iter().zip(&row).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum::<f64>() + bias[j].abs() as f64;
                        let g = got[i * n + j] as f64;
                        assert!((g - want).abs() <= 2e-6 * mag + 1e-6, "{dtype} m={m} n={n} k={k} [{i}, {j}]: {g} vs {want}");
                    }
                }
            }
        }
    }
}
