//! The CPU backend's integer path (`CpuKernels::Integer`) against its f32 path on the same weights,
//! the shipped Q8_0 and Q4_0 models: the error budget.
//!
//! Budget: max |Δ| of predicted log-CPM ≤ `CpuKernels::INTEGER_ERROR_BOUND` (0.02, natural-log
//! units: 2 % in CPM), in both prediction modes, over every golden case of the shipped models and
//! over random references (the bundled examples with seeded noise and dropped genes, each against
//! every 50th known perturbation). 8-bit inputs (GGML's Q8_0) cost up to 0.09 on these models, 16-bit
//! inputs a few 1e-4; a wrong index or scale would be ≥ 0.1. The per-layer figures behind the
//! choice of 16-bit inputs are printed by `layer_by_layer_errors`.

mod common;

use common::golden::load;
use refcast::format::ModelFile;
use refcast::ops::Philox;
use refcast::ops::linear::int8::Bits;
use refcast::session::{PredictionMode, Request, Session};
use refcast::{CpuBackend, CpuKernels, Reference, SampleTable, ValueKind};

const MODELS: [&str; 2] = ["golden_q8_0.json", "golden_q4_0.json"];

/// The golden cases' requests, then the random references against known perturbations.
fn requests(file: &ModelFile, golden: &common::golden::Golden, seed: u64) -> Vec<(String, Request)> {
    let mut out: Vec<(String, Request)> = golden.cases.iter().map(|c| (c.name.clone(), c.request().0)).collect();
    let session = Session::cpu(file).unwrap();
    let dir = env!("CARGO_MANIFEST_DIR");
    let examples: Vec<Reference> = ["airway_N61311_untreated.tsv", "kang_cd14_mono_ctrl.tsv", "tcell_D1_unstimulated_24h.tsv"]
        .iter()
        .map(|f| {
            let table = SampleTable::parse(&std::fs::read(format!("{dir}/examples/{f}")).unwrap(), ValueKind::Auto).unwrap();
            session.reference(&table, 0).unwrap()
        })
        .collect();
    let philox = Philox::new(seed);
    let mut refs = examples.clone();
    for r in 0..9u32 {
        let mut x = examples[r as usize % 3].clone();
        x.name = format!("random {r}");
        let sd = [0.2, 0.5, 1.0][r as usize / 3];
        for (g, v) in x.log_cpm.iter_mut().enumerate() {
            let u = philox.normal(1, g as u32, r, 0);
            // One gene in five dropped to 0, the rest moved by N(0, sd).
            *v = if philox.normal(2, g as u32, r, 0) > 0.84 { 0.0 } else { (*v + sd * u).max(0.0) };
        }
        refs.push(x);
    }
    // Every 50th known perturbation (about 25 of the shipped models' 1,239), from a seeded start.
    let known = &file.config.perturbations;
    let perturbations: Vec<_> = known.iter().skip(seed as usize % 50).step_by(50).map(|p| p.metadata.clone()).collect();
    for mode in [PredictionMode::Counterfactual, PredictionMode::Decoded] {
        let mut req = Request::conditioned(refs.clone(), perturbations.clone());
        req.mode = mode;
        out.push((format!("{} references × {} perturbations, {mode:?}", refs.len(), perturbations.len()), req));
    }
    out
}

/// Max |Δ| of predicted log-CPM between two sessions over the requests, and where.
fn worst(a: &mut Session<CpuBackend>, b: &mut Session<CpuBackend>, requests: &[(String, Request)]) -> (f32, String) {
    let mut worst = (0.0f32, String::new());
    for (name, req) in requests {
        let (pa, pb) = pollster::block_on(async { (a.predict(req).await.unwrap(), b.predict(req).await.unwrap()) });
        for (g, (x, y)) in pa.log_cpm.iter().zip(&pb.log_cpm).enumerate() {
            let d = (x - y).abs();
            assert!(d.is_finite(), "{name}: value {g}: {x} vs {y}");
            if d > worst.0 {
                worst = (d, format!("{name}, gene {}", g % pa.genes));
            }
        }
    }
    worst
}

