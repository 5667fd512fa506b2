//! Every WGSL kernel against its CPU twin on fresh random inputs at odd sizes (not multiples of
//! the workgroup or tile sizes), with every GPU output poisoned with NaN first so that elements a
//! kernel fails to write cannot pass. Kernels with two styles (`KernelStyle`: workgroup memory for
//! GPUs, flat for CPU-emulated adapters) are tested in both on the same adapter.
//!
//! Tolerances (f32 throughout):
//! - linear: |gpu − cpu| ≤ 2e-6 · (Σ_k |x_k · w_k| + |b|) + 1e-6. Both sides use the same f32 (or
//!   dequantized) weights and differ only in summation order (tree reduction and tiles on the GPU,
//!   eight accumulators on the CPU), so the error is a few units of f32 rounding of the absolute sum.
//! - layer norm: 1e-5 relative + 1e-5 absolute (mean and variance summed in a different order).
//! - gelu: 1e-5 relative + 1e-6 absolute (GPU `tanh`); relu, add, bias, assemble, log fold change,
//!   the counterfactual profile and the mean mode of reparameterize: exact.
//! - prior embedding: 1e-6 relative + 1e-6 absolute (the same order, but a GPU may fuse a·b + c).
//! - reparameterize with noise: the raw Philox words are bit-identical; normals and z within
//!   2e-5 · (1 + |z|) (WGSL `log`, `sqrt`, `cos`, `sin`, `exp` are not correctly rounded).
//! - counts: 2e-5 relative + 1e-9 absolute (`exp` and the expm1 polynomial).

mod common;

use common::{gpu_or_skip, seed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refcast::backend::{Backend, GpuBackend};
use refcast::ops::kernel::KernelStyle;
use refcast::ops::{self, Activation, Noise, Philox, reparameterize::Streams};

const STYLES: [KernelStyle; 2] = [KernelStyle::Workgroup, KernelStyle::Flat];
use refcast::quant::{DType, Matrix};

fn gpu() -> Option<GpuBackend> {
    let mut g = gpu_or_skip()?;
    eprintln!("{}", g.describe());
    g.set_poison(true);
    Some(g)
}

fn random(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn upload(g: &mut GpuBackend, data: &[f32], rows: usize, cols: usize) -> <GpuBackend as Backend>::Tensor {
    g.tensor(data, rows, cols).unwrap()
}

fn read(g: &mut GpuBackend, t: &<GpuBackend as Backend>::Tensor) -> Vec<f32> {
    pollster::block_on(g.read(&[t])).unwrap().remove(0)
}

/// Asserts |a − b| ≤ rel · |b| + abs element-wise (NaN never passes).
fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], rel: f32, abs: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    for (i, (&a, &b)) in gpu.iter().zip(cpu).enumerate() {
        let ok = (a - b).abs() <= rel * b.abs() + abs;
        assert!(ok, "{what}: element {i}: gpu {a} cpu {b} (|Δ| = {})", (a - b).abs());
    }
}

/// Linear on the GPU against `ops::linear::cpu` on the same encoded matrix.
fn check_linear(g: &mut GpuBackend, rng: &mut StdRng, dtype: DType, m: usize, k: usize, n: usize) -> usize {
    let x = random(rng, m * k, 1.0);
    let w = Matrix::encode(n, k, &random(rng, n * k, 0.5), dtype);
    let b = random(rng, n, 0.5);
    let mut want = vec![0.0; m * n];
    ops::linear::cpu(&x, m, &w, Some(&b), &mut want);
    let lin = g.linear_weights(&w, &b).unwrap();
    let xt = upload(g, &x, m, k);
    let y = g.linear(&xt, &lin).unwrap();
    assert_eq!(g.shape(&y), (m, n));
    let got = read(g, &y);
    let wf = w.to_f32();
    for i in 0..m {
        for j in 0..n {
            let mag: f32 = (0..k).map(|c| (x[i * k + c] * wf[j * k + c]).abs()).sum::<f32>() + b[j].abs();
            let (a, c) = (got[i * n + j], want[i * n + j]);
            assert!(
                (a - c).abs() <= 2e-6 * mag + 1e-6,
                "linear {:?} {dtype} m={m} k={k} n={n}: y[{i}, {j}] gpu {a} cpu {c} (|Δ| = {}, Σ|xw| = {mag})",
                g.kernel_style(),
                (a - c).abs()
            );
        }
    }
    lin.chunks()
}

