//! The shipped models against the PyTorch model's outputs (tests/golden, written by the training
//! pipeline from the same quantized weights, dequantized in PyTorch).
//!
//! Tolerance: PyTorch and refcast both compute in f32 but sum in different orders; over dot
//! products of up to 8,192 terms through two residual trunks, the CPU backend lands within 1e-5
//! of PyTorch (measured worst case 9.8e-6); latents and log-CPM are compared at 5e-5 · (1 + |x|),
//! five times that, so a real error (a wrong index, a missing bias: ≥ 1e-2) cannot hide. A
//! counterfactual profile, reference + (decode(perturbation) − decode(control)), carries the errors
//! of both decoded rows: 5e-5 · (2 + |decoded| + |control|); so does a denoised one (its soft
//! threshold of reference − control moves by at most the control's error).
//!
//! The files' `golden_format` says what they hold: 1 (no field), decoded cases only; 2, every case
//! names its prediction mode and counterfactual cases (mean and sampled) are there, which the
//! tests then require; 3, denoised cases (mean and sampled) too.

mod common;

use common::golden::{Case, Golden, GoldenReference, load};
use refcast::ops::kernel::KernelStyle;
use refcast::session::{PredictionMode, Request, Session};
use refcast::{Backend, CpuBackend};

const TOLERANCE: f32 = 5e-5;

/// The newest `golden_format` these tests know (training/export.py's GOLDEN_FORMAT).
const GOLDEN_FORMAT: u32 = 3;

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

