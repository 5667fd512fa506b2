// Prior input layer: h[r] = bias + Σ_f table[index[r, f]] + Σ_k numeric[r, k] · table[numeric_row0 + k],
// one invocation per output element, summed in the CPU twin's order.

struct Params {
    rows: u32,
    hidden: u32,
    fields: u32,
    numeric_row0: u32,
    numeric: u32, // numeric fields per row
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;
@group(0) @binding(4) var<storage, read> numeric: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.rows * p.hidden) {
        return;
    }
    let r = i / p.hidden;
    let h = i % p.hidden;
    var acc = bias[h];
    for (var f = 0u; f < p.fields; f++) {
        acc += table[index[r * p.fields + f] * p.hidden + h];
    }
    for (var k = 0u; k < p.numeric; k++) {
        acc += numeric[r * p.numeric + k] * table[(p.numeric_row0 + k) * p.hidden + h];
    }
    y[i] = acc;
}
