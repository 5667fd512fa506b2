//! WebAssembly SIMD (128-bit) inner loops of the linear layer: the same products as the portable
//! loops, four lanes at a time. simd128 is enabled for the whole wasm build (scripts/build-wasm.sh),
//! so these are chosen at compile time. Relaxed SIMD (fused multiply–add) is not baseline: every
//! multiply–add is a multiply and an add.

use core::arch::wasm32::*;

use crate::quant::{BLOCK, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, scale_of as scale};

fn hsum(v: v128) -> f32 {
    let s = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let s = f32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
    f32x4_extract_lane::<0>(s)
}


/// # Safety
/// `p` points at 4 readable f32 (unaligned is fine in wasm).
unsafe fn load(p: *const f32) -> v128 {
    // SAFETY: as documented.
    unsafe { v128_load(p as *const v128) }
}

/// 32 quants (i8, values 0..16 in `a`, 16..32 in `b`) to 8 × f32x4 in order.
fn widen(a: v128, b: v128) -> [v128; 8] {
    let f = |v: v128| {
        let (lo, hi) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
        [
            f32x4_convert_i32x4(i32x4_extend_low_i16x8(lo)),
            f32x4_convert_i32x4(i32x4_extend_high_i16x8(lo)),
            f32x4_convert_i32x4(i32x4_extend_low_i16x8(hi)),
            f32x4_convert_i32x4(i32x4_extend_high_i16x8(hi)),
        ]
    };
    let (a, b) = (f(a), f(b));
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

/// The 32 quants of one Q8_0 block as f32 (unscaled).
fn q8(b: &[u8]) -> [v128; 8] {
    assert!(b.len() >= Q8_0_BLOCK_BYTES);
    // SAFETY: 2 × 16 quant bytes after the 2-byte scale, inside the block (checked above).
    unsafe { widen(v128_load(b.as_ptr().add(2) as *const v128), v128_load(b.as_ptr().add(18) as *const v128)) }
}

/// The 32 quants of one Q4_0 block as f32 (unscaled): low nibbles are values 0..16, high
/// nibbles 16..32, each minus 8.
fn q4(b: &[u8]) -> [v128; 8] {
    assert!(b.len() >= Q4_0_BLOCK_BYTES);
    // SAFETY: 16 nibble bytes after the 2-byte scale, inside the block (checked above).
    let raw = unsafe { v128_load(b.as_ptr().add(2) as *const v128) };
    let eight = i8x16_splat(8);
    let lo = i8x16_sub(v128_and(raw, u8x16_splat(0x0f)), eight);
    let hi = i8x16_sub(u8x16_shr(raw, 4), eight);
    widen(lo, hi)
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // Four accumulators: an add's latency is not on the critical path of every step.
    let mut s = [f32x4_splat(0.0); 4];
    let mut p = 0;
    // SAFETY: every load reads 4 values below `n`.
    unsafe {
        while p + 16 <= n {
            for (l, s) in s.iter_mut().enumerate() {
                *s = f32x4_add(*s, f32x4_mul(load(pa.add(p + 4 * l)), load(pb.add(p + 4 * l))));
            }
            p += 16;
        }
        while p + 4 <= n {
            s[0] = f32x4_add(s[0], f32x4_mul(load(pa.add(p)), load(pb.add(p))));
            p += 4;
        }
    }
    let tail: f32 = a[p..n].iter().zip(&b[p..n]).map(|(x, y)| x * y).sum();
    hsum(f32x4_add(f32x4_add(s[0], s[1]), f32x4_add(s[2], s[3]))) + tail
}

/// Dot products of one Q8_0 / Q4_0 row (stored blocks) with `M` input rows: each block is widened
/// once for all of them, and its scale applied once per block and row.
fn dot_quant<const M: usize>(row: &[u8], block_bytes: usize, xs: [&[f32]; M], quants: impl Fn(&[u8]) -> [v128; 8]) -> [f32; M] {
    let blocks = row.len() / block_bytes;
    for x in xs {
        assert!(x.len() >= blocks * BLOCK, "linear input row");
    }
    let mut acc = [f32x4_splat(0.0); M];
    for (i, b) in row.chunks_exact(block_bytes).enumerate() {
        let w = quants(b);
        let d = f32x4_splat(scale(b));
        for (acc, x) in acc.iter_mut().zip(xs) {
            let p = x[i * BLOCK..].as_ptr();
            // Two partial sums halve the chain of dependent adds.
            // SAFETY: 32 values from `p` (checked above).
            let (s0, s1) = unsafe {
                let mut s0 = f32x4_mul(w[0], load(p));
                let mut s1 = f32x4_mul(w[1], load(p.add(4)));
                for t in (2..8).step_by(2) {
                    s0 = f32x4_add(s0, f32x4_mul(w[t], load(p.add(4 * t))));
                    s1 = f32x4_add(s1, f32x4_mul(w[t + 1], load(p.add(4 * t + 4))));
                }
                (s0, s1)
            };
            *acc = f32x4_add(*acc, f32x4_mul(f32x4_add(s0, s1), d));
        }
    }
    acc.map(hsum)
}

/// `row` holds `x.len() / 32` Q8_0 blocks.
pub fn dot_q8_0<const M: usize>(row: &[u8], xs: [&[f32]; M]) -> [f32; M] {
    dot_quant(row, Q8_0_BLOCK_BYTES, xs, q8)
}

/// `row` holds `x.len() / 32` Q4_0 blocks.
pub fn dot_q4_0<const M: usize>(row: &[u8], xs: [&[f32]; M]) -> [f32; M] {
    dot_quant(row, Q4_0_BLOCK_BYTES, xs, q4)
}

fn store(w: [v128; 8], d: f32, out: &mut [f32]) {
    assert!(out.len() >= BLOCK);
    let d = f32x4_splat(d);
    for (t, v) in w.into_iter().enumerate() {
        // SAFETY: 4 values at 4·t < 32 (checked above); unaligned stores.
        unsafe { v128_store(out.as_mut_ptr().add(4 * t) as *mut v128, f32x4_mul(v, d)) };
    }
}

/// One Q8_0 block to 32 f32 (the same products as `quant::dequantize_q8_0_block`). Inlined into
/// the panel loop: a call per block showed in profiles.
#[inline(always)]
pub fn decode_q8_0(b: &[u8], out: &mut [f32]) {
    store(q8(b), scale(b), out)
}

/// One Q4_0 block to 32 f32 (the same products as `quant::dequantize_q4_0_block`); inlined too.
#[inline(always)]
pub fn decode_q4_0(b: &[u8], out: &mut [f32]) {
    store(q4(b), scale(b), out)
}

/// The 4 × 3 tile in one sweep: 7 loads per 12 multiply–adds. (Two 2 × 3 sweeps, which spill no
/// accumulator on x86-64's 16 vector registers, measured slower in V8: 7 against 9 per ns.)
pub fn tile(xs: [&[f32]; 4], ws: [&[f32]; 3]) -> [[f32; 3]; 4] {
    let n = ws[0].len();
    for s in xs.iter().chain(&ws) {
        assert_eq!(s.len(), n, "tile slices");
    }
    let w = [ws[0].as_ptr(), ws[1].as_ptr(), ws[2].as_ptr()];
    let x = [xs[0].as_ptr(), xs[1].as_ptr(), xs[2].as_ptr(), xs[3].as_ptr()];
    let mut acc = [[f32x4_splat(0.0); 3]; 4];
    let mut p = 0;
    // SAFETY: every load reads 4 values below `n` (all slices hold `n`, checked above).
    unsafe {
        while p + 4 <= n {
            let wv = [load(w[0].add(p)), load(w[1].add(p)), load(w[2].add(p))];
            for (a, acc) in acc.iter_mut().enumerate() {
                let xv = load(x[a].add(p));
                for (acc, wv) in acc.iter_mut().zip(wv) {
                    *acc = f32x4_add(*acc, f32x4_mul(xv, wv));
                }
            }
            p += 4;
        }
    }
    // By value: a closure borrowing `acc` would keep it in linear memory, a load and a store per
    // multiply–add.
    let mut out = acc.map(|row| row.map(hsum));
    if p < n {
        for (a, row) in out.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v += xs[a][p..n].iter().zip(&ws[c][p..n]).map(|(u, v)| u * v).sum::<f32>();
            }
        }
    }
    out
}
