//! The JavaScript front end (wasm-bindgen), thin over the Rust API in [`crate::session`]: it turns
//! JS inputs into [`Request`]s and [`Prediction`]s into typed arrays. `js/index.js` wraps it in the
//! documented package API (loading from URLs, checksums, backend choice, call queueing).
//!
//! Every error reaches JS as an `Error` whose message is the Rust [`Error`]'s (it names the line,
//! gene or field) and whose `kind` property says which part was wrong: `format`, `sample`,
//! `metadata`, `request`, `gpu` or `usage`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Float32Array, Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::backend::gpu::{forward_kernels, yield_to_browser, Prebuilt};
use crate::backend::{CpuBackend, GpuBackend};
use crate::error::Error;
use crate::familiarity::Familiarity;
use crate::format::{Group, Metadata, ModelConfig, ModelFile, Named};
use crate::model::linear_dtypes;
use crate::sample::{Reference, SampleTable, ValueKind};
use crate::session::{Baseline, Prediction, PredictionMode, Request, Sampling, Screen, ScreenHit, Session, Signature};

enum Engine {
    /// `prebuilt`: the first prediction's pipelines, still compiling when `load` returns; the first
    /// call awaits them after reading its sample and before recording its first dispatch.
    Gpu { session: Box<Session<GpuBackend>>, device: wgpu::Device, prebuilt: Vec<Prebuilt> },
    Cpu(Box<Session<CpuBackend>>),
}

impl Engine {
    fn reference(&self, table: &SampleTable, s: usize) -> crate::Result<Reference> {
        match self {
            Engine::Gpu { session, .. } => session.reference(table, s),
            Engine::Cpu(session) => session.reference(table, s),
        }
    }
    /// Waits for the pipelines compiled ahead (once; see `RefcastModel::load`).
    async fn pipelines_ready(&mut self) {
        if let Engine::Gpu { prebuilt, .. } = self {
            for p in std::mem::take(prebuilt) {
                p.ready().await;
            }
        }
    }
    async fn predict(&mut self, req: &Request) -> crate::Result<Prediction> {
        self.pipelines_ready().await;
        match self {
            Engine::Gpu { session, .. } => session.predict(req).await,
            Engine::Cpu(session) => session.predict(req).await,
        }
    }
    async fn screen(
        &mut self,
        reference: &Reference,
        context: &Metadata,
        perturbations: Option<&[Named]>,
        signature: Option<&Signature>,
        mode: PredictionMode,
    ) -> crate::Result<Screen> {
        self.pipelines_ready().await;
        let baseline = Baseline::Reference;
        match self {
            Engine::Gpu { session, .. } => session.screen_against(reference, context, perturbations, signature, baseline, mode).await,
            Engine::Cpu(session) => session.screen_against(reference, context, perturbations, signature, baseline, mode).await,
        }
    }
}

/// A JS `Error` with a `kind` property.
fn error(kind: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"kind".into(), &kind.into());
    e.into()
}

fn refcast_error(e: Error) -> JsValue {
    let kind = match &e {
        Error::Format(_) => "format",
        Error::Sample(_) => "sample",
        Error::Signature(_) => "signature",
        Error::Metadata(_) => "metadata",
        Error::Request(_) => "request",
        Error::Gpu(_) => "gpu",
        Error::Io { .. } => "io",
    };
    error(kind, &e.to_string())
}

fn usage(message: impl AsRef<str>) -> JsValue {
    error("usage", message.as_ref())
}

fn set(target: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(target, &key.into(), &value.into());
}

fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| usage(format!("cannot convert a result to JS: {e}")))
}

fn from_js<T: for<'de> Deserialize<'de>>(value: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(value).map_err(|e| usage(format!("{what}: {e}")))
}

/// A metadata combination given by name (a known perturbation or context) or as fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum NameOrMetadata {
    Name(String),
    Metadata(Metadata),
}

/// A sample column by position or by name.
#[derive(Deserialize)]
#[serde(untagged)]
enum Column {
    Index(usize),
    Name(String),
}

