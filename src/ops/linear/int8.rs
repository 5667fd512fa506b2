//! The integer path of the linear layer for Q8_0 / Q4_0 weights (`CpuKernels::Integer`): each
//! input row is quantized in blocks of 32 values with one f32 scale per block, either to 8 bits
//! (Q8_0 as in GGML: `d = max|x| / 127`) or to 16 bits (`d = max|x| / 32767`), `q = round(x / d)`
//! to nearest even; each block of a weight row is multiplied with the input's block as 32 integer
//! products summed exactly in i32, and the block sums are scaled by `d_weight · d_input` and
//! added in f32.
//!
//! This is a different function from the f32 twin (`super::cpu`), which keeps the inputs in f32:
//! the inputs' rounding adds up to half a step of each block per value. The f32 twin stays the
//! oracle; this path is tested against the plain integer loops here (exactly, block by block)
//! and against the f32 path on the whole model (`tests/int8.rs`, the error budget, which 8-bit
//! inputs miss on the shipped models and 16-bit inputs meet: `layer_by_layer_errors` there prints
//! each layer's share).
//!
//! x86-64 with AVX2 (run-time detection): 8-bit inputs take 32 products per block in one
//! `vpmaddubsw` on `|w|` and `sign(x, w)` (exact: |w| ≤ 128 and |x| ≤ 127 keep each pair of
//! products within i16), widened to i32 by `vpmaddwd`; 16-bit inputs take two `vpmaddwd` on the
//! weights widened to i16 (|w · x| ≤ 2^22). Where the CPU has AVX-VNNI (also detected at run
//! time), 8-bit inputs take `vpdpbusd`, which multiplies and adds into i32 in one instruction: the
//! same integers, so the same bits. wasm32 (simd128): `i32x4.dot_i16x8_s` on both widened
//! to i16 (`super::int8_simd128`). Elsewhere the plain loops. Large calls split over the
//! worker threads like the f32 path, and large inputs are swept in slices of the input width so
//! that a panel of weight rows stays in cache while every input row passes over it.

use crate::quant::{BLOCK, DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

use super::Weights;

/// Input values per slice of the width (blocks of 32): one panel of `PANEL_ROWS` weight rows
/// over this slice is ≤ 68 KiB of Q8_0.
const KC: usize = 2048;
/// Weight rows per panel.
const PANEL_ROWS: usize = 32;
/// Input rows per pass over a weight row (one decoded block serves all of them).
const MR: usize = 4;

/// How finely the integer path quantizes a layer's inputs (blocks of 32 values, one f32 scale
/// each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bits {
    /// i8, ±127 (GGML's Q8_0 with an f32 scale).
    Eight,
    /// i16, ±32767.
    Sixteen,
}

impl Bits {
    fn max(self) -> f32 {
        match self {
            Bits::Eight => 127.0,
            Bits::Sixteen => 32767.0,
        }
    }
}

/// Input rows quantized in blocks: `q` is `[m, k]` quants (i8 or i16 as `bits` says, stored
/// widened to i16 for the plain loops and as their own width for the kernels), `d` the f32 scale
/// of each block (`[m, k / 32]`).
#[derive(Clone, Debug, PartialEq)]
pub struct QRows {
    pub m: usize,
    pub k: usize,
    pub bits: Bits,
    /// The quants as stored for the kernels: i8 or little-endian i16.
    bytes: Vec<u8>,
    pub d: Vec<f32>,
}

impl QRows {
    /// Bytes of row `i`'s quants and its block scales (the SIMD kernels' view).
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "wasm32")), allow(dead_code))]
    fn row(&self, i: usize) -> (&[u8], &[f32]) {
        let (b, w) = (self.k / BLOCK, self.width());
        (&self.bytes[i * self.k * w..(i + 1) * self.k * w], &self.d[i * b..(i + 1) * b])
    }

    fn width(&self) -> usize {
        if self.bits == Bits::Eight { 1 } else { 2 }
    }

    /// Quant `c` of row `i`.
    pub fn quant(&self, i: usize, c: usize) -> i32 {
        let p = (i * self.k + c) * self.width();
        match self.bits {
            Bits::Eight => self.bytes[p] as i8 as i32,
            Bits::Sixteen => i16::from_le_bytes([self.bytes[p], self.bytes[p + 1]]) as i32,
        }
    }
}

/// Quantizes `m` rows of `k` values (`k` a multiple of 32) in blocks of `bits`.
pub fn quantize_rows(x: &[f32], m: usize, k: usize, bits: Bits) -> QRows {
    assert!(k % BLOCK == 0 && x.len() == m * k, "int8 input of {} values as [{m}, {k}]", x.len());
    let w = if bits == Bits::Eight { 1 } else { 2 };
    let mut bytes = vec![0u8; m * k * w];
    let mut d = vec![0.0f32; m * k / BLOCK];
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    let rows = |xs: &[f32], qs: &mut [u8], ds: &mut [f32]| {
        for ((xb, qb), db) in xs.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK * w)).zip(ds.iter_mut()) {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: AVX2 detected; 32 values in, 32 quants out.
                *db = unsafe { avx2::quantize_block(xb, qb, bits) };
                continue;
            }
            *db = quantize_block(xb, qb, bits);
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = crate::ops::workers::threads().min(m);
        if threads > 1 && m * k >= 1 << 16 {
            let step = m.div_ceil(threads);
            let parts: Vec<_> = x.chunks(step * k).zip(bytes.chunks_mut(step * k * w)).zip(d.chunks_mut(step * k / BLOCK)).collect();
            crate::ops::workers::for_each(parts, |((xs, qs), ds)| rows(xs, qs, ds));
            return QRows { m, k, bits, bytes, d };
        }
    }
    rows(x, &mut bytes, &mut d);
    QRows { m, k, bits, bytes, d }
}

