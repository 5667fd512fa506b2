//! Per-kernel timings on each backend: median time per call, GB/s (bytes of weights, inputs and
//! outputs touched once) and GFLOP/s.
//!
//!     cargo bench --bench kernels                       # CPU and GPU, M = 1, 64, 1024
//!     cargo bench --bench kernels -- --gpu --m 1,64     # GPU only, some batch sizes
//!     cargo bench --bench kernels -- --budget-ms 500    # time spent per measurement
//!
//! `cargo test --all-targets` runs it without `--bench`, unoptimised: then it only checks that
//! every measurement runs (M = 1, 3, a short budget).
//!
//! The CPU's linear layers are timed on the f32 twins (`linear q8_0`) and on the integer path
//! with 8- and 16-bit inputs (`linear q8_0 int·i8`, `int·i16`; the latter is
//! `CpuKernels::Integer`).
//!
//! GPU times are wall time around recording many calls, submitting them and reading the last
//! result back, divided by the number of calls (so launch and read-back costs are amortized, not
//! hidden); the median over several such batches is reported.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refcast::backend::{Backend, CpuBackend, GpuBackend};
use refcast::ops::linear::Weights;
use refcast::ops::linear::int8::{self, Bits, Kernel};
use refcast::ops::{Activation, Noise, reparameterize::Streams};
use refcast::quant::{DType, Matrix};

struct Args {
    ms: Vec<usize>,
    cpu: bool,
    gpu: bool,
    budget: Duration,
}

fn args() -> Args {
    let mut a = Args { ms: vec![1, 64, 1024], cpu: true, gpu: true, budget: Duration::from_millis(1500) };
    let mut it = std::env::args().skip(1);
    let (mut only_cpu, mut only_gpu, mut benching) = (false, false, false);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cpu" => only_cpu = true,
            "--gpu" => only_gpu = true,
            "--m" => a.ms = it.next().expect("--m 1,64").split(',').map(|s| s.parse().expect("--m takes numbers")).collect(),
            "--budget-ms" => a.budget = Duration::from_millis(it.next().expect("--budget-ms N").parse().expect("a number")),
            "--bench" => benching = true,
            other => eprintln!("ignoring argument {other}"),
        }
    }
    if only_cpu != only_gpu {
        a.cpu = only_cpu;
        a.gpu = only_gpu;
    }
    if !benching {
        // `cargo test --all-targets` runs this binary unoptimised and without --bench: check that
        // every measurement runs, at small odd sizes, rather than time a 1,024-row debug build
        a.ms = vec![1, 3];
        a.budget = Duration::from_millis(20);
        println!("# not run by `cargo bench`: a quick check at M = 1, 3; timings are meaningless");
    }
    a
}

/// Seconds per call of `op` (median over batches), each batch ending in a read of the last output.
fn measure<B: Backend>(b: &mut B, budget: Duration, op: &mut dyn FnMut(&mut B) -> B::Tensor) -> f64 {
    median_batch(budget, &mut |iters| {
        let t0 = Instant::now();
        let mut last = op(b);
        for _ in 1..iters {
            last = op(b);
        }
        pollster::block_on(b.read(&[&last])).expect("read");
        t0.elapsed().as_secs_f64() / iters as f64
    })
}

/// `measure` for a plain function on the CPU.
fn measure_cpu(budget: Duration, op: &mut dyn FnMut()) -> f64 {
    median_batch(budget, &mut |iters| {
        let t0 = Instant::now();
        for _ in 0..iters {
            op();
        }
        t0.elapsed().as_secs_f64() / iters as f64
    })
}

/// The median time per call of five batches filling `budget`, after a warm-up call (pipelines,
/// buffers); `batch(n)` times n calls and returns seconds per call.
fn median_batch(budget: Duration, batch: &mut dyn FnMut(usize) -> f64) -> f64 {
    batch(1);
    let second = batch(1);
    let per_batch = budget.as_secs_f64() / 5.0;
    if second > per_batch {
        return second;
    }
    let iters = ((per_batch / second) as usize).clamp(1, 2000);
    let mut times: Vec<f64> = (0..5).map(|_| batch(iters)).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[2]
}

fn report(backend: &str, kernel: &str, shape: &str, secs: f64, bytes: f64, flops: f64) {
    let t = if secs >= 1e-3 { format!("{:9.3} ms", secs * 1e3) } else { format!("{:9.1} µs", secs * 1e6) };
    println!(
        "{backend:4} {kernel:22} {shape:22} {t}  {:8.2} GB/s  {:9.2} GFLOP/s",
        bytes / secs / 1e9,
        flops / secs / 1e9
    );
}