/// Several sample columns: `'all'`, or a list of positions and names.
#[derive(Deserialize)]
#[serde(untagged)]
enum Columns {
    List(Vec<Column>),
    All(String),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SampleOptions {
    /// `auto`, `counts` or `log-cpm`.
    values: Option<String>,
    column: Option<Column>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PredictOptions {
    values: Option<String>,
    column: Option<Column>,
    columns: Option<Columns>,
    context: Option<NameOrMetadata>,
    #[serde(default)]
    contexts: Vec<NameOrMetadata>,
    #[serde(default)]
    perturbations: Vec<NameOrMetadata>,
    condition_on: Option<Vec<Group>>,
    num_samples: Option<usize>,
    seed: Option<f64>,
    library_size: Option<f32>,
    /// `counterfactual` (default) or `decoded`.
    mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScreenOptions {
    values: Option<String>,
    column: Option<Column>,
    context: Option<NameOrMetadata>,
    perturbations: Option<Vec<NameOrMetadata>>,
    /// Gene → weight (> 0: up in the disease state), scored as `Signature::Weighted`.
    signature: Option<BTreeMap<String, f64>>,
    /// `counterfactual` (default) or `decoded`.
    mode: Option<String>,
}

/// `field=value field=value`, for naming metadata given as fields.
fn describe(m: &Metadata) -> String {
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// A perturbation by name (see `ModelConfig::perturbation`) or by its fields.
fn perturbation(cfg: &ModelConfig, p: NameOrMetadata) -> Named {
    match p {
        NameOrMetadata::Metadata(metadata) => Named { name: describe(&metadata), metadata },
        NameOrMetadata::Name(name) => cfg.perturbation(&name),
    }
}

fn context(cfg: &ModelConfig, c: NameOrMetadata) -> Result<Metadata, JsValue> {
    match c {
        NameOrMetadata::Metadata(m) => Ok(m),
        NameOrMetadata::Name(name) => cfg.context(&name).map(|n| n.metadata.clone()).ok_or_else(|| {
            let names: Vec<&str> = cfg.contexts.iter().map(|c| c.name.as_str()).collect();
            error(
                "metadata",
                &format!(
                    "invalid metadata: unknown context '{name}'{}; known: {}",
                    crate::metadata::suggest(&name, names.iter().copied()),
                    names.join("; ")
                ),
            )
        }),
    }
}

fn parse_table(bytes: &[u8], values: Option<&str>) -> Result<SampleTable, JsValue> {
    let kind: ValueKind = match values {
        None => ValueKind::Auto,
        Some(v) => v.parse().map_err(|e: String| usage(e))?,
    };
    SampleTable::parse(bytes, kind).map_err(refcast_error)
}

fn prediction_mode(mode: Option<&str>) -> Result<PredictionMode, JsValue> {
    mode.map_or(Ok(PredictionMode::default()), |m| m.parse().map_err(|e: String| usage(e)))
}

fn column(table: &SampleTable, c: Option<&Column>) -> Result<usize, JsValue> {
    match c {
        None => Ok(0),
        Some(Column::Index(i)) if *i < table.samples.len() => Ok(*i),
        Some(Column::Index(i)) => Err(usage(format!("column {i} asked for, the sample has {} value column(s)", table.samples.len()))),
        Some(Column::Name(n)) => table.samples.iter().position(|s| s == n).ok_or_else(|| {
            usage(format!("no sample column named '{n}' (the file has: {})", table.samples.join(", ")))
        }),
    }
}

/// The columns a prediction takes its references from: `column` (one, default the first) or
/// `columns` (several, in the order given).
fn columns(table: &SampleTable, one: Option<&Column>, many: Option<&Columns>) -> Result<Vec<usize>, JsValue> {
    match (one, many) {
        (Some(_), Some(_)) => Err(usage("give either column or columns, not both")),
        (_, None) => Ok(vec![column(table, one)?]),
        (None, Some(Columns::All(a))) if a == "all" => Ok((0..table.samples.len()).collect()),
        (None, Some(Columns::All(a))) => Err(usage(format!("columns must be 'all' or a list of columns, got '{a}'"))),
        (None, Some(Columns::List(list))) if list.is_empty() => Err(usage("columns is an empty list")),
        (None, Some(Columns::List(list))) => list.iter().map(|c| column(table, Some(c))).collect(),
    }
}

fn reference_js(r: &Reference, table: &SampleTable) -> Object {
    let o = Object::new();
    set(&o, "name", r.name.as_str());
    set(&o, "librarySize", r.library_size);
    set(&o, "valueKind", if table.kind == ValueKind::Counts { "counts" } else { "log-cpm" });
    set(&o, "columns", table.samples.iter().map(|s| JsValue::from(s.as_str())).collect::<Array>());
    set(&o, "rows", table.genes.len() as u32);
    set(&o, "logCpm", Float32Array::from(r.log_cpm.as_slice()));
    let measured: Vec<u8> = r.measured.iter().map(|&m| u8::from(m)).collect();
    set(&o, "measured", Uint8Array::from(measured.as_slice()));
    set(&o, "matched", r.report.matched as u32);
    set(&o, "missing", r.report.missing as u32);
    set(&o, "unknown", r.report.unknown as u32);
    set(&o, "unknownExamples", r.report.unknown_examples.iter().map(|s| JsValue::from(s.as_str())).collect::<Array>());
    set(&o, "report", r.report.to_string());
    o
}

/// A familiarity report, camelCase; `nearestContext`, `distance` and `outside` are null for a
/// model without a familiarity calibration.
fn familiarity_js(f: &Familiarity) -> JsValue {
    let o = Object::new();
    set(&o, "reference", f.reference.as_str());
    set(&o, "reconstructionR2", f.reconstruction_r2);
    set(&o, "nearestContext", f.nearest_context.as_deref().map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "distance", f.distance.map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "outside", f.outside.map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "reasons", f.reasons.iter().map(|r| JsValue::from(r.as_str())).collect::<Array>());
    set(&o, "summary", f.summary());
    o.into()
}

fn familiarity_list(list: &[Familiarity]) -> Array {
    list.iter().map(familiarity_js).collect()
}

fn hit_js(h: &ScreenHit, cfg: &ModelConfig) -> Result<Object, JsValue> {
    let o = Object::new();
    set(&o, "name", h.name.as_str());
    set(&o, "metadata", to_js(&h.metadata)?);
    set(&o, "score", h.score);
    set(&o, "effectSize", h.effect_size);
    set(&o, "reversal", h.reversal.map(JsValue::from).unwrap_or(JsValue::NULL));
    let genes = |list: &[(usize, f32)]| -> Array {
        list.iter()
            .map(|&(g, lfc)| {
                let e = Object::new();
                set(&e, "index", g as u32);
                set(&e, "gene", cfg.genes[g].symbol.as_str());
                set(&e, "logFoldChange", lfc);
                JsValue::from(e)
            })
            .collect()
    };
    set(&o, "topUp", genes(&h.top_up));
    set(&o, "topDown", genes(&h.top_down));
    Ok(o)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info<'a> {
    name: &'a str,
    genes: usize,
    latent: crate::format::Latent,
    metadata: BTreeMap<&'static str, &'a crate::format::PriorSpec>,
    perturbations: &'a [Named],
    contexts: &'a [Named],
    provenance: &'a serde_json::Value,
    /// Format 2: the encoder's covariates (empty in format 1).
    covariates: &'a [crate::format::NumericField],
    /// The familiarity calibration, or null.
    familiarity: Option<CalibrationInfo<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CalibrationInfo<'a> {
    /// Training contexts with a centroid.
    contexts: Vec<&'a str>,
    max_distance: f64,
    min_reconstruction_r2: f64,
    calibration: &'a str,
}

/// The engine is taken out while a call runs (calls do not overlap); `dispose` during a call
/// releases it when the call ends.
#[derive(Default)]
struct State {
    engine: Option<Engine>,
    disposed: bool,
}

/// A model loaded on a backend (the `RefcastModel` of the JS glue; use `Refcast` from
/// `js/index.js`).
#[wasm_bindgen]
pub struct RefcastModel {
    state: Rc<RefCell<State>>,
    config: Rc<ModelConfig>,
    backend: String,
    adapter: String,
}

#[wasm_bindgen]
impl RefcastModel {
    /// Parses and validates a model file and uploads it to `backend` (`webgpu` or `cpu`).
    /// `bytes` stays a JS array until the device is open and the first pipelines are compiling:
    /// copying a model into wasm memory takes milliseconds.
    pub async fn load(bytes: Uint8Array, backend: String) -> Result<RefcastModel, JsValue> {
        let (engine, adapter, file) = match backend.as_str() {
            "cpu" => {
                let file = ModelFile::from_bytes(&bytes.to_vec()).map_err(refcast_error)?;
                (Engine::Cpu(Box::new(Session::cpu(&file).map_err(refcast_error)?)), "CPU (WebAssembly)".to_string(), file)
            }
            "webgpu" => {
                // The device first, so that the browser compiles the first prediction's pipelines
                // on its own threads while this thread parses and uploads the model: the kernels
                // every model uses during the parse, the model's linear-layer variants and
                // activation during the upload (see GpuBackend::prebuild), and on into the first
                // call, which reads its sample before it waits for them.
                let mut gpu = GpuBackend::new().await.map_err(refcast_error)?;
                let style = gpu.kernel_style();
                let common = gpu.prebuild(&forward_kernels(style, &[], &[])).map_err(refcast_error)?;
                yield_to_browser().await;
                let file = ModelFile::from_bytes(&bytes.to_vec()).map_err(refcast_error)?;
                let own = forward_kernels(style, &linear_dtypes(&file), &[file.config.architecture.activation]);
                let linear = gpu.prebuild(&own).map_err(refcast_error)?;
                yield_to_browser().await;
                let device = gpu.device().clone();
                let info = gpu.adapter_info();
                let adapter = if info.name.is_empty() {
                    "WebGPU".to_string()
                } else {
                    format!("WebGPU: {}{}", info.name, if info.driver.is_empty() { String::new() } else { format!(" ({})", info.driver) })
                };
                let session = Box::new(Session::new(gpu, &file).map_err(refcast_error)?);
                // Not awaited here: the first call reads its sample while they finish.
                (Engine::Gpu { session, device, prebuilt: vec![common, linear] }, adapter, file)
            }
            other => return Err(usage(format!("unknown backend '{other}' (expected webgpu or cpu)"))),
        };
        Ok(RefcastModel { state: Rc::new(RefCell::new(State { engine: Some(engine), disposed: false })), config: Rc::new(file.config), backend, adapter })
    }

    /// `webgpu` or `cpu`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// The adapter, for people.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Name, gene count, latent widths, the metadata vocabularies of the three priors, known
    /// perturbations and contexts, provenance.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let c = &*self.config;
        let metadata = BTreeMap::from([
            ("technical", &c.priors.technical),
            ("biological", &c.priors.biological),
            ("perturbation", &c.priors.perturbation),
        ]);
        to_js(&Info {
            name: &c.name,
            genes: c.architecture.genes,
            latent: c.architecture.latent,
            metadata,
            perturbations: &c.perturbations,
            contexts: &c.contexts,
            provenance: &c.provenance,
            covariates: &c.covariates,
            familiarity: c.familiarity.as_ref().map(|f| CalibrationInfo {
                contexts: f.centroids.iter().map(|c| c.context.as_str()).collect(),
                max_distance: f.max_distance,
                min_reconstruction_r2: f.min_reconstruction_r2,
                calibration: &f.calibration,
            }),
        })
    }

    /// Gene symbols, in model order.
    #[wasm_bindgen(js_name = geneSymbols)]
    pub fn gene_symbols(&self) -> Array {
        self.config.genes.iter().map(|g| JsValue::from(g.symbol.as_str())).collect()
    }

    /// Ensembl ids in model order (`null` where the model has none).
    #[wasm_bindgen(js_name = geneEnsembl)]
    pub fn gene_ensembl(&self) -> Array {
        self.config.genes.iter().map(|g| g.ensembl.as_deref().map(JsValue::from).unwrap_or(JsValue::NULL)).collect()
    }

    /// Parses a sample file and matches one column to the model's genes, without predicting.
    #[wasm_bindgen(js_name = inspectSample)]
    pub fn inspect_sample(&self, sample: &[u8], options: JsValue) -> Result<JsValue, JsValue> {
        let o: SampleOptions = if options.is_undefined() { SampleOptions::default() } else { from_js(options, "sample options")? };
        let table = parse_table(sample, o.values.as_deref())?;
        let s = column(&table, o.column.as_ref())?;
        let guard = self.state.borrow();
        let engine = guard.engine.as_ref().ok_or_else(|| self.gone())?;
        let r = engine.reference(&table, s).map_err(refcast_error)?;
        Ok(reference_js(&r, &table).into())
    }

    /// Predicts the sample (file bytes; `undefined` for prompt-only generation) under each
    /// perturbation. Resolves to an object mirroring the Rust `Prediction`.
    pub fn predict(&self, sample: Option<Vec<u8>>, options: JsValue) -> Result<js_sys::Promise, JsValue> {
        let o: PredictOptions = from_js(options, "predict options")?;
        let cfg = self.config.clone();
        let mut engine = self.take()?;
        let slot = self.state.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let result = predict(&mut engine, &cfg, sample, o).await;
            put_back(&slot, engine);
            result
        }))
    }

