//! Long runs and device faults: thousands of predictions in one process keep memory flat (process
//! RSS and the GPU buffer pool), GPU buffers go back on drop and `release_idle`, an adapter with
//! only WebGPU's default limits (and weights split across bindings) gives the CPU's numbers, a
//! missing or lost device is a clear error after which a new session works, and sessions used
//! from several threads give the same results as one thread.
//!
//! Sizes: CI runs 2,000 predictions per backend on the tiny synthetic model; the `#[ignore]`d
//! variants run 10,000 (`cargo test --release --test long_run -- --ignored`).
//!
//! Memory margin: after a warm-up of 200 predictions (pipelines compiled, pool filled, allocator
//! arenas grown), RSS at the end may exceed RSS after the warm-up by at most 8 MiB, and the GPU
//! pool must not grow at all. A leak of one prediction's output (160 genes × 4 outputs × 4 bytes)
//! per run would add 5 MiB over 2,000 runs and 25 MiB over 10,000, and a leaked GPU buffer per
//! run shows in the pool at once.
//!
//! The tests of this file take a lock so that one test's allocations do not show in another's RSS.

mod common;

use std::sync::{Mutex, MutexGuard};

use refcast::backend::{Backend, GpuBackend};
use refcast::synthetic::{SyntheticSpec, random_model};
use refcast::quant::DType;
use refcast::sample::{SampleTable, ValueKind};
use refcast::session::{Prediction, Request, Sampling, Session};
use refcast::{Error, Metadata, ModelFile, Reference, metadata};

const CI_RUNS: usize = 2_000;
const LONG_RUNS: usize = 10_000;
const WARM_UP: usize = 200;
const RSS_MARGIN: u64 = 8 << 20;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn model() -> ModelFile {
    random_model(SyntheticSpec::tiny(DType::Q8_0))
}

/// Resident set size of this process in bytes (Linux: /proc/self/statm; elsewhere 0).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn references<B: Backend>(s: &Session<B>) -> Vec<Reference> {
    let mut text = String::from("gene\ta_count\tb_count\n");
    for g in 0..150 {
        text += &format!("GENE{g}\t{}\t{}\n", (g * 7919) % 97, (g * 104_729) % 53 + 1);
    }
    let table = SampleTable::parse(text.as_bytes(), ValueKind::Auto).unwrap();
    (0..2).map(|i| s.reference(&table, i).unwrap()).collect()
}

const PERTURBATIONS: [&str; 4] = ["none", "drug_a", "drug_b", "cytokine_c"];

/// The `i`-th request of a run: a cycle of shapes (one or two references, one to three
/// perturbations, means and seeded samples, both prediction modes).
fn request(refs: &[Reference], i: usize) -> Request {
    let perts: Vec<Metadata> = (0..1 + i % 3)
        .map(|k| metadata! { "perturbation" => PERTURBATIONS[(i + k) % 4], "time_hours" => (i % 6 * 4) as f64 })
        .collect();
    let mut req = Request::conditioned(refs[..1 + i % 2].to_vec(), perts);
    if i % 5 == 4 {
        req.sampling = Sampling::Samples { num_samples: 2, seed: (i % 7) as u64 };
    }
    if i % 4 == 3 {
        req.mode = refcast::PredictionMode::Decoded;
    }
    req
}

/// Runs `n` predictions; each must repeat the result its request gave in the first cycle.
/// Returns (RSS after the warm-up, RSS at the end).
fn long_run<B: Backend>(session: &mut Session<B>, n: usize, mut after_each: impl FnMut(&mut Session<B>, usize)) -> (u64, u64) {
    let refs = references(session);
    // Requests repeat every lcm(2, 3, 4, 5, 6, 7) = 420 runs.
    const CYCLE: usize = 420;
    let mut first: Vec<Option<Vec<f32>>> = vec![None; CYCLE];
    let mut start = 0;
    for i in 0..n {
        if i == WARM_UP {
            start = rss();
        }
        let p = pollster::block_on(session.predict(&request(&refs, i))).unwrap_or_else(|e| panic!("prediction {i}: {e}"));
        assert!(p.log_cpm.iter().all(|v| v.is_finite()), "prediction {i} is not finite");
        match &first[i % CYCLE] {
            Some(want) => assert!(want == &p.log_cpm, "prediction {i} differs from prediction {}", i % CYCLE),
            None => first[i % CYCLE] = Some(p.log_cpm),
        }
        after_each(session, i);
    }
    (start, rss())
}

