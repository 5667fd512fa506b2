//! Which backend runs a model, decided once for every front end (CLI, wasm, bindings): the
//! policy for `auto`, the handling of software adapters, the fallback to the CPU with its
//! reason, and the browser's ahead-of-time pipeline compilation. [`Engine`] is a [`Session`] on
//! whichever backend the policy chose, with the session's calls.

use crate::backend::gpu::{GpuBackend, Prebuilt};
use crate::backend::{BackendKind, CpuBackend, CpuKernels};
use crate::error::{Error, Result};
use crate::format::{Metadata, ModelConfig, ModelFile};
use crate::request::{Prediction, Request};
use crate::sample::{Reference, SampleTable};
use crate::screen::{Screen, ScreenOptions};
use crate::session::Session;

/// The backend chosen, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendChoice {
    /// [`BackendKind::Gpu`] or [`BackendKind::Cpu`].
    pub backend: BackendKind,
    /// Why: "requested", "a GPU adapter was found", or why `auto` fell back to the CPU.
    pub reason: String,
    /// Whether `auto` wanted the GPU and could not use it.
    pub fell_back: bool,
}

impl BackendChoice {
    fn new(backend: BackendKind, reason: impl Into<String>) -> Self {
        BackendChoice { backend, reason: reason.into(), fell_back: false }
    }

    fn fallback(reason: impl Into<String>) -> Self {
        BackendChoice { backend: BackendKind::Cpu, reason: reason.into(), fell_back: true }
    }
}

enum Backed {
    /// `prebuilt`: pipelines still compiling in the browser when `open` returns; the first call
    /// awaits them before its first dispatch (a pipeline still compiling would compile twice).
    Gpu { session: Box<Session<GpuBackend>>, prebuilt: Vec<Prebuilt> },
    Cpu(Box<Session<CpuBackend>>),
}

/// A model loaded on the backend [`Engine::open`] chose.
pub struct Engine {
    backed: Backed,
    choice: BackendChoice,
}

/// `$body` with `$s` bound to the engine's session, whatever its backend.
macro_rules! with_session {
    ($backed:expr, $s:ident => $body:expr) => {
        match $backed {
            Backed::Gpu { session: $s, .. } => $body,
            Backed::Cpu($s) => $body,
        }
    };
}

impl Engine {
    /// Opens the backend `requested` asks for and loads the model from `load` onto it.
    ///
    /// - `Cpu`: the CPU backend.
    /// - `Gpu`: the GPU, a software adapter included; no adapter is an error.
    /// - `Auto`: the GPU when it has a hardware adapter. Else the CPU, with the reason: no adapter,
    ///   an adapter that emulates a GPU on the CPU (lavapipe, SwiftShader: slower than the CPU
    ///   backend), or a GPU that failed while the model was loaded onto it.
    ///
    /// `load` runs once the device is open: in a browser the first pipelines then compile on the
    /// browser's threads while this one parses the model.
    pub async fn open(requested: BackendKind, load: impl FnOnce() -> Result<ModelFile>) -> Result<Engine> {
        Self::open_with(requested, CpuKernels::default(), load).await
    }

    /// [`Engine::open`], with `kernels` for quantized weights wherever the CPU backend runs
    /// (chosen, or as the fallback).
    pub async fn open_with(requested: BackendKind, kernels: CpuKernels, load: impl FnOnce() -> Result<ModelFile>) -> Result<Engine> {
        let cpu = |file: ModelFile, choice| Self::on_cpu(file, kernels, choice);
        match requested {
            BackendKind::Cpu => cpu(load()?, BackendChoice::new(BackendKind::Cpu, "requested")),
            BackendKind::Gpu => {
                let gpu = open_gpu().await.map_err(|e| Error::Gpu(format!("the GPU backend was requested, but {}", inner(&e))))?;
                let mut file = None;
                Self::on_gpu(gpu, load, &mut file, BackendChoice::new(BackendKind::Gpu, "requested")).await
            }
            BackendKind::Auto => {
                let gpu = match open_gpu().await {
                    Ok(gpu) => gpu,
                    Err(e) => return cpu(load()?, BackendChoice::fallback(format!("no usable GPU ({})", inner(&e)))),
                };
                if is_software(gpu.adapter_info()) {
                    let why = format!("the only GPU adapter, {}, emulates a GPU on the CPU and is slower than the CPU backend", adapter_name(gpu.adapter_info()));
                    return cpu(load()?, BackendChoice::fallback(why));
                }
                let mut file = None;
                match Self::on_gpu(gpu, load, &mut file, BackendChoice::new(BackendKind::Gpu, "a GPU adapter was found")).await {
                    Err(Error::Gpu(e)) => {
                        let why = format!("the GPU failed while loading the model ({e})");
                        let file = match file {
                            Some(f) => f,
                            None => return Err(Error::Gpu(e)),
                        };
                        cpu(file, BackendChoice::fallback(why))
                    }
                    other => other,
                }
            }
        }
    }

    fn on_cpu(file: ModelFile, kernels: CpuKernels, choice: BackendChoice) -> Result<Engine> {
        Ok(Engine { backed: Backed::Cpu(Box::new(Session::cpu_with(&file, kernels)?)), choice })
    }

