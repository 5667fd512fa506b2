// Output transforms of a [rows, genes] log-CPM prediction, row r tied to reference index[r]:
// `log_fold_change`: pred − reference[index[r]]; `counts`: expm1(pred) · library_size[index[r]] / 10⁶;
// `counterfactual`: max(0, reference[index[2r]] + (pred[r] − pred[index[2r + 1]])), the reference
// moved by the decoder's change from its control row (a row of pred after the `rows` transformed);
// with `denoise`, max(0, pred[r] + soft(reference − control, threshold)), soft(v, t) = v − clamp(v,
// −t, t): the reference's deviation from its reconstruction beyond a per-gene threshold.
// One entry point for all three, chosen by `transform` (one pipeline to compile, not three:
// compiling is most of a first prediction's cost on adapters that emulate a GPU on the CPU).

struct Params {
    rows: u32,
    genes: u32,
    transform: u32, // 0: log_fold_change, 1: counts, 2: counterfactual
    denoise: u32,   // counterfactual: 1 to soft-threshold the reference's deviation by `threshold`
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
// log_fold_change, counterfactual: reference log-CPM [references, genes]; counts: library sizes
// [references].
@group(0) @binding(2) var<storage, read> reference: array<f32>;
// counterfactual: [rows, 2] (reference row, control row of pred); otherwise [rows] reference rows.
@group(0) @binding(3) var<storage, read> index: array<u32>;
// counterfactual with denoise: [genes] thresholds (≥ 0); otherwise unread.
@group(0) @binding(4) var<storage, read> threshold: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

// exp(v) − 1 without cancellation near 0: a Taylor polynomial for |v| < ½ (truncation error
// below 1e-9 relative; `log`-based tricks need a more accurate `log` than WGSL promises),
// exp(v) − 1 elsewhere (relative error at most ~2.5× that of exp).
fn expm1(v: f32) -> f32 {
    if (abs(v) < 0.5) {
        var t = 1.0 + v / 10.0;
        t = 1.0 + v / 9.0 * t;
        t = 1.0 + v / 8.0 * t;
        t = 1.0 + v / 7.0 * t;
        t = 1.0 + v / 6.0 * t;
        t = 1.0 + v / 5.0 * t;
        t = 1.0 + v / 4.0 * t;
        t = 1.0 + v / 3.0 * t;
        t = 1.0 + v / 2.0 * t;
        return v * t;
    }
    return exp(v) - 1.0;
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat(wid, nwg, lid);
    if (i < p.rows * p.genes) {
        let r = i / p.genes;
        let g = i % p.genes;
        if (p.transform == 1u) {
            y[i] = expm1(pred[i]) * (reference[index[r]] * 1e-6);
        } else if (p.transform == 2u) {
            let control = pred[index[2u * r + 1u] * p.genes + g];
            let own = reference[index[2u * r] * p.genes + g];
            if (p.denoise == 1u) {
                let residual = own - control;
                let t = threshold[g];
                y[i] = max(0.0, pred[i] + (residual - clamp(residual, -t, t)));
            } else {
                y[i] = max(0.0, own + (pred[i] - control));
            }
        } else {
            y[i] = pred[i] - reference[index[r] * p.genes + g];
        }
    }
}