fn check_flat(what: &str, n: usize, (start, end): (u64, u64)) {
    eprintln!(
        "{what}: {n} predictions: RSS {:.1} MiB after {WARM_UP}, {:.1} MiB at the end ({:+.2} MiB; margin {:.0} MiB)",
        mib(start),
        mib(end),
        end as f64 / (1 << 20) as f64 - mib(start),
        mib(RSS_MARGIN)
    );
    assert!(end <= start + RSS_MARGIN, "{what}: RSS grew from {:.1} to {:.1} MiB over {n} predictions", mib(start), mib(end));
}

fn cpu_run(n: usize) {
    let _serial = serial();
    let mut s = Session::cpu(&model()).unwrap();
    let rss = long_run(&mut s, n, |_, _| {});
    check_flat("CPU", n, rss);
}

fn gpu_run(n: usize) {
    let _serial = serial();
    let Some(gpu) = common::gpu_or_skip() else { return };
    let mut s = Session::new(gpu, &model()).unwrap();
    let mut pool_after_warm_up = 0;
    let mut pool_max = 0;
    let rss = long_run(&mut s, n, |s, i| {
        let pool = s.backend().pool_bytes();
        if i + 1 == WARM_UP {
            pool_after_warm_up = pool;
        }
        pool_max = pool_max.max(pool);
    });
    eprintln!("GPU ({}): pool {:.2} MiB after the warm-up, at most {:.2} MiB", s.describe(), mib(pool_after_warm_up), mib(pool_max));
    assert_eq!(pool_max, pool_after_warm_up, "the GPU buffer pool grew after the warm-up");
    check_flat("GPU", n, rss);
}

#[test]
fn cpu_predictions_keep_memory_flat() {
    cpu_run(CI_RUNS);
}

#[test]
#[ignore = "10,000 predictions: run with --ignored"]
fn cpu_10000_predictions_keep_memory_flat() {
    cpu_run(LONG_RUNS);
}

#[test]
fn gpu_predictions_keep_memory_and_the_buffer_pool_flat() {
    gpu_run(CI_RUNS);
}

#[test]
#[ignore = "10,000 predictions: run with --ignored"]
fn gpu_10000_predictions_keep_memory_and_the_buffer_pool_flat() {
    gpu_run(LONG_RUNS);
}

/// Opens a device on the default adapter with exactly `limits`.
fn device_with(limits: wgpu::Limits) -> Option<GpuBackend> {
    let probe = common::gpu_or_skip()?;
    let info = probe.adapter_info().clone();
    drop(probe);
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .find(|a| a.get_info().name == info.name && a.get_info().backend == info.backend)?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("refcast test"),
        required_limits: limits,
        ..Default::default()
    }))
    .expect("a device with WebGPU's default limits");
    Some(GpuBackend::from_device(adapter.get_info(), device, queue))
}

/// Checks GPU against CPU values at 1e-4 · (1 + |x|); returns the largest absolute difference.
fn close(what: &str, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}");
    let mut worst = 0f32;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what}: value {i}: GPU {x}, CPU {y}");
        worst = worst.max((x - y).abs());
    }
    worst
}

fn predict_all<B: Backend>(s: &mut Session<B>, refs: &[Reference], requests: impl Iterator<Item = usize>) -> Vec<Prediction> {
    requests.map(|i| pollster::block_on(s.predict(&request(refs, i))).unwrap()).collect()
}

#[test]
fn webgpu_default_limits_and_split_bindings_give_the_cpu_numbers() {
    let _serial = serial();
    let Some(mut gpu) = device_with(wgpu::Limits::default()) else { return };
    // Far below any real limit: the large weight matrices of the model (16,320 bytes each) are
    // split across bindings, while the activations (at most 12 rows and, in the counterfactual
    // mode, their 4 control rows × 160 genes × 4 bytes = 10,240 bytes) fit.
    gpu.set_max_binding_bytes(12 << 10);
    let file = model();
    let mut g = Session::new(gpu, &file).unwrap();
    let mut c = Session::cpu(&file).unwrap();
    let refs = references(&c);
    let mut worst = 0f32;
    for (i, (pg, pc)) in predict_all(&mut g, &refs, 0..30).iter().zip(predict_all(&mut c, &refs, 0..30)).enumerate() {
        worst = worst.max(close(&format!("request {i} log-CPM"), &pg.log_cpm, &pc.log_cpm));
        worst = worst.max(close(&format!("request {i} latents"), &pg.latents, &pc.latents));
    }
    eprintln!("WebGPU default limits, 12 KiB bindings, {}: largest difference from the CPU {worst:.2e}", g.describe());
}

