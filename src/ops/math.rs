//! Vectorised element-wise functions for the CPU twins: `expm1` (counts) and the tanh-approximate
//! GELU. AVX2 + FMA where the CPU has them (run-time detection), wasm SIMD in the wasm build,
//! else the scalar libm functions.
//! Both paths stay within a few ulp of the f64 functions (tests below): the CPU backend is the
//! oracle for the GPU kernels.

use super::Activation;

/// `out[i] = expm1(x[i]) · scale`.
pub fn expm1_scaled(x: &[f32], scale: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "expm1 output");
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::expm1_scaled(x, scale, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    simd128::expm1_scaled(x, scale, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    portable::expm1_scaled(x, scale, out);
}

/// `out[i] = gelu_tanh(x[i])` (PyTorch's `approximate="tanh"`).
pub fn gelu_tanh(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "gelu output");
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::gelu_tanh(x, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    simd128::gelu_tanh(x, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    portable::gelu_tanh(x, out);
}

/// The libm functions, one value at a time: the fallback and the tests' second opinion.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128", not(test)), allow(dead_code))]
mod portable {
    use super::Activation;

    pub fn expm1_scaled(x: &[f32], scale: f32, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v.exp_m1() * scale;
        }
    }

    pub fn gelu_tanh(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = Activation::GeluTanh.apply(v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// Largest x whose exp is finite in f32, and the x below which expm1 rounds to −1 (kept
    /// above −87.3 so 2^k stays a normal number or exactly 0).
    const X_MAX: f32 = 88.722_83;
    const X_MIN: f32 = -88.0;

    /// `(p, s, twice)` with e^x = (p + 1) · s · (2 if twice else 1): x = k·ln2 + r, |r| ≤ ln2/2,
    /// p = expm1(r) by its Taylor series to r⁸ (remainder < 2e-10 relative), s = 2^min(k, 127).
    #[target_feature(enable = "avx2,fma")]
    fn exp_parts(x: __m256) -> (__m256, __m256, __m256) {
        // ln 2 split so that k · LN2_HI is exact for |k| ≤ 128.
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(X_MIN)), _mm256_set1_ps(X_MAX));
        let k = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LO), r);
        let mut q = _mm256_set1_ps(1.0 / 40320.0);
        for c in [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5] {
            q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(c));
        }
        let p = _mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r);
        let ki = _mm256_cvtps_epi32(k);
        let biased = _mm256_add_epi32(_mm256_min_epi32(ki, _mm256_set1_epi32(127)), _mm256_set1_epi32(127));
        let s = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
        let twice = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ki, _mm256_set1_epi32(127)));
        (p, s, twice)
    }

    /// ±inf above the range, NaN for NaN (the clamps in `exp_parts` would hide both).
    #[target_feature(enable = "avx2,fma")]
    fn edges(x: __m256, y: __m256) -> __m256 {
        let y = _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(X_MAX)));
        _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
    }

    #[target_feature(enable = "avx2,fma")]
    fn expm1(x: __m256) -> __m256 {
        let (p, s, twice) = exp_parts(x);
        // e^x − 1 = p·s + (s − 1): exact for k = 0, and s − 1 is exact for the k that matter.
        let y = _mm256_fmadd_ps(p, s, _mm256_sub_ps(s, _mm256_set1_ps(1.0)));
        edges(x, _mm256_blendv_ps(y, _mm256_add_ps(y, y), twice))
    }

    #[target_feature(enable = "avx2,fma")]
    fn exp(x: __m256) -> __m256 {
        let (p, s, twice) = exp_parts(x);
        let y = _mm256_fmadd_ps(p, s, s);
        edges(x, _mm256_blendv_ps(y, _mm256_add_ps(y, y), twice))
    }

    /// 0.5·v·(1 + tanh(u)) = v·σ(2u): the same function without the cancellation of 1 + tanh(u)
    /// for negative u. With t = e^(−2|u|) ≤ 1 (never overflows), σ(2u) is 1/(1 + t) for u ≥ 0
    /// and t/(1 + t) below.
    #[target_feature(enable = "avx2,fma")]
    fn gelu(v: __m256) -> __m256 {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        let v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
        let u = _mm256_mul_ps(_mm256_set1_ps(SQRT_2_OVER_PI), _mm256_fmadd_ps(_mm256_set1_ps(0.044_715), v3, v));
        let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), u);
        let t = exp(_mm256_mul_ps(abs, _mm256_set1_ps(-2.0)));
        let num = _mm256_blendv_ps(v, _mm256_mul_ps(v, t), u);
        _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0), t))
    }

    /// Applies `f` eight values at a time; the tail goes through a padded copy, so every value
    /// takes the same path.
    #[target_feature(enable = "avx2,fma")]
    fn map(x: &[f32], out: &mut [f32], f: impl Fn(__m256) -> __m256) {
        let mut xs = x.chunks_exact(8);
        let mut os = out.chunks_exact_mut(8);
        for (xc, oc) in (&mut xs).zip(&mut os) {
            // SAFETY: both chunks hold 8 values; unaligned loads and stores.
            unsafe { _mm256_storeu_ps(oc.as_mut_ptr(), f(_mm256_loadu_ps(xc.as_ptr()))) };
        }
        let (xr, or) = (xs.remainder(), os.into_remainder());
        if !xr.is_empty() {
            let mut buf = [0.0f32; 8];
            buf[..xr.len()].copy_from_slice(xr);
            // SAFETY: `buf` holds 8 values.
            unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), f(_mm256_loadu_ps(buf.as_ptr()))) };
            or.copy_from_slice(&buf[..or.len()]);
        }
    }

    /// # Safety
    /// AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn expm1_scaled(x: &[f32], scale: f32, out: &mut [f32]) {
        let scale = _mm256_set1_ps(scale);
        map(x, out, |v| _mm256_mul_ps(expm1(v), scale));
    }

    /// # Safety
    /// AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_tanh(x: &[f32], out: &mut [f32]) {
        map(x, out, |v| gelu(v));
    }
}