    /// Runs the sample against every known perturbation (or the ones given) and ranks them by
    /// effect size, or by reversal of `signature` when one is given.
    pub fn screen(&self, sample: Vec<u8>, options: JsValue) -> Result<js_sys::Promise, JsValue> {
        let o: ScreenOptions = if options.is_undefined() { ScreenOptions::default() } else { from_js(options, "screen options")? };
        let cfg = self.config.clone();
        let mut engine = self.take()?;
        let slot = self.state.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let result = screen(&mut engine, &cfg, &sample, o).await;
            put_back(&slot, engine);
            result
        }))
    }

    /// Releases the model; on WebGPU also destroys the device and its buffers. Later calls fail.
    pub fn dispose(&self) {
        let mut state = self.state.borrow_mut();
        state.disposed = true;
        if let Some(engine) = state.engine.take() {
            release(engine);
        }
    }

    fn gone(&self) -> JsValue {
        if self.state.borrow().disposed {
            usage("this model was disposed")
        } else {
            usage("another call on this model has not finished (await each call before the next)")
        }
    }

    fn take(&self) -> Result<Engine, JsValue> {
        let taken = self.state.borrow_mut().engine.take();
        taken.ok_or_else(|| self.gone())
    }
}

fn release(engine: Engine) {
    if let Engine::Gpu { session, device, prebuilt } = engine {
        drop(session);
        device.destroy();
        // Settles the pipelines still compiling, so that none is left unobserved.
        wasm_bindgen_futures::spawn_local(async move {
            for p in prebuilt {
                p.ready().await;
            }
        });
    }
}