/// Asserts |got − want| ≤ scale · TOLERANCE · (2 + |a| + |b|) for a counterfactual profile built
/// from the decoded rows `a` and `b`, and returns the worst ratio of error to that bound.
fn assert_close_sum(what: &str, got: &[f32], want: &[f32], a: &[f32], b: &[f32], scale: f32) -> f32 {
    assert!(got.len() == want.len() && a.len() == want.len() && b.len() == want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for i in 0..want.len() {
        let bound = scale * TOLERANCE * (2.0 + a[i].abs() + b[i].abs());
        let err = (got[i] - want[i]).abs();
        assert!(err <= bound, "{what}[{i}]: refcast {}, PyTorch {} (decoded {}, control {})", got[i], want[i], a[i], b[i]);
        worst = worst.max(err / bound);
    }
    worst
}

async fn check<B: Backend>(session: &mut Session<B>, golden: &Golden) {
    for case in &golden.cases {
        if let Some(r) = &case.reference {
            check_bundled_example(session, case, r);
        }
        let (req, draw) = case.request();
        let pred = session.predict(&req).await.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let d = case.expected.z.len();
        let z = &pred.latents[draw * d..(draw + 1) * d];
        let ez = assert_close(&format!("{}: z", case.name), z, &case.expected.z);
        let g = pred.genes;
        let row = &pred.log_cpm[draw * g..(draw + 1) * g];
        let what = format!("{}: log-CPM", case.name);
        let el = match case.prediction() {
            PredictionMode::Decoded => format!("worst relative error {:.1e}", assert_close(&what, row, &case.expected.log_cpm)),
            PredictionMode::Counterfactual | PredictionMode::Denoised => {
                let e = &case.expected;
                let missing = || panic!("{}: a {} case without decoded_log_cpm and control_log_cpm", case.name, case.prediction());
                let (a, b) = (e.decoded_log_cpm.as_ref().unwrap_or_else(missing), e.control_log_cpm.as_ref().unwrap_or_else(missing));
                let reference = &req.references[0].log_cpm;
                let lfc = &pred.log_fold_change.as_ref().expect("a reference gives fold changes")[draw * g..(draw + 1) * g];
                for j in 0..g {
                    assert_eq!(lfc[j], row[j] - reference[j], "{}: fold change of gene {j}", case.name);
                }
                format!("worst error {:.2} of its bound", assert_close_sum(&what, row, &e.log_cpm, a, b, 1.0))
            }
        };
        if let Some(want) = &case.expected.familiarity {
            let got = pred.familiarity.first().unwrap_or_else(|| panic!("{}: no familiarity report", case.name));
            assert!((got.reconstruction_r2 - want.reconstruction_r2).abs() <= 1e-4, "{}: R² {} vs {}", case.name, got.reconstruction_r2, want.reconstruction_r2);
            let distance = got.distance.unwrap_or_else(|| panic!("{}: the model has no familiarity calibration", case.name));
            assert!((distance - want.distance).abs() <= 1e-3 * (1.0 + want.distance), "{}: distance {distance} vs {}", case.name, want.distance);
            assert_eq!((got.nearest_context.as_deref(), got.outside), (Some(want.nearest_context.as_str()), Some(want.outside)), "{}", case.name);
        }
        eprintln!("{} [{}]: worst relative error of z {ez:.1e}; log-CPM: {el}", case.name, session.describe());
    }
}

/// The bundled example files, read by refcast, give the golden references exactly.
fn check_bundled_example<B: Backend>(session: &Session<B>, case: &Case, r: &GoldenReference) {
    if !case.name.contains("(bundled example)") {
        return;
    }
    let examples = [("airway", "airway_N61311_untreated.tsv"), ("Kang", "kang_cd14_mono_ctrl.tsv"), ("T cells", "tcell_D1_unstimulated_24h.tsv")];
    let file = examples
        .iter()
        .find(|(prefix, _)| case.name.starts_with(prefix))
        .map(|(_, file)| *file)
        .unwrap_or_else(|| panic!("{}: which bundled example is this?", case.name));
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

/// A file's `golden_format` decides what it must hold: from format 2, counterfactual cases (mean
/// and sampled, each with its decoded rows), from format 3 denoised ones too, so that regenerated
/// files cannot leave them out; format 1 files (written before the counterfactual mode) hold none.
#[test]
fn golden_files_hold_the_cases_their_format_promises() {
    for name in ["golden_q8_0.json", "golden_q4_0.json"] {
        let (golden, file) = load(name);
        let format = golden.golden_format;
        assert!((1..=GOLDEN_FORMAT).contains(&format), "{name}: golden_format {format} is not one these tests know (1..={GOLDEN_FORMAT})");
        let counterfactual: Vec<&Case> = golden.cases.iter().filter(|c| c.prediction() == PredictionMode::Counterfactual).collect();
        if format >= 2 {
            assert!(golden.cases.iter().all(|c| c.prediction.is_some()), "{name}: format 2 cases name their prediction mode");
            let modes: &[PredictionMode] = if format >= 3 { &[PredictionMode::Counterfactual, PredictionMode::Denoised] } else { &[PredictionMode::Counterfactual] };
            for &prediction in modes {
                let cases: Vec<&Case> = golden.cases.iter().filter(|c| c.prediction() == prediction).collect();
                for mode in ["mean", "sample"] {
                    assert!(
                        cases.iter().any(|c| c.mode == mode && c.reference.is_some()),
                        "{name}: golden_format {format} but no {mode} {prediction} case (training/export.py writes them)"
                    );
                }
                for c in &cases {
                    assert!(c.expected.decoded_log_cpm.is_some() && c.expected.control_log_cpm.is_some(), "{}: decoded rows missing", c.name);
                }
            }
            if format >= 3 {
                assert!(file.config.format_version >= 3, "{name}: denoised cases need a model with denoising thresholds");
            }
        } else {
            assert!(counterfactual.is_empty(), "{name}: counterfactual cases in a format-1 file");
            eprintln!("{name}: golden_format 1, no counterfactual cases (`python -m training export` writes format {GOLDEN_FORMAT})");
        }
    }
}

/// The counterfactual and denoised modes on the shipped model, from the golden references: the
/// reference moved by the change between the decoded mode's rows for the perturbation and the
/// control (denoised: the perturbation's row plus the reference's deviation from the control's row
/// soft-thresholded by the model's thresholds), on the CPU and on the GPU (both kernel styles), the
/// GPU giving the CPU's profile.
#[test]
fn anchored_modes_are_the_decoded_change_on_every_backend() {
    let (golden, file) = load("golden_q4_0.json");
    let control = file.config.perturbations.iter().find(|n| refcast::ModelConfig::is_control(n)).unwrap().metadata.clone();
    let genes = file.config.architecture.genes;
    // A model without thresholds predicts the counterfactual profile in the denoised mode.
    let threshold = if file.config.format_version >= 3 { file.vector(refcast::format::DENOISE_THRESHOLD) } else { vec![0.0; genes] };
    assert!(file.config.format_version < 3 || threshold.iter().any(|&t| t > 0.0), "the shipped thresholds are not all 0");
    let cases: Vec<&Case> = golden.cases.iter().filter(|c| c.reference.is_some() && c.prediction() == PredictionMode::Decoded).collect();
    assert!(cases.len() >= 3 && cases.iter().any(|c| c.mode == "sample"));
    let modes = [PredictionMode::Counterfactual, PredictionMode::Denoised];
    let mut cpu = Session::new(CpuBackend::new(), &file).unwrap();
    let mut on_cpu = Vec::new();
    for case in &cases {
        let (mut req, draw) = case.request();
        req.mode = PredictionMode::Decoded;
        req.perturbations.push(control.clone());
        let dec = pollster::block_on(cpu.predict(&req)).unwrap();
        let g = dec.genes;
        // Rows of the decoded request: draws × (perturbation, control).
        let (a, b) = (&dec.log_cpm[2 * draw * g..(2 * draw + 1) * g], &dec.log_cpm[(2 * draw + 1) * g..(2 * draw + 2) * g]);
        let reference = &req.references[0].log_cpm;
        for mode in modes {
            let (mut req, _) = case.request();
            req.mode = mode;
            let got = pollster::block_on(cpu.predict(&req)).unwrap();
            let want: Vec<f32> = (0..g)
                .map(|j| match mode {
                    PredictionMode::Denoised => {
                        let residual = reference[j] - b[j];
                        (a[j] + (residual - residual.clamp(-threshold[j], threshold[j]))).max(0.0)
                    }
                    _ => (reference[j] + (a[j] - b[j])).max(0.0),
                })
                .collect();
            let got = &got.log_cpm[draw * g..(draw + 1) * g];
            assert_close_sum(&format!("{} ({mode}, CPU)", case.name), got, &want, a, b, 1.0);
            on_cpu.push((got.to_vec(), a.to_vec(), b.to_vec()));
        }
    }
    for style in [KernelStyle::Workgroup, KernelStyle::Flat] {
        let Some(mut gpu) = common::gpu_or_skip() else { return };
        gpu.set_kernel_style(style);
        let mut s = Session::new(gpu, &file).unwrap();
        let runs = cases.iter().flat_map(|case| modes.map(|mode| (case, mode)));
        for ((case, mode), (want, a, b)) in runs.zip(&on_cpu) {
            let (mut req, draw) = case.request();
            req.mode = mode;
            let pred = pollster::block_on(s.predict(&req)).unwrap();
            let g = pred.genes;
            // Both sides within their bound of PyTorch: twice the bound between them.
            let got = &pred.log_cpm[draw * g..(draw + 1) * g];
            let worst = assert_close_sum(&format!("{} ({mode}, GPU {style:?})", case.name), got, want, a, b, 2.0);
            eprintln!("{} [GPU {style:?}]: {mode} within {worst:.2} of the bound of the CPU's", case.name);
        }
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
            // The default (denoised) mode, then the decoded one.
            let mut req = Request::conditioned(vec![reference], vec![perturbation]);
            pollster::block_on(s.predict(&req)).unwrap();
            assert_eq!(s.backend().pipeline_count(), built, "{name}, {style:?}: the first prediction compiled more pipelines");
            req.mode = PredictionMode::Decoded;
            pollster::block_on(s.predict(&req)).unwrap();
            assert_eq!(s.backend().pipeline_count(), built, "{name}, {style:?}: a decoded prediction compiled more pipelines");
        }
    }
}
