//! WebAssembly SIMD (128-bit) inner loops of the integer path (`super::int8`): the weight quants
//! are widened to i16 and multiplied with the input quants (i16, or i8 widened) by
//! `i32x4.dot_i16x8_s` (`i32x4_dot_i16x8`), which is baseline SIMD (no relaxed SIMD needed) and exact here: a lane
//! sums two products of |w| ≤ 128 and |x| ≤ 32,767, and a block's four lanes stay below 2^27.
//!
//! Each block's integer sum is then scaled exactly as the plain loop does it
//! (`acc + (d_w · d_x) · dot`, in block order), four sums per vector: the results are the plain
//! loop's bits. Standalone (quant constants only) so that tests/wasm-simd compiles it alone.

use core::arch::wasm32::*;

use crate::quant::{BLOCK, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

/// Bytes of one block of weights.
fn block_bytes(q8: bool) -> usize {
    if q8 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES }
}

/// A block's 32 weight quants as four i16x8, in value order (Q4_0: nibble − 8, low nibbles are
/// values 0–15, high nibbles 16–31, as GGML stores them).
///
/// # Safety
/// A whole block of `q8`'s kind at `b` (its 2-byte scale first).
#[inline(always)]
unsafe fn weights(q8: bool, b: *const u8) -> [v128; 4] {
    // SAFETY: as the caller's: 32 (Q8_0) or 16 (Q4_0) quant bytes after the scale.
    unsafe {
        let (a, c) = if q8 {
            (v128_load(b.add(2) as *const v128), v128_load(b.add(18) as *const v128))
        } else {
            let raw = v128_load(b.add(2) as *const v128);
            let eight = i8x16_splat(8);
            (i8x16_sub(v128_and(raw, u8x16_splat(0x0f)), eight), i8x16_sub(u8x16_shr(raw, 4), eight))
        };
        [i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a), i16x8_extend_low_i8x16(c), i16x8_extend_high_i8x16(c)]
    }
}

/// Block `blk`'s 32 input quants as four i16x8: stored as i16 (`wide`) or as i8.
///
/// # Safety
/// `x` holds at least `blk + 1` blocks of quants of that width.
#[inline(always)]
unsafe fn inputs(x: *const u8, blk: usize, wide: bool) -> [v128; 4] {
    // SAFETY: as the caller's.
    unsafe {
        if wide {
            let p = x.add(blk * 2 * BLOCK) as *const v128;
            [v128_load(p), v128_load(p.add(1)), v128_load(p.add(2)), v128_load(p.add(3))]
        } else {
            let p = x.add(blk * BLOCK) as *const v128;
            let (a, c) = (v128_load(p), v128_load(p.add(1)));
            [i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a), i16x8_extend_low_i8x16(c), i16x8_extend_high_i8x16(c)]
        }
    }
}

/// Four i32 lanes that sum to one block's Σ w·x.
#[inline(always)]
fn dot(w: &[v128; 4], x: &[v128; 4]) -> v128 {
    let a = i32x4_add(i32x4_dot_i16x8(w[0], x[0]), i32x4_dot_i16x8(w[1], x[1]));
    let b = i32x4_add(i32x4_dot_i16x8(w[2], x[2]), i32x4_dot_i16x8(w[3], x[3]));
    i32x4_add(a, b)
}

/// The lane sums of four vectors, as one vector (exact: i32).
#[inline(always)]
fn hsum4(s: [v128; 4]) -> v128 {
    let a = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(s[0], s[1]), i32x4_shuffle::<2, 6, 3, 7>(s[0], s[1]));
    let b = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(s[2], s[3]), i32x4_shuffle::<2, 6, 3, 7>(s[2], s[3]));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b))
}

/// Four weight rows (whole blocks, `scales` their f32 block scales) against one input row of
/// quants `x` (`wide`: i16, else i8) with block scales `xd`: Σ over blocks of
/// `(d_w · d_x) · Σ w·x` per row, in block order.
pub fn dot4(q8: bool, rows: [&[u8]; 4], scales: [&[f32]; 4], x: &[u8], xd: &[f32], wide: bool) -> [f32; 4] {
    let (bb, nb) = (block_bytes(q8), xd.len());
    assert!(
        x.len() >= nb * BLOCK * (1 + wide as usize) && rows.iter().zip(scales).all(|(r, s)| r.len() >= nb * bb && s.len() >= nb),
        "int8 dot4 widths"
    );
    let mut acc = f32x4_splat(0.0);
    for blk in 0..nb {
        // SAFETY: block `blk` of every row and of `x` is whole (checked above).
        let s = unsafe {
            let xv = inputs(x.as_ptr(), blk, wide);
            hsum4(rows.map(|r| dot(&weights(q8, r.as_ptr().add(blk * bb)), &xv)))
        };
        let d = f32x4(scales[0][blk], scales[1][blk], scales[2][blk], scales[3][blk]);
        acc = f32x4_add(acc, f32x4_mul(f32x4_mul(d, f32x4_splat(xd[blk])), f32x4_convert_i32x4(s)));
    }
    [f32x4_extract_lane::<0>(acc), f32x4_extract_lane::<1>(acc), f32x4_extract_lane::<2>(acc), f32x4_extract_lane::<3>(acc)]
}

/// One weight row against up to four input rows (`xs`: quants and block scales each), each
/// block's weights widened once: the sums as `dot4`'s, into `out[..xs.len()]`.
pub fn dot_inputs(q8: bool, row: &[u8], scales: &[f32], xs: &[(&[u8], &[f32])], wide: bool, out: &mut [f32]) {
    let (bb, nb) = (block_bytes(q8), scales.len());
    let m = xs.len();
    assert!(
        (1..=4).contains(&m) && out.len() >= m && row.len() >= nb * bb && xs.iter().all(|(q, d)| q.len() >= nb * BLOCK * (1 + wide as usize) && d.len() >= nb),
        "int8 dot_inputs widths"
    );
    let mut acc = f32x4_splat(0.0);
    for blk in 0..nb {
        // SAFETY: block `blk` of the row and of every input is whole (checked above).
        let s = unsafe {
            let w = weights(q8, row.as_ptr().add(blk * bb));
            let zero = i32x4_splat(0);
            hsum4(std::array::from_fn(|i| if i < m { dot(&w, &inputs(xs[i].0.as_ptr(), blk, wide)) } else { zero }))
        };
        let dx = f32x4(xs[0].1[blk], xs.get(1).map_or(0.0, |x| x.1[blk]), xs.get(2).map_or(0.0, |x| x.1[blk]), xs.get(3).map_or(0.0, |x| x.1[blk]));
        acc = f32x4_add(acc, f32x4_mul(f32x4_mul(f32x4_splat(scales[blk]), dx), f32x4_convert_i32x4(s)));
    }
    let all = [f32x4_extract_lane::<0>(acc), f32x4_extract_lane::<1>(acc), f32x4_extract_lane::<2>(acc), f32x4_extract_lane::<3>(acc)];
    out[..m].copy_from_slice(&all[..m]);
}
