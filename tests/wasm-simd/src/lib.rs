//! The wasm SIMD kernels (src/ops/linear/simd128.rs, src/ops/linear/int8_simd128.rs with the
//! integer layer of src/ops/linear/int8.rs around it, the simd128 module of src/ops/math.rs)
//! checked on wasm32 itself, where `cargo test` cannot run them: the kernel files are compiled
//! into this small module, and tests/wasm-simd/run.mjs calls its checks in Node. The checks mirror
//! the unit tests: each f32 kernel against an f64 loop on odd sizes, the decodes bit for bit
//! against the portable ones, the integer kernels bit for bit against the plain integer loop,
//! alone and inside the whole layer at odd sizes, expm1 and GELU in ulp of the f64 functions
//! (Node's Math.expm1 and Math.exp). Run: bash scripts/test-wasm-simd.sh.
#![allow(dead_code)]

#[path = "../../../src/quant.rs"]
mod quant;
#[path = "../../../src/ops/linear/simd128.rs"]
mod simd128;
/// The integer path with the siblings it uses, as in src/ops/linear.
#[path = "../../../src/ops/linear"]
mod linear {
    pub mod int8;
    pub mod int8_simd128;
    mod weights;
    pub use weights::Weights;

    /// `int8::run` with the simd128 kernel (what `int8::cpu` picks in the wasm build) and with
    /// the plain loops.
    pub fn run_both(x: &[f32], m: usize, w: &Weights, bits: int8::Bits, bias: &[f32], simd: &mut [f32], plain: &mut [f32]) {
        assert_eq!(int8::Kernel::detect(), int8::Kernel::Simd128);
        int8::run(int8::Kernel::Simd128, x, m, w, bits, Some(bias), simd);
        int8::run(int8::Kernel::Portable, x, m, w, bits, Some(bias), plain);
    }
}
use linear::int8_simd128;
#[path = "../../../src/ops/math.rs"]
mod math;

/// The one variant math.rs uses (its portable GELU), as in src/ops/activation.rs.
#[derive(Clone, Copy, PartialEq)]
pub enum Activation {
    GeluTanh,
}
impl Activation {
    pub fn apply(self, v: f32) -> f32 {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v)).tanh())
    }
}

