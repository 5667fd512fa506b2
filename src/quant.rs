//! Weight matrices as stored in a model file: f32, f16, or quantized in blocks of 32 values
//! (Q8_0, Q4_0; GGML layout, see docs/FORMAT.md). The block codecs here are the reference that
//! the kernels' CPU twins and the writer use.

use half::f16;

/// Values per quantization block.
pub const BLOCK: usize = 32;
/// Bytes per Q8_0 block: f16 scale + 32 × i8.
pub const Q8_0_BLOCK_BYTES: usize = 34;
/// Bytes per Q4_0 block: f16 scale + 16 bytes of nibbles.
pub const Q4_0_BLOCK_BYTES: usize = 18;

/// Logical element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl DType {
    /// Bytes needed for `rows × cols` values, or `None` when `cols` does not fit the block size
    /// or the size overflows.
    pub fn byte_size(self, rows: usize, cols: usize) -> Option<usize> {
        let n = rows.checked_mul(cols)?;
        match self {
            DType::F32 => n.checked_mul(4),
            DType::F16 => n.checked_mul(2),
            DType::Q8_0 | DType::Q4_0 if cols % BLOCK != 0 => None,
            DType::Q8_0 => (n / BLOCK).checked_mul(Q8_0_BLOCK_BYTES),
            DType::Q4_0 => (n / BLOCK).checked_mul(Q4_0_BLOCK_BYTES),
        }
    }

    pub fn is_quantized(self) -> bool {
        matches!(self, DType::Q8_0 | DType::Q4_0)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
        })
    }
}

/// A row-major `[rows, cols]` matrix in its stored encoding (little-endian bytes).
#[derive(Clone, Debug)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub dtype: DType,
    pub bytes: Vec<u8>,
}

impl Matrix {
    /// An f32 matrix.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Matrix {
        assert_eq!(values.len(), rows * cols, "matrix values");
        Matrix { rows, cols, dtype: DType::F32, bytes: bytemuck::cast_slice(values).to_vec() }
    }

    /// Encodes f32 values in `dtype` (quantizing GGML-style for Q8_0 / Q4_0).
    pub fn encode(rows: usize, cols: usize, values: &[f32], dtype: DType) -> Matrix {
        assert_eq!(values.len(), rows * cols, "matrix values");
        let bytes = match dtype {
            DType::F32 => bytemuck::cast_slice(values).to_vec(),
            DType::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            DType::Q8_0 => values.chunks(BLOCK).flat_map(quantize_q8_0_block).collect(),
            DType::Q4_0 => values.chunks(BLOCK).flat_map(quantize_q4_0_block).collect(),
        };
        assert!(dtype.byte_size(rows, cols).is_some(), "{dtype} needs cols % 32 == 0");
        Matrix { rows, cols, dtype, bytes }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.byte_size(1, self.cols).expect("validated on construction")
    }

    /// Decodes row `r` into `out` (length `cols`).
    pub fn decode_row(&self, r: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        let row = &self.bytes[r * rb..(r + 1) * rb];
        match self.dtype {
            DType::F32 => {
                for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            DType::F16 => {
                for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DType::Q8_0 => {
                for (o, b) in out.chunks_exact_mut(BLOCK).zip(row.chunks_exact(Q8_0_BLOCK_BYTES)) {
                    dequantize_q8_0_block(b, o);
                }
            }
            DType::Q4_0 => {
                for (o, b) in out.chunks_exact_mut(BLOCK).zip(row.chunks_exact(Q4_0_BLOCK_BYTES)) {
                    dequantize_q4_0_block(b, o);
                }
            }
        }
    }

    /// All values as f32 (dequantized).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, o) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.decode_row(r, o);
        }
        out
    }
}

/// The f16 scale that starts every Q8_0 / Q4_0 block.
pub fn scale_of(block: &[u8]) -> f32 {
    f16::from_le_bytes([block[0], block[1]]).to_f32()
}

/// Quantizes 32 values to Q8_0: d = max|x| / 127, q = round(x / d).
pub fn quantize_q8_0_block(x: &[f32]) -> [u8; Q8_0_BLOCK_BYTES] {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut out = [0u8; Q8_0_BLOCK_BYTES];
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (o, v) in out[2..].iter_mut().zip(x) {
        *o = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
    }
    out
}

/// Quantizes 32 values to Q4_0: m = value of largest magnitude, d = m / −8,
/// q = clamp(round(x / d) + 8, 0, 15); byte j holds values j (low nibble) and j + 16.
pub fn quantize_q4_0_block(x: &[f32]) -> [u8; Q4_0_BLOCK_BYTES] {
    let m = x.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = m / -8.0;
    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
    let q = |v: f32| ((v * inv).round() + 8.0).clamp(0.0, 15.0) as u8;
    let mut out = [0u8; Q4_0_BLOCK_BYTES];
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for j in 0..16 {
        out[2 + j] = q(x[j]) | (q(x[j + 16]) << 4);
    }
    out
}

pub fn dequantize_q8_0_block(block: &[u8], out: &mut [f32]) {
    let d = scale_of(block);
    for (o, &q) in out.iter_mut().zip(&block[2..Q8_0_BLOCK_BYTES]) {
        *o = (q as i8) as f32 * d;
    }
}

pub fn dequantize_q4_0_block(block: &[u8], out: &mut [f32]) {
    let d = scale_of(block);
    for j in 0..16 {
        let b = block[2 + j];
        out[j] = ((b & 0x0f) as f32 - 8.0) * d;
        out[j + 16] = ((b >> 4) as f32 - 8.0) * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trip_is_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173).collect();
        let m = Matrix::encode(2, 32, &x, DType::Q8_0);
        assert_eq!(m.bytes.len(), 2 * Q8_0_BLOCK_BYTES);
        for (blk, (a, b)) in x.chunks(32).zip(m.to_f32().chunks(32)).enumerate() {
            let step = scale_of(&m.bytes[blk * 34..]);
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() <= 0.5 * step + 1e-3 * u.abs(), "{u} vs {v}");
            }
        }
    }

    #[test]
    fn q4_0_keeps_the_extreme_value_exactly_and_uses_ggml_nibble_order() {
        let mut x = vec![0.0f32; 32];
        x[3] = -2.0; // largest magnitude: d = 0.25, q = 0
        x[20] = 1.0; // q = 12, high nibble of byte 4
        let b = quantize_q4_0_block(&x);
        let mut y = [0.0f32; 32];
        dequantize_q4_0_block(&b, &mut y);
        assert_eq!(y[3], -2.0);
        assert_eq!(y[20], 1.0);
        assert_eq!(b[2 + 4] >> 4, 12);
        assert_eq!(b[2 + 3] & 0xf, 0);
    }

    #[test]
    fn zero_blocks_have_zero_scale() {
        let b = quantize_q4_0_block(&[0.0; 32]);
        let mut y = [1.0f32; 32];
        dequantize_q4_0_block(&b, &mut y);
        assert!(y.iter().all(|&v| v == 0.0));
    }
}