#[test]
fn linear_matches_cpu_for_every_dtype_and_shape() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("linear"));
    for style in STYLES {
        g.set_kernel_style(style);
        for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
            for m in [1, 2, 3, 17, 70] {
                for (k, n) in [(96, 45), (160, 129), (32, 1)] {
                    check_linear(&mut g, &mut rng, dtype, m, k, n);
                }
                if !dtype.is_quantized() {
                    // Odd K: f16 rows end in a half-used word.
                    check_linear(&mut g, &mut rng, dtype, m, 37, 45);
                }
            }
        }
    }
}

#[test]
fn linear_splits_weights_larger_than_one_binding() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("linear split"));
    // 1 KiB bindings: a 96-column f32 row is 384 bytes (2 rows per chunk), q4_0 48 bytes.
    g.set_max_binding_bytes(1024);
    for style in STYLES {
        g.set_kernel_style(style);
        for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
            for m in [1, 2] {
                let chunks = check_linear(&mut g, &mut rng, dtype, m, 96, 45);
                assert!(chunks > 1, "{style:?} {dtype}: {chunks} chunk(s)");
            }
        }
    }
    // Wider inputs need more than one binding's worth of activations: a clear error.
    let w = Matrix::encode(3, 96, &random(&mut rng, 3 * 96, 1.0), DType::F32);
    let lin = g.linear_weights(&w, &[0.0; 3]).unwrap();
    let err = g.tensor(&random(&mut rng, 5 * 96, 1.0), 5, 96).and_then(|x| g.linear(&x, &lin)).unwrap_err().to_string();
    assert!(err.contains("storage binding limit"), "{err}");
}

#[test]
fn layer_norm_matches_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("layer norm"));
    for style in STYLES {
        g.set_kernel_style(style);
        for (rows, cols) in [(1, 45), (5, 129), (3, 300), (2, 1), (70, 33)] {
            let x: Vec<f32> = random(&mut rng, rows * cols, 3.0).iter().map(|v| v + 1.5).collect();
            let w = random(&mut rng, cols, 1.0);
            let b = random(&mut rng, cols, 1.0);
            let mut want = vec![0.0; rows * cols];
            ops::layer_norm::cpu(&x, cols, &w, &b, 1e-5, &mut want);
            let (xt, wt, bt) = (upload(&mut g, &x, rows, cols), upload(&mut g, &w, 1, cols), upload(&mut g, &b, 1, cols));
            let y = g.layer_norm(&xt, &wt, &bt, 1e-5).unwrap();
            assert_close(&format!("layer norm {style:?} [{rows}, {cols}]"), &read(&mut g, &y), &want, 1e-5, 1e-5);
        }
    }
}

#[test]
fn activations_match_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("activation"));
    let (rows, cols) = (7, 45);
    let mut x = random(&mut rng, rows * cols, 6.0);
    x[..6].copy_from_slice(&[0.0, -0.0, 40.0, -40.0, 1e-4, -1e-4]);
    let xt = upload(&mut g, &x, rows, cols);
    for (act, rel, abs) in [(Activation::GeluTanh, 1e-5, 1e-6), (Activation::Relu, 0.0, 0.0)] {
        let mut want = vec![0.0; x.len()];
        ops::activation::cpu(act, &x, &mut want);
        let y = g.activation(&xt, act).unwrap();
        assert_close(&format!("{act:?}"), &read(&mut g, &y), &want, rel, abs);
    }
}

#[test]
fn add_matches_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("add"));
    let (rows, cols) = (5, 129);
    let (a, b, row) = (random(&mut rng, rows * cols, 2.0), random(&mut rng, rows * cols, 2.0), random(&mut rng, cols, 2.0));
    let (at, bt, rowt) = (upload(&mut g, &a, rows, cols), upload(&mut g, &b, rows, cols), upload(&mut g, &row, 1, cols));
    let mut want = vec![0.0; rows * cols];
    ops::add::cpu(&a, &b, &mut want);
    let y = g.add(&at, &bt).unwrap();
    assert_close("add", &read(&mut g, &y), &want, 0.0, 0.0);
    assert!(g.add(&at, &rowt).is_err(), "mismatched shapes must fail");
}