use quant::*;

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn d64(a: &[f32], b: &[f32]) -> (f64, f64) {
    let s = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let m = a.iter().zip(b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
    (s, m)
}
fn rel(got: f32, (want, mag): (f64, f64)) -> f64 { (got as f64 - want).abs() / (mag + 1e-30) }

/// Worst |simd − f64| / Σ|products| over every linear kernel; 1e9 when decode differs from the portable decode.
#[unsafe(no_mangle)]
pub extern "C" fn check_linear() -> f64 {
    let mut r = Rng(7);
    let mut worst = 0f64;
    for k in [1usize, 3, 4, 7, 15, 16, 17, 33, 63, 64, 100, 511, 512, 1023] {
        let a: Vec<f32> = (0..k).map(|_| r.f()).collect();
        let b: Vec<f32> = (0..k).map(|_| r.f()).collect();
        worst = worst.max(rel(simd128::dot(&a, &b), d64(&a, &b)));
        // tile
        let xs: Vec<Vec<f32>> = (0..4).map(|_| (0..k).map(|_| r.f()).collect()).collect();
        let ws: Vec<Vec<f32>> = (0..3).map(|_| (0..k).map(|_| r.f()).collect()).collect();
        let t = simd128::tile([&xs[0], &xs[1], &xs[2], &xs[3]], [&ws[0], &ws[1], &ws[2]]);
        for a in 0..4 { for c in 0..3 { worst = worst.max(rel(t[a][c], d64(&xs[a], &ws[c]))); } }
    }
    for blocks in [1usize, 3, 5, 16, 33] {
        let k = blocks * 32;
        let vals: Vec<f32> = (0..k).map(|_| 0.3 * r.f()).collect();
        let xs: Vec<Vec<f32>> = (0..3).map(|_| (0..k).map(|_| r.f()).collect()).collect();
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let m = Matrix::encode(1, k, &vals, dtype);
            let mut row = vec![0.0; k];
            m.decode_row(0, &mut row);
            let bb = if dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
            let mut dec = vec![0.0; k];
            for (o, b) in dec.chunks_exact_mut(32).zip(m.bytes.chunks_exact(bb)) {
                if dtype == DType::Q8_0 { simd128::decode_q8_0(b, o) } else { simd128::decode_q4_0(b, o) }
            }
            if dec.iter().zip(&row).any(|(a, b)| a.to_bits() != b.to_bits()) { return 1e9; }
            let q = |xs: &[&[f32]]| -> Vec<f32> {
                match (dtype, xs.len()) {
                    (DType::Q8_0, 1) => simd128::dot_q8_0(&m.bytes, [xs[0]]).to_vec(),
                    (DType::Q8_0, 2) => simd128::dot_q8_0(&m.bytes, [xs[0], xs[1]]).to_vec(),
                    (DType::Q8_0, _) => simd128::dot_q8_0(&m.bytes, [xs[0], xs[1], xs[2]]).to_vec(),
                    (_, 1) => simd128::dot_q4_0(&m.bytes, [xs[0]]).to_vec(),
                    (_, 2) => simd128::dot_q4_0(&m.bytes, [xs[0], xs[1]]).to_vec(),
                    _ => simd128::dot_q4_0(&m.bytes, [xs[0], xs[1], xs[2]]).to_vec(),
                }
            };
            for mrows in 1..=3 {
                let refs: Vec<&[f32]> = xs[..mrows].iter().map(|v| v.as_slice()).collect();
                let got = q(&refs);
                for i in 0..mrows { worst = worst.max(rel(got[i], d64(&xs[i], &row))); }
            }
        }
    }
    worst
}

/// The plain loop of the integer path (src/ops/linear/int8.rs, `portable_dot`): Σ over blocks of
/// `(d_w · d_x) · Σ w·x` in block order, the block sums exact in i32.
fn integer_dot(dtype: DType, row: &[u8], x: &[i32], xd: &[f32]) -> f32 {
    let bb = if dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
    let mut acc = 0.0f32;
    for (blk, b) in row.chunks_exact(bb).enumerate() {
        let w = |t: usize| -> i32 {
            if dtype == DType::Q8_0 { b[2 + t] as i8 as i32 } else if t < 16 { (b[2 + t] & 0x0f) as i32 - 8 } else { (b[2 + t - 16] >> 4) as i32 - 8 }
        };
        let dot: i32 = (0..32).map(|t| w(t) * x[blk * 32 + t]).sum();
        acc += scale_of(b) * xd[blk] * dot as f32;
    }
    acc
}

