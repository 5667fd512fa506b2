// Linear layer y = x · Wᵀ + b for one chunk of W's rows (output columns).
//
// Weight encodings (one define each), repacked at upload into 32-bit words:
//   F32   w: f32 per value, rows of `k` values
//   F16   w: two f16 per word (value 2i in the low half), rows padded to `row_words` words
//   Q8_0  w: four i8 per word (value 4i in the low byte), `scales`: one f32 per block of 32;
//         value = q · d
//   Q4_0  w: four words per block of 32 in GGML byte order (byte j holds value j in its low nibble
//         and value j + 16 in its high nibble), `scales` as Q8_0; value = (q − 8) · d
// QUANT is defined with Q8_0 and Q4_0.
//
// Entry points: `matvec` (few input rows: one workgroup reduces 8 weight rows over k for one input
// row) and `tiled` (64 × 64 output tiles through workgroup memory), for GPUs; `matvec_flat` and
// `tiled_flat`, with no workgroup memory and no barriers, for adapters that emulate a GPU on the
// CPU (SwiftShader, llvmpipe), where a barrier suspends and resumes every invocation of the
// workgroup and costs more than the arithmetic.

struct Params {
    m: u32,          // input rows
    n: u32,          // weight rows in this chunk
    k: u32,          // input columns
    out_stride: u32, // output columns of the whole layer
    out_offset: u32, // first output column (and bias index) of this chunk
    row_words: u32,  // words per weight row
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#ifdef F32
@group(0) @binding(2) var<storage, read> w: array<f32>;
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;
#endif
#ifdef QUANT
@group(0) @binding(3) var<storage, read> scales: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
#endif

// Sign-extends the four bytes of a word (byte 0 first).
fn i8x4(word: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(word) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Weights of `row`, columns k .. k + 3 (k a multiple of 4); zero past the row's end.
fn w4(row: u32, k: u32) -> vec4<f32> {
#ifdef F32
    let base = row * p.k + k;
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (k + i < p.k) {
            v[i] = w[base + i];
        }
    }
    return v;
#endif
#ifdef F16
    let word = row * p.row_words + k / 2u;
    let lo = unpack2x16float(w[word]);
    var hi = vec2<f32>(0.0);
    if (k / 2u + 1u < p.row_words) {
        hi = unpack2x16float(w[word + 1u]);
    }
    return vec4<f32>(lo, hi);
#endif
#ifdef Q8_0
    let d = scales[row * (p.k / 32u) + k / 32u];
    return i8x4(w[row * p.row_words + k / 4u]) * d;
#endif
#ifdef Q4_0
    let d = scales[row * (p.k / 32u) + k / 32u];
    let o = k % 32u;
    var shift = vec4<u32>(0u, 8u, 16u, 24u);
    var word_in_block = o / 4u;
    if (o >= 16u) {
        shift += vec4<u32>(4u);
        word_in_block -= 4u;
    }
    let word = w[row * p.row_words + (k / 32u) * 4u + word_in_block];
    let q = (vec4<u32>(word) >> shift) & vec4<u32>(15u);
    return (vec4<f32>(q) - vec4<f32>(8.0)) * d;
#endif
}

// Inputs of `row`, columns k .. k + 3; zero past the row's end.
fn x4(row: u32, k: u32) -> vec4<f32> {
    let base = row * p.k + k;
    if (k + 4u <= p.k) {
        return vec4<f32>(x[base], x[base + 1u], x[base + 2u], x[base + 3u]);
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (k + i < p.k) {
            v[i] = x[base + i];
        }
    }
    return v;
}

const MV_ROWS: u32 = 8u;   // weight rows per workgroup
const MV_LANES: u32 = 32u; // invocations per weight row

var<workgroup> partial: array<f32, 256>;

// Workgroup (i, m): weight rows 8i .. 8i + 7 against input row m.
@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = lid / MV_LANES;
    let lane = lid % MV_LANES;
    let row = wid.x * MV_ROWS + r;
    let m = wid.y;
    var acc = 0.0;
    if (row < p.n) {
        for (var k = lane * 4u; k < p.k; k += MV_LANES * 4u) {
            acc += dot(w4(row, k), x4(m, k));
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = MV_LANES / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.n) {
        let col = p.out_offset + row;
        y[m * p.out_stride + col] = partial[lid] + bias[col];
    }
}

const TILE: u32 = 64u; // output rows and columns per workgroup
const TK: u32 = 16u;   // k per step

var<workgroup> xs: array<f32, 1024>; // [TK][TILE]: x tile, transposed
var<workgroup> ws: array<f32, 1024>; // [TK][TILE]: weight tile, transposed

// Workgroup (j, i): output rows 64i .. 64i + 63, columns 64j .. 64j + 63; invocation (ty, tx)
// computes rows ty + 16a and columns tx + 16b for a, b < 4.
@compute @workgroup_size(256)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // Loader: one row of the tile and four consecutive k.
    let lr = lid / 4u;
    let lk = (lid % 4u) * 4u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        var xv = vec4<f32>(0.0);
        if (row0 + lr < p.m) {
            xv = x4(row0 + lr, k0 + lk);
        }
        var wv = vec4<f32>(0.0);
        if (col0 + lr < p.n && k0 + lk < p.k) {
            wv = w4(col0 + lr, k0 + lk);
        }
        for (var i = 0u; i < 4u; i++) {
            xs[(lk + i) * TILE + lr] = xv[i];
            ws[(lk + i) * TILE + lr] = wv[i];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = vec4<f32>(xs[kk * TILE + ty], xs[kk * TILE + ty + 16u], xs[kk * TILE + ty + 32u], xs[kk * TILE + ty + 48u]);
            let b = vec4<f32>(ws[kk * TILE + tx], ws[kk * TILE + tx + 16u], ws[kk * TILE + tx + 32u], ws[kk * TILE + tx + 48u]);
            acc[0] += a[0] * b;
            acc[1] += a[1] * b;
            acc[2] += a[2] * b;
            acc[3] += a[3] * b;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + tx + 16u * j;
            if (row < p.m && col < p.n) {
                let c = p.out_offset + col;
                y[row * p.out_stride + c] = acc[i][j] + bias[c];
            }
        }
    }
}

