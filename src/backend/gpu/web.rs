//! Compiling pipelines ahead of the first dispatch: the kernels of a forward pass, and in the
//! browser WebGPU's asynchronous pipeline creation, which wgpu does not offer.

#[cfg(target_arch = "wasm32")]
use std::collections::HashMap;

use super::GpuBackend;
#[cfg(target_arch = "wasm32")]
use super::{PARAM_SLOT, preprocess};
use crate::error::Result;
#[cfg(target_arch = "wasm32")]
use crate::ops::kernel::Shader;
use crate::ops::kernel::{Kernel, KernelStyle};
use crate::ops::{self, Activation, reparameterize::Streams};
use crate::quant::DType;

impl GpuBackend {
    /// Compiles the pipelines of `kernels` ahead of their first dispatch (see
    /// [`forward_kernels`]). In the browser they go through `createComputePipelineAsync`, which
    /// compiles off the page's thread once the page yields to the event loop (see
    /// [`yield_to_browser`]), so the compilation overlaps what the page does next — parsing and
    /// uploading the model. The pipelines this backend creates later from the same descriptors
    /// then come from the browser's pipeline cache (Chromium's WebGPU deduplicates identical
    /// pipelines) instead of compiling on the first call. Elsewhere wgpu compiles synchronously
    /// and the pipelines go straight into this backend's cache. Await [`Prebuilt::ready`] before
    /// the first dispatch: a pipeline still compiling would be compiled a second time.
    pub fn prebuild(&mut self, kernels: &[Box<dyn Kernel>]) -> Result<Prebuilt> {
        #[cfg(target_arch = "wasm32")]
        if let Some(device) = self.device.as_webgpu() {
            let device: wasm_bindgen::JsValue = device.clone().into();
            let mut promises = Vec::new();
            let mut modules: HashMap<(Shader, Vec<&'static str>), wasm_bindgen::JsValue> = HashMap::new();
            let mut layouts: HashMap<u32, wasm_bindgen::JsValue> = HashMap::new();
            for k in kernels {
                let key = k.key();
                if self.pipelines.contains_key(&key) || self.prebuilt.contains(&key) {
                    continue;
                }
                let module_key = (key.shader, key.defines.clone());
                if !modules.contains_key(&module_key) {
                    let source = preprocess(key.shader.name, key.shader.source, &key.defines)?;
                    modules.insert(module_key.clone(), js::shader_module(&device, &source)?);
                }
                if !layouts.contains_key(&k.inputs()) {
                    layouts.insert(k.inputs(), js::pipeline_layout(&device, k.inputs(), PARAM_SLOT)?);
                }
                promises.push(js::compute_pipeline_async(&device, &layouts[&k.inputs()], &modules[&module_key], key.entry)?);
                self.prebuilt.insert(key);
            }
            return Ok(Prebuilt { promises });
        }
        for k in kernels {
            self.pipeline(k.as_ref())?;
        }
        Ok(Prebuilt::default())
    }
}

/// Pipelines being compiled ahead (see [`GpuBackend::prebuild`]).
#[derive(Default)]
pub struct Prebuilt {
    #[cfg(target_arch = "wasm32")]
    promises: Vec<js_sys::Promise>,
}

impl Prebuilt {
    /// Resolves when every pipeline has compiled. A pipeline that fails to compile is not an error
    /// here: the backend creates it again at its first dispatch and reports the error there.
    pub async fn ready(self) {
        #[cfg(target_arch = "wasm32")]
        for p in self.promises {
            let _ = wasm_bindgen_futures::JsFuture::from(p).await;
        }
    }
}

/// Returns to the browser's event loop for one task (a zero-delay timer), which is when it sends
/// the WebGPU commands recorded so far to the GPU process; elsewhere a no-op.
pub async fn yield_to_browser() {
    #[cfg(target_arch = "wasm32")]
    js::next_task().await;
}

/// The kernels a forward pass of one to two input rows records (mean estimation, fold changes
/// against the reference, either prediction mode), for a model whose linear weights have the encodings `dtypes` and
/// whose trunks use `activations`: what [`GpuBackend::prebuild`] compiles before a first
/// prediction. Sizes are placeholders: pipelines depend only on shader, entry point and defines.
pub fn forward_kernels(style: KernelStyle, dtypes: &[DType], activations: &[Activation]) -> Vec<Box<dyn Kernel>> {
    use ops::output::{OutputKernel, Transform};
    let mut out: Vec<Box<dyn Kernel>> = Vec::new();
    for &dtype in dtypes {
        out.push(Box::new(ops::linear::LinearKernel { dtype, m: 1, k: 32, n_total: 1, row0: 0, rows: 1, style }));
    }
    for &act in activations {
        out.push(Box::new(ops::activation::ActivationKernel { act, n: 1 }));
    }
    out.push(Box::new(ops::layer_norm::LayerNormKernel { rows: 1, cols: 1, eps: 1e-5, style }));
    out.push(Box::new(ops::add::AddKernel { n: 1 }));
    out.push(Box::new(ops::prior_embed::PriorEmbedKernel { rows: 1, hidden: 1, fields: 1, numeric_row0: 1, numeric: 0 }));
    out.push(Box::new(ops::reparameterize::ReparameterizeKernel {
        rows: 1,
        samples: 1,
        streams: Streams::single(1, 0),
        draw: ops::reparameterize::Draw::Mean,
    }));
    out.push(Box::new(ops::assemble::AssembleKernel { rows: 1, parts: [(1, 0, 1); 3] }));
    // Counts, fold changes and the counterfactual profile: one entry point, chosen by a parameter.
    out.push(Box::new(OutputKernel { transform: Transform::Counts, rows: 1, genes: 1 }));
    out
}

/// The browser's WebGPU objects that wgpu does not create: the same descriptors as
/// `GpuBackend::pipeline` builds through wgpu, with asynchronous pipeline creation.
#[cfg(target_arch = "wasm32")]
mod js {
    use js_sys::{Array, Function, Object, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};

