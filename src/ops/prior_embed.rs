//! Input layer of a prior network: one-hot categorical fields and transformed numeric fields
//! projected to the hidden width, computed as a gather plus a small weighted sum:
//! `h[r] = bias + Σ_f table[index[r, f]] + Σ_k numeric[r, k] · table[numeric_row0 + k]`.
//! `index` holds rows of the table (field offsets already added).

/// CPU twin. `table` is `[table_rows, hidden]`, `index` is `[rows, fields]`, `numeric` is
/// `[rows, table_rows − numeric_row0]`, `out` is `[rows, hidden]`.
pub fn cpu(
    table: &[f32],
    hidden: usize,
    numeric_row0: usize,
    bias: &[f32],
    index: &[u32],
    numeric: &[f32],
    out: &mut [f32],
) {
    let rows = out.len() / hidden;
    let fields = if rows == 0 { 0 } else { index.len() / rows };
    let k = table.len() / hidden - numeric_row0;
    assert_eq!(numeric.len(), rows * k, "prior numeric inputs");
    for r in 0..rows {
        let o = &mut out[r * hidden..(r + 1) * hidden];
        o.copy_from_slice(bias);
        for &t in &index[r * fields..(r + 1) * fields] {
            let t = t as usize;
            for (h, w) in o.iter_mut().zip(&table[t * hidden..(t + 1) * hidden]) {
                *h += w;
            }
        }
        for (j, &v) in numeric[r * k..(r + 1) * k].iter().enumerate() {
            let t = numeric_row0 + j;
            for (h, w) in o.iter_mut().zip(&table[t * hidden..(t + 1) * hidden]) {
                *h += v * w;
            }
        }
    }
}