/// The AVX2 functions in 128-bit wasm SIMD (enabled for the whole wasm build). Without fused
/// multiply–add (relaxed SIMD is not baseline) the reduction and the polynomial round once more,
/// well below an ulp of the result: k·LN2_HI is exact, and p·s is exact (s a power of two).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    const X_MAX: f32 = 88.722_83;
    const X_MIN: f32 = -88.0;

    /// `(p, s, twice)` as in the AVX2 `exp_parts`.
    fn exp_parts(x: v128) -> (v128, v128, v128) {
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        // pmin/pmax: one instruction each on x86 (min/max add NaN and ±0 fix-ups); NaN is
        // restored in `edges`.
        let x = f32x4_pmin(f32x4_pmax(x, f32x4_splat(X_MIN)), f32x4_splat(X_MAX));
        let k = f32x4_nearest(f32x4_mul(x, f32x4_splat(std::f32::consts::LOG2_E)));
        let r = f32x4_sub(x, f32x4_mul(k, f32x4_splat(LN2_HI)));
        let r = f32x4_sub(r, f32x4_mul(k, f32x4_splat(LN2_LO)));
        let mut q = f32x4_splat(1.0 / 40320.0);
        for c in [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5] {
            q = f32x4_add(f32x4_mul(q, r), f32x4_splat(c));
        }
        let p = f32x4_add(f32x4_mul(q, f32x4_mul(r, r)), r);
        let ki = i32x4_trunc_sat_f32x4(k);
        let biased = i32x4_add(i32x4_min(ki, i32x4_splat(127)), i32x4_splat(127));
        let s = i32x4_shl(biased, 23);
        let twice = i32x4_gt(ki, i32x4_splat(127));
        (p, s, twice)
    }

    fn edges(x: v128, y: v128) -> v128 {
        let y = v128_bitselect(f32x4_splat(f32::INFINITY), y, f32x4_gt(x, f32x4_splat(X_MAX)));
        v128_bitselect(x, y, f32x4_ne(x, x))
    }

    fn expm1(x: v128) -> v128 {
        let (p, s, twice) = exp_parts(x);
        let y = f32x4_add(f32x4_mul(p, s), f32x4_sub(s, f32x4_splat(1.0)));
        edges(x, v128_bitselect(f32x4_add(y, y), y, twice))
    }

    fn exp(x: v128) -> v128 {
        let (p, s, twice) = exp_parts(x);
        let y = f32x4_add(f32x4_mul(p, s), s);
        edges(x, v128_bitselect(f32x4_add(y, y), y, twice))
    }

    /// v·σ(2u) as in the AVX2 `gelu`; the sign of u (its top bit, as blendv reads it) picks
    /// v·t or v.
    fn gelu(v: v128) -> v128 {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        let v3 = f32x4_mul(f32x4_mul(v, v), v);
        let u = f32x4_mul(f32x4_splat(SQRT_2_OVER_PI), f32x4_add(f32x4_mul(f32x4_splat(0.044_715), v3), v));
        let t = exp(f32x4_mul(f32x4_abs(u), f32x4_splat(-2.0)));
        let num = v128_bitselect(f32x4_mul(v, t), v, i32x4_shr(u, 31));
        f32x4_div(num, f32x4_add(f32x4_splat(1.0), t))
    }

    /// Applies `f` four values at a time; the tail goes through a padded copy, so every value
    /// takes the same path.
    fn map(x: &[f32], out: &mut [f32], f: impl Fn(v128) -> v128) {
        let mut xs = x.chunks_exact(4);
        let mut os = out.chunks_exact_mut(4);
        for (xc, oc) in (&mut xs).zip(&mut os) {
            // SAFETY: both chunks hold 4 values; unaligned loads and stores.
            unsafe { v128_store(oc.as_mut_ptr() as *mut v128, f(v128_load(xc.as_ptr() as *const v128))) };
        }
        let (xr, or) = (xs.remainder(), os.into_remainder());
        if !xr.is_empty() {
            let mut buf = [0.0f32; 4];
            buf[..xr.len()].copy_from_slice(xr);
            // SAFETY: `buf` holds 4 values.
            unsafe { v128_store(buf.as_mut_ptr() as *mut v128, f(v128_load(buf.as_ptr() as *const v128))) };
            or.copy_from_slice(&buf[..or.len()]);
        }
    }

    pub fn expm1_scaled(x: &[f32], scale: f32, out: &mut [f32]) {
        let scale = f32x4_splat(scale);
        map(x, out, |v| f32x4_mul(expm1(v), scale));
    }

    pub fn gelu_tanh(x: &[f32], out: &mut [f32]) {
        map(x, out, gelu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units in the last place of an f32 of magnitude |v| (subnormal spacing below the normals).
    fn ulp(v: f64) -> f64 {
        let e = v.abs().max(f32::MIN_POSITIVE as f64).log2().floor();
        2f64.powf(e - 23.0)
    }

    /// Inputs over `[lo, hi]` on a fine grid, plus odd values near 0 and the ends.
    fn inputs(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        let mut x: Vec<f32> = (0..n).map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32).collect();
        x.extend([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.346_573_6, -0.346_573_6, 0.346_573_7, 1e-3, -1e-3]);
        x
    }

    /// 0.5·v·(1 + tanh(u)) in the form that keeps its precision for very negative u in f64 too.
    fn gelu64(v: f64) -> f64 {
        v / (1.0 + (-2.0 * (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044_715 * v * v * v)).exp())
    }

    /// Largest error in ulp of the f64 value over `x`, for one implementation.
    fn worst(x: &[f32], got: &[f32], f: impl Fn(f64) -> f64) -> f64 {
        x.iter()
            .zip(got)
            .map(|(&v, &g)| {
                let want = f(v as f64);
                if (want as f32).is_infinite() || g.is_infinite() {
                    assert_eq!(g, want as f32, "expected {want} at {v}, got {g}");
                    return 0.0;
                }
                (g as f64 - want).abs() / ulp(want)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn expm1_is_within_two_ulp_of_f64() {
        // Odd length: the padded tail is covered too.
        let x = inputs(-100.0, 88.7, 200_001);
        let mut got = vec![f32::NAN; x.len()];
        portable::expm1_scaled(&x, 1.0, &mut got);
        let libm = worst(&x, &got, f64::exp_m1);
        expm1_scaled(&x, 1.0, &mut got);
        let ours = worst(&x, &got, f64::exp_m1);
        assert!(ours <= 2.0 && libm <= 2.0, "expm1: {ours} ulp (libm {libm})");
        for scale in [1e-6f32, 5.85] {
            expm1_scaled(&x, scale, &mut got);
            let e = worst(&x, &got, |v| v.exp_m1() * scale as f64);
            assert!(e <= 2.5, "expm1 · {scale}: {e} ulp");
        }
    }

    #[test]
    fn expm1_edges() {
        let x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 88.8, 89.0, -87.5, -200.0, 0.0, -0.0, f32::MIN_POSITIVE];
        let mut got = [0.0; 10];
        expm1_scaled(&x, 1.0, &mut got);
        assert!(got[0].is_nan());
        assert_eq!(&got[1..], &[f32::INFINITY, -1.0, f32::INFINITY, f32::INFINITY, -1.0, -1.0, 0.0, 0.0, f32::MIN_POSITIVE]);
    }

    #[test]
    fn gelu_is_within_a_few_ulp_of_f64() {
        let x = inputs(-12.0, 12.0, 100_003);
        let mut got = vec![f32::NAN; x.len()];
        gelu_tanh(&x, &mut got);
        // For negative u = √(2/π)(v + 0.044715 v³) the result is ≈ v·e^(2u), so the rounding of
        // u itself (a few ulp of u) moves it by a few |u| ulp: the tolerance grows with |u|.
        // Results near the bottom of the normal range may flush to 0.
        for (&v, &g) in x.iter().zip(&got) {
            let want = gelu64(v as f64);
            let u = (2.0 / std::f64::consts::PI).sqrt() * (v as f64 + 0.044_715 * (v as f64).powi(3));
            let tol = ((4.0 + 6.0 * u.abs()) * ulp(want)).max(f32::MIN_POSITIVE as f64 * (v as f64).abs());
            assert!((g as f64 - want).abs() <= tol, "gelu({v}) = {g}, want {want}");
        }
        portable::gelu_tanh(&x, &mut got);
        for (&v, &g) in x.iter().zip(&got) {
            let want = gelu64(v as f64);
            assert!((g as f64 - want).abs() <= 4.0 * ulp(want) + 1e-7 * (v as f64).abs().max(1.0), "libm gelu({v}) = {g}, want {want}");
        }
        let edges = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 0.0];
        let mut got = [0.0; 6];
        gelu_tanh(&edges, &mut got);
        assert!(got[0].is_nan() && got[2].is_nan());
        assert_eq!(&got[3..], &[1e30, -0.0, 0.0]);
        assert_eq!(got[1], f32::INFINITY);
    }
}
