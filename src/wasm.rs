//! The JavaScript front end (wasm-bindgen), thin over [`Engine`]: it turns JS inputs into
//! [`Request`]s and [`ScreenOptions`], and results into typed arrays and plain objects. The
//! backend policy, name resolution, baselines and screen ranking are the library's. `js/index.js`
//! wraps it in the documented package API (loading from URLs, checksums, call queueing).
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

use crate::backend::BackendKind;
use crate::engine::{Engine, adapter_name};
use crate::error::Error;
use crate::familiarity::Familiarity;
use crate::format::{Group, Metadata, ModelConfig, ModelFile, Named};
use crate::metadata;
use crate::request::{Baseline, PredictionMode, Request, Sampling, top_changes};
use crate::sample::{Reference, SampleTable, ValueKind};
use crate::screen::{ScreenHit, ScreenOptions};
use crate::signature::Signature;

/// A JS `Error` with a `kind` property.
fn error(kind: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"kind".into(), &kind.into());
    e.into()
}

fn refcast_error(e: Error) -> JsValue {
    error(e.kind(), &e.to_string())
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
    /// The file's name, to name a lone generic column ("count") after it.
    file_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PredictOptions {
    values: Option<String>,
    column: Option<Column>,
    file_name: Option<String>,
    columns: Option<Columns>,
    context: Option<NameOrMetadata>,
    #[serde(default)]
    contexts: Vec<NameOrMetadata>,
    #[serde(default)]
    perturbations: Vec<NameOrMetadata>,
    condition_on: Option<Vec<Group>>,
    num_samples: Option<usize>,
    seed: Option<f64>,
    /// A log-CPM sample's library size (as the CLI's `--library-size`); without a sample, the
    /// library size of the predicted counts.
    library_size: Option<f64>,
    /// `counterfactual` (default) or `decoded`.
    mode: Option<String>,
    /// `reference` or `control`; by default the library's choice for the mode
    /// ([`Baseline::default_for`]).
    baseline: Option<String>,
    /// Also list each row's `top` genes per direction (`topUp`, `topDown` per row).
    top: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScreenOptionsJs {
    values: Option<String>,
    column: Option<Column>,
    file_name: Option<String>,
    /// For a log-CPM sample: the library size its values were computed from.
    library_size: Option<f64>,
    context: Option<NameOrMetadata>,
    perturbations: Option<Vec<NameOrMetadata>>,
    signature: Option<SignatureJs>,
    /// `counterfactual` (default) or `decoded`.
    mode: Option<String>,
    /// `reference` or `control`; by default the library's choice for the mode.
    baseline: Option<String>,
    condition_on: Option<Vec<Group>>,
}

/// A signature to reverse: `{up: [genes], down: [genes]}` sets, a list of genes (an up set), or
/// `{gene: weight}` (> 0: up in the state to reverse); see [`Signature`].
#[derive(Deserialize)]
#[serde(untagged)]
enum SignatureJs {
    Sets {
        #[serde(default)]
        up: Vec<String>,
        #[serde(default)]
        down: Vec<String>,
    },
    Genes(Vec<String>),
    Weighted(BTreeMap<String, f64>),
}

impl From<SignatureJs> for Signature {
    fn from(s: SignatureJs) -> Signature {
        match s {
            SignatureJs::Sets { up, down } => Signature::Sets { up, down },
            SignatureJs::Genes(up) => Signature::Sets { up, down: vec![] },
            SignatureJs::Weighted(m) => Signature::Weighted(m.into_iter().collect()),
        }
    }
}

/// A perturbation by name (see `ModelConfig::perturbation`) or by its fields.
fn perturbation(cfg: &ModelConfig, p: NameOrMetadata) -> Named {
    match p {
        NameOrMetadata::Metadata(metadata) => Named { name: metadata::describe(&metadata), metadata },
        NameOrMetadata::Name(name) => cfg.perturbation(&name),
    }
}

fn context(cfg: &ModelConfig, c: NameOrMetadata) -> Result<Metadata, JsValue> {
    match c {
        NameOrMetadata::Metadata(m) => Ok(m),
        NameOrMetadata::Name(name) => metadata::context_named(cfg, &name).map_err(refcast_error),
    }
}

/// The table of a sample file; `file_name` names a lone generic column ("count") after the file.
fn parse_table(bytes: &[u8], values: Option<&str>, file_name: Option<&str>) -> Result<SampleTable, JsValue> {
    let kind: ValueKind = match values {
        None => ValueKind::Auto,
        Some(v) => v.parse().map_err(|e: String| usage(e))?,
    };
    let mut table = SampleTable::parse(bytes, kind).map_err(refcast_error)?;
    if let Some(f) = file_name {
        table.name_after_file(f);
    }
    Ok(table)
}

fn prediction_mode(mode: Option<&str>) -> Result<PredictionMode, JsValue> {
    mode.map_or(Ok(PredictionMode::default()), |m| m.parse().map_err(|e: String| usage(e)))
}

fn baseline(b: Option<&str>) -> Result<Option<Baseline>, JsValue> {
    b.map(|b| b.parse().map_err(|e: String| usage(e))).transpose()
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

/// Familiarity reports as JS objects: the fields of [`Familiarity`], camelCase (`nearestContext`,
/// `distance` and `outside` null for a model without a calibration), and its `summary`.
fn familiarity_list(list: &[Familiarity]) -> Result<JsValue, JsValue> {
    #[derive(Serialize)]
    struct WithSummary<'a> {
        #[serde(flatten)]
        familiarity: &'a Familiarity,
        summary: String,
    }
    let list: Vec<WithSummary> = list.iter().map(|f| WithSummary { familiarity: f, summary: f.summary() }).collect();
    to_js(&list)
}

/// `[{index, gene, logFoldChange}]` for (gene, fold change) pairs.
fn genes_js(list: &[(usize, f32)], cfg: &ModelConfig) -> Array {
    list.iter()
        .map(|&(g, lfc)| {
            let e = Object::new();
            set(&e, "index", g as u32);
            set(&e, "gene", cfg.genes[g].symbol.as_str());
            set(&e, "logFoldChange", lfc);
            JsValue::from(e)
        })
        .collect()
}

fn hit_js(h: &ScreenHit, cfg: &ModelConfig) -> Result<Object, JsValue> {
    let o = Object::new();
    set(&o, "name", h.name.as_str());
    set(&o, "metadata", to_js(&h.metadata)?);
    set(&o, "score", h.score);
    set(&o, "effectSize", h.effect_size);
    set(&o, "reversal", h.reversal.map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "topUp", genes_js(&h.top_up, cfg));
    set(&o, "topDown", genes_js(&h.top_down, cfg));
    Ok(o)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info<'a> {
    name: &'a str,
    genes: usize,
    latent: crate::format::Latent,
    metadata: BTreeMap<&'static str, &'a crate::format::PriorSpec>,
    perturbations: Vec<PerturbationInfo<'a>>,
    /// What to predict when the user names nothing ([`ModelConfig::default_perturbation`]).
    default_perturbation: Option<&'a str>,
    contexts: &'a [Named],
    provenance: &'a serde_json::Value,
    /// Format 2: the encoder's covariates (empty in format 1).
    covariates: &'a [crate::format::NumericField],
    /// The familiarity calibration, or null.
    familiarity: Option<CalibrationInfo<'a>>,
}

/// A known perturbation, and whether it is a control ([`ModelConfig::is_control`]).
#[derive(Serialize)]
struct PerturbationInfo<'a> {
    name: &'a str,
    metadata: &'a Metadata,
    control: bool,
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
    backend_reason: String,
}

#[wasm_bindgen]
impl RefcastModel {
    /// Parses and validates a model file and uploads it to the backend the library's policy picks
    /// for `backend` (`auto`, `webgpu` or `cpu`; see [`Engine::open`]). `bytes` stays a JS array
    /// until the device is open and the first pipelines are compiling: copying a model into wasm
    /// memory takes milliseconds.
    pub async fn load(bytes: Uint8Array, backend: String) -> Result<RefcastModel, JsValue> {
        let kind: BackendKind = match backend.as_str() {
            "auto" | "webgpu" | "cpu" => backend.parse().map_err(|e: String| usage(e))?,
            other => return Err(usage(format!("unknown backend '{other}' (expected 'auto', 'webgpu' or 'cpu')"))),
        };
        let engine = Engine::open(kind, || ModelFile::from_bytes(&bytes.to_vec())).await.map_err(refcast_error)?;
        let (backend, adapter) = match engine.gpu() {
            Some(session) => {
                let info = session.backend().adapter_info();
                let adapter = if info.name.trim().is_empty() { "WebGPU".to_string() } else { format!("WebGPU: {}", adapter_name(info)) };
                ("webgpu".to_string(), adapter)
            }
            None => ("cpu".to_string(), "CPU (WebAssembly)".to_string()),
        };
        let config = Rc::new(engine.config().clone());
        let backend_reason = engine.choice().reason.clone();
        let state = Rc::new(RefCell::new(State { engine: Some(engine), disposed: false }));
        Ok(RefcastModel { state, config, backend, adapter, backend_reason })
    }

    /// Why this backend: "requested", "a GPU adapter was found", or why `auto` fell back to the
    /// CPU.
    #[wasm_bindgen(getter, js_name = backendReason)]
    pub fn backend_reason(&self) -> String {
        self.backend_reason.clone()
    }

    /// `webgpu` or `cpu`.    /// `webgpu` or `cpu`.
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
            perturbations: c.perturbations.iter().map(|n| PerturbationInfo { name: &n.name, metadata: &n.metadata, control: ModelConfig::is_control(n) }).collect(),
            default_perturbation: c.default_perturbation().map(|n| n.name.as_str()),
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
        let table = parse_table(sample, o.values.as_deref(), o.file_name.as_deref())?;
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
    /// effect size, or by reversal of `signature` when one is given. `on_progress(done, total)`
    /// is called after each chunk of perturbations, and the page gets its event loop back
    /// between chunks.
    pub fn screen(&self, sample: Vec<u8>, options: JsValue, on_progress: Option<js_sys::Function>) -> Result<js_sys::Promise, JsValue> {
        let o: ScreenOptionsJs = if options.is_undefined() { ScreenOptionsJs::default() } else { from_js(options, "screen options")? };
        let cfg = self.config.clone();
        let mut engine = self.take()?;
        let slot = self.state.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let result = screen(&mut engine, &cfg, &sample, o, on_progress).await;
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

/// Frees a model's engine: on WebGPU its device at once.
fn release(engine: Engine) {
    wasm_bindgen_futures::spawn_local(engine.release());
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
            let table = parse_table(bytes, o.values.as_deref(), o.file_name.as_deref())?;
            let cols = columns(&table, o.column.as_ref(), o.columns.as_ref())?;
            let refs = cols
                .into_iter()
                .map(|s| with_library_size(engine.reference(&table, s)?, o.library_size))
                .collect::<crate::Result<Vec<_>>>()
                .map_err(refcast_error)?;
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
    if let (Some(l), None) = (o.library_size, &table) {
        req.library_size = l as f32;
    }
    req.mode = prediction_mode(o.mode.as_deref())?;
    req.baseline = baseline(o.baseline.as_deref())?.unwrap_or_else(|| Baseline::default_for(req.mode, cfg.control().is_some()));
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
    set(&out, "baseline", if pred.log_fold_change.is_some() { JsValue::from(baseline_name(req.baseline)) } else { JsValue::NULL });
    if let (Some(n), Some(lfc)) = (o.top, &pred.log_fold_change) {
        // Each row's extremes, over the genes its reference measured (all, for prompt-only rows).
        let all: Vec<usize> = (0..pred.genes).collect();
        let measured: Vec<Vec<usize>> = req.references.iter().map(Reference::measured_genes).collect();
        let tops: Array = pred
            .rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let genes = measured.get(row.reference).unwrap_or(&all);
                let (up, down) = top_changes(crate::request::Prediction::row(lfc, pred.genes, r), genes, n);
                let o = Object::new();
                set(&o, "topUp", genes_js(&up, cfg));
                set(&o, "topDown", genes_js(&down, cfg));
                JsValue::from(o)
            })
            .collect();
        set(&out, "top", tops);
    }
    set(&out, "familiarity", familiarity_list(&pred.familiarity)?);
    Ok(out.into())
}

/// A reference with the library size given for it, if any (see [`Reference::with_library_size`]).
fn with_library_size(r: Reference, library_size: Option<f64>) -> crate::Result<Reference> {
    match library_size {
        Some(reads) => r.with_library_size(reads),
        None => Ok(r),
    }
}

fn baseline_name(b: Baseline) -> &'static str {
    match b {
        Baseline::Reference => "reference",
        Baseline::Control => "control",
    }
}

