//! Adds a `[cols]` bias to every row of a `[rows, cols]` matrix.

/// CPU twin.
pub fn cpu(x: &[f32], bias: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "bias output");
    for (xr, or) in x.chunks_exact(bias.len()).zip(out.chunks_exact_mut(bias.len())) {
        for ((o, v), b) in or.iter_mut().zip(xr).zip(bias) {
            *o = v + b;
        }
    }
}
