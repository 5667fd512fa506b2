// Latent draws z = μ + σ·ε from a head [μ ‖ log σ²], ε from Philox4x32-10 + Box–Muller exactly as
// `src/ops/reparameterize.rs` documents: key (seed low, seed high), counter (j / 4, row, sample,
// stream), word j % 4. One invocation per output element; output row s · rows + r holds sample
// first_sample + s of input row r. Entry `mean` writes z = μ.
//
// With RAW defined the module instead exposes `philox_words`: one Philox block per input counter,
// written as raw u32 words (checks bit-identity with the CPU twin).

struct Params {
    rows: u32,
    latent: u32,       // D
    samples: u32,
    split: u32,        // elements j < split use stream lo with index j, the rest hi with j − split
    stream_lo: u32,
    stream_hi: u32,
    key0: u32,         // seed low 32 bits
    key1: u32,         // seed high 32 bits
    first_sample: u32,
    blocks: u32,       // RAW: number of counters
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef RAW
@group(0) @binding(1) var<storage, read> counters: array<u32>;
@group(0) @binding(2) var<storage, read_write> words: array<u32>;
#else
@group(0) @binding(1) var<storage, read> head: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
#endif

const M0: u32 = 0xD2511F53u;
const M1: u32 = 0xCD9E8D57u;
const W0: u32 = 0x9E3779B9u;
const W1: u32 = 0xBB67AE85u;

// (high, low) words of the 64-bit product a · b, from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xFFFFu;
    let ah = a >> 16u;
    let bl = b & 0xFFFFu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k += vec2<u32>(W0, W1);
        }
        let p0 = mulhilo(M0, c.x);
        let p1 = mulhilo(M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

#ifdef RAW
@compute @workgroup_size(256)
fn philox_words(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat(wid, nwg, lid);
    if (i < p.blocks) {
        let c = vec4<u32>(counters[4u * i], counters[4u * i + 1u], counters[4u * i + 2u], counters[4u * i + 3u]);
        let w = philox(c, vec2<u32>(p.key0, p.key1));
        words[4u * i] = w.x;
        words[4u * i + 1u] = w.y;
        words[4u * i + 2u] = w.z;
        words[4u * i + 3u] = w.w;
    }
}
#else
const PI: f32 = 3.14159265358979;
const TAU: f32 = 6.28318530717959;

// A random word mapped to (0, 1), never 0.
fn uniform01(x: u32) -> f32 {
    return (f32(x >> 8u) + 0.5) * (1.0 / 16777216.0);
}

fn normal(stream: u32, j: u32, row: u32, sample: u32) -> f32 {
    let w = philox(vec4<u32>(j / 4u, row, sample, stream), vec2<u32>(p.key0, p.key1));
    var a = w.x;
    var b = w.y;
    if ((j % 4u) >= 2u) {
        a = w.z;
        b = w.w;
    }
    let r = sqrt(-2.0 * log(uniform01(a)));
    // θ ∈ [0, 2π) as in the CPU twin; evaluated as −cos/−sin of θ − π, inside [−π, π) where
    // GPU sin and cos are accurate.
    let theta = TAU * uniform01(b) - PI;
    if (j % 2u == 0u) {
        return -r * cos(theta);
    }
    return -r * sin(theta);
}

@compute @workgroup_size(256)
fn sample(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat(wid, nwg, lid);
    let d = p.latent;
    if (i >= p.samples * p.rows * d) {
        return;
    }
    let j = i % d;
    let r = (i / d) % p.rows;
    let s = i / (d * p.rows);
    var stream = p.stream_lo;
    var idx = j;
    if (j >= p.split) {
        stream = p.stream_hi;
        idx = j - p.split;
    }
    let eps = normal(stream, idx, r, p.first_sample + s);
    let h = r * 2u * d;
    z[i] = head[h + j] + exp(0.5 * head[h + d + j]) * eps;
}

@compute @workgroup_size(256)
fn mean(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat(wid, nwg, lid);
    let d = p.latent;
    if (i < p.samples * p.rows * d) {
        let j = i % d;
        let r = (i / d) % p.rows;
        z[i] = head[r * 2u * d + j];
    }
}
#endif