/// Number of integer-kernel results (`dot4`, `dot_inputs` with 1–4 inputs) that differ from the
/// plain loop's bits, over Q8_0 / Q4_0 weights and 8- / 16-bit inputs at odd block counts, the
/// extreme quants included (weights −128 / 127 and nibbles 0 / 15, inputs ±127 / ±32,767).
#[unsafe(no_mangle)]
pub extern "C" fn check_integer() -> u32 {
    let mut r = Rng(11);
    let mut bad = 0;
    for blocks in [1usize, 3, 5, 16, 33] {
        let k = blocks * 32;
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let bb = if dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
            let vals: Vec<f32> = (0..4 * k).map(|_| 0.3 * r.f()).collect();
            let mut m = Matrix::encode(4, k, &vals, dtype);
            // Row 3: the extreme quants.
            for b in m.bytes[3 * blocks * bb..].chunks_exact_mut(bb) {
                for (t, q) in b[2..].iter_mut().enumerate() {
                    *q = if dtype == DType::Q8_0 { [0x80u8, 0x7f][t % 2] } else { [0x0fu8, 0xf0, 0x00, 0xff][t % 4] };
                }
            }
            let rows: Vec<&[u8]> = m.bytes.chunks_exact(blocks * bb).collect();
            let scales: Vec<Vec<f32>> = rows.iter().map(|row| row.chunks_exact(bb).map(scale_of).collect()).collect();
            for wide in [false, true] {
                let top = if wide { 32767.0 } else { 127.0 };
                // Four input rows; the last at ± the largest quant.
                let xs: Vec<(Vec<i32>, Vec<u8>, Vec<f32>)> = (0..4)
                    .map(|i| {
                        let q: Vec<i32> = (0..k).map(|t| if i == 3 { [1, -1][t / 3 % 2] * top as i32 } else { (r.f() * top).round() as i32 }).collect();
                        let bytes = if wide { q.iter().flat_map(|v| (*v as i16).to_le_bytes()).collect() } else { q.iter().map(|v| *v as i8 as u8).collect() };
                        (q, bytes, (0..blocks).map(|_| 0.01 + r.f().abs()).collect())
                    })
                    .collect();
                for (q, bytes, xd) in &xs {
                    let got = int8_simd128::dot4(dtype == DType::Q8_0, [rows[0], rows[1], rows[2], rows[3]], [&scales[0], &scales[1], &scales[2], &scales[3]], bytes, xd, wide);
                    for j in 0..4 {
                        bad += (got[j].to_bits() != integer_dot(dtype, rows[j], q, xd).to_bits()) as u32;
                    }
                }
                for (j, row) in rows.iter().enumerate() {
                    for n in 1..=4 {
                        let inputs: Vec<(&[u8], &[f32])> = xs[..n].iter().map(|(_, b, d)| (b.as_slice(), d.as_slice())).collect();
                        let mut got = [f32::NAN; 4];
                        int8_simd128::dot_inputs(dtype == DType::Q8_0, row, &scales[j], &inputs, wide, &mut got);
                        for (i, (q, _, xd)) in xs[..n].iter().enumerate() {
                            bad += (got[i].to_bits() != integer_dot(dtype, row, q, xd).to_bits()) as u32;
                        }
                    }
                }
            }
        }
    }
    bad
}

/// The whole integer layer (`int8::run`: quantized inputs, panels, slices of the width, four
/// weight rows per pass and 1–4 input rows per pass with their tails) at sizes that leave a tail in
/// every loop, into poisoned outputs: the number of results that differ from the plain loops'
/// bits, plus those off an f64 sum of the same integer block dots by more than the native unit
/// test's 2e-6 of Σ|terms| (src/ops/linear/int8.rs, `kernel_matches_the_integer_reference_at_odd_sizes`).
#[unsafe(no_mangle)]
pub extern "C" fn check_integer_layer() -> u32 {
    use linear::int8::{Bits, block_dots, quantize_rows};
    let mut r = Rng(13);
    let mut bad = 0;
    let shapes = [(1, 37, 64), (2, 45, 96), (3, 33, 32), (5, 70, 2080), (7, 19, 4128), (1, 1100, 1024), (13, 35, 320), (1, 3, 32), (6, 41, 1056), (9, 40, 160)];
    for (m, n, k) in shapes {
        for dtype in [DType::Q8_0, DType::Q4_0] {
            for bits in [Bits::Eight, Bits::Sixteen] {
                let vals: Vec<f32> = (0..n * k).map(|_| 0.1 * r.f()).collect();
                let mat = Matrix::encode(n, k, &vals, dtype);
                let w = linear::Weights::new(mat.clone()).with_block_scales();
                let x: Vec<f32> = (0..m * k).map(|_| 2.0 * r.f()).collect();
                let bias: Vec<f32> = (0..n).map(|_| r.f()).collect();
                let (mut simd, mut plain) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                linear::run_both(&x, m, &w, bits, &bias, &mut simd, &mut plain);
                let xq = quantize_rows(&x, m, k, bits);
                let (rb, bb) = (mat.row_bytes(), if dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES });
                for i in 0..m {
                    for j in 0..n {
                        let row = &mat.bytes[j * rb..(j + 1) * rb];
                        let (mut want, mut mag) = (bias[j] as f64, bias[j].abs() as f64);
                        for (blk, s) in block_dots(dtype, row, &xq, i, linear::int8::Kernel::Portable).iter().enumerate() {
                            let t = scale_of(&row[blk * bb..]) as f64 * xq.d[i * k / 32 + blk] as f64 * *s as f64;
                            want += t;
                            mag += t.abs();
                        }
                        let (g, p) = (simd[i * n + j], plain[i * n + j]);
                        bad += (g.to_bits() != p.to_bits()) as u32;
                        bad += !((g as f64 - want).abs() <= 2e-6 * mag + 1e-6) as u32;
                    }
                }
            }
        }
    }
    bad
}