#[test]
fn prior_embed_matches_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("prior embed"));
    for (rows, hidden, fields, vocab, numeric) in [(1, 45, 1, 5, 0), (7, 129, 3, 11, 2)] {
        let table = random(&mut rng, (vocab + numeric) * hidden, 1.0);
        let bias = random(&mut rng, hidden, 1.0);
        let index: Vec<u32> = (0..rows * fields).map(|_| rng.random_range(0..vocab as u32)).collect();
        let num = random(&mut rng, rows * numeric, 2.0);
        let mut want = vec![0.0; rows * hidden];
        ops::prior_embed::cpu(&table, hidden, vocab, &bias, &index, &num, &mut want);
        let tt = upload(&mut g, &table, vocab + numeric, hidden);
        let bt = upload(&mut g, &bias, 1, hidden);
        let y = g.prior_embed(&tt, vocab, &bt, &index, &num, rows).unwrap();
        assert_close(&format!("prior embed rows={rows} numeric={numeric}"), &read(&mut g, &y), &want, 1e-6, 1e-6);
        let bad = vec![vocab as u32; rows * fields];
        assert!(g.prior_embed(&tt, vocab, &bt, &bad, &num, rows).is_err(), "out-of-range index must fail");
    }
}

#[test]
fn philox_words_are_bit_identical() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("philox"));
    // The Random123 known answers, then random keys and counters.
    let known = [(0u64, [0u32; 4]), (u64::MAX, [u32::MAX; 4])];
    for (s, c) in known {
        let got = pollster::block_on(g.philox_words(s, &[c])).unwrap();
        assert_eq!(got[0], Philox::new(s).block(c));
    }
    assert_eq!(pollster::block_on(g.philox_words(0, &[[0; 4]])).unwrap()[0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    let seed: u64 = rng.random();
    let counters: Vec<[u32; 4]> = (0..1000).map(|_| rng.random()).collect();
    let got = pollster::block_on(g.philox_words(seed, &counters)).unwrap();
    let p = Philox::new(seed);
    for (c, w) in counters.iter().zip(&got) {
        assert_eq!(*w, p.block(*c), "counter {c:?}");
    }
}

/// How far a GPU draw may sit from the CPU twin's, given its Box–Muller radius r. Vulkan and WGSL
/// bound `log` inside [0.5, 2] by an absolute 2⁻²¹, which moves r = √(−2 ln u) by 2⁻²¹ / r: large
/// where u is near 1 and r small (lavapipe: |Δε|·r ≤ 1e-7 over 5M draws). Elsewhere ε carries f32
/// rounding of `ln`, `cos` and `sin`, held to 2e-5 (the specs allow `cos` 2⁻¹¹; lavapipe gives 1e-6).
/// A draw z = μ + σ·ε carries σ times that.
fn draw_tolerance(z: f32, sigma: f32, r: f32) -> f32 {
    sigma * (2.0f32).powi(-21) / r + 2e-5 * (1.0 + z.abs())
}

/// The standard normal ε for element `j` and the radius r of its Box–Muller pair.
fn normal_and_radius(p: &Philox, streams: Streams, j: usize, row: u32, sample: u32) -> (f32, f32) {
    let (stream, idx) = streams.of(j);
    let eps = p.normal(stream, idx, row, sample);
    let partner = p.normal(stream, idx ^ 1, row, sample);
    (eps, eps.hypot(partner))
}

#[test]
fn reparameterize_matches_cpu_in_both_modes() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("reparameterize"));
    let (rows, d, samples) = (5, 45, 3);
    let head = random(&mut rng, rows * 2 * d, 2.0);
    let ht = upload(&mut g, &head, rows, 2 * d);
    let streams = Streams { latent: d, split: 13, lo: 0, hi: 1 };
    let mut want = vec![0.0; samples * rows * d];
    ops::reparameterize::cpu(&head, streams, None, &mut want);
    let z = g.reparameterize(&ht, streams, None, samples).unwrap();
    assert_close("reparameterize (mean)", &read(&mut g, &z), &want, 0.0, 0.0);
    for noise in [Noise { seed: rng.random(), first_sample: 0 }, Noise { seed: rng.random(), first_sample: 7 }] {
        ops::reparameterize::cpu(&head, streams, Some(noise), &mut want);
        let z = g.reparameterize(&ht, streams, Some(noise), samples).unwrap();
        let got = read(&mut g, &z);
        let p = Philox::new(noise.seed);
        for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
            let (s, row, j) = (i / (rows * d), (i / d) % rows, i % d);
            let sigma = (0.5 * head[row * 2 * d + d + j]).exp();
            let (_, r) = normal_and_radius(&p, streams, j, row as u32, noise.first_sample + s as u32);
            let tol = draw_tolerance(b, sigma, r);
            assert!((a - b).abs() <= tol, "z[{i}] ({noise:?}): gpu {a} cpu {b}, tolerance {tol}");
        }
    }
    // Pure normals (μ = 0, log σ² = 0): ε itself, over many counters.
    let zero = upload(&mut g, &vec![0.0; 64 * 2 * 256], 64, 2 * 256);
    let streams = Streams::single(256, 2);
    let noise = Noise { seed: rng.random(), first_sample: 1 };
    let z = g.reparameterize(&zero, streams, Some(noise), 1).unwrap();
    let got = read(&mut g, &z);
    let p = Philox::new(noise.seed);
    for (i, &a) in got.iter().enumerate() {
        let (eps, r) = normal_and_radius(&p, streams, i % 256, (i / 256) as u32, 1);
        assert!((a - eps).abs() <= draw_tolerance(eps, 1.0, r), "ε[{i}]: gpu {a} cpu {eps} (r = {r})");
    }
}