    use crate::error::{Error, Result};

    fn failed(what: &str, e: JsValue) -> Error {
        Error::Gpu(format!("{what}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))))
    }

    fn object(fields: &[(&str, JsValue)]) -> JsValue {
        let o = Object::new();
        for (k, v) in fields {
            let _ = Reflect::set(&o, &(*k).into(), v);
        }
        o.into()
    }

    fn call(target: &JsValue, method: &str, arg: &JsValue) -> Result<JsValue> {
        let f: Function = Reflect::get(target, &method.into()).and_then(|f| f.dyn_into()).map_err(|e| failed(method, e))?;
        f.call1(target, arg).map_err(|e| failed(method, e))
    }

    pub fn shader_module(device: &JsValue, code: &str) -> Result<JsValue> {
        call(device, "createShaderModule", &object(&[("code", code.into())]))
    }

    /// The layout of `GpuBackend::layout(inputs)`: uniform parameters with a dynamic offset,
    /// `inputs` read-only storage buffers, one read-write storage buffer; compute stage only.
    pub fn pipeline_layout(device: &JsValue, inputs: u32, param_slot: u64) -> Result<JsValue> {
        const COMPUTE: u32 = 4;
        let entry = |binding: u32, buffer: JsValue| object(&[("binding", binding.into()), ("visibility", COMPUTE.into()), ("buffer", buffer)]);
        let entries = Array::new();
        entries.push(&entry(
            0,
            object(&[("type", "uniform".into()), ("hasDynamicOffset", true.into()), ("minBindingSize", (param_slot as f64).into())]),
        ));
        for b in 1..=inputs {
            entries.push(&entry(b, object(&[("type", "read-only-storage".into()), ("hasDynamicOffset", false.into())])));
        }
        entries.push(&entry(inputs + 1, object(&[("type", "storage".into()), ("hasDynamicOffset", false.into())])));
        let bgl = call(device, "createBindGroupLayout", &object(&[("entries", entries.into())]))?;
        call(device, "createPipelineLayout", &object(&[("bindGroupLayouts", Array::of1(&bgl).into())]))
    }

    pub fn compute_pipeline_async(device: &JsValue, layout: &JsValue, module: &JsValue, entry: &str) -> Result<Promise> {
        let stage = object(&[("module", module.clone()), ("entryPoint", entry.into())]);
        let p = call(device, "createComputePipelineAsync", &object(&[("layout", layout.clone()), ("compute", stage)]))?;
        p.dyn_into().map_err(|e| failed("createComputePipelineAsync", e))
    }

    pub async fn next_task() {
        let promise = Promise::new(&mut |resolve, _| {
            let global = js_sys::global();
            if let Ok(f) = Reflect::get(&global, &"setTimeout".into()).and_then(|f| f.dyn_into::<Function>()) {
                let _ = f.call2(&global, &resolve, &0.into());
            } else {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}
