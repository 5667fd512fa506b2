//! The backend policy of `Engine::open`, shared by every front end: what `cpu`, `gpu` and `auto`
//! pick on this machine's adapter, and the reason each gives. Under `CI=true` a machine without
//! an adapter fails the GPU cases instead of passing them silently.

use pollster::block_on;
use refcast::backend::GpuBackend;
use refcast::ops::kernel::is_software_adapter;
use refcast::quant::DType;
use refcast::synthetic::{SyntheticSpec, random_model};
use refcast::{BackendKind, Engine, Error, ModelFile};

fn model() -> refcast::Result<ModelFile> {
    Ok(random_model(SyntheticSpec::tiny(DType::Q8_0)))
}

/// This machine's adapter as the policy sees it: `None` without one, else whether it is software.
fn adapter() -> Option<(bool, String)> {
    match block_on(GpuBackend::new()) {
        Ok(gpu) => {
            let info = gpu.adapter_info();
            Some((is_software_adapter(info.device_type == wgpu::DeviceType::Cpu, &[&info.name, &info.driver, &info.driver_info]), info.name.clone()))
        }
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true requires a GPU adapter (lavapipe in CI), and none was found: {e}");
            None
        }
    }
}

#[test]
fn cpu_is_taken_when_asked_for() {
    let engine = block_on(Engine::open(BackendKind::Cpu, model)).unwrap();
    assert_eq!((engine.choice().backend, engine.choice().reason.as_str(), engine.choice().fell_back), (BackendKind::Cpu, "requested", false));
    assert!(engine.gpu().is_none());
    assert!(engine.describe().contains("CPU"), "{}", engine.describe());
}

#[test]
fn auto_takes_a_hardware_gpu_and_passes_over_a_software_one_with_the_reason() {
    let engine = block_on(Engine::open(BackendKind::Auto, model)).unwrap();
    let choice = engine.choice();
    match adapter() {
        None => assert!(choice.fell_back && choice.reason.starts_with("no usable GPU"), "{choice:?}"),
        Some((true, name)) => {
            assert!(choice.fell_back && engine.gpu().is_none(), "{choice:?}");
            assert!(choice.reason.contains("emulates a GPU on the CPU") && choice.reason.contains(name.trim()), "{choice:?}");
        }
        Some((false, _)) => assert!(!choice.fell_back && engine.gpu().is_some(), "{choice:?}"),
    }
}

#[test]
fn gpu_is_taken_when_asked_for_even_in_software() {
    match adapter() {
        None => {
            let e = block_on(Engine::open(BackendKind::Gpu, model)).err().unwrap().to_string();
            assert!(e.contains("the GPU backend was requested"), "{e}");
        }
        Some(_) => {
            let engine = block_on(Engine::open(BackendKind::Gpu, model)).unwrap();
            assert_eq!((engine.choice().backend, engine.choice().fell_back), (BackendKind::Gpu, false));
            assert!(engine.gpu().is_some() && engine.describe().starts_with("GPU"), "{}", engine.describe());
        }
    }
}

/// A model that fails to load is the error it is, on every policy: not a reason to fall back.
#[test]
fn a_bad_model_is_an_error_whatever_the_backend() {
    for kind in [BackendKind::Cpu, BackendKind::Auto] {
        let e = block_on(Engine::open(kind, || ModelFile::from_bytes(b"not a model"))).err().unwrap();
        assert!(matches!(e, Error::Format(_)), "{kind:?}: {e}");
    }
}
