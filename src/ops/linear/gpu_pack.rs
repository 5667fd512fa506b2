//! The GPU's copy of a linear layer's weights: rows repacked into the 32-bit words that
//! `shaders/linear.wgsl` reads.

use crate::quant::{BLOCK, DType, Matrix, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};

/// Weight rows of one chunk repacked for the GPU: `words` are f32 bits (F32), f16 pairs (F16),
/// i8 quads (Q8_0) or GGML nibble words (Q4_0); `scales` holds one f32 per block for the
/// quantized types.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub words: Vec<u32>,
    pub scales: Option<Vec<f32>>,
    /// Words per weight row.
    pub row_words: usize,
}

/// Words per row of `w` in the packed layout.
pub fn row_words(dtype: DType, cols: usize) -> usize {
    match dtype {
        DType::F32 => cols,
        DType::F16 => cols.div_ceil(2),
        DType::Q8_0 => cols / 4,
        DType::Q4_0 => cols / 8,
    }
}

/// Packed bytes per weight row (the largest binding of a chunk).
pub fn packed_row_bytes(dtype: DType, cols: usize) -> usize {
    4 * row_words(dtype, cols)
}

/// Repacks rows `row0 .. row0 + rows` of `w` (no values change: quantized blocks keep their
/// quants, the f16 scale becomes the f32 it denotes).
pub fn pack(w: &Matrix, row0: usize, rows: usize) -> Packed {
    let rb = w.row_bytes();
    let bytes = &w.bytes[row0 * rb..(row0 + rows) * rb];
    let row_words = row_words(w.dtype, w.cols);
    let le = |c: &[u8]| u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    match w.dtype {
        DType::F32 => Packed { words: bytes.chunks_exact(4).map(le).collect(), scales: None, row_words },
        DType::F16 => {
            let mut words = Vec::with_capacity(rows * row_words);
            for row in bytes.chunks_exact(rb) {
                let mut padded = row.to_vec();
                padded.resize(row_words * 4, 0);
                words.extend(padded.chunks_exact(4).map(le));
            }
            Packed { words, scales: None, row_words }
        }
        DType::Q8_0 | DType::Q4_0 => {
            let block_bytes = if w.dtype == DType::Q8_0 { Q8_0_BLOCK_BYTES } else { Q4_0_BLOCK_BYTES };
            let blocks = bytes.len() / block_bytes;
            let mut words = Vec::with_capacity(rows * row_words);
            let mut scales = Vec::with_capacity(blocks);
            for b in bytes.chunks_exact(block_bytes) {
                scales.push(crate::quant::scale_of(b));
                words.extend(b[2..].chunks_exact(4).map(le));
            }
            debug_assert_eq!(words.len(), rows * row_words);
            debug_assert_eq!(scales.len(), rows * w.cols / BLOCK);
            Packed { words, scales: Some(scales), row_words }
        }
    }
}
