//! Linear layer `y = x · Wᵀ + b` with W `[out, in]` in f32, f16, Q8_0 or Q4_0; quantized weights
//! are dequantized block by block inside the loop, never expanded whole.
//!
//! CPU twin layout: large layers are split across the persistent worker threads of
//! `ops::workers` (native targets): by input rows when there are enough of them (each thread
//! writes its own rows of the output), else by output columns;
//! up to 24 input rows (AVX2/FMA/F16C, detected at run time) or 3 (wasm SIMD in the wasm build,
//! `linear/simd128.rs`) take dot products straight off the stored quantized blocks;
//! more rows decode a panel of weight rows × a slice of the input width to f32 once and sweep
//! every input row over it: on x86-64 as a packed outer-product GEMM (`linear/gemm_avx2.rs`,
//! 6 × 16 register tiles), elsewhere as 4 × 3 tiles of dot products.

use crate::quant::{BLOCK, DType, Matrix, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

#[cfg(target_arch = "x86_64")]
mod gemm_avx2;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

/// Input rows from which the panel path is used (where quantized rows are not read directly).
const PANEL_MIN_ROWS: usize = 4;
/// Input rows up to which the AVX2 path reads quantized rows straight off their blocks, each
/// block decoded once per group of up to eight rows (measured: an 18-row screen is faster so, 32
/// rows per thread of a 64-row batch faster through the GEMM, whose packing pays off there).
const DIRECT_MAX_ROWS: usize = 24;
/// Weight rows and input columns of one decoded panel (36 × 512 f32 = 72 KiB).
const NC: usize = 36;
const KC: usize = 512;
/// Multiply–adds from which a call is split across threads (the 512 × 1024 trunk layers are, at
/// one row: the hand-off costs less than half their time).
#[cfg(not(target_arch = "wasm32"))]
const PARALLEL_MIN_MACS: usize = 1 << 18;
/// Input rows per thread from which threads split the rows rather than the columns (each
/// decodes and packs every weight block, which many rows amortise; 64 references measured faster
/// split by columns, 256 the same either way).
#[cfg(not(target_arch = "wasm32"))]
const ROW_SPLIT_MIN_ROWS: usize = 128;

/// A stored matrix with its quantized block scales widened to f32 once (`rows × cols / 32`
/// values; none for f32 / f16): the one-row dot products broadcast them instead of converting
/// an f16 per block and row.
#[derive(Clone, Debug)]
pub struct Weights {
    pub matrix: Matrix,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    scales: Vec<f32>,
}

impl Weights {
    pub fn new(matrix: Matrix) -> Weights {
        // Only the x86-64 kernels read them (the wasm ones measured no faster with them).
        let scales = match matrix.dtype {
            _ if !cfg!(target_arch = "x86_64") => Vec::new(),
            DType::Q8_0 => matrix.bytes.chunks_exact(Q8_0_BLOCK_BYTES).map(crate::quant::scale_of).collect(),
            DType::Q4_0 => matrix.bytes.chunks_exact(Q4_0_BLOCK_BYTES).map(crate::quant::scale_of).collect(),
            DType::F32 | DType::F16 => Vec::new(),
        };
        Weights { matrix, scales }
    }

    /// The f32 block scales of row `j`.
    #[cfg(target_arch = "x86_64")]
    fn row_scales(&self, j: usize) -> &[f32] {
        let per_row = self.matrix.cols / BLOCK;
        &self.scales[j * per_row..(j + 1) * per_row]
    }
}

impl std::ops::Deref for Weights {
    type Target = Matrix;
    fn deref(&self) -> &Matrix {
        &self.matrix
    }
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
    if threads() > 1 && m * n * k >= PARALLEL_MIN_MACS {
        if m >= ROW_SPLIT_MIN_ROWS * threads() {
            return by_rows(simd, x, m, w, bias, out, threads());
        }
        let threads = threads().min(n / 16).max(1);
        if threads > 1 {
            return parallel(simd, x, m, w, bias, out, threads);
        }
    }
    columns(simd, x, m, w, bias, 0, n, out, n);
}

/// Threads that share a large layer (see `ops::workers`).
#[cfg(not(target_arch = "wasm32"))]
pub fn threads() -> usize {
    super::workers::threads()
}

#[cfg(not(target_arch = "wasm32"))]
fn by_rows(simd: Simd, x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, out: &mut [f32], threads: usize) {
    let (n, k) = (w.rows, w.cols);
    // Multiples of the 4-row tile, so only the last part has a ragged tile.
    let step = m.div_ceil(threads).next_multiple_of(4);
    let parts: Vec<_> = x.chunks(step * k).zip(out.chunks_mut(step * n)).collect();
    super::workers::for_each(parts, |(xs, os)| columns(simd, xs, xs.len() / k, w, bias, 0, n, os, n));
}

#[cfg(not(target_arch = "wasm32"))]
fn parallel(simd: Simd, x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, out: &mut [f32], threads: usize) {
    let n = w.rows;
    let step = n.div_ceil(threads).next_multiple_of(8);
    if m == 1 {
        // One row: each part's columns are a contiguous slice of the output.
        let jobs: Vec<_> = out.chunks_mut(step).enumerate().collect();
        return super::workers::for_each(jobs, |(t, part)| {
            let a = t * step;
            columns(simd, x, m, w, bias, a, a + part.len(), part, part.len())
        });
    }
    let ranges: Vec<(usize, usize)> = (0..n).step_by(step).map(|a| (a, (a + step).min(n))).collect();
    let mut parts: Vec<Vec<f32>> = ranges.iter().map(|(a, b)| vec![0.0; m * (b - a)]).collect();
    let jobs: Vec<_> = ranges.iter().zip(parts.iter_mut()).collect();
    super::workers::for_each(jobs, |(&(a, b), part)| columns(simd, x, m, w, bias, a, b, part, b - a));
    for ((a, b), part) in ranges.iter().zip(&parts) {
        let len = b - a;
        for i in 0..m {
            out[i * n + a..i * n + b].copy_from_slice(&part[i * len..(i + 1) * len]);
        }
    }
}

/// Output columns `j0..j1` into `out[i · ld + (j − j0)]`.
#[allow(clippy::too_many_arguments)]
fn columns(simd: Simd, x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, j0: usize, j1: usize, out: &mut [f32], ld: usize) {
    let k = w.cols;
    let direct = matches!(w.dtype, DType::Q8_0 | DType::Q4_0) && m <= simd.direct_rows();
    #[cfg(target_arch = "x86_64")]
    if direct && simd.avx2 {
        return direct_avx2(x, m, w, bias, j0, j1, out, ld);
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

/// Quantized rows read straight off their blocks for `m` ≤ `DIRECT_MAX_ROWS` input rows (AVX2):
/// one input row takes four weight rows per pass (each input vector loaded once for the four),
/// more input rows take one weight row per pass (each block decoded once for all of them).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn direct_avx2(x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, j0: usize, j1: usize, out: &mut [f32], ld: usize) {
    let (k, rb) = (w.cols, w.row_bytes());
    let mut j = j0;
    if m == 1 {
        while j + 4 <= j1 {
            let rows: [&[u8]; 4] = std::array::from_fn(|r| &w.bytes[(j + r) * rb..(j + r + 1) * rb]);
            let scales: [&[f32]; 4] = std::array::from_fn(|r| w.row_scales(j + r));
            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`); whole rows.
            let sums = unsafe { avx2::dot4(w.dtype, rows, scales, x) };
            for (r, s) in sums.iter().enumerate() {
                out[j + r - j0] = s + bias.map_or(0.0, |b| b[j + r]);
            }
            j += 4;
        }
    }
    // At most eight input rows at a time (twelve registers: eight sums, four decoded vectors),
    // in groups of equal size (10 rows as 5 + 5, not 8 + 2).
    let group = m.div_ceil(m.div_ceil(8));
    for i0 in (0..m).step_by(group) {
        let m = (m - i0).min(group);
        let x = &x[i0 * k..];
        let out = &mut out[i0 * ld..];
        for jj in j..j1 {
            let (row, scales) = (&w.bytes[jj * rb..(jj + 1) * rb], w.row_scales(jj));
            let mut sums = [0.0f32; 8];
            macro_rules! rows {
                ($($m:literal)*) => {
                    match m {
                        $($m => {
                            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`); `row` and
                            // `scales` hold k / 32 blocks, `x` m rows of k.
                            let r = unsafe { avx2::dot_rows::<$m>(w.dtype, row, scales, x, k) };
                            sums[..$m].copy_from_slice(&r);
                        })*
                        _ => unreachable!("direct rows"),
                    }
                };
            }
            rows!(1 2 3 4 5 6 7 8);
            let b = bias.map_or(0.0, |b| b[jj]);
            for (i, s) in sums.iter().enumerate().take(m) {
                out[i * ld + jj - j0] = s + b;
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

/// Which instruction set the inner loops use (run-time detection on x86-64; on wasm32, simd128
/// when the build enables it).
#[derive(Clone, Copy)]
struct Simd {
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    simd128: bool,
}

impl Simd {
    fn detect() -> Simd {
        Simd {
            #[cfg(target_arch = "x86_64")]
            avx2: std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c"),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            simd128: true,
        }
    }

    /// The plain-Rust loops only (the path of other architectures), for tests.
    #[cfg(test)]
    fn portable() -> Simd {
        Simd {
            #[cfg(target_arch = "x86_64")]
            avx2: false,
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            simd128: false,
        }
    }

    fn avx2(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.avx2
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    fn simd128(self) -> bool {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            self.simd128
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        {
            false
        }
    }

    /// One Q8_0 / Q4_0 block to its 32 values.
    fn decode_block(self, dtype: DType, b: &[u8], out: &mut [f32]) {
        let q8 = dtype == DType::Q8_0;
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 and F16C (checked in `detect`); one block, 32 values.
            return unsafe { if q8 { avx2::decode_q8_0(b, out) } else { avx2::decode_q4_0(b, out) } };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if self.simd128 {
            return if q8 { simd128::decode_q8_0(b, out) } else { simd128::decode_q4_0(b, out) };
        }
        if q8 { crate::quant::dequantize_q8_0_block(b, out) } else { crate::quant::dequantize_q4_0_block(b, out) }
    }

    /// Input rows up to which `dot_quant` reads quantized rows straight off their blocks (0: it
    /// does not exist here).
    fn direct_rows(self) -> usize {
        if self.avx2() {
            DIRECT_MAX_ROWS
        } else if self.simd128() {
            PANEL_MIN_ROWS - 1
        } else {
            0
        }
    }

    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`).
            return unsafe { avx2::dot(a, b) };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if self.simd128 {
            return simd128::dot(a, b);
        }
        dot(a, b)
    }

    /// Dot products of a Q8_0 / Q4_0 row (stored blocks) with the `m` ≤ 3 rows of `x` (first `m`
    /// sums); the wasm SIMD path of `direct_rows`.
    fn dot_quant(self, dtype: DType, row: &[u8], x: &[f32], m: usize) -> [f32; 3] {
        assert!((1..PANEL_MIN_ROWS).contains(&m), "dot_quant rows");
        let k = x.len() / m;
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if self.simd128 {
            // One widening of each block serves every input row.
            let r = |i: usize| &x[i * k..(i + 1) * k];
            let q8 = dtype == DType::Q8_0;
            return match m {
                1 => {
                    let [a] = if q8 { simd128::dot_q8_0(row, [r(0)]) } else { simd128::dot_q4_0(row, [r(0)]) };
                    [a, 0.0, 0.0]
                }
                2 => {
                    let [a, b] = if q8 { simd128::dot_q8_0(row, [r(0), r(1)]) } else { simd128::dot_q4_0(row, [r(0), r(1)]) };
                    [a, b, 0.0]
                }
                _ => {
                    let rs = [r(0), r(1), r(2)];
                    if q8 { simd128::dot_q8_0(row, rs) } else { simd128::dot_q4_0(row, rs) }
                }
            };
        }
        let _ = (dtype, row, k);
        unreachable!("dot_quant without a SIMD path")
    }

    /// The 4 × 3 dot products of four input slices with three weight slices (all of one length).
    fn tile(self, xs: [&[f32]; 4], ws: [&[f32]; 3]) -> [[f32; 3]; 4] {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`); the slices have one length.
            return unsafe { avx2::tile(xs, ws) };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if self.simd128 {
            return simd128::tile(xs, ws);
        }
        std::array::from_fn(|a| std::array::from_fn(|c| dot(xs[a], ws[c])))
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::quant::{BLOCK, DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn scale(b: &[u8]) -> f32 {
        let bits = u16::from_le_bytes([b[0], b[1]]) as i32;
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
    }

    /// # Safety
    /// AVX2 and FMA; `a` and `b` have one length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut p = 0;
        // SAFETY: every load reads 8 values below `n`.
        unsafe {
            while p + 16 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(p)), _mm256_loadu_ps(pb.add(p)), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(p + 8)), _mm256_loadu_ps(pb.add(p + 8)), s1);
                p += 16;
            }
            if p + 8 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(p)), _mm256_loadu_ps(pb.add(p)), s0);
                p += 8;
            }
        }
        let tail: f32 = a[p..n].iter().zip(&b[p..n]).map(|(x, y)| x * y).sum();
        hsum(_mm256_add_ps(s0, s1)) + tail
    }

    /// A Q8_0 block's 32 quants (after the 2 scale bytes at `q − 2`) as four 8-lane f32 vectors.
    ///
    /// # Safety
    /// AVX2; 32 readable bytes at `q`.
    #[target_feature(enable = "avx2")]
    unsafe fn quants_q8_0(q: *const u8) -> [__m256; 4] {
        // SAFETY: 4 × 8 bytes at `q` (caller).
        std::array::from_fn(|t| unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8 * t) as *const __m128i))) })
    }

    /// A Q4_0 block's 32 quants minus 8 (GGML order: low nibbles are values 0–15, high 16–31).
    ///
    /// # Safety
    /// AVX2; 16 readable bytes at `q`.
    #[target_feature(enable = "avx2")]
    unsafe fn quants_q4_0(q: *const u8) -> [__m256; 4] {
        // SAFETY: 16 bytes at `q` (caller).
        let raw = unsafe { _mm_loadu_si128(q as *const __m128i) };
        let (mask, eight) = (_mm_set1_epi8(0x0f), _mm_set1_epi8(8));
        let lo = _mm_sub_epi8(_mm_and_si128(raw, mask), eight);
        let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), eight);
        [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)].map(|v| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)))
    }

    /// Four Q8_0 / Q4_0 rows against one input row: each 8 input values are loaded once for all
    /// four.
    ///
    /// # Safety
    /// AVX2 and FMA; each row holds `x.len() / 32` blocks of `dtype` and each `scales` entry as
    /// many values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4(dtype: DType, rows: [&[u8]; 4], scales: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
        // SAFETY: as the caller's.
        unsafe { if dtype == DType::Q8_0 { dot4_of::<true>(rows, scales, x) } else { dot4_of::<false>(rows, scales, x) } }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot4_of<const Q8: bool>(rows: [&[u8]; 4], scales: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
        let bb = if Q8 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
        let mut acc = [_mm256_setzero_ps(); 4];
        for (blk, xs) in x.chunks_exact(BLOCK).enumerate() {
            let p = xs.as_ptr();
            // SAFETY: block `blk` of each row is whole; `xs` has 32 values.
            unsafe {
                let xv: [__m256; 4] = std::array::from_fn(|t| _mm256_loadu_ps(p.add(8 * t)));
                for ((a, row), d) in acc.iter_mut().zip(rows).zip(scales) {
                    let q = row.as_ptr().add(blk * bb + 2);
                    let v = if Q8 { quants_q8_0(q) } else { quants_q4_0(q) };
                    let s = _mm256_mul_ps(v[0], xv[0]);
                    let s = _mm256_fmadd_ps(v[1], xv[1], s);
                    let s = _mm256_fmadd_ps(v[2], xv[2], s);
                    let s = _mm256_fmadd_ps(v[3], xv[3], s);
                    *a = _mm256_fmadd_ps(_mm256_broadcast_ss(d.get_unchecked(blk)), s, *a);
                }
            }
        }
        acc.map(|a| hsum(a))
    }

    /// One Q8_0 / Q4_0 row (`scales.len()` blocks) against `M` rows of `x` (row `i` from
    /// `i · ldx`): each block is decoded and scaled once.
    ///
    /// # Safety
    /// AVX2 and FMA; `row` holds `scales.len()` blocks of `dtype`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows<const M: usize>(dtype: DType, row: &[u8], scales: &[f32], x: &[f32], ldx: usize) -> [f32; M] {
        assert!(x.len() >= (M - 1) * ldx + scales.len() * BLOCK, "dot_rows input");
        // SAFETY: as the caller's.
        unsafe {
            if dtype == DType::Q8_0 { dot_rows_of::<M, true>(row, scales, x, ldx) } else { dot_rows_of::<M, false>(row, scales, x, ldx) }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_rows_of<const M: usize, const Q8: bool>(row: &[u8], scales: &[f32], x: &[f32], ldx: usize) -> [f32; M] {
        let bb = if Q8 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
        let mut acc = [_mm256_setzero_ps(); M];
        let xp = x.as_ptr();
        for (blk, d) in scales.iter().enumerate() {
            // SAFETY: block `blk` of `row` is whole; x[i · ldx + 32 · blk ..][..32] for i < M.
            unsafe {
                let q = row.as_ptr().add(blk * bb + 2);
                let d = _mm256_broadcast_ss(d);
                let v = if Q8 { quants_q8_0(q) } else { quants_q4_0(q) }.map(|v| _mm256_mul_ps(v, d));
                for (i, a) in acc.iter_mut().enumerate() {
                    let p = xp.add(i * ldx + blk * BLOCK);
                    for (t, vt) in v.iter().enumerate() {
                        *a = _mm256_fmadd_ps(*vt, _mm256_loadu_ps(p.add(8 * t)), *a);
                    }
                }
            }
        }
        acc.map(|a| hsum(a))
    }

    /// One Q8_0 block to 32 f32 (the same products as `quant::dequantize_q8_0_block`).
    ///
    /// # Safety
    /// AVX2 and F16C; `out` holds 32 values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn decode_q8_0(b: &[u8], out: &mut [f32]) {
        let d = _mm256_set1_ps(scale(b));
        let (q, o) = (b[2..].as_ptr(), out.as_mut_ptr());
        // SAFETY: 32 quants after the scale, 32 values out.
        unsafe {
            for t in 0..4 {
                let v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8 * t) as *const __m128i)));
                _mm256_storeu_ps(o.add(8 * t), _mm256_mul_ps(v, d));
            }
        }
    }

    /// One Q4_0 block to 32 f32 (the same products as `quant::dequantize_q4_0_block`).
    ///
    /// # Safety
    /// AVX2 and F16C; `out` holds 32 values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn decode_q4_0(b: &[u8], out: &mut [f32]) {
        let d = _mm256_set1_ps(scale(b));
        let o = out.as_mut_ptr();
        let mask = _mm_set1_epi8(0x0f);
        let eight = _mm_set1_epi8(8);
        // SAFETY: 16 nibble bytes after the scale, 32 values out.
        unsafe {
            let raw = _mm_loadu_si128(b[2..].as_ptr() as *const __m128i);
            let lo = _mm_sub_epi8(_mm_and_si128(raw, mask), eight);
            let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), eight);
            for (t, v) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)].into_iter().enumerate() {
                let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
                _mm256_storeu_ps(o.add(8 * t), _mm256_mul_ps(f, d));
            }
        }
    }


    /// # Safety
    /// AVX2 and FMA; all six slices have one length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile(xs: [&[f32]; 4], ws: [&[f32]; 3]) -> [[f32; 3]; 4] {
        let n = ws[0].len();
        let mut acc = [[_mm256_setzero_ps(); 3]; 4];
        let x = [xs[0].as_ptr(), xs[1].as_ptr(), xs[2].as_ptr(), xs[3].as_ptr()];
        let w = [ws[0].as_ptr(), ws[1].as_ptr(), ws[2].as_ptr()];
        let mut p = 0;
        // SAFETY: every load reads 8 values below `n`.
        unsafe {
            while p + 8 <= n {
                let w0 = _mm256_loadu_ps(w[0].add(p));
                let w1 = _mm256_loadu_ps(w[1].add(p));
                let w2 = _mm256_loadu_ps(w[2].add(p));
                for a in 0..4 {
                    let xv = _mm256_loadu_ps(x[a].add(p));
                    acc[a][0] = _mm256_fmadd_ps(xv, w0, acc[a][0]);
                    acc[a][1] = _mm256_fmadd_ps(xv, w1, acc[a][1]);
                    acc[a][2] = _mm256_fmadd_ps(xv, w2, acc[a][2]);
                }
                p += 8;
            }
        }
        let mut out = [[0.0f32; 3]; 4];
        for a in 0..4 {
            // Three horizontal sums at once: lanes of hadd(hadd(c0, c1), hadd(c2, c2)) hold
            // partial sums of c0, c1, c2, c2 in each half.
            let h = _mm256_hadd_ps(_mm256_hadd_ps(acc[a][0], acc[a][1]), _mm256_hadd_ps(acc[a][2], acc[a][2]));
            let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            let mut v = [0.0f32; 4];
            // SAFETY: `v` holds 4 values.
            unsafe { _mm_storeu_ps(v.as_mut_ptr(), s) };
            for c in 0..3 {
                let tail: f32 = xs[a][p..n].iter().zip(&ws[c][p..n]).map(|(u, v)| u * v).sum();
                out[a][c] = v[c] + tail;
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/linear.wgsl)

use super::kernel::{Kernel, KernelStyle, Shader, u};
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
                scales.push(crate::quant::scale_of(b));
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
        let rw = row_words(self.dtype, self.k);
        vec![u(self.m), u(self.rows), u(self.k), u(self.n_total), u(self.row0), u(rw), 0, 0]
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
