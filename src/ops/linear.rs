//! Linear layer `y = x · Wᵀ + b` with W `[out, in]` in f32, f16, Q8_0 or Q4_0; quantized weights
//! are dequantized block by block inside the loop, never expanded whole.

use crate::quant::Matrix;

/// CPU twin. `x` is `[m, w.cols]`, `out` is `[m, w.rows]`.
pub fn cpu(x: &[f32], m: usize, w: &Matrix, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    assert_eq!(x.len(), m * k, "linear input");
    assert_eq!(out.len(), m * n, "linear output");
    let mut row = vec![0.0f32; k];
    for j in 0..n {
        // One decoded weight row serves every input row: the weights are read once per call.
        w.decode_row(j, &mut row);
        let b = bias.map_or(0.0, |b| b[j]);
        for i in 0..m {
            out[i * n + j] = dot(&x[i * k..(i + 1) * k], &row) + b;
        }
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
