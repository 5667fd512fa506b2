// Decoder inputs z = (part 0 ‖ part 1 ‖ part 2): output row r takes, for each part g, columns
// offset_g .. offset_g + width_g of row index[r, g] of source g.

struct Params {
    rows: u32,
    width: u32,       // Σ widths
    width0: u32,
    width1: u32,
    width2: u32,
    cols0: u32,
    cols1: u32,
    cols2: u32,
    offset0: u32,
    offset1: u32,
    offset2: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> source0: array<f32>;
@group(0) @binding(2) var<storage, read> source1: array<f32>;
@group(0) @binding(3) var<storage, read> source2: array<f32>;
@group(0) @binding(4) var<storage, read> index: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.rows * p.width) {
        return;
    }
    let r = i / p.width;
    let c = i % p.width;
    if (c < p.width0) {
        y[i] = source0[index[r * 3u] * p.cols0 + p.offset0 + c];
    } else if (c < p.width0 + p.width1) {
        y[i] = source1[index[r * 3u + 1u] * p.cols1 + p.offset1 + c - p.width0];
    } else {
        y[i] = source2[index[r * 3u + 2u] * p.cols2 + p.offset2 + c - p.width0 - p.width1];
    }
}
