//! The shipped models against the PyTorch model's outputs (tests/golden, written by the training
//! pipeline from the same quantized weights, dequantized in PyTorch).
//!
//! Tolerance: PyTorch and refcast both compute in f32 but sum in different orders; over dot
//! products of up to 8,192 terms through two residual trunks, the CPU backend lands within 1e-5
//! of PyTorch (measured worst case 9.8e-6); latents and log-CPM are compared at 5e-5 · (1 + |x|),
//! five times that, so a real error (a wrong index, a missing bias: ≥ 1e-2) cannot hide.

mod common;

use refcast::format::{Group, Metadata, ModelFile};
use refcast::ops::kernel::KernelStyle;
use refcast::sample::{MatchReport, Reference};
use refcast::session::{Request, Sampling, Session};
use refcast::{Backend, CpuBackend};
use serde::Deserialize;

const TOLERANCE: f32 = 5e-5;

#[derive(Deserialize)]
struct Golden {
    model: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    mode: String,
    reference: Option<GoldenReference>,
    condition_on: Vec<Group>,
    technical: Metadata,
    biological: Metadata,
    perturbation: Metadata,
    seed: Option<u64>,
    sample_index: Option<usize>,
    expected: Expected,
}

#[derive(Deserialize)]
struct GoldenReference {
    log_cpm: Vec<f32>,
    library_size: f32,
}

#[derive(Deserialize)]
struct Expected {
    z: Vec<f32>,
    log_cpm: Vec<f32>,
}

fn load(name: &str) -> (Golden, ModelFile) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let golden: Golden = serde_json::from_slice(&std::fs::read(format!("{dir}/tests/golden/{name}")).unwrap()).unwrap();
    let file = ModelFile::from_bytes(&std::fs::read(format!("{dir}/{}", golden.model)).unwrap()).unwrap();
    (golden, file)
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / (1.0 + w.abs());
        assert!(err <= TOLERANCE, "{what}[{i}]: refcast {g}, PyTorch {w}");
        worst = worst.max(err);
    }
    worst
}

async fn check<B: Backend>(session: &mut Session<B>, golden: &Golden) {
    for case in &golden.cases {
        let mut context = case.technical.clone();
        context.extend(case.biological.clone());
        let mut req = Request::prompt(vec![context], vec![case.perturbation.clone()]);
        if let Some(r) = &case.reference {
            check_bundled_example(session, case, r);
            req.references = vec![Reference {
                name: "golden".into(),
                log_cpm: r.log_cpm.clone(),
                library_size: r.library_size,
                measured: vec![true; r.log_cpm.len()],
                report: MatchReport::default(),
            }];
        }
        req.condition_on = case.condition_on.clone();
        let draw = case.sample_index.unwrap_or(0);
        if case.mode == "sample" {
            req.sampling = Sampling::Samples { num_samples: draw + 1, seed: case.seed.unwrap() };
        }
        let pred = session.predict(&req).await.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let d = case.expected.z.len();
        let z = &pred.latents[draw * d..(draw + 1) * d];
        let ez = assert_close(&format!("{}: z", case.name), z, &case.expected.z);
        let g = pred.genes;
        let el = assert_close(&format!("{}: log-CPM", case.name), &pred.log_cpm[draw * g..(draw + 1) * g], &case.expected.log_cpm);
        eprintln!("{} [{}]: worst relative error z {ez:.1e}, log-CPM {el:.1e}", case.name, session.describe());
    }
}

/// The bundled example files, read by refcast, give the golden references exactly.
fn check_bundled_example<B: Backend>(session: &Session<B>, case: &Case, r: &GoldenReference) {
    if !case.name.contains("(bundled example)") {
        return;
    }
    let file = if case.name.starts_with("airway") { "airway_N61311_untreated.tsv" } else { "kang_cd14_mono_ctrl.tsv" };
    let bytes = std::fs::read(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let table = refcast::SampleTable::parse(&bytes, refcast::ValueKind::Auto).unwrap();
    let ours = session.reference(&table, 0).unwrap();
    assert!((ours.library_size - r.library_size).abs() <= 1e-6 * r.library_size, "{file}: library size");
    for (g, (a, b)) in ours.log_cpm.iter().zip(&r.log_cpm).enumerate() {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{file}: gene {g}: refcast {a}, pipeline {b}");
    }
}

#[test]
fn cpu_backend_matches_pytorch() {
    for name in ["golden_q8_0.json", "golden_q4_0.json"] {
        let (golden, file) = load(name);
        let mut s = Session::new(CpuBackend::new(), &file).unwrap();
        pollster::block_on(check(&mut s, &golden));
    }
}

#[test]
fn gpu_backend_matches_pytorch() {
    // Both kernel styles (workgroup memory for GPUs, flat for CPU-emulated adapters) on this adapter.
    for style in [KernelStyle::Workgroup, KernelStyle::Flat] {
        let Some(mut gpu) = common::gpu_or_skip() else { return };
        gpu.set_kernel_style(style);
        let (golden, file) = load("golden_q4_0.json");
        let mut s = Session::new(gpu, &file).unwrap();
        pollster::block_on(check(&mut s, &golden));
    }
}

/// What `GpuBackend::prebuild` compiles before a model is uploaded (the browser overlaps it with
/// parsing and uploading) is everything a first batch-1 prediction needs: that prediction creates
/// no pipeline of its own.
#[test]
fn prebuilt_pipelines_cover_a_first_prediction() {
    use refcast::backend::gpu::forward_kernels;
    use refcast::ops::Activation;
    for style in [KernelStyle::Workgroup, KernelStyle::Flat] {
        for name in ["golden_q8_0.json", "golden_q4_0.json"] {
            let Some(mut gpu) = common::gpu_or_skip() else { return };
            gpu.set_kernel_style(style);
            let (_, file) = load(name);
            let kernels = forward_kernels(style, &refcast::model::linear_dtypes(&file), &[Activation::GeluTanh, Activation::Relu]);
            pollster::block_on(gpu.prebuild(&kernels).unwrap().ready());
            let built = gpu.pipeline_count();
            assert!(built > 0);
            let mut s = Session::new(gpu, &file).unwrap();
            let bytes = std::fs::read(format!("{}/examples/kang_cd14_mono_ctrl.tsv", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let table = refcast::SampleTable::parse(&bytes, refcast::ValueKind::Auto).unwrap();
            let reference = s.reference(&table, 0).unwrap();
            let perturbation = file.config.perturbations[0].metadata.clone();
            pollster::block_on(s.predict(&Request::conditioned(vec![reference], vec![perturbation]))).unwrap();
            assert_eq!(s.backend().pipeline_count(), built, "{name}, {style:?}: the first prediction compiled more pipelines");
        }
    }
}