#ifdef Q8_0
const BLOCK_WORDS: u32 = 8u;
#endif
#ifdef Q4_0
const BLOCK_WORDS: u32 = 4u;
#endif

#ifdef QUANT
// Weights 4j .. 4j + 3 of the block of 32 whose words start at `base`, before its scale.
fn q4(base: u32, j: u32) -> vec4<f32> {
#ifdef Q8_0
    return i8x4(w[base + j]);
#endif
#ifdef Q4_0
    let shift = vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>((j >> 2u) * 4u);
    let q = (vec4<u32>(w[base + (j & 3u)]) >> shift) & vec4<u32>(15u);
    return vec4<f32>(q) - vec4<f32>(8.0);
#endif
}
#endif

// Invocation (gid.x, gid.y): weight rows 4·gid.x .. +3 against input row gid.y, over all of k
// (16 invocations cover the 64 rows of a workgroup). Each input value is loaded once for the four
// rows and, for quantized weights, each block's scale once per row: loads, not arithmetic, are
// what a CPU running the kernel pays for.
@compute @workgroup_size(16)
fn matvec_flat(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.x * 4u;
    let m = gid.y;
    if (row0 >= p.n || m >= p.m) {
        return;
    }
    // Rows past the edge repeat the last one and are not written.
    let r = min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
#ifdef QUANT
    let blocks = p.k / 32u;
    let wr = r * p.row_words;
    let sr = r * blocks;
    for (var b = 0u; b < blocks; b++) {
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        let xb = m * p.k + b * 32u;
        let wb = b * BLOCK_WORDS;
        for (var j = 0u; j < 8u; j++) {
            let xi = xb + j * 4u;
            let xv = vec4<f32>(x[xi], x[xi + 1u], x[xi + 2u], x[xi + 3u]);
            s0 += q4(wr.x + wb, j) * xv;
            s1 += q4(wr.y + wb, j) * xv;
            s2 += q4(wr.z + wb, j) * xv;
            s3 += q4(wr.w + wb, j) * xv;
        }
        a0 += s0 * scales[sr.x + b];
        a1 += s1 * scales[sr.y + b];
        a2 += s2 * scales[sr.z + b];
        a3 += s3 * scales[sr.w + b];
    }
#else
    for (var k = 0u; k < p.k; k += 4u) {
        let xv = x4(m, k);
        a0 += w4(r.x, k) * xv;
        a1 += w4(r.y, k) * xv;
        a2 += w4(r.z, k) * xv;
        a3 += w4(r.w, k) * xv;
    }
#endif
    let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        if (row < p.n) {
            let col = p.out_offset + row;
            y[m * p.out_stride + col] = (acc[i].x + acc[i].y) + (acc[i].z + acc[i].w) + bias[col];
        }
    }
}

const FLAT_TILE: u32 = 4u; // output rows and columns per invocation

// Invocation (gid.x, gid.y): output rows 4·gid.y .. +3 and columns 4·gid.x .. +3, read straight
// from storage (the CPU caches hold the reuse that workgroup memory holds on a GPU).
@compute @workgroup_size(8, 8)
fn tiled_flat(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * FLAT_TILE;
    let col0 = gid.x * FLAT_TILE;
    if (row0 >= p.m || col0 >= p.n) {
        return;
    }
    // Rows and columns past the edge repeat the last one and are not written.
    let r = min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
    let c = min(vec4<u32>(col0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    var acc: array<vec4<f32>, 4>;
    for (var k = 0u; k < p.k; k += 4u) {
        let w0 = w4(c.x, k);
        let w1 = w4(c.y, k);
        let w2 = w4(c.z, k);
        let w3 = w4(c.w, k);
        for (var i = 0u; i < 4u; i++) {
            let xv = x4(r[i], k);
            acc[i] += vec4<f32>(dot(xv, w0), dot(xv, w1), dot(xv, w2), dot(xv, w3));
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if (row < p.m && col < p.n) {
                let oc = p.out_offset + col;
                y[row * p.out_stride + oc] = acc[i][j] + bias[oc];
            }
        }
    }
}