fn random(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn run<B: Backend>(b: &mut B, name: &str, a: &Args) {
    println!("# {name}: {}", b.describe());
    let mut rng = StdRng::seed_from_u64(7);
    let budget = a.budget;
    for (n, k) in [(6144, 512), (512, 6144)] {
        let values = random(&mut rng, n * k, 0.05);
        let bias = random(&mut rng, n, 0.1);
        for dtype in [DType::F32, DType::Q8_0, DType::Q4_0] {
            let w = Matrix::encode(n, k, &values, dtype);
            let lin = b.linear_weights(&w, &bias).expect("weights");
            for &m in &a.ms {
                let x = b.tensor(&random(&mut rng, m * k, 1.0), m, k).expect("input");
                let secs = measure(b, budget, &mut |b| b.linear(&x, &lin).expect("linear"));
                let bytes = w.bytes.len() as f64 + 4.0 * (m * k + m * n + n) as f64;
                report(name, &format!("linear {dtype}"), &format!("{m}×{k} · {n}×{k}ᵀ"), secs, bytes, 2.0 * (m * n * k) as f64);
            }
        }
    }
    for &m in &a.ms {
        let h = 512;
        let x = b.tensor(&random(&mut rng, m * h, 1.0), m, h).expect("input");
        let w = b.tensor(&random(&mut rng, h, 1.0), 1, h).expect("weight");
        let bias = b.tensor(&random(&mut rng, h, 1.0), 1, h).expect("bias");
        let secs = measure(b, budget, &mut |b| b.layer_norm(&x, &w, &bias, 1e-5).expect("layer norm"));
        report(name, "layer_norm", &format!("{m}×{h}"), secs, 8.0 * (m * h) as f64, 8.0 * (m * h) as f64);
        let secs = measure(b, budget, &mut |b| b.add(&x, &x).expect("add"));
        report(name, "add", &format!("{m}×{h}"), secs, 12.0 * (m * h) as f64, (m * h) as f64);
        let ff = 1024;
        let y = b.tensor(&random(&mut rng, m * ff, 3.0), m, ff).expect("input");
        let secs = measure(b, budget, &mut |b| b.activation(&y, Activation::GeluTanh).expect("gelu"));
        report(name, "gelu_tanh", &format!("{m}×{ff}"), secs, 8.0 * (m * ff) as f64, 10.0 * (m * ff) as f64);
        let d = 48;
        let head = b.tensor(&random(&mut rng, m * 2 * d, 1.0), m, 2 * d).expect("head");
        let streams = Streams { latent: d, split: 8, lo: 0, hi: 1 };
        let noise = Noise { seed: 42, first_sample: 0 };
        let secs = measure(b, budget, &mut |b| b.reparameterize(&head, streams, Some(noise), 1).expect("reparameterize"));
        report(name, "reparameterize", &format!("{m}×{}", 2 * d), secs, 12.0 * (m * d) as f64, 0.0);
        let g = 6144;
        let pred = b.tensor(&random(&mut rng, m * g, 4.0), m, g).expect("pred");
        let reference = b.tensor(&random(&mut rng, g, 4.0), 1, g).expect("reference");
        let index = vec![0u32; m];
        let secs = measure(b, budget, &mut |b| b.log_fold_change(&pred, &reference, &index).expect("lfc"));
        report(name, "log_fold_change", &format!("{m}×{g}"), secs, 12.0 * (m * g) as f64, (m * g) as f64);
        let secs = measure(b, budget, &mut |b| b.counts(&pred, &[1e4], &index).expect("counts"));
        report(name, "counts", &format!("{m}×{g}"), secs, 8.0 * (m * g) as f64, 2.0 * (m * g) as f64);
    }
}

/// The CPU backend's integer path (`CpuKernels::Integer` takes 16-bit inputs; 8-bit ones are
/// GGML's Q8_0) on the linear shapes of `run`, beside the f32 twins' lines printed there: once
/// with each instruction set this CPU has (`Kernel::detect` picks the last), side by side.
fn integer(a: &Args) {
    println!("# cpu: integer path (inputs quantized per block of 32, integer dot products)");
    // each SIMD instruction set this CPU has (the plain loops only where there is none)
    let kernels = Some(Kernel::simd()).filter(|k| !k.is_empty()).unwrap_or(vec![Kernel::Portable]);
    let mut rng = StdRng::seed_from_u64(7);
    for (n, k) in [(6144, 512), (512, 6144)] {
        let values = random(&mut rng, n * k, 0.05);
        let bias = random(&mut rng, n, 0.1);
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let w = Weights::new(Matrix::encode(n, k, &values, dtype)).with_block_scales();
            for bits in [Bits::Eight, Bits::Sixteen] {
                for &m in &a.ms {
                    let x = random(&mut rng, m * k, 1.0);
                    let mut out = vec![0.0; m * n];
                    for &kernel in &kernels {
                        let secs = measure_cpu(a.budget, &mut || int8::run(kernel, &x, m, &w, bits, Some(&bias), &mut out));
                        let bytes = w.bytes.len() as f64 + 4.0 * (m * k + m * n + n) as f64;
                        let bits = if bits == Bits::Eight { 8 } else { 16 };
                        report("cpu", &format!("linear {dtype} int·i{bits} {kernel:?}"), &format!("{m}×{k} · {n}×{k}ᵀ"), secs, bytes, 2.0 * (m * n * k) as f64);
                    }
                }
            }
        }
    }
}

fn main() {
    let a = args();
    if a.gpu {
        match pollster::block_on(GpuBackend::new()) {
            Ok(mut g) => run(&mut g, "gpu", &a),
            Err(e) => println!("# gpu: skipped ({e})"),
        }
    }
    if a.cpu {
        run(&mut CpuBackend::new(), "cpu", &a);
        integer(&a);
    }
}
