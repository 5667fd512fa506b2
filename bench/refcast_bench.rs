//! refcast's side of the peer benchmark (`python bench/run.py` drives it; see BENCHMARKS.md).
//!
//! Runs workloads through the public API (`Session::predict` / `Session::screen`) on one backend,
//! in one process, and prints one JSON document: cold start (bytes → first result), per-run wall
//! times of every workload, peak resident memory. Also: per-kernel timings of the model's linear
//! layers (`kernels`), and synthetic models of any gene count written to a file (`synthetic`).
//!
//!     refcast_bench run --spec spec.json --backend cpu|cpu-integer|gpu [--dump out.f32]
//!     refcast_bench adapter      # the adapter wgpu picks, and whether it has shader-f16
//!     refcast_bench kernels --backend cpu|cpu-integer|gpu --m 1,64,256 [--budget-ms 300] [--genes 8192]
//!     refcast_bench synthetic --genes 20000 --out model.safetensors
//!     refcast_bench reference --model M --tsv examples/x.tsv --out ref.f32

use std::time::{Duration, Instant};

use refcast::backend::{Backend, CpuBackend, CpuKernels, GpuBackend};
use refcast::synthetic::{SyntheticSpec, random_model};
use refcast::format::{Latent, Metadata, ModelFile, Named};
use refcast::quant::{DType, Matrix};
use refcast::sample::{MatchReport, Reference};
use refcast::session::{Baseline, PredictionMode, Request, Sampling, ScreenOptions, Session};
use serde::Deserialize;
use serde_json::{Value as Json, json};

#[derive(Deserialize)]
struct Spec {
    model: String,
    /// Raw little-endian f32 `[rows, genes]` log-CPM of the references.
    references: String,
    library_size: f32,
    workloads: Vec<Workload>,
    /// Runs after warm-up, at least (unless `budget_s` runs out first, then `floor_runs`).
    min_runs: usize,
    floor_runs: usize,
    warmup: usize,
    budget_s: f64,
}

