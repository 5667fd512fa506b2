//! Many-row linear layers on x86-64 with AVX2 and FMA: a packed outer-product GEMM.
//!
//! Weight rows are decoded (from any stored type) a block of `NC` rows × `KC` columns at a time
//! and packed k-major in strips of 16 rows, so the micro-kernel reads one strip row as two
//! 8-lane vectors and broadcasts one input value per input row: a 6 × 16 tile of outputs stays
//! in twelve registers for the whole `KC` sweep and no horizontal sum is ever taken. Each
//! output is one f32 sum per `KC` chunk, added to `out` in chunk order.

use std::arch::x86_64::*;

use super::decode_range;
use super::{Matrix, Simd};

/// Output columns (weight rows) of one packed strip: two 8-lane vectors.
const NR: usize = 16;
/// Input rows of one micro-kernel tile.
const MR: usize = 6;
/// Input columns of one packed block (one strip is 16 × 256 f32 = 16 KiB, L1-resident).
const KC: usize = 256;
/// Weight rows of one packed block (8 strips, 128 KiB, L2-resident).
const NC: usize = 8 * NR;

/// `out[i · ld + (j − j0)] = bias[j] + Σ_k x[i, k] · w[j, k]` for `j` in `j0..j1`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C (`simd` was detected with them).
#[allow(clippy::too_many_arguments)]
pub unsafe fn columns(simd: Simd, x: &[f32], m: usize, w: &Matrix, bias: Option<&[f32]>, j0: usize, j1: usize, out: &mut [f32], ld: usize) {
    let k = w.cols;
    assert!(x.len() >= m * k && j1 <= w.rows && (m == 0 || out.len() >= (m - 1) * ld + (j1 - j0)), "gemm shapes");
    for i in 0..m {
        let row = &mut out[i * ld..i * ld + (j1 - j0)];
        match bias {
            Some(b) => row.copy_from_slice(&b[j0..j1]),
            None => row.fill(0.0),
        }
    }
    let mut rows = vec![0.0f32; NR * KC];
    let mut packed = vec![0.0f32; NC * KC];
    for jc in (j0..j1).step_by(NC) {
        let nc = NC.min(j1 - jc);
        let strips = nc.div_ceil(NR);
        for kc in (0..k).step_by(KC) {
            let kl = KC.min(k - kc);
            for s in 0..strips {
                for r in 0..NR {
                    let dst = &mut rows[r * KC..r * KC + kl];
                    if s * NR + r < nc {
                        decode_range(simd, w, jc + s * NR + r, kc, dst);
                    } else {
                        dst.fill(0.0);
                    }
                }
                // SAFETY: AVX2 (caller); `rows` is 16 × KC, the strip 16 × KC.
                unsafe { pack_strip(&rows, kl, &mut packed[s * NR * KC..(s + 1) * NR * KC]) };
            }
            let mut i = 0;
            while i < m {
                let mr = MR.min(m - i);
                for s in 0..strips {
                    let cols = NR.min(nc - s * NR);
                    let xs = &x[i * k + kc..];
                    let o = &mut out[i * ld + jc - j0 + s * NR..];
                    let strip = &packed[s * NR * KC..s * NR * KC + kl * NR];
                    // SAFETY: AVX2 and FMA (caller); `xs` holds `mr` rows of stride k from kc
                    // with `kl` values each, `o` `mr` rows of stride ld with `cols` values.
                    unsafe {
                        match mr {
                            6 => tile::<6>(xs, k, strip, kl, o, ld, cols),
                            5 => tile::<5>(xs, k, strip, kl, o, ld, cols),
                            4 => tile::<4>(xs, k, strip, kl, o, ld, cols),
                            3 => tile::<3>(xs, k, strip, kl, o, ld, cols),
                            2 => tile::<2>(xs, k, strip, kl, o, ld, cols),
                            _ => tile::<1>(xs, k, strip, kl, o, ld, cols),
                        }
                    }
                }
                i += mr;
            }
        }
    }
}

/// Rows `[16][KC]` (first `kl` columns) to the strip layout `[kl][16]`, in 8 × 8 transposes.
#[target_feature(enable = "avx2")]
unsafe fn pack_strip(rows: &[f32], kl: usize, strip: &mut [f32]) {
    let full = kl / 8 * 8;
    for half in 0..2 {
        let src = &rows[half * 8 * KC..];
        for c in (0..full).step_by(8) {
            // SAFETY: 8 rows × 8 columns below `kl` read, 8 × 8 values written below kl · 16.
            unsafe {
                let v: [__m256; 8] = std::array::from_fn(|r| _mm256_loadu_ps(src.as_ptr().add(r * KC + c)));
                let t = transpose8(v);
                for (cc, vec) in t.iter().enumerate() {
                    _mm256_storeu_ps(strip.as_mut_ptr().add((c + cc) * NR + half * 8), *vec);
                }
            }
        }
        for c in full..kl {
            for r in 0..8 {
                strip[c * NR + half * 8 + r] = src[r * KC + c];
            }
        }
    }
}

#[target_feature(enable = "avx2")]
fn transpose8(v: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(v[0], v[1]);
    let t1 = _mm256_unpackhi_ps(v[0], v[1]);
    let t2 = _mm256_unpacklo_ps(v[2], v[3]);
    let t3 = _mm256_unpackhi_ps(v[2], v[3]);
    let t4 = _mm256_unpacklo_ps(v[4], v[5]);
    let t5 = _mm256_unpackhi_ps(v[4], v[5]);
    let t6 = _mm256_unpacklo_ps(v[6], v[7]);
    let t7 = _mm256_unpackhi_ps(v[6], v[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// `R` input rows × one 16-column strip over `kl` columns, added into `out` (`cols` ≤ 16 of
/// them valid).
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(x: &[f32], ldx: usize, strip: &[f32], kl: usize, out: &mut [f32], ld: usize, cols: usize) {
    debug_assert!(x.len() > (R - 1) * ldx + kl - 1 && strip.len() >= kl * NR);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let (xp, wp) = (x.as_ptr(), strip.as_ptr());
    // SAFETY: reads x[r · ldx + c] and strip[c · 16 .. c · 16 + 16] for c < kl, r < R.
    unsafe {
        for c in 0..kl {
            let w0 = _mm256_loadu_ps(wp.add(c * NR));
            let w1 = _mm256_loadu_ps(wp.add(c * NR + 8));
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_broadcast_ss(&*xp.add(r * ldx + c));
                a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let o = &mut out[r * ld..];
        if cols == NR {
            // SAFETY: 16 values of row r.
            unsafe {
                let p = o.as_mut_ptr();
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), a[0]));
                _mm256_storeu_ps(p.add(8), _mm256_add_ps(_mm256_loadu_ps(p.add(8)), a[1]));
            }
        } else {
            let mut v = [0.0f32; NR];
            // SAFETY: `v` holds 16 values.
            unsafe {
                _mm256_storeu_ps(v.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(v.as_mut_ptr().add(8), a[1]);
            }
            for (o, v) in o[..cols].iter_mut().zip(v) {
                *o += v;
            }
        }
    }
}