/// One block of 32 values: returns the scale, writes the quants (i8, or little-endian i16). The
/// AVX2 version does the same IEEE operations (`max |x|`, `/ max`, `1 / d`, `x · (1 / d)`
/// rounded to nearest even), so both give the same bits. A block whose scale would be below the
/// smallest normal f32 is all zeros, so that `1 / d` stays finite.
fn quantize_block(x: &[f32], q: &mut [u8], bits: Bits) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let top = bits.max();
    let d = amax / top;
    let d = if d < f32::MIN_POSITIVE { 0.0 } else { d };
    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
    for (t, v) in x.iter().enumerate() {
        let r = (v * inv).round_ties_even().clamp(-top, top);
        match bits {
            Bits::Eight => q[t] = r as i8 as u8,
            Bits::Sixteen => q[2 * t..2 * t + 2].copy_from_slice(&(r as i16).to_le_bytes()),
        }
    }
    d
}

/// The exact integer dot product of one Q8_0 / Q4_0 weight block (its stored bytes, scale
/// first) with the 32 input quants `x(t)`: the reference of the SIMD kernels.
pub fn block_dot(dtype: DType, block: &[u8], x: impl Fn(usize) -> i32) -> i32 {
    match dtype {
        DType::Q8_0 => block[2..Q8_0_BLOCK_BYTES].iter().enumerate().map(|(t, &w)| (w as i8) as i32 * x(t)).sum(),
        DType::Q4_0 => (0..16)
            .map(|j| {
                let b = block[2 + j];
                ((b & 0x0f) as i32 - 8) * x(j) + ((b >> 4) as i32 - 8) * x(j + 16)
            })
            .sum(),
        DType::F32 | DType::F16 => unreachable!("integer dot of {dtype} weights"),
    }
}

/// The integer dot products of every block of a weight row (stored bytes) with row `i` of `x`,
/// in i32: what the x86-64 kernels sum (`Kernel::Avx2`, `Kernel::AvxVnni`; the CPU must have
/// them) or the plain loop (any other), for the exactness tests.
pub fn block_dots(dtype: DType, row: &[u8], x: &QRows, i: usize, kernel: Kernel) -> Vec<i32> {
    let bb = block_bytes(dtype);
    assert_eq!(row.len() / bb * BLOCK, x.k, "block_dots widths");
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, Kernel::Avx2 | Kernel::AvxVnni) {
        assert!(kernel.available(), "{kernel:?} kernels on this CPU");
        // SAFETY: the kernel's features (asserted above); whole blocks on both sides (checked above).
        return unsafe { avx2::block_dots(dtype, row, x.row(i).0, x.bits, kernel == Kernel::AvxVnni) };
    }
    let _ = kernel;
    row.chunks_exact(bb).enumerate().map(|(blk, b)| block_dot(dtype, b, |t| x.quant(i, blk * BLOCK + t))).collect()
}

fn block_bytes(dtype: DType) -> usize {
    match dtype {
        DType::Q8_0 => Q8_0_BLOCK_BYTES,
        DType::Q4_0 => Q4_0_BLOCK_BYTES,
        DType::F32 | DType::F16 => unreachable!("integer path of {dtype} weights"),
    }
}

/// Whether the integer path takes weights of this encoding (Q8_0 and Q4_0; f32 / f16 layers stay
/// on the f32 path).
pub fn takes(dtype: DType) -> bool {
    dtype.is_quantized()
}

/// `y = x · Wᵀ + b` on the integer path with inputs quantized to `bits`: `x` is `[m, w.cols]`,
/// `out` `[m, w.rows]`; `w` is Q8_0 or Q4_0.
pub fn cpu(x: &[f32], m: usize, w: &Weights, bits: Bits, bias: Option<&[f32]>, out: &mut [f32]) {
    run(Kernel::detect(), x, m, w, bits, bias, out)
}

