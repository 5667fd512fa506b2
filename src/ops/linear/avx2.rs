//! The AVX2 / FMA / F16C kernels of the linear layer on x86-64 (detected at run time, see
//! `Simd::detect`), except the many-row GEMM (`gemm_avx2.rs`): dot products, Q8_0 / Q4_0 block
//! decoding, the 4 × 3 panel tiles and quantized rows read straight off their blocks.

use std::arch::x86_64::*;

use super::Weights;
use crate::quant::{BLOCK, DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

/// Quantized rows read straight off their blocks for `m` ≤ `DIRECT_MAX_ROWS` input rows (AVX2):
/// one or two input rows take four weight rows per pass (short weight rows, like the decoder
/// head's, spend less on loop and horizontal sums per block), more input rows take one weight row
/// per pass (each block decoded once for all of them).
#[allow(clippy::too_many_arguments)]
pub(super) fn direct_columns(x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, j0: usize, j1: usize, out: &mut [f32], ld: usize) {
    let (k, rb) = (w.cols, w.row_bytes());
    let mut j = j0;
    if m <= 2 {
        while j + 4 <= j1 {
            let rows: [&[u8]; 4] = std::array::from_fn(|r| &w.bytes[(j + r) * rb..(j + r + 1) * rb]);
            let scales: [&[f32]; 4] = std::array::from_fn(|r| w.row_scales(j + r));
            let mut sums = [[0.0f32; 4]; 2];
            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`); whole rows, `m` rows of `x`.
            unsafe {
                if m == 1 {
                    sums[0] = dot4::<1>(w.dtype, rows, scales, x, k)[0];
                } else {
                    sums = dot4::<2>(w.dtype, rows, scales, x, k);
                }
            }
            for (i, row) in sums.iter().enumerate().take(m) {
                for (r, s) in row.iter().enumerate() {
                    out[i * ld + j + r - j0] = s + bias.map_or(0.0, |b| b[j + r]);
                }
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
                            let r = unsafe { dot_rows::<$m>(w.dtype, row, scales, x, k) };
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

/// The sum of the eight lanes.
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
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

/// Four Q8_0 / Q4_0 rows against `M` (1 or 2) input rows of `k` values (row `i` from `i · k`):
/// each block is decoded once for the `M` rows, and with one input row each 8 input values are
/// loaded once for all four weight rows. Sums `[input row][weight row]`.
///
/// # Safety
/// AVX2 and FMA; each row holds `k / 32` blocks of `dtype` and each `scales` entry as many
/// values; `x` holds `M · k` values.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4<const M: usize>(dtype: DType, rows: [&[u8]; 4], scales: [&[f32]; 4], x: &[f32], k: usize) -> [[f32; 4]; M] {
    let bb = if dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
    assert!(M <= 2 && x.len() >= M * k && rows.iter().zip(scales).all(|(r, s)| r.len() >= k / BLOCK * bb && s.len() >= k / BLOCK), "dot4 widths");
    // SAFETY: as the caller's.
    unsafe { if dtype == DType::Q8_0 { dot4_of::<M, true>(rows, scales, x, k) } else { dot4_of::<M, false>(rows, scales, x, k) } }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_of<const M: usize, const Q8: bool>(rows: [&[u8]; 4], scales: [&[f32]; 4], x: &[f32], k: usize) -> [[f32; 4]; M] {
    let bb = if Q8 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
    let mut acc = [[_mm256_setzero_ps(); 4]; M];
    let xp = x.as_ptr();
    for blk in 0..k / BLOCK {
        // SAFETY: block `blk` of each row is whole; x[i · k + 32 · blk ..][..32] for i < M.
        unsafe {
            if M == 1 {
                let p = xp.add(blk * BLOCK);
                let xv: [__m256; 4] = std::array::from_fn(|t| _mm256_loadu_ps(p.add(8 * t)));
                for ((a, row), d) in acc[0].iter_mut().zip(rows).zip(scales) {
                    let q = row.as_ptr().add(blk * bb + 2);
                    let v = if Q8 { quants_q8_0(q) } else { quants_q4_0(q) };
                    let s = _mm256_mul_ps(v[0], xv[0]);
                    let s = _mm256_fmadd_ps(v[1], xv[1], s);
                    let s = _mm256_fmadd_ps(v[2], xv[2], s);
                    let s = _mm256_fmadd_ps(v[3], xv[3], s);
                    *a = _mm256_fmadd_ps(_mm256_broadcast_ss(d.get_unchecked(blk)), s, *a);
                }
                continue;
            }
            // Two input rows: the block's values come from memory in the products (16 vectors
            // would not fit the registers beside the eight sums).
            for (r, (row, d)) in rows.iter().zip(scales).enumerate() {
                let q = row.as_ptr().add(blk * bb + 2);
                let v = if Q8 { quants_q8_0(q) } else { quants_q4_0(q) };
                let d = _mm256_broadcast_ss(d.get_unchecked(blk));
                for (i, a) in acc.iter_mut().enumerate() {
                    let p = xp.add(i * k + blk * BLOCK);
                    let s = _mm256_mul_ps(v[0], _mm256_loadu_ps(p));
                    let s = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(p.add(8)), s);
                    let s = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(p.add(16)), s);
                    let s = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(p.add(24)), s);
                    a[r] = _mm256_fmadd_ps(d, s, a[r]);
                }
            }
        }
    }
    acc.map(|a| hsum4(a))
}

/// The lane sums of four vectors at once (three horizontal adds instead of four reductions:
/// short rows, such as the decoder's one-block perturbation path, are dominated by them).
#[target_feature(enable = "avx2,fma")]
fn hsum4(v: [__m256; 4]) -> [f32; 4] {
    // [v0 pairs, v1 pairs, v0 pairs, v1 pairs] per 128-bit half, then quads, then the halves.
    let s = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let mut out = [0.0f32; 4];
    // SAFETY: four f32 of room.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
    out
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
