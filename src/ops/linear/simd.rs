//! Which instruction set the linear layer's inner loops use, and the portable loops the others
//! fall back to.

use crate::quant::DType;

#[cfg(target_arch = "x86_64")]
use super::avx2;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::simd128;
use super::{DIRECT_MAX_ROWS, PANEL_MIN_ROWS};

/// Which instruction set the inner loops use (run-time detection on x86-64; on wasm32, simd128
/// when the build enables it).
#[derive(Clone, Copy)]
pub(super) struct Simd {
    #[cfg(target_arch = "x86_64")]
    pub(super) avx2: bool,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub(super) simd128: bool,
}

// The methods are small dispatchers called per block, row or tile from other files of this
// folder: `#[inline]` keeps them inlined there as when they shared one file.
impl Simd {
    #[inline]
    pub(super) fn detect() -> Simd {
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
    pub(super) fn portable() -> Simd {
        Simd {
            #[cfg(target_arch = "x86_64")]
            avx2: false,
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            simd128: false,
        }
    }

    #[inline]
    pub(super) fn avx2(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.avx2
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    #[inline]
    pub(super) fn simd128(self) -> bool {
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
    #[inline]
    pub(super) fn decode_block(self, dtype: DType, b: &[u8], out: &mut [f32]) {
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
    #[inline]
    pub(super) fn direct_rows(self) -> usize {
        if self.avx2() {
            DIRECT_MAX_ROWS
        } else if self.simd128() {
            PANEL_MIN_ROWS - 1
        } else {
            0
        }
    }

    #[inline]
    pub(super) fn dot(self, a: &[f32], b: &[f32]) -> f32 {
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
    #[inline]
    pub(super) fn dot_quant(self, dtype: DType, row: &[u8], x: &[f32], m: usize) -> [f32; 3] {
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
    #[inline]
    pub(super) fn tile(self, xs: [&[f32]; 4], ws: [&[f32]; 3]) -> [[f32; 3]; 4] {
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