#[test]
fn assemble_matches_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("assemble"));
    // The encoder's latents (technical ‖ biological) share one source, as in the model.
    let (enc_rows, prior_rows, rows) = (3, 4, 11);
    let enc = random(&mut rng, enc_rows * 29, 1.0);
    let pert = random(&mut rng, prior_rows * 17, 1.0);
    let index: Vec<u32> = (0..rows)
        .flat_map(|_| [rng.random_range(0..enc_rows as u32), rng.random_range(0..enc_rows as u32), rng.random_range(0..prior_rows as u32)])
        .collect();
    let parts = [(&enc[..], 29, 0, 8), (&enc[..], 29, 8, 21), (&pert[..], 17, 1, 16)];
    let mut want = vec![0.0; rows * 45];
    ops::assemble::cpu(parts.map(|(source, cols, offset, width)| ops::assemble::Part { source, cols, offset, width }), &index, &mut want);
    let et = upload(&mut g, &enc, enc_rows, 29);
    let pt = upload(&mut g, &pert, prior_rows, 17);
    let y = g.assemble([(&et, 0, 8), (&et, 8, 21), (&pt, 1, 16)], &index).unwrap();
    assert_eq!(g.shape(&y), (rows, 45));
    assert_close("assemble", &read(&mut g, &y), &want, 0.0, 0.0);
}

#[test]
fn output_transforms_match_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("output"));
    let (rows, refs, genes) = (9, 4, 129);
    let mut pred: Vec<f32> = random(&mut rng, rows * genes, 6.0).iter().map(|v| v + 3.0).collect();
    pred[..5].copy_from_slice(&[0.0, 1e-7, -1e-7, 0.3, 12.0]);
    let reference = random(&mut rng, refs * genes, 4.0);
    let library: Vec<f32> = (0..refs).map(|_| rng.random_range(1e3..1e6)).collect();
    let index: Vec<u32> = (0..rows).map(|_| rng.random_range(0..refs as u32)).collect();
    let pt = upload(&mut g, &pred, rows, genes);
    let rt = upload(&mut g, &reference, refs, genes);
    let mut want = vec![0.0; rows * genes];
    ops::output::log_fold_change_cpu(&pred, &reference, &index, &mut want);
    let y = g.log_fold_change(&pt, &rt, &index).unwrap();
    assert_close("log fold change", &read(&mut g, &y), &want, 0.0, 0.0);
    ops::output::counts_cpu(&pred, &library, &index, &mut want);
    let y = g.counts(&pt, &library, &index).unwrap();
    assert_close("counts", &read(&mut g, &y), &want, 2e-5, 1e-9);
}

