// Element-wise activations: `gelu_tanh` (PyTorch's approximate="tanh") and `relu`.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn gelu_tanh(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let v = x[i];
        // tanh saturates to ±1 in f32 well before |t| = 10; clamping keeps exp-based tanh
        // implementations from overflowing to NaN.
        let t = clamp(0.7978846 * (v + 0.044715 * v * v * v), -10.0, 10.0);
        y[i] = 0.5 * v * (1.0 + tanh(t));
    }
}

@compute @workgroup_size(256)
fn relu(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        y[i] = max(x[i], 0.0);
    }
}