#[test]
fn int8_path_is_within_its_error_budget() {
    let seed = common::seed("int8_path_is_within_its_error_budget");
    for name in MODELS {
        let (golden, file) = load(name);
        let requests = requests(&file, &golden, seed);
        let mut f32_path = Session::cpu(&file).unwrap();
        let mut int8 = Session::cpu_with(&file, CpuKernels::Integer).unwrap();
        let (err, at) = worst(&mut f32_path, &mut int8, &requests);
        eprintln!("{}: integer path, max |Δ log-CPM| vs f32 = {err:.4} ({at})", golden.model);
        assert!(err <= CpuKernels::INTEGER_ERROR_BOUND, "{}: integer path off the f32 path by {err} at {at}", golden.model);
    }
}

/// Each quantized layer alone on the integer path with 8-bit (GGML Q8_0) and with 16-bit inputs,
/// then every layer: why `CpuKernels::Integer` quantizes inputs to 16 bits. Asserts that 8-bit
/// inputs everywhere break the budget (else they would be the faster choice) and that 16-bit
/// inputs on any one layer stay within a tenth of it. A measurement (every layer alone, twice, on
/// both models: minutes in a release build, far longer in the test profile), so run by hand:
/// `cargo test --release --test int8 -- --ignored`.
#[test]
#[ignore = "a per-layer measurement; run with --release -- --ignored"]
fn layer_by_layer_errors() {
    let seed = common::seed("layer_by_layer_errors");
    for name in MODELS {
        let (golden, file) = load(name);
        let requests = requests(&file, &golden, seed);
        let mut f32_path = Session::cpu(&file).unwrap();
        let mut layers: Vec<String> = file
            .tensors
            .iter()
            .filter(|(n, m)| m.dtype.is_quantized() && n.ends_with(".weight"))
            .map(|(n, _)| n.trim_end_matches(".weight").to_string())
            .collect();
        layers.sort();
        for bits in [Bits::Eight, Bits::Sixteen] {
            for layer in &layers {
                let l = layer.clone();
                let mut one = Session::new(CpuBackend::with_integer_layers(move |n| (n == l).then_some(bits)), &file).unwrap();
                let (err, _) = worst(&mut f32_path, &mut one, &requests);
                eprintln!("{}: {bits:?}-bit inputs, {layer} alone: {err:.4}", golden.model);
                if bits == Bits::Sixteen {
                    assert!(err <= CpuKernels::INTEGER_ERROR_BOUND / 10.0, "{layer} with 16-bit inputs alone: {err}");
                }
            }
            let mut all = Session::new(CpuBackend::with_integer_layers(move |_| Some(bits)), &file).unwrap();
            let (every, at) = worst(&mut f32_path, &mut all, &requests);
            eprintln!("{}: {bits:?}-bit inputs, every quantized layer: {every:.4} ({at})", golden.model);
            if bits == Bits::Eight {
                assert!(every > CpuKernels::INTEGER_ERROR_BOUND, "8-bit inputs everywhere are within the budget ({every}): make them the default");
            }
        }
    }
}

/// `--cpu-kernels integer` through the CLI: the bundled example's prediction within the budget of
/// the f32 kernels' (column `predicted` of the output), and an unknown value refused by name.
#[test]
fn cli_selects_the_integer_kernels() {
    let dir = std::env::temp_dir().join(format!("refcast-int8-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let predicted = |kernels: &str| -> Vec<f32> {
        let out = dir.join(format!("{kernels}.tsv"));
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_refcast"))
            .args(["predict", "--backend", "cpu", "--cpu-kernels", kernels, "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "--cpu-kernels {kernels}: {}", String::from_utf8_lossy(&run.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let col = lines.next().unwrap().split('\t').position(|h| h == "predicted").expect("a predicted column");
        lines.map(|l| l.split('\t').nth(col).unwrap().parse().unwrap()).collect()
    };
    let (f, i) = (predicted("f32"), predicted("integer"));
    assert_eq!(f.len(), i.len());
    let worst = f.iter().zip(&i).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= CpuKernels::INTEGER_ERROR_BOUND, "CLI: integer kernels off f32 by {worst}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_refcast")).args(["predict", "--cpu-kernels", "int4"]).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("unknown CPU kernels 'int4' (expected f32 or integer)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