/// Returns the engine after a call; a model disposed meanwhile is released instead.
fn put_back(slot: &Rc<RefCell<State>>, engine: Engine) {
    let mut state = slot.borrow_mut();
    if state.disposed {
        release(engine);
    } else {
        state.engine = Some(engine);
    }
}

async fn predict(engine: &mut Engine, cfg: &ModelConfig, sample: Option<Vec<u8>>, o: PredictOptions) -> Result<JsValue, JsValue> {
    if o.perturbations.is_empty() {
        return Err(usage("no perturbation given: pass perturbations: ['IFN-beta 6 h'] (see info().perturbations)"));
    }
    let perts: Vec<Named> = o.perturbations.into_iter().map(|p| perturbation(cfg, p)).collect();
    let mut contexts = Vec::new();
    for c in o.context.into_iter().chain(o.contexts) {
        contexts.push(context(cfg, c)?);
    }
    let (references, table) = match &sample {
        Some(bytes) => {
            let table = parse_table(bytes, o.values.as_deref())?;
            let cols = columns(&table, o.column.as_ref(), o.columns.as_ref())?;
            let refs = cols.into_iter().map(|s| engine.reference(&table, s)).collect::<crate::Result<Vec<_>>>().map_err(refcast_error)?;
            (refs, Some(table))
        }
        None if o.column.is_some() || o.columns.is_some() => return Err(usage("column(s) given without a sample")),
        None => (Vec::new(), None),
    };
    let metadata = perts.iter().map(|p| p.metadata.clone()).collect();
    let mut req = if table.is_some() { Request::conditioned(references, metadata) } else { Request::prompt(vec![], metadata) };
    req.contexts = contexts;
    if let Some(c) = o.condition_on {
        req.condition_on = c;
    }
    if let Some(l) = o.library_size {
        req.library_size = l;
    }
    req.mode = prediction_mode(o.mode.as_deref())?;
    if let Some(n) = o.num_samples {
        let seed = o.seed.unwrap_or(0.0);
        if seed < 0.0 || seed.fract() != 0.0 || seed > 9_007_199_254_740_991.0 {
            return Err(usage(format!("seed must be a whole number from 0 to 2^53 − 1, got {seed}")));
        }
        req.sampling = Sampling::Samples { num_samples: n, seed: seed as u64 };
    } else if o.seed.is_some() {
        return Err(usage("seed is only used with numSamples"));
    }
    let pred = engine.predict(&req).await.map_err(refcast_error)?;

    let out = Object::new();
    set(&out, "genes", pred.genes as u32);
    let rows: Array = pred
        .rows
        .iter()
        .map(|r| {
            let o = Object::new();
            set(&o, "reference", r.reference as u32);
            set(&o, "perturbation", r.perturbation as u32);
            set(&o, "sample", r.sample as u32);
            JsValue::from(o)
        })
        .collect();
    set(&out, "rows", rows);
    set(&out, "logCpm", Float32Array::from(pred.log_cpm.as_slice()));
    set(&out, "counts", Float32Array::from(pred.counts.as_slice()));
    set(&out, "logFoldChange", pred.log_fold_change.as_deref().map(|v| JsValue::from(Float32Array::from(v))).unwrap_or(JsValue::NULL));
    set(&out, "latents", Float32Array::from(pred.latents.as_slice()));
    set(&out, "latentWidth", cfg.architecture.latent.total() as u32);
    set(&out, "sigma", Float32Array::from(pred.sigma.as_slice()));
    set(&out, "perturbations", to_js(&perts)?);
    // What the profile is: prompt-only predictions are always decoded.
    let mode = if table.is_some() { req.mode } else { PredictionMode::Decoded };
    set(&out, "mode", mode.to_string());
    let infos: Array = match &table {
        Some(t) => req.references.iter().map(|r| JsValue::from(reference_js(r, t))).collect(),
        None => Array::new(),
    };
    set(&out, "reference", if infos.length() > 0 { infos.get(0) } else { JsValue::NULL });
    set(&out, "references", infos);
    set(&out, "familiarity", familiarity_list(&pred.familiarity));
    Ok(out.into())
}