/// Which inner loops run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 with AVX-VNNI's multiply–add into i32 (VEX-encoded, 256-bit; CPUs with AVX-512 VNNI
    /// have it too).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// Chosen at compile time: the wasm build enables simd128.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Kernel {
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return if std::arch::is_x86_feature_detected!("avxvnni") { Kernel::AvxVnni } else { Kernel::Avx2 };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return Kernel::Simd128;
        #[allow(unreachable_code)]
        Kernel::Portable
    }

    /// The SIMD loops compiled for this target that this CPU runs (tests and benchmarks compare
    /// each with the plain loops; `detect` picks the last).
    pub fn simd() -> Vec<Kernel> {
        #[cfg(target_arch = "x86_64")]
        let all = vec![Kernel::Avx2, Kernel::AvxVnni];
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let all = vec![Kernel::Simd128];
        #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
        let all = Vec::new();
        all.into_iter().filter(|k| k.available()).collect()
    }

    /// Whether this CPU runs these loops.
    pub fn available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => Kernel::Avx2.available() && std::arch::is_x86_feature_detected!("avxvnni"),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => true,
        }
    }
}

/// `cpu` with the inner loops of `kernel` (tests and benchmarks compare them; the CPU must run
/// them).
pub fn run(kernel: Kernel, x: &[f32], m: usize, w: &Weights, bits: Bits, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    assert!(takes(w.dtype), "integer path of {} weights", w.dtype);
    assert_eq!(x.len(), m * k, "linear input");
    assert_eq!(out.len(), m * n, "linear output");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "linear bias");
    }
    // The unsafe SIMD calls below rely on this.
    assert!(kernel.available(), "{kernel:?} kernels on this CPU");
    // The SIMD kernels read the widened block scales (`Weights::with_block_scales`).
    let kernel = if w.scales.is_empty() { Kernel::Portable } else { kernel };
    let xq = quantize_rows(x, m, k, bits);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = crate::ops::workers::threads();
        // The f32 path's threshold: waking a worker costs more than small layers take.
        if threads > 1 && m * n * k >= super::threads::PARALLEL_MIN_MACS {
            // Whole rows per thread when each gets a few tiles of rows, else ranges of columns.
            if m >= 4 * MR * threads {
                let step = m.div_ceil(threads).next_multiple_of(MR);
                let parts: Vec<_> = out.chunks_mut(step * n).enumerate().collect();
                return crate::ops::workers::for_each(parts, |(p, o)| {
                    let i0 = p * step;
                    block(kernel, &xq, i0, i0 + o.len() / n, w, bias, 0, n, o, n)
                });
            }
            let threads = threads.min(n / 16).max(1);
            if threads > 1 {
                let step = n.div_ceil(threads).next_multiple_of(4);
                let ranges: Vec<(usize, usize)> = (0..n).step_by(step).map(|a| (a, (a + step).min(n))).collect();
                if m == 1 {
                    let jobs: Vec<_> = out.chunks_mut(step).zip(&ranges).collect();
                    return crate::ops::workers::for_each(jobs, |(o, &(a, b))| block(kernel, &xq, 0, 1, w, bias, a, b, o, b - a));
                }
                let mut parts: Vec<Vec<f32>> = ranges.iter().map(|(a, b)| vec![0.0; m * (b - a)]).collect();
                let jobs: Vec<_> = ranges.iter().zip(parts.iter_mut()).collect();
                crate::ops::workers::for_each(jobs, |(&(a, b), part)| block(kernel, &xq, 0, m, w, bias, a, b, part, b - a));
                for ((a, b), part) in ranges.iter().zip(&parts) {
                    let len = b - a;
                    for i in 0..m {
                        out[i * n + a..i * n + b].copy_from_slice(&part[i * len..(i + 1) * len]);
                    }
                }
                return;
            }
        }
    }
    block(kernel, &xq, 0, m, w, bias, 0, n, out, n)
}