    /// The model on `gpu`; `file` keeps the parsed model for a fallback to the CPU.
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))]
    async fn on_gpu(mut gpu: GpuBackend, load: impl FnOnce() -> Result<ModelFile>, file: &mut Option<ModelFile>, choice: BackendChoice) -> Result<Engine> {
        let mut prebuilt = Vec::new();
        let mut load = Some(load);
        #[cfg(target_arch = "wasm32")]
        {
            use crate::backend::gpu::{forward_kernels, yield_to_browser};
            // The kernels every model uses compile while the model is parsed, its own linear-layer
            // variants and activation while it is uploaded, and on into the first call, which
            // reads its sample before it waits for them.
            let style = gpu.kernel_style();
            prebuilt.push(gpu.prebuild(&forward_kernels(style, &[], &[]))?);
            yield_to_browser().await;
            let f = file.insert(load.take().expect("the model loads once")()?);
            let own = forward_kernels(style, &crate::model::linear_dtypes(f), &[f.config.architecture.activation]);
            prebuilt.push(gpu.prebuild(&own)?);
            yield_to_browser().await;
        }
        if let Some(load) = load {
            *file = Some(load()?);
        }
        let session = Box::new(Session::new(gpu, file.as_ref().expect("the model is loaded"))?);
        Ok(Engine { backed: Backed::Gpu { session, prebuilt }, choice })
    }

    /// The backend chosen, and why.
    pub fn choice(&self) -> &BackendChoice {
        &self.choice
    }

    /// Backend and adapter, for people.
    pub fn describe(&self) -> String {
        with_session!(&self.backed, s => s.describe())
    }

    pub fn config(&self) -> &ModelConfig {
        with_session!(&self.backed, s => s.config())
    }

    /// The GPU session, when the GPU runs the model.
    pub fn gpu(&self) -> Option<&Session<GpuBackend>> {
        match &self.backed {
            Backed::Gpu { session, .. } => Some(session),
            Backed::Cpu(_) => None,
        }
    }

    /// See [`Session::reference`].
    pub fn reference(&self, table: &SampleTable, column: usize) -> Result<Reference> {
        with_session!(&self.backed, s => s.reference(table, column))
    }

    /// See [`Session::predict`].
    pub async fn predict(&mut self, req: &Request) -> Result<Prediction> {
        self.pipelines_ready().await;
        with_session!(&mut self.backed, s => s.predict(req).await)
    }

    /// See [`Session::screen`]; `progress(done, total)` is called after each chunk of
    /// perturbations, and a browser gets its event loop back between chunks.
    pub async fn screen(&mut self, reference: &Reference, context: &Metadata, options: &ScreenOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<Screen> {
        self.pipelines_ready().await;
        with_session!(&mut self.backed, s => {
            let mut run = s.begin_screen(reference, context, options)?;
            while !run.is_finished() {
                s.advance_screen(&mut run).await?;
                progress(run.done(), run.total());
                crate::backend::gpu::yield_to_browser().await;
            }
            Ok(run.finish())
        })
    }

    /// Waits for the pipelines compiled ahead (once).
    async fn pipelines_ready(&mut self) {
        if let Backed::Gpu { prebuilt, .. } = &mut self.backed {
            for p in std::mem::take(prebuilt) {
                p.ready().await;
            }
        }
    }

    /// Frees the model; on the GPU also destroys the device and its buffers at once, rather than
    /// when the last handle goes, and settles pipelines still compiling.
    pub async fn release(self) {
        if let Backed::Gpu { session, prebuilt } = self.backed {
            let device = session.backend().device().clone();
            drop(session);
            device.destroy();
            for p in prebuilt {
                p.ready().await;
            }
        }
    }
}

/// The GPU backend on the platform's default adapter, else its fallback adapter.
async fn open_gpu() -> Result<GpuBackend> {
    // Outside a browser (Node) there is no WebGPU to ask for an adapter.
    #[cfg(target_arch = "wasm32")]
    {
        let global = js_sys::global();
        let navigator = js_sys::Reflect::get(&global, &"navigator".into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
        let gpu = if navigator.is_object() { js_sys::Reflect::get(&navigator, &"gpu".into()).ok() } else { None };
        if gpu.is_none_or(|g| g.is_undefined() || g.is_null()) {
            return Err(Error::Gpu("navigator.gpu is missing: WebGPU is not available here".into()));
        }
    }
    GpuBackend::new().await
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    crate::ops::kernel::is_software_adapter(info.device_type == wgpu::DeviceType::Cpu, &[&info.name, &info.driver, &info.driver_info])
}

/// An adapter's name for people: name, and driver where there is one.
pub fn adapter_name(info: &wgpu::AdapterInfo) -> String {
    match (info.name.trim(), info.driver.trim()) {
        ("", _) => "an unnamed adapter".to_string(),
        (name, "") => name.to_string(),
        (name, driver) => format!("{name} ({driver})"),
    }
}

/// A GPU error's message without the "GPU backend: " its display adds.
fn inner(e: &Error) -> String {
    match e {
        Error::Gpu(m) => m.clone(),
        other => other.to_string(),
    }
}