#[test]
fn gpu_buffers_are_released_by_release_idle_and_on_drop() {
    let _serial = serial();
    let Some(probe) = common::gpu_or_skip() else { return };
    let (info, device, queue) = (probe.adapter_info().clone(), probe.device().clone(), probe.queue().clone());
    drop(probe);
    let file = model();
    let session = |device: &wgpu::Device| Session::new(GpuBackend::from_device(info.clone(), device.clone(), queue.clone()), &file).unwrap();

    // release_idle hands back every buffer no live tensor holds.
    let mut s = session(&device);
    let loaded = s.backend().pool_bytes();
    let refs = references(&s);
    predict_all(&mut s, &refs, 0..20);
    let used = s.backend().pool_bytes();
    assert!(used > loaded, "predictions use pooled buffers");
    s.backend_mut().release_idle();
    assert_eq!(s.backend().pool_bytes(), loaded, "release_idle leaves only the model's own tensors");
    predict_all(&mut s, &refs, 0..20);
    drop(s);

    // Sessions created and dropped on one device: their weights and pools go with them. On a
    // software adapter device memory is process memory, so a leak shows in RSS.
    let mut samples = Vec::new();
    for round in 0..30 {
        let mut s = session(&device);
        predict_all(&mut s, &refs, 0..5);
        drop(s);
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        if round == 5 || round == 29 {
            samples.push(rss());
        }
    }
    eprintln!("30 GPU sessions created and dropped: RSS {:.1} MiB after 6, {:.1} MiB after 30", mib(samples[0]), mib(samples[1]));
    assert!(samples[1] <= samples[0] + RSS_MARGIN, "RSS grew from {:.1} to {:.1} MiB", mib(samples[0]), mib(samples[1]));
}

#[test]
fn a_lost_device_is_a_clear_error_and_a_new_session_works() {
    let _serial = serial();
    let Some(gpu) = common::gpu_or_skip() else { return };
    let file = model();
    let mut s = Session::new(gpu, &file).unwrap();
    let refs = references(&s);
    let before = predict_all(&mut s, &refs, 0..1);
    s.backend().device().destroy();
    let err = pollster::block_on(s.predict(&request(&refs, 0))).expect_err("a destroyed device cannot predict");
    assert!(matches!(err, Error::Gpu(_)), "{err:?}");
    let msg = err.to_string();
    eprintln!("after device.destroy(): {msg}");
    assert!(msg.contains("device was lost") && msg.contains("create a new one"), "{msg}");
    // The session stays an error, and never a panic.
    assert!(pollster::block_on(s.predict(&request(&refs, 0))).is_err());
    drop(s);
    let Some(gpu) = common::gpu_or_skip() else { return };
    let mut again = Session::new(gpu, &file).unwrap();
    let after = predict_all(&mut again, &refs, 0..1);
    assert_eq!(before[0].log_cpm, after[0].log_cpm);
}

#[test]
fn sessions_on_several_threads_give_the_results_of_one_thread() {
    let _serial = serial();
    let file = model();
    let refs = references(&Session::cpu(&file).unwrap());
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let plan = |t: usize| (t * EACH..(t + 1) * EACH).map(|i| i * 7 % 210);

    // One thread, one session.
    let mut one = Session::cpu(&file).unwrap();
    let sequential: Vec<Vec<Prediction>> = (0..THREADS).map(|t| predict_all(&mut one, &refs, plan(t))).collect();

    // A session per thread.
    let parallel: Vec<Vec<Prediction>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (file, refs) = (&file, &refs);
                scope.spawn(move || predict_all(&mut Session::cpu(file).unwrap(), refs, plan(t)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One session shared behind a mutex.
    let shared = Mutex::new(Session::cpu(&file).unwrap());
    let locked: Vec<Vec<Prediction>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (shared, refs) = (&shared, &refs);
                scope.spawn(move || plan(t).map(|i| pollster::block_on(shared.lock().unwrap().predict(&request(refs, i))).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for t in 0..THREADS {
        for k in 0..EACH {
            assert!(parallel[t][k].log_cpm == sequential[t][k].log_cpm, "CPU thread {t}, request {k}: a session per thread");
            assert!(locked[t][k].log_cpm == sequential[t][k].log_cpm, "CPU thread {t}, request {k}: a shared session");
        }
    }

    // GPU: a backend (device) per thread; a GpuBackend is not Send, so each thread opens its own.
    let Some(gpu) = common::gpu_or_skip() else { return };
    let mut one = Session::new(gpu, &file).unwrap();
    let sequential: Vec<Vec<Prediction>> = (0..THREADS).map(|t| predict_all(&mut one, &refs, plan(t))).collect();
    drop(one);
    let parallel: Vec<Vec<Prediction>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (file, refs) = (&file, &refs);
                scope.spawn(move || {
                    let gpu = pollster::block_on(GpuBackend::new()).unwrap();
                    predict_all(&mut Session::new(gpu, file).unwrap(), refs, plan(t))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for t in 0..THREADS {
        for k in 0..EACH {
            assert!(parallel[t][k].log_cpm == sequential[t][k].log_cpm, "GPU thread {t}, request {k}");
        }
    }
}