#[derive(Deserialize, Clone)]
struct Workload {
    name: String,
    /// `predict` or `screen`.
    api: String,
    references: usize,
    perturbations: Vec<Metadata>,
    #[serde(default)]
    samples: Option<usize>,
    #[serde(default)]
    seed: u64,
    /// Skip on this backend.
    #[serde(default)]
    skip: Vec<String>,
    /// Overrides of the spec's run counts on a backend: `{"gpu": [min_runs, floor_runs]}`.
    #[serde(default)]
    runs: std::collections::HashMap<String, (usize, usize)>,
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn references(spec: &Spec, genes: usize) -> Vec<Reference> {
    let values = read_f32(&spec.references);
    assert_eq!(values.len() % genes, 0, "references file is not [rows, {genes}]");
    values
        .chunks_exact(genes)
        .enumerate()
        .map(|(i, row)| Reference {
            name: format!("ref{i}"),
            log_cpm: row.to_vec(),
            library_size: spec.library_size,
            depth_known: false,
            measured: vec![true; genes],
            report: MatchReport { matched: genes, ..Default::default() },
        })
        .collect()
}

/// A workload's inputs, built once outside the timed region (as the Python peers build their
/// arrays before timing).
enum Prepared {
    Screen(ScreenOptions),
    Predict(Request),
}

fn prepare(refs: &[Reference], w: &Workload) -> Prepared {
    match w.api.as_str() {
        "screen" => Prepared::Screen(ScreenOptions {
            perturbations: Some(w.perturbations.iter().enumerate().map(|(i, m)| Named::new(format!("p{i}"), m.clone())).collect()),
            // The default (denoised) mode against the measured reference, as the peers compute
            // (bench/graph.py): the perturbations' rows and the control's are decoded.
            mode: PredictionMode::default(),
            baseline: Some(Baseline::Reference),
            ..Default::default()
        }),
        _ => {
            // The default (denoised) mode, as the peers compute it (bench/graph.py).
            let mut req = Request::conditioned(refs[..w.references].to_vec(), w.perturbations.clone());
            if let Some(n) = w.samples {
                req.sampling = Sampling::Samples { num_samples: n, seed: w.seed };
            }
            Prepared::Predict(req)
        }
    }
}

/// One call of a workload; returns (rows predicted, the first row's log-CPM when asked).
fn call<B: Backend>(s: &mut Session<B>, refs: &[Reference], job: &Prepared, want_row: bool) -> (usize, Option<Vec<f32>>) {
    match job {
        Prepared::Screen(options) => {
            let context = Metadata::new();
            let screen = s.screen(&refs[0], &context, options);
            let hits = pollster::block_on(screen).expect("screen").hits;
            assert_eq!(hits.len(), options.perturbations.as_ref().map_or(0, Vec::len));
            (hits.len(), None)
        }
        Prepared::Predict(req) => {
            let p = pollster::block_on(s.predict(req)).expect("predict");
            let row = want_row.then(|| p.log_cpm[..p.genes].to_vec());
            (p.rows.len(), row)
        }
    }
}

fn run_workloads<B: Backend>(
    spec: &Spec,
    backend_name: &str,
    t_start: Instant,
    bytes_read: Duration,
    make: impl FnOnce() -> B,
    dump: Option<&str>,
) -> Json {
    // Cold start: bytes in memory → parsed → uploaded → first result of the first workload.
    let t = Instant::now();
    let bytes = std::fs::read(&spec.model).expect("model file");
    let read_s = t.elapsed().as_secs_f64() + bytes_read.as_secs_f64();
    let t = Instant::now();
    let file = ModelFile::from_bytes(&bytes).expect("model parses");
    let parse_s = t.elapsed().as_secs_f64();
    drop(bytes);
    let t = Instant::now();
    let backend = make();
    let adapter_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut session = Session::new(backend, &file).expect("session");
    let upload_s = t.elapsed().as_secs_f64();
    let genes = file.config.architecture.genes;
    drop(file);
    let refs = references(spec, genes);
    let first = spec.workloads.iter().find(|w| !w.skip.iter().any(|s| s == backend_name)).expect("a workload").clone();
    let t = Instant::now();
    let first_job = prepare(&refs, &first);
    let (_, row) = call(&mut session, &refs, &first_job, true);
    let first_s = t.elapsed().as_secs_f64();
    let cold_s = t_start.elapsed().as_secs_f64();
    let rss_cold = peak_rss_bytes();
    if let (Some(path), Some(row)) = (dump, row) {
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).expect("dump");
    }

