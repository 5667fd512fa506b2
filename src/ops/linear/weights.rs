//! A stored matrix with its quantized block scales widened to f32 once (a file of its own so
//! that the wasm kernel checks, tests/wasm-simd, compile the integer path with it).

use crate::quant::{BLOCK, DType, Matrix, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

/// A stored matrix with its quantized block scales widened to f32 once (`rows × cols / 32`
/// values; none for f32 / f16): the one-row dot products broadcast them instead of converting
/// an f16 per block and row.
#[derive(Clone, Debug)]
pub struct Weights {
    pub matrix: Matrix,
    /// Empty until `with_block_scales`.
    pub(super) scales: Vec<f32>,
}

impl Weights {
    pub fn new(matrix: Matrix) -> Weights {
        // The x86-64 kernels read them; the wasm f32 ones measured no faster with them, so the
        // wasm build widens them only for the integer path (`with_block_scales`).
        let w = Weights { matrix, scales: Vec::new() };
        if cfg!(target_arch = "x86_64") { w.with_block_scales() } else { w }
    }

    /// The same weights with their block scales widened to f32 (the integer path's kernels read
    /// them).
    pub fn with_block_scales(mut self) -> Weights {
        if self.scales.is_empty() {
            self.scales = match self.matrix.dtype {
                DType::Q8_0 => self.matrix.bytes.chunks_exact(Q8_0_BLOCK_BYTES).map(crate::quant::scale_of).collect(),
                DType::Q4_0 => self.matrix.bytes.chunks_exact(Q4_0_BLOCK_BYTES).map(crate::quant::scale_of).collect(),
                DType::F32 | DType::F16 => Vec::new(),
            };
        }
        self
    }

    /// The f32 block scales of row `j` (`with_block_scales`).
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "wasm32")), allow(dead_code))]
    pub(super) fn row_scales(&self, j: usize) -> &[f32] {
        let per_row = self.matrix.cols / BLOCK;
        &self.scales[j * per_row..(j + 1) * per_row]
    }
}

impl std::ops::Deref for Weights {
    type Target = Matrix;
    fn deref(&self) -> &Matrix {
        &self.matrix
    }
}