async fn screen(engine: &mut Engine, cfg: &ModelConfig, sample: &[u8], o: ScreenOptionsJs, on_progress: Option<js_sys::Function>) -> Result<JsValue, JsValue> {
    let table = parse_table(sample, o.values.as_deref(), o.file_name.as_deref())?;
    let s = column(&table, o.column.as_ref())?;
    let reference = with_library_size(engine.reference(&table, s).map_err(refcast_error)?, o.library_size).map_err(refcast_error)?;
    let ctx = match o.context {
        Some(c) => context(cfg, c)?,
        None => Metadata::new(),
    };
    let options = ScreenOptions {
        perturbations: o.perturbations.map(|ps| ps.into_iter().map(|p| perturbation(cfg, p)).collect()),
        signature: o.signature.map(Signature::from),
        mode: prediction_mode(o.mode.as_deref())?,
        baseline: baseline(o.baseline.as_deref())?,
        condition_on: o.condition_on,
    };
    let mut progress = |done: usize, total: usize| {
        if let Some(f) = &on_progress {
            let _ = f.call2(&JsValue::NULL, &(done as u32).into(), &(total as u32).into());
        }
    };
    let screen = engine.screen(&reference, &ctx, &options, &mut progress).await.map_err(refcast_error)?;
    let out = Object::new();
    let ranked: Array = screen.hits.iter().map(|h| hit_js(h, cfg).map(JsValue::from)).collect::<Result<_, _>>()?;
    set(&out, "hits", ranked);
    set(&out, "mode", screen.mode.to_string());
    set(&out, "baseline", baseline_name(screen.baseline));
    set(&out, "signatureUnknown", screen.signature_unknown.iter().map(|g| JsValue::from(g.as_str())).collect::<Array>());
    set(&out, "familiarity", familiarity_list(&screen.familiarity)?);
    set(&out, "reference", reference_js(&reference, &table));
    Ok(out.into())
}

/// Rust panics show up in the browser console with their message.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