/// Input rows `i0..i1` × output columns `j0..j1` into `out[(i − i0) · ld + (j − j0)]`: bias
/// first, then one slice of the input width at a time, a panel of weight rows per slice.
#[allow(clippy::too_many_arguments)]
fn block(kernel: Kernel, xq: &QRows, i0: usize, i1: usize, w: &Weights, bias: Option<&[f32]>, j0: usize, j1: usize, out: &mut [f32], ld: usize) {
    let k = w.cols;
    let (bb, rb) = (block_bytes(w.dtype), w.row_bytes());
    for i in i0..i1 {
        for j in j0..j1 {
            out[(i - i0) * ld + j - j0] = bias.map_or(0.0, |b| b[j]);
        }
    }
    for kc in (0..k).step_by(KC) {
        let kl = KC.min(k - kc);
        let (b0, nb) = (kc / BLOCK, kl / BLOCK);
        for jc in (j0..j1).step_by(PANEL_ROWS) {
            let jn = PANEL_ROWS.min(j1 - jc);
            let mut i = i0;
            while i < i1 {
                let mr = MR.min(i1 - i);
                let mut j = jc;
                // One input row (two on x86-64): four weight rows per pass, each input block
                // loaded once for them and each weight block once for the inputs.
                #[cfg(target_arch = "x86_64")]
                let pass_rows = if matches!(kernel, Kernel::Avx2 | Kernel::AvxVnni) { 2 } else { 1 };
                #[cfg(not(target_arch = "x86_64"))]
                let pass_rows = 1;
                if mr <= pass_rows {
                    while j + 4 <= jc + jn {
                        let rows: [&[u8]; 4] = std::array::from_fn(|r| &w.bytes[(j + r) * rb + b0 * bb..(j + r) * rb + (b0 + nb) * bb]);
                        let input = |a: usize| {
                            let (xs, xd) = xq.row(i + a);
                            (&xs[kc * xq.width()..(kc + kl) * xq.width()], &xd[b0..b0 + nb])
                        };
                        let sums: [[f32; 4]; 2] = match kernel {
                            #[cfg(target_arch = "x86_64")]
                            Kernel::Avx2 | Kernel::AvxVnni => {
                                let scales = std::array::from_fn(|r| &w.row_scales(j + r)[b0..b0 + nb]);
                                let vnni = kernel == Kernel::AvxVnni;
                                // SAFETY: the kernel's features detected (`run`'s caller); each row holds `nb`
                                // blocks, each input 32·nb quants and nb scales.
                                unsafe {
                                    if mr == 1 {
                                        [avx2::dot4(w.dtype, rows, scales, [input(0)], xq.bits, vnni)[0], [0.0; 4]]
                                    } else {
                                        avx2::dot4(w.dtype, rows, scales, [input(0), input(1)], xq.bits, vnni)
                                    }
                                }
                            }
                            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                            Kernel::Simd128 => {
                                let (xs, xd) = input(0);
                                let scales = std::array::from_fn(|r| &w.row_scales(j + r)[b0..b0 + nb]);
                                [super::int8_simd128::dot4(w.dtype == DType::Q8_0, rows, scales, xs, xd, xq.bits == Bits::Sixteen), [0.0; 4]]
                            }
                            Kernel::Portable => [rows.map(|row| portable_dot(w.dtype, row, xq, i, kc)), [0.0; 4]],
                        };
                        for (a, row_sums) in sums.iter().enumerate().take(mr) {
                            for (r, s) in row_sums.iter().enumerate() {
                                out[(i + a - i0) * ld + j + r - j0] += s;
                            }
                        }
                        j += 4;
                    }
                }
                for jj in j..jc + jn {
                    let row = &w.bytes[jj * rb + b0 * bb..jj * rb + (b0 + nb) * bb];
                    let mut sums = [0.0f32; MR];
                    match kernel {
                        #[cfg(target_arch = "x86_64")]
                        Kernel::Avx2 | Kernel::AvxVnni => {
                            let scales = &w.row_scales(jj)[b0..b0 + nb];
                            let vnni = kernel == Kernel::AvxVnni;
                            macro_rules! rows {
                                ($($m:literal)*) => {
                                    match mr {
                                        $($m => {
                                            let xs: [(&[u8], &[f32]); $m] = std::array::from_fn(|a| {
                                                let (q, d) = xq.row(i + a);
                                                (&q[kc * xq.width()..(kc + kl) * xq.width()], &d[b0..b0 + nb])
                                            });
                                            // SAFETY: the kernel's features detected; `row` holds `nb` blocks, each input
                                            // 32·nb quants and nb scales.
                                            let r = unsafe { avx2::dot_rows::<$m>(w.dtype, row, scales, xs, xq.bits, vnni) };
                                            sums[..$m].copy_from_slice(&r);
                                        })*
                                        _ => unreachable!("int8 rows"),
                                    }
                                };
                            }
                            rows!(1 2 3 4);
                        }
                        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                        Kernel::Simd128 => {
                            let scales = &w.row_scales(jj)[b0..b0 + nb];
                            let xs: [(&[u8], &[f32]); MR] = std::array::from_fn(|a| {
                                let (q, d) = xq.row((i + a).min(i1 - 1));
                                (&q[kc * xq.width()..(kc + kl) * xq.width()], &d[b0..b0 + nb])
                            });
                            super::int8_simd128::dot_inputs(w.dtype == DType::Q8_0, row, scales, &xs[..mr], xq.bits == Bits::Sixteen, &mut sums);
                        }
                        Kernel::Portable => {
                            for (a, s) in sums.iter_mut().enumerate().take(mr) {
                                *s = portable_dot(w.dtype, row, xq, i + a, kc);
                            }
                        }
                    }
                    for (a, s) in sums.iter().enumerate().take(mr) {
                        out[(i + a - i0) * ld + jj - j0] += s;
                    }
                }
                i += mr;
            }
        }
    }
}

