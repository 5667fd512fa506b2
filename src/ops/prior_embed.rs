//! Input layer of a prior network: one-hot categorical fields and transformed numeric fields
//! projected to the hidden width, computed as a gather plus a small weighted sum:
//! `h[r] = bias + Σ_f table[index[r, f]] + Σ_k numeric[r, k] · table[numeric_row0 + k]`.
//! `index` holds rows of the table (field offsets already added).

/// What every backend checks (`table` is `(rows, hidden)`, `bias` and `numeric` are value counts):
/// the table has the numeric rows from `numeric_row0`, one bias per hidden unit, every output row
/// its numeric inputs and as many indices as the others, each a one-hot row of the table.
pub fn check(table: (usize, usize), numeric_row0: usize, bias: usize, index: &[u32], numeric: usize, rows: usize) -> crate::Result<()> {
    use crate::Error;
    let hidden = table.1;
    let k = table.0.checked_sub(numeric_row0).ok_or_else(|| {
        Error::request(format!("prior table of {} rows has no numeric row {numeric_row0}", table.0))
    })?;
    if bias != hidden {
        return Err(Error::request(format!("prior bias of {bias} values for width {hidden}")));
    }
    if numeric != rows * k {
        return Err(Error::request(format!("prior numeric inputs: {numeric} values for {rows} rows × {k} fields")));
    }
    let fields = index.len().checked_div(rows).unwrap_or(0);
    if index.len() != rows * fields {
        return Err(Error::request(format!("prior index of {} values for {rows} rows", index.len())));
    }
    super::check_index(index, numeric_row0, "prior")
}

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

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/prior_embed.wgsl)

use super::kernel::{Kernel, Shader, TypedKernel, Uniform, grid_for, shader, u, uniform};

pub const SHADER: Shader = shader!("prior_embed");

uniform! {
    /// `Params` of shaders/prior_embed.wgsl.
    pub struct PriorEmbedParams {
        pub rows: u32,
        pub hidden: u32,
        pub fields: u32,
        pub numeric_row0: u32,
        /// Numeric fields per row.
        pub numeric: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// One invocation per output element. Bindings: table, bias, index, numeric, y.
#[derive(Clone, Copy, Debug)]
pub struct PriorEmbedKernel {
    pub rows: usize,
    pub hidden: usize,
    pub fields: usize,
    pub numeric_row0: usize,
    /// Numeric fields per row.
    pub numeric: usize,
}

impl Kernel for PriorEmbedKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        "main"
    }
    fn inputs(&self) -> u32 {
        4
    }
    fn params(&self) -> Vec<u32> {
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        grid_for(self.rows * self.hidden)
    }
}

impl TypedKernel for PriorEmbedKernel {
    type Params = PriorEmbedParams;
    fn uniform(&self) -> PriorEmbedParams {
        PriorEmbedParams {
            rows: u(self.rows),
            hidden: u(self.hidden),
            fields: u(self.fields),
            numeric_row0: u(self.numeric_row0),
            numeric: u(self.numeric),
            ..bytemuck::Zeroable::zeroed()
        }
    }
}