async fn screen(engine: &mut Engine, cfg: &ModelConfig, sample: &[u8], o: ScreenOptions) -> Result<JsValue, JsValue> {
    let table = parse_table(sample, o.values.as_deref())?;
    let s = column(&table, o.column.as_ref())?;
    let reference = engine.reference(&table, s).map_err(refcast_error)?;
    let ctx = match o.context {
        Some(c) => context(cfg, c)?,
        None => Metadata::new(),
    };
    let list: Option<Vec<Named>> = o.perturbations.map(|ps| ps.into_iter().map(|p| perturbation(cfg, p)).collect());
    let signature = o.signature.map(|m| Signature::Weighted(m.into_iter().collect()));
    let mode = prediction_mode(o.mode.as_deref())?;
    let screen = engine.screen(&reference, &ctx, list.as_deref(), signature.as_ref(), mode).await.map_err(refcast_error)?;
    let out = Object::new();
    let ranked: Array = screen.hits.iter().map(|h| hit_js(h, cfg).map(JsValue::from)).collect::<Result<_, _>>()?;
    set(&out, "hits", ranked);
    set(&out, "familiarity", familiarity_list(&screen.familiarity));
    set(&out, "reference", reference_js(&reference, &table));
    Ok(out.into())
}

/// Rust panics show up in the browser console with their message.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