/// Σ over the blocks of `row` (from input column `c0`) of `d_w · d_x · (integer block dot)` with
/// row `i` of `x`, in order, in f32.
fn portable_dot(dtype: DType, row: &[u8], x: &QRows, i: usize, c0: usize) -> f32 {
    let bb = block_bytes(dtype);
    let mut acc = 0.0f32;
    for (blk, b) in row.chunks_exact(bb).enumerate() {
        let c = c0 + blk * BLOCK;
        let dx = x.d[(i * x.k + c) / BLOCK];
        acc += crate::quant::scale_of(b) * dx * block_dot(dtype, b, |t| x.quant(i, c + t)) as f32;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The AVX2 inner loops of the integer path.

    use std::arch::x86_64::*;

    use super::Bits;
    use super::super::avx2::hsum;
    use crate::quant::{BLOCK, DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

    /// A block's 32 weight quants as i8 (Q4_0: nibble − 8, GGML order: low nibbles are values
    /// 0–15, high nibbles 16–31), from its quants at `q` (after the scale).
    ///
    /// # Safety
    /// AVX2; 32 (Q8_0) or 16 (Q4_0) readable bytes at `q`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn weights<const Q8: bool>(q: *const u8) -> __m256i {
        // SAFETY: as the caller's.
        unsafe {
            if Q8 {
                _mm256_loadu_si256(q as *const __m256i)
            } else {
                let raw = _mm_loadu_si128(q as *const __m128i);
                let mask = _mm_set1_epi8(0x0f);
                let lo = _mm_and_si128(raw, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
                _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
            }
        }
    }

    /// Eight i32 lanes that sum to Σ w·x over one block of weights `w` (i8) and the input quants
    /// at `x`. 8-bit inputs: `vpmaddubsw(|w|, sign(x, w))`, exact because |w| ≤ 128 and |x| ≤ 127
    /// (a pair of products ≤ 32,512 fits i16), then `vpmaddwd` with ones; `aw` is `|w|`. 16-bit
    /// inputs: the weights widened to i16, two `vpmaddwd` (a lane sums four products ≤ 2^22).
    ///
    /// # Safety
    /// AVX2; 32 quants at `x` (32 or 64 bytes).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn mul_sum<const WIDE: bool>(aw: __m256i, w: __m256i, x: *const u8) -> __m256i {
        // SAFETY: as the caller's.
        unsafe {
            if WIDE {
                let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w));
                let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1));
                let a = _mm256_madd_epi16(lo, _mm256_loadu_si256(x as *const __m256i));
                let b = _mm256_madd_epi16(hi, _mm256_loadu_si256(x.add(32) as *const __m256i));
                _mm256_add_epi32(a, b)
            } else {
                let p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_loadu_si256(x as *const __m256i), w));
                _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
            }
        }
    }

    /// `mul_sum` with AVX-VNNI for 8-bit inputs: one `vpdpbusd(|w|, sign(x, w))` (u8 × i8 products
    /// summed four to a lane in i32, exact without the i16 step), the same lane sums. 16-bit inputs
    /// keep `mul_sum`'s two `vpmaddwd` (`dispatch!` sends them to the AVX2 loops): two chained
    /// `vpdpwssd`, which save only the add, measured no faster at two input rows and slower at one
    /// (`cargo bench --bench kernels -- --cpu --m 1,2` at 76d2209, Zen 4).
    ///
    /// # Safety
    /// AVX2 and AVX-VNNI; 32 quants at `x`.
    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    unsafe fn mul_sum_vnni<const WIDE: bool>(aw: __m256i, w: __m256i, x: *const u8) -> __m256i {
        debug_assert!(!WIDE, "16-bit inputs take the AVX2 loops");
        // SAFETY: as the caller's.
        unsafe { _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, _mm256_sign_epi8(_mm256_loadu_si256(x as *const __m256i), w)) }
    }

    /// # Safety
    /// AVX2; 32 values in `x`, room for 32 quants in `q`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize_block(x: &[f32], q: &mut [u8], bits: Bits) -> f32 {
        let wide = bits == Bits::Sixteen;
        assert!(x.len() >= BLOCK && q.len() >= BLOCK * (1 + wide as usize), "quantize_block");
        let p = x.as_ptr();
        // SAFETY: 32 values at `p` (checked above).
        let v: [__m256; 4] = std::array::from_fn(|t| unsafe { _mm256_loadu_ps(p.add(8 * t)) });
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let a = v.map(|v| _mm256_and_ps(v, abs));
        let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        let top = bits.max();
        let d = _mm_cvtss_f32(m) / top;
        let d = if d < f32::MIN_POSITIVE { 0.0 } else { d };
        let inv = _mm256_set1_ps(if d == 0.0 { 0.0 } else { 1.0 / d });
        let (lo, hi) = (_mm256_set1_ps(-top), _mm256_set1_ps(top));
        let i: [__m256i; 4] = v.map(|v| {
            let r = _mm256_round_ps(_mm256_mul_ps(v, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
        });
        // i32 → i16 (→ i8) with saturation (values are within range); packs interleave 128-bit
        // lanes, which the permutations undo.
        let w16a = _mm256_packs_epi32(i[0], i[1]);
        let w16b = _mm256_packs_epi32(i[2], i[3]);
        let o = q.as_mut_ptr() as *mut __m256i;
        // SAFETY: 32 or 64 bytes out (checked above).
        unsafe {
            if wide {
                _mm256_storeu_si256(o, _mm256_permute4x64_epi64(w16a, 0b11_01_10_00));
                _mm256_storeu_si256(o.add(1), _mm256_permute4x64_epi64(w16b, 0b11_01_10_00));
            } else {
                let b = _mm256_packs_epi16(w16a, w16b);
                _mm256_storeu_si256(o, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
            }
        }
        d
    }

    /// # Safety
    /// AVX2, and AVX-VNNI if `vnni`; `row` holds whole blocks of `dtype` for every 32 quants of
    /// `x`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn block_dots(dtype: DType, row: &[u8], x: &[u8], bits: Bits, vnni: bool) -> Vec<i32> {
        let q8 = dtype == DType::Q8_0;
        let bb = if q8 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
        let xb = if bits == Bits::Sixteen { 2 * BLOCK } else { BLOCK };
        (0..x.len() / xb)
            .map(|blk| {
                // SAFETY: block `blk` of `row` and 32 quants of `x` (caller).
                unsafe {
                    let q = row.as_ptr().add(blk * bb + 2);
                    let w = if q8 { weights::<true>(q) } else { weights::<false>(q) };
                    let xp = x.as_ptr().add(blk * xb);
                    let aw = _mm256_sign_epi8(w, w);
                    let s = match (bits == Bits::Sixteen, vnni) {
                        (true, _) => mul_sum::<true>(aw, w, xp),
                        (false, false) => mul_sum::<false>(aw, w, xp),
                        (false, true) => mul_sum_vnni::<false>(aw, w, xp),
                    };
                    let mut lanes = [0i32; 8];
                    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, s);
                    lanes.iter().sum()
                }
            })
            .collect()
    }

    /// The monomorphised loops for Q8_0 / Q4_0 weights and 8- / 16-bit inputs: the AVX-VNNI copy
    /// (`$vnni`) for 8-bit inputs where `vnni`, else the AVX2 one (`$avx2`). `M` is the caller's.
    macro_rules! dispatch {
        ($dtype:expr, $bits:expr, $use_vnni:expr, $avx2:ident, $vnni:ident, ($($arg:expr),*)) => {
            match ($dtype == DType::Q8_0, $bits == Bits::Sixteen, $use_vnni) {
                (true, true, _) => $avx2::<M, true, true>($($arg),*),
                (false, true, _) => $avx2::<M, false, true>($($arg),*),
                (true, false, false) => $avx2::<M, true, false>($($arg),*),
                (false, false, false) => $avx2::<M, false, false>($($arg),*),
                (true, false, true) => $vnni::<M, true, false>($($arg),*),
                (false, false, true) => $vnni::<M, false, false>($($arg),*),
            }
        };
    }

    /// Four weight rows (`nb` blocks each, with their f32 scales) against `M` quantized input
    /// rows (`nb` blocks of quants and scales each; `M` is 1 or 2, so that the sums stay in
    /// registers).
    ///
    /// # Safety
    /// AVX2 and FMA, and AVX-VNNI if `vnni`; each row holds `nb` blocks of `dtype`, each `scales`
    /// entry as many values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4<const M: usize>(dtype: DType, rows: [&[u8]; 4], scales: [&[f32]; 4], xs: [(&[u8], &[f32]); M], bits: Bits, vnni: bool) -> [[f32; 4]; M] {
        let xb = if bits == Bits::Sixteen { 2 * BLOCK } else { BLOCK };
        let nb = xs[0].1.len();
        assert!(M <= 2 && xs.iter().all(|(q, d)| d.len() == nb && q.len() >= nb * xb) && scales.iter().all(|s| s.len() >= nb), "dot4 widths");
        // SAFETY: as the caller's.
        unsafe { dispatch!(dtype, bits, vnni, dot4_of, dot4_vnni, (rows, scales, xs)) }
    }

    /// One weight row (`scales.len()` blocks) against `M` quantized input rows (each 32 quants
    /// and one scale per block): each weight block is loaded and prepared once for all.
    ///
    /// # Safety
    /// AVX2 and FMA, and AVX-VNNI if `vnni`; `row` holds `scales.len()` blocks of `dtype`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows<const M: usize>(dtype: DType, row: &[u8], scales: &[f32], xs: [(&[u8], &[f32]); M], bits: Bits, vnni: bool) -> [f32; M] {
        let xb = if bits == Bits::Sixteen { 2 * BLOCK } else { BLOCK };
        assert!(xs.iter().all(|(q, d)| q.len() >= scales.len() * xb && d.len() >= scales.len()), "dot_rows widths");
        // SAFETY: as the caller's.
        unsafe { dispatch!(dtype, bits, vnni, dot_rows_of, dot_rows_vnni, (row, scales, xs)) }
    }

    /// The loops of `dot4` and `dot_rows`, once with AVX2's `mul_sum` and once with AVX-VNNI's:
    /// a function's target features cover what is inlined into it, so each instruction set
    /// needs its own copy.
    macro_rules! loops {
        ($dot4:ident, $dot_rows:ident, $features:literal, $mul_sum:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $dot4<const M: usize, const Q8: bool, const WIDE: bool>(rows: [&[u8]; 4], scales: [&[f32]; 4], xs: [(&[u8], &[f32]); M]) -> [[f32; 4]; M] {
                let bb = if Q8 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
                let xb = if WIDE { 2 * BLOCK } else { BLOCK };
                let mut acc = [[_mm256_setzero_ps(); 4]; M];
                for blk in 0..xs[0].1.len() {
                    // SAFETY: block `blk` of every row, its scale, and 32 quants and a scale of
                    // every input (caller).
                    unsafe {
                        for (r, (row, s)) in rows.iter().zip(scales).enumerate() {
                            let w = weights::<Q8>(row.as_ptr().add(blk * bb + 2));
                            let aw = if WIDE { w } else { _mm256_sign_epi8(w, w) };
                            let dw = _mm256_broadcast_ss(s.get_unchecked(blk));
                            for (a, (q, d)) in acc.iter_mut().zip(&xs) {
                                let i = $mul_sum::<WIDE>(aw, w, q.as_ptr().add(blk * xb));
                                let scale = _mm256_mul_ps(dw, _mm256_broadcast_ss(d.get_unchecked(blk)));
                                a[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), scale, a[r]);
                            }
                        }
                    }
                }
                acc.map(|a| a.map(|v| hsum(v)))
            }

            #[target_feature(enable = $features)]
            unsafe fn $dot_rows<const M: usize, const Q8: bool, const WIDE: bool>(row: &[u8], scales: &[f32], xs: [(&[u8], &[f32]); M]) -> [f32; M] {
                let bb = if Q8 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
                let xb = if WIDE { 2 * BLOCK } else { BLOCK };
                let mut acc = [_mm256_setzero_ps(); M];
                for (blk, dw) in scales.iter().enumerate() {
                    // SAFETY: block `blk` of `row`, 32 quants and one scale of every input (caller).
                    unsafe {
                        let w = weights::<Q8>(row.as_ptr().add(blk * bb + 2));
                        let aw = if WIDE { w } else { _mm256_sign_epi8(w, w) };
                        let dw = _mm256_broadcast_ss(dw);
                        for (a, (q, d)) in acc.iter_mut().zip(&xs) {
                            let i = $mul_sum::<WIDE>(aw, w, q.as_ptr().add(blk * xb));
                            let scale = _mm256_mul_ps(dw, _mm256_broadcast_ss(d.get_unchecked(blk)));
                            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), scale, *a);
                        }
                    }
                }
                acc.map(|a| hsum(a))
            }
        };
    }
    loops!(dot4_of, dot_rows_of, "avx2,fma", mul_sum);
    loops!(dot4_vnni, dot_rows_vnni, "avx2,fma,avxvnni", mul_sum_vnni);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Philox;
    use crate::quant::Matrix;

    const BITS: [Bits; 2] = [Bits::Eight, Bits::Sixteen];

    fn random(n: usize, stream: u32, scale: f32) -> Vec<f32> {
        let philox = Philox::new(17);
        (0..n).map(|j| scale * philox.normal(0, j as u32, stream, 0)).collect()
    }

    /// `Kernel::simd`, named on stderr so that a run shows what it covered.
    fn simd_kernels() -> Vec<Kernel> {
        let k = Kernel::simd();
        eprintln!("integer SIMD kernels tested on this CPU: {k:?}");
        k
    }

    /// The SIMD quantizer gives the plain loop's bits, ties, zero and tiny blocks included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn quantizers_agree_bit_for_bit() {
        assert!(std::arch::is_x86_feature_detected!("avx2"), "this test needs an x86-64 CPU with AVX2");
        let mut x = random(32 * 40, 1, 3.0);
        // Block 1: exact ties of the 8-bit grid (x / d = ±0.5, ±1.5, …).
        for (t, v) in x[32..64].iter_mut().enumerate() {
            *v = (t as f32 - 15.5) * (127.0 / 15.5) / 8.0;
        }
        x[64..96].fill(0.0);
        x[96..128].fill(-1e-30);
        x[128..160].fill(1e-37);
        for bits in BITS {
            for (xb, blk) in x.chunks(32).zip(0..) {
                let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
                // SAFETY: AVX2 (asserted above); 32 values, room for 32 quants.
                let da = unsafe { avx2::quantize_block(xb, &mut a, bits) };
                let db = quantize_block(xb, &mut b, bits);
                assert_eq!((da.to_bits(), a), (db.to_bits(), b), "{bits:?} block {blk}");
            }
        }
    }

    /// Every block's integer dot in AVX2 equals the plain loop exactly, extreme quants included
    /// (weights −128 / 127, inputs at ± their largest; nibbles 0 and 15), and the plain loop
    /// equals the products of the decoded values.
    #[test]
    fn integer_block_dots_are_exact() {
        let kernels = simd_kernels();
        let k = 32 * 23;
        for (dtype, bits) in [DType::Q8_0, DType::Q4_0].into_iter().flat_map(|d| BITS.map(|b| (d, b))) {
            let mut w = Matrix::encode(3, k, &random(3 * k, 2, 1.0), dtype);
            let mut xv = random(3 * k, 3, 5.0);
            let bb = block_bytes(dtype);
            // Row 1: the extremes everywhere.
            for b in w.bytes[k / 32 * bb..2 * k / 32 * bb].chunks_exact_mut(bb) {
                for (t, q) in b[2..].iter_mut().enumerate() {
                    *q = if dtype == DType::Q8_0 { [0x80u8, 0x7f][t % 2] } else { [0x0fu8, 0xf0, 0x00, 0xff][t % 4] };
                }
            }
            for (t, v) in xv[k..2 * k].iter_mut().enumerate() {
                *v = [1.0, -1.0][t / 3 % 2];
            }
            let x = quantize_rows(&xv, 3, k, bits);
            let rb = w.row_bytes();
            for r in 0..3 {
                let row = &w.bytes[r * rb..(r + 1) * rb];
                let want = block_dots(dtype, row, &x, r, Kernel::Portable);
                for &kernel in &kernels {
                    assert_eq!(block_dots(dtype, row, &x, r, kernel), want, "{kernel:?} {dtype} {bits:?} row {r}");
                }
                let mut dec = vec![0.0f32; k];
                w.decode_row(r, &mut dec);
                for (blk, s) in want.iter().enumerate() {
                    let d = crate::quant::scale_of(&row[blk * bb..]) as f64;
                    let exact: f64 = (0..32).map(|t| dec[blk * 32 + t] as f64 / d * x.quant(r, blk * 32 + t) as f64).sum();
                    assert!((exact - *s as f64).abs() < 1e-6 * exact.abs().max(1.0), "{dtype} {bits:?} block {blk}: {s} vs {exact}");
                }
            }
        }
    }

    /// The whole kernel, SIMD and portable, threaded or not, at sizes that leave tails of every
    /// loop (rows of 4, weight rows of 4, panels of 32, slices of 2048 values), into poisoned
    /// outputs, against an f64 sum of the same integer block dots.
    #[test]
    fn kernel_matches_the_integer_reference_at_odd_sizes() {
        let kernels = simd_kernels();
        let shapes = [(1, 37, 64), (2, 45, 96), (3, 33, 32), (5, 70, 2080), (6, 41, 1056), (7, 19, 4128), (1, 1100, 1024), (13, 35, 320), (67, 41, 1056), (1, 3, 32), (261, 40, 160), (64, 300, 512), (2, 900, 2080)];
        for (m, n, k) in shapes {
            for (dtype, bits) in [DType::Q8_0, DType::Q4_0].into_iter().flat_map(|d| BITS.map(|b| (d, b))) {
                let w = Matrix::encode(n, k, &random(n * k, 4, 0.1), dtype);
                let x = random(m * k, 5, 2.0);
                let bias = random(n, 6, 1.0);
                let weights = Weights::new(w.clone());
                let xq = quantize_rows(&x, m, k, bits);
                let (rb, bb) = (w.row_bytes(), block_bytes(dtype));
                for &kernel in kernels.iter().chain(&[Kernel::Portable]) {
                    let mut got = vec![f32::NAN; m * n];
                    run(kernel, &x, m, &weights, bits, Some(&bias), &mut got);
                    for i in 0..m {
                        for j in 0..n {
                            let row = &w.bytes[j * rb..(j + 1) * rb];
                            let (mut want, mut mag) = (bias[j] as f64, bias[j].abs() as f64);
                            for (blk, s) in block_dots(dtype, row, &xq, i, Kernel::Portable).iter().enumerate() {
                                let t = crate::quant::scale_of(&row[blk * bb..]) as f64 * xq.d[i * k / 32 + blk] as f64 * *s as f64;
                                want += t;
                                mag += t.abs();
                            }
                            let g = got[i * n + j] as f64;
                            assert!((g - want).abs() <= 2e-6 * mag + 1e-6, "{kernel:?} {dtype} {bits:?} m={m} n={n} k={k} [{i}, {j}]: {g} vs {want}");
                        }
                    }
                }
            }
        }
    }

    /// Against the f32 path on the same weights: the inputs' rounding is the only difference,
    /// at most half a step of each input block per value.
    #[test]
    fn differs_from_the_f32_path_by_the_inputs_rounding_only() {
        let (m, n, k) = (3, 50, 640);
        for (dtype, bits) in [DType::Q8_0, DType::Q4_0].into_iter().flat_map(|d| BITS.map(|b| (d, b))) {
            let w = Matrix::encode(n, k, &random(n * k, 7, 0.1), dtype);
            let x = random(m * k, 8, 1.0);
            let (mut a, mut b) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
            cpu(&x, m, &Weights::new(w.clone()), bits, None, &mut a);
            super::super::cpu(&x, m, &w, None, &mut b);
            let xq = quantize_rows(&x, m, k, bits);
            let mut row = vec![0.0; k];
            for j in 0..n {
                w.decode_row(j, &mut row);
                for i in 0..m {
                    // Σ |w| · d_x / 2 over the row bounds the difference (plus f32 rounding).
                    let bound: f64 = (0..k).map(|c| row[c].abs() as f64 * xq.d[i * k / 32 + c / 32] as f64 / 2.0).sum();
                    let diff = (a[i * n + j] - b[i * n + j]).abs() as f64;
                    assert!(diff <= bound * 1.001 + 1e-5, "{dtype} {bits:?} [{i}, {j}]: {diff} > {bound}");
                }
            }
        }
    }
}