/// The counterfactual transform, whole and denoised: output rows paired with any reference row and
/// any row of the prediction as their control (the session puts the control rows after the
/// transformed ones), values spread so that some genes clamp at 0 and, denoised, some residuals
/// fall within their threshold (a zero threshold among them) and some beyond it.
#[test]
fn counterfactual_matches_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("counterfactual"));
    let (mut clamped, mut free, mut within, mut beyond) = (0, 0, 0, 0);
    for (rows, controls, refs, genes) in [(1, 1, 1, 45), (9, 3, 4, 129), (70, 5, 3, 301), (2, 0, 2, 257)] {
        let pred = random(&mut rng, (rows + controls) * genes, 6.0);
        let reference: Vec<f32> = random(&mut rng, refs * genes, 2.0).iter().map(|v| v + 2.0).collect();
        let threshold: Vec<f32> = (0..genes).map(|j| if j % 7 == 0 { 0.0 } else { rng.random_range(0.0..3.0f32) }).collect();
        let index: Vec<u32> = (0..rows)
            .flat_map(|_| [rng.random_range(0..refs as u32), rng.random_range(0..(rows + controls) as u32)])
            .collect();
        for pair in index.chunks_exact(2) {
            for j in 0..genes {
                let residual = reference[pair[0] as usize * genes + j] - pred[pair[1] as usize * genes + j];
                if residual.abs() <= threshold[j] { within += 1 } else { beyond += 1 }
            }
        }
        let pt = upload(&mut g, &pred, rows + controls, genes);
        let rt = upload(&mut g, &reference, refs, genes);
        let tt = upload(&mut g, &threshold, 1, genes);
        let mut cpu = refcast::CpuBackend::new();
        let (pc, rc, tc) = (
            cpu.tensor(&pred, rows + controls, genes).unwrap(),
            cpu.tensor(&reference, refs, genes).unwrap(),
            cpu.tensor(&threshold, 1, genes).unwrap(),
        );
        for denoised in [false, true] {
            let mut want = vec![0.0; rows * genes];
            ops::output::counterfactual_cpu(&pred[..rows * genes], &pred, &reference, denoised.then_some(&threshold[..]), &index, &mut want);
            clamped += want.iter().filter(|&&v| v == 0.0).count();
            free += want.iter().filter(|&&v| v > 0.0).count();
            // Subtractions, a clamp and a max: exact on both, so bit for bit.
            let y = g.counterfactual(&pt, &rt, denoised.then_some(&tt), &index).unwrap();
            assert_eq!(g.shape(&y), (rows, genes));
            let what = format!("counterfactual{} [{rows} + {controls}, {genes}]", if denoised { " denoised" } else { "" });
            assert_close(&what, &read(&mut g, &y), &want, 0.0, 0.0);
            assert_eq!(cpu.counterfactual(&pc, &rc, denoised.then_some(&tc), &index).unwrap().data, want, "{what} on the CPU backend");
            // Both backends refuse the same bad calls.
            let bad_control = [0, (rows + controls) as u32];
            let bad_reference = [refs as u32, 0];
            for bad in [&index[..1], &bad_control[..], &bad_reference[..]] {
                let e_gpu = g.counterfactual(&pt, &rt, denoised.then_some(&tt), bad).unwrap_err();
                let e_cpu = cpu.counterfactual(&pc, &rc, denoised.then_some(&tc), bad).unwrap_err();
                assert_eq!(e_gpu.to_string(), e_cpu.to_string());
            }
        }
        // Thresholds for other genes are refused by both.
        let (short_gpu, short_cpu) = (upload(&mut g, &threshold[1..], 1, genes - 1), cpu.tensor(&threshold[1..], 1, genes - 1).unwrap());
        let e_gpu = g.counterfactual(&pt, &rt, Some(&short_gpu), &index).unwrap_err();
        let e_cpu = cpu.counterfactual(&pc, &rc, Some(&short_cpu), &index).unwrap_err();
        assert_eq!(e_gpu.to_string(), e_cpu.to_string());
        assert!(e_cpu.to_string().contains(&format!("[1, {}] thresholds for {genes} genes", genes - 1)), "{e_cpu}");
    }
    assert!(clamped > 0 && free > 0, "{clamped} clamped and {free} free values: both cases must be covered");
    assert!(within > 0 && beyond > 0, "{within} residuals within and {beyond} beyond their threshold: both must be covered");
}

/// A small forward-like sequence twice: the second pass allocates no new pool memory.
#[test]
fn a_warm_pass_reuses_buffers() {
    let Some(mut g) = gpu() else { return };
    let mut rng = StdRng::seed_from_u64(seed("warm"));
    let w1 = g.linear_weights(&Matrix::encode(64, 96, &random(&mut rng, 64 * 96, 0.3), DType::Q8_0), &[0.1; 64]).unwrap();
    let w2 = g.linear_weights(&Matrix::encode(96, 64, &random(&mut rng, 96 * 64, 0.3), DType::Q4_0), &[0.1; 96]).unwrap();
    let (ln_w, ln_b) = (upload(&mut g, &[1.0; 96], 1, 96), upload(&mut g, &[0.0; 96], 1, 96));
    let pass = |g: &mut GpuBackend, x: &[f32]| {
        let x = g.tensor(x, 4, 96).unwrap();
        let h = g.layer_norm(&x, &ln_w, &ln_b, 1e-5).unwrap();
        let h = g.linear(&h, &w1).unwrap();
        let h = g.activation(&h, Activation::GeluTanh).unwrap();
        let h = g.linear(&h, &w2).unwrap();
        let y = g.add(&x, &h).unwrap();
        pollster::block_on(g.read(&[&y])).unwrap().remove(0)
    };
    let x = random(&mut rng, 4 * 96, 1.0);
    let first = pass(&mut g, &x);
    let bytes = g.pool_bytes();
    for _ in 0..3 {
        assert_eq!(pass(&mut g, &x), first, "same input, same output");
    }
    assert_eq!(g.pool_bytes(), bytes, "warm passes allocate nothing new");
}
