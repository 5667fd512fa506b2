// Layer normalisation over each row, two passes (mean, then variance of the deviations) like the
// CPU twin. `main`: one workgroup per row, sums through workgroup memory (GPUs). `main_flat`: one
// invocation per row, no barriers (adapters that emulate a GPU on the CPU, where barriers are
// costly and rows are short next to the work of a whole workgroup).

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.y * nwg.x + wid.x;
    // Extra workgroups of a 2-D grid still take part in the barriers, then write nothing.
    let live = row < p.rows;
    let base = row * p.cols;
    var s = 0.0;
    if (live) {
        for (var c = lid; c < p.cols; c += 256u) {
            s += x[base + c];
        }
    }
    let mean = workgroup_sum(lid, s) / f32(p.cols);
    var q = 0.0;
    if (live) {
        for (var c = lid; c < p.cols; c += 256u) {
            let d = x[base + c] - mean;
            q += d * d;
        }
    }
    let var_ = workgroup_sum(lid, q) / f32(p.cols);
    let inv = 1.0 / sqrt(var_ + p.eps);
    if (live) {
        for (var c = lid; c < p.cols; c += 256u) {
            y[base + c] = (x[base + c] - mean) * inv * weight[c] + bias[c];
        }
    }
}

@compute @workgroup_size(64)
fn main_flat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.y * nwg.x * 64u + gid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += x[base + c];
    }
    let mean = s / f32(p.cols);
    var q = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let d = x[base + c] - mean;
        q += d * d;
    }
    let inv = 1.0 / sqrt(q / f32(p.cols) + p.eps);
    for (var c = 0u; c < p.cols; c++) {
        y[base + c] = (x[base + c] - mean) * inv * weight[c] + bias[c];
    }
}