    let mut results = Vec::new();
    for w in &spec.workloads {
        if w.skip.iter().any(|s| s == backend_name) {
            continue;
        }
        let (min_runs, floor) = w.runs.get(backend_name).copied().unwrap_or((spec.min_runs, spec.floor_runs));
        let job = prepare(&refs, w);
        let mut rows = 0;
        for _ in 0..spec.warmup {
            rows = call(&mut session, &refs, &job, false).0;
        }
        let mut times = Vec::new();
        let t_all = Instant::now();
        while times.len() < min_runs && (times.len() < floor || t_all.elapsed().as_secs_f64() < spec.budget_s) {
            let t = Instant::now();
            rows = call(&mut session, &refs, &job, false).0;
            times.push(t.elapsed().as_secs_f64());
        }
        eprintln!("refcast-{backend_name}: {} {} runs", w.name, times.len());
        results.push(json!({ "name": w.name, "rows": rows, "times_s": times }));
    }
    json!({
        "runtime": format!("refcast-{backend_name}"),
        "describe": session.describe(),
        "cold": { "total_s": cold_s, "read_s": read_s, "parse_s": parse_s, "adapter_s": adapter_s,
                  "upload_s": upload_s, "first_s": first_s, "first_workload": first.name },
        "peak_rss_cold_bytes": rss_cold,
        "peak_rss_bytes": peak_rss_bytes(),
        "workloads": results,
    })
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn cmd_run(args: &[String]) {
    let t_start = Instant::now();
    let spec_path = arg(args, "--spec").expect("--spec spec.json");
    let spec: Spec = serde_json::from_slice(&std::fs::read(&spec_path).expect("spec")).expect("spec JSON");
    let backend = arg(args, "--backend").unwrap_or_else(|| "cpu".into());
    let dump = arg(args, "--dump");
    let zero = Duration::ZERO;
    let out = match backend.as_str() {
        "gpu" => run_workloads(&spec, "gpu", t_start, zero, || pollster::block_on(GpuBackend::new()).expect("GPU adapter"), dump.as_deref()),
        "cpu-integer" => run_workloads(&spec, "cpu", t_start, zero, || CpuBackend::with_kernels(CpuKernels::Integer), dump.as_deref()),
        _ => run_workloads(&spec, "cpu", t_start, zero, CpuBackend::new, dump.as_deref()),
    };
    println!("{out}");
}

/// Seconds per call of `op` (median of 5 batches), each batch ending in a read of the last output.
fn measure<B: Backend>(b: &mut B, budget: Duration, op: &mut dyn FnMut(&mut B) -> B::Tensor) -> f64 {
    let mut batch = |b: &mut B, iters: usize| {
        let t0 = Instant::now();
        let mut last = op(b);
        for _ in 1..iters {
            last = op(b);
        }
        pollster::block_on(b.read(&[&last])).expect("read");
        t0.elapsed().as_secs_f64() / iters as f64
    };
    batch(b, 1);
    let second = batch(b, 1);
    let per_batch = budget.as_secs_f64() / 5.0;
    if second > per_batch {
        return second;
    }
    let iters = ((per_batch / second) as usize).clamp(1, 2000);
    let mut times: Vec<f64> = (0..5).map(|_| batch(b, iters)).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[2]
}

fn kernels<B: Backend>(b: &mut B, name: &str, ms: &[usize], budget: Duration, genes: usize, dtypes: &[DType]) -> Vec<Json> {
    let mut out = Vec::new();
    let philox = refcast::ops::Philox::new(3);
    let random = |n: usize, scale: f32, stream: u32| -> Vec<f32> { (0..n).map(|j| scale * philox.normal(0, j as u32, stream, 0)).collect() };
    // The model's linear layers: encoder input, trunk fc1 / fc2, decoder head.
    let layers = [("encoder.input", 512, genes), ("fc1", 1024, 512), ("fc2", 512, 1024), ("decoder.head", genes, 512)];
    for (layer, n, k) in layers {
        let values = random(n * k, 0.05, 1);
        let bias = random(n, 0.1, 2);
        for &dtype in dtypes {
            let w = Matrix::encode(n, k, &values, dtype);
            let lin = b.linear_weights(&w, &bias).expect("weights");
            for &m in ms {
                let x = b.tensor(&random(m * k, 1.0, 3), m, k).expect("input");
                let secs = measure(b, budget, &mut |b| b.linear(&x, &lin).expect("linear"));
                let bytes = w.bytes.len() as f64 + 4.0 * (m * k + m * n + n) as f64;
                let flops = 2.0 * (m * n * k) as f64;
                eprintln!("{name} {layer} {dtype} m={m}: {:.3} ms, {:.2} GB/s, {:.2} GFLOP/s", secs * 1e3, bytes / secs / 1e9, flops / secs / 1e9);
                out.push(json!({ "backend": name, "layer": layer, "dtype": dtype.to_string(), "m": m, "n": n, "k": k,
                                 "seconds": secs, "bytes": bytes, "flops": flops }));
            }
        }
    }
    out
}

fn cmd_kernels(args: &[String]) {
    let backend = arg(args, "--backend").unwrap_or_else(|| "cpu".into());
    let ms: Vec<usize> = arg(args, "--m").unwrap_or_else(|| "1,64,256".into()).split(',').map(|s| s.parse().expect("--m")).collect();
    let budget = Duration::from_millis(arg(args, "--budget-ms").map_or(300, |s| s.parse().expect("--budget-ms")));
    let genes = arg(args, "--genes").map_or(8192, |s| s.parse().expect("--genes"));
    let dtypes: Vec<DType> = arg(args, "--dtypes")
        .unwrap_or_else(|| "q8_0,q4_0,f32".into())
        .split(',')
        .map(|s| match s {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "q4_0" => DType::Q4_0,
            _ => DType::Q8_0,
        })
        .collect();
    let (describe, rows) = match backend.as_str() {
        "gpu" => {
            let mut g = pollster::block_on(GpuBackend::new()).expect("GPU adapter");
            let rows = kernels(&mut g, "gpu", &ms, budget, genes, &dtypes);
            (g.describe(), rows)
        }
        other => {
            let mut c = if other == "cpu-integer" { CpuBackend::with_kernels(CpuKernels::Integer) } else { CpuBackend::new() };
            let rows = kernels(&mut c, if other == "cpu-integer" { "cpu-integer" } else { "cpu" }, &ms, budget, genes, &dtypes);
            (c.describe(), rows)
        }
    };
    println!("{}", json!({ "describe": describe, "kernels": rows }));
}

fn cmd_synthetic(args: &[String]) {
    let genes: usize = arg(args, "--genes").expect("--genes N").parse().expect("a number");
    let out = arg(args, "--out").expect("--out PATH");
    let spec = SyntheticSpec {
        genes,
        hidden: 512,
        ff: 1024,
        blocks: 2,
        latent: Latent { technical: 8, biological: 24, perturbation: 16 },
        dtype: DType::Q8_0,
        seed: 11,
    };
    let bytes = random_model(spec).to_bytes().expect("serialise");
    std::fs::write(&out, bytes).expect("write");
}

/// The bundled example as refcast reads it (`Session::reference`): log-CPM in model gene order.
fn cmd_reference(args: &[String]) {
    let model = arg(args, "--model").expect("--model PATH");
    let tsv = arg(args, "--tsv").expect("--tsv PATH");
    let out = arg(args, "--out").expect("--out PATH");
    let file = ModelFile::from_bytes(&std::fs::read(model).expect("model")).expect("model parses");
    let session = Session::cpu(&file).expect("session");
    let table = refcast::SampleTable::parse(&std::fs::read(tsv).expect("tsv"), refcast::ValueKind::Auto).expect("table");
    let r = session.reference(&table, 0).expect("reference");
    let bytes: Vec<u8> = r.log_cpm.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes).expect("write");
    println!("{}", json!({ "library_size": r.library_size, "matched": r.report.matched, "missing": r.report.missing }));
}

/// The adapter wgpu picks (as the GPU backend does) and whether it offers `shader-f16`
/// (bench/gpu/run.sh).
fn cmd_adapter() {
    let instance = wgpu::Instance::default();
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("a wgpu adapter");
    let info = adapter.get_info();
    println!(
        "{}",
        json!({
            "name": info.name, "backend": format!("{:?}", info.backend), "device_type": format!("{:?}", info.device_type),
            "driver": format!("{} {}", info.driver, info.driver_info),
            "shader_f16": adapter.features().contains(wgpu::Features::SHADER_F16),
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("kernels") => cmd_kernels(&args[1..]),
        Some("synthetic") => cmd_synthetic(&args[1..]),
        Some("reference") => cmd_reference(&args[1..]),
        Some("adapter") => cmd_adapter(),
        Some("rss") => println!("{}", json!({ "rss": rss_bytes(), "peak": peak_rss_bytes() })),
        _ => eprintln!("usage: refcast_bench run --spec spec.json --backend cpu|gpu | kernels ... | synthetic --genes N --out PATH"),
    }
}