fn ulp(v: f64) -> f64 { 2f64.powf(v.abs().max(f32::MIN_POSITIVE as f64).log2().floor() - 23.0) }
fn inputs(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n).map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32).collect();
    x.extend([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.346_573_6, -0.346_573_6, 0.346_573_7, 1e-3, -1e-3]);
    x
}
fn worst(x: &[f32], got: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    x.iter().zip(got).map(|(&v, &g)| {
        let want = f(v as f64);
        if (want as f32).is_infinite() || g.is_infinite() { return if g == want as f32 { 0.0 } else { 1e9 }; }
        (g as f64 - want).abs() / ulp(want)
    }).fold(0.0, f64::max)
}
unsafe extern "C" { fn expm1_64(x: f64) -> f64; fn exp_64(x: f64) -> f64; }
fn em1(v: f64) -> f64 { unsafe { expm1_64(v) } }
fn gelu64(v: f64) -> f64 { v / (1.0 + unsafe { exp_64(-2.0 * (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044_715 * v * v * v)) }) }

/// Worst expm1 ulp (with scale 1; 1e9 on a wrong infinity).
#[unsafe(no_mangle)]
pub extern "C" fn check_expm1(scale: f32) -> f64 {
    let x = inputs(-100.0, 88.7, 200_001);
    let mut got = vec![f32::NAN; x.len()];
    math::expm1_scaled(&x, scale, &mut got);
    worst(&x, &got, |v| em1(v) * scale as f64)
}
/// 0 if the edge cases match the AVX2 test's expectations.
#[unsafe(no_mangle)]
pub extern "C" fn check_edges() -> u32 {
    let x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 88.8, 89.0, -87.5, -200.0, 0.0, -0.0, f32::MIN_POSITIVE];
    let mut got = [0.0; 10];
    math::expm1_scaled(&x, 1.0, &mut got);
    if !got[0].is_nan() { return 1; }
    if got[1..] != [f32::INFINITY, -1.0, f32::INFINITY, f32::INFINITY, -1.0, -1.0, 0.0, 0.0, f32::MIN_POSITIVE] { return 2; }
    let edges = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 0.0];
    let mut g = [0.0; 6];
    math::gelu_tanh(&edges, &mut g);
    if !(g[0].is_nan() && g[2].is_nan()) { return 3; }
    if g[3..] != [1e30, -0.0, 0.0] || g[1] != f32::INFINITY { return 4; }
    0
}
/// Number of GELU values outside the AVX2 test's tolerance.
#[unsafe(no_mangle)]
pub extern "C" fn check_gelu() -> u32 {
    let x = inputs(-12.0, 12.0, 100_003);
    let mut got = vec![f32::NAN; x.len()];
    math::gelu_tanh(&x, &mut got);
    let mut bad = 0;
    for (&v, &g) in x.iter().zip(&got) {
        let want = gelu64(v as f64);
        let u = (2.0 / std::f64::consts::PI).sqrt() * (v as f64 + 0.044_715 * (v as f64).powi(3));
        let tol = ((4.0 + 6.0 * u.abs()) * ulp(want)).max(f32::MIN_POSITIVE as f64 * (v as f64).abs());
        if !((g as f64 - want).abs() <= tol) { bad += 1; }
    }
    bad
}
