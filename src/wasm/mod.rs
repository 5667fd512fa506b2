//! The JavaScript front end (wasm-bindgen), thin over [`Engine`]: it turns JS inputs into
//! [`Request`]s and [`ScreenOptions`], and results into typed arrays and plain objects. The
//! backend policy, name resolution, baselines and screen ranking are the library's. `js/index.js`
//! wraps it in the documented package API (loading from URLs, checksums, call queueing).
//!
//! Every error reaches JS as an `Error` whose message is the Rust [`Error`]'s (it names the line,
//! gene or field) and whose `kind` property says which part was wrong: `format`, `sample`,
//! `metadata`, `request`, `gpu` or `usage`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Array, Float32Array, Object, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::backend::{BackendKind, CpuKernels};
use crate::card::ModelCard;
use crate::coverage::Coverage;
use crate::engine::{Engine, adapter_name};
use crate::enrichment::GeneSets;
use crate::format::{Group, Metadata, ModelConfig, ModelFile, Named};
use crate::metadata;
use crate::request::{Baseline, PredictionMode, Request, Sampling, top_changes};
use crate::sample::Reference;
use crate::screen::{ScreenEnrichment, ScreenOptions};
use crate::signature::Signature;

mod js;
mod memo;
mod options;
mod results;

use js::{from_js, refcast_error, set, to_js, usage};
use memo::{ReadOptions, SampleMemo};
use options::*;
use results::*;

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
    card: Rc<ModelCard>,
    backend: String,
    adapter: String,
    backend_reason: String,
    /// The gene sets `loadGeneSets` read for this model.
    gene_sets: RefCell<Option<Arc<GeneSets>>>,
    /// The last sample read, for calls on the same one.
    samples: Rc<RefCell<SampleMemo>>,
}

#[wasm_bindgen]
impl RefcastModel {
    /// Parses and validates a model file and uploads it to the backend the library's policy picks
    /// for `backend` (`auto`, `webgpu` or `cpu`; see [`Engine::open`]), with `cpu_kernels`
    /// (`f32`, the default, or `integer`: [`CpuKernels`]) wherever the CPU backend runs it.
    /// `bytes` stays a JS array until the device is open and the first pipelines are compiling:
    /// copying a model into wasm memory takes milliseconds.
    pub async fn load(bytes: Uint8Array, backend: String, cpu_kernels: Option<String>) -> Result<RefcastModel, JsValue> {
        let kind: BackendKind = match backend.as_str() {
            "auto" | "webgpu" | "cpu" => backend.parse().map_err(|e: String| usage(e))?,
            other => return Err(usage(format!("unknown backend '{other}' (expected 'auto', 'webgpu' or 'cpu')"))),
        };
        let kernels: CpuKernels = cpu_kernels.as_deref().unwrap_or("f32").parse().map_err(|e: String| usage(e))?;
        let mut card = None;
        let engine = Engine::open_with(kind, kernels, || {
            let file = ModelFile::from_bytes(&bytes.to_vec())?;
            card = Some(ModelCard::new(&file));
            Ok(file)
        })
        .await
        .map_err(refcast_error)?;
        let card = Rc::new(card.expect("a model that opened was read"));
        let (backend, adapter) = match engine.gpu() {
            Some(session) => {
                let info = session.backend().adapter_info();
                let adapter = if info.name.trim().is_empty() { "WebGPU".to_string() } else { format!("WebGPU: {}", adapter_name(info)) };
                ("webgpu".to_string(), adapter)
            }
            None if kernels == CpuKernels::Integer => ("cpu".to_string(), "CPU (WebAssembly, integer kernels)".to_string()),
            None => ("cpu".to_string(), "CPU (WebAssembly)".to_string()),
        };
        let config = Rc::new(engine.config().clone());
        let backend_reason = engine.choice().reason.clone();
        let state = Rc::new(RefCell::new(State { engine: Some(engine), disposed: false }));
        Ok(RefcastModel { state, config, card, backend, adapter, backend_reason, gene_sets: RefCell::new(None), samples: Rc::default() })
    }

    /// Why this backend: "requested", "a GPU adapter was found", or why `auto` fell back to the
    /// CPU.
    #[wasm_bindgen(getter, js_name = backendReason)]
    pub fn backend_reason(&self) -> String {
        self.backend_reason.clone()
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
        info_js(&self.config)
    }

    /// The model described for people ([`ModelCard`]): what it is, its weights, datasets with
    /// links, perturbations grouped by class, contexts; the evaluation when the file carries one.
    pub fn card(&self) -> Result<JsValue, JsValue> {
        to_js(&*self.card)
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

    /// Reads a gene-set file (`refcast-genesets.safetensors`, built for this model's genes; see
    /// [`GeneSets::from_bytes`]) for `enrichment` and screens. Returns its collections (name,
    /// title, method, number of sets) and sources.
    #[wasm_bindgen(js_name = loadGeneSets)]
    pub fn load_gene_sets(&self, bytes: &[u8]) -> Result<JsValue, JsValue> {
        let sets = GeneSets::from_bytes(bytes, &self.config).map_err(refcast_error)?;
        let out = gene_sets_js(&sets)?;
        *self.gene_sets.borrow_mut() = Some(Arc::new(sets));
        Ok(out)
    }

    /// Scores one prediction row's fold changes (one per model gene) against every gene set, over
    /// the genes flagged in `measured` (every gene without it): decoupler's ULM, as the CLI's
    /// `--enrichment`. Resolves to each collection's sets, highest score first, with their
    /// leading genes (as columns, [`set_scores_js`]), and the legend of the fields.
    pub fn enrichment(&self, log_fold_change: &[f32], measured: Option<Vec<u8>>) -> Result<JsValue, JsValue> {
        let guard = self.gene_sets.borrow();
        let sets = guard.as_deref().ok_or_else(|| usage("no gene sets: call loadGeneSets first (refcast-genesets.safetensors, beside the model)"))?;
        let universe: Option<Vec<bool>> = measured.map(|m| m.iter().map(|&v| v != 0).collect());
        let scored = sets.score(log_fold_change, universe.as_deref()).map_err(refcast_error)?;
        let out = Object::new();
        let collections: Array = sets
            .collections()
            .iter()
            .map(|c| {
                let ranked = sets.results(&scored.ranked(sets, &c.name), log_fold_change, universe.as_deref());
                let o = Object::new();
                set(&o, "name", c.name.as_str());
                set(&o, "title", c.title.as_str());
                set(&o, "method", c.method.as_str());
                set(&o, "scores", set_scores_js(&ranked));
                JsValue::from(o)
            })
            .collect();
        set(&out, "collections", collections);
        set(&out, "legend", legend_js(crate::enrichment::column_legend()));
        set(&out, "foldChangeUnits", crate::request::FOLD_CHANGE_UNITS);
        Ok(out.into())
    }

    /// Parses a sample file and matches one column to the model's genes, without predicting.
    #[wasm_bindgen(js_name = inspectSample)]
    pub fn inspect_sample(&self, sample: Vec<u8>, options: JsValue) -> Result<JsValue, JsValue> {
        let o: SampleOptions = if options.is_undefined() { SampleOptions::default() } else { from_js(options, "sample options")? };
        let guard = self.state.borrow();
        let engine = guard.engine.as_ref().ok_or_else(|| self.gone())?;
        let mut memo = self.samples.borrow_mut();
        let how = ReadOptions { values: o.values, file_name: o.file_name, gzip: o.gzip, tenx: o.tenx };
        let file = memo.file(sample, how)?;
        let s = column(&file.table, o.column.as_ref())?;
        let r = memo.reference(engine, &file, s)?;
        Ok(reference_js(&r, &file).into())
    }

    /// Predicts the sample (file bytes; `undefined` for prompt-only generation) under each
    /// perturbation. Resolves to an object mirroring the Rust `Prediction`.
    pub fn predict(&self, sample: Option<Vec<u8>>, options: JsValue) -> Result<js_sys::Promise, JsValue> {
        let o: PredictOptions = from_js(options, "predict options")?;
        let (cfg, memo) = (self.config.clone(), self.samples.clone());
        let mut engine = self.take()?;
        let slot = self.state.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let result = predict(&mut engine, &cfg, &memo, sample, o).await;
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
        let (sets, memo) = (self.gene_sets.borrow().clone(), self.samples.clone());
        let mut engine = self.take()?;
        let slot = self.state.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let result = screen(&mut engine, &cfg, sets, &memo, sample, o, on_progress).await;
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

async fn predict(engine: &mut Engine, cfg: &ModelConfig, memo: &RefCell<SampleMemo>, sample: Option<Vec<u8>>, o: PredictOptions) -> Result<JsValue, JsValue> {
    if o.perturbations.is_empty() {
        return Err(usage("no perturbation given: pass perturbations: ['IFN-beta 6 h'] (see info().perturbations)"));
    }
    let perts: Vec<Named> = o.perturbations.into_iter().map(|p| perturbation(cfg, p)).collect();
    let mut contexts = Vec::new();
    for c in o.context.into_iter().chain(o.contexts) {
        contexts.push(context(cfg, c)?);
    }
    let (references, table) = match sample {
        Some(bytes) => {
            let mut memo = memo.borrow_mut();
            let how = ReadOptions { values: o.values, file_name: o.file_name, gzip: o.gzip, tenx: o.tenx };
            let file = memo.file(bytes, how)?;
            let cols = columns(&file.table, o.column.as_ref(), o.columns.as_ref())?;
            let refs = cols
                .into_iter()
                .map(|s| with_library_size(memo.reference(engine, &file, s)?, o.library_size).map_err(refcast_error))
                .collect::<Result<Vec<_>, JsValue>>()?;
            (refs, Some(file))
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
    set(&out, "foldChangeUnits", crate::request::FOLD_CHANGE_UNITS);
    set(&out, "latents", Float32Array::from(pred.latents.as_slice()));
    set(&out, "latentWidth", cfg.architecture.latent.total() as u32);
    set(&out, "sigma", Float32Array::from(pred.sigma.as_slice()));
    let labels: Vec<Named> = perts.iter().map(|p| Named::new(p.name.clone(), p.metadata.clone())).collect();
    set(&out, "perturbations", to_js(&labels)?);
    // What the profile is: prompt-only predictions are always decoded.
    let mode = if table.is_some() { req.mode } else { PredictionMode::Decoded };
    set(&out, "mode", mode.to_string());
    let infos: Array = match &table {
        Some(t) => req.references.iter().map(|r| JsValue::from(reference_js(r, t))).collect(),
        None => Array::new(),
    };
    set(&out, "reference", if infos.length() > 0 { infos.get(0) } else { JsValue::NULL });
    set(&out, "references", infos);
    set(&out, "interpretation", table.as_ref().map(|f| JsValue::from(f.interpretation.to_string())).unwrap_or(JsValue::NULL));
    set(&out, "baseline", if pred.log_fold_change.is_some() { JsValue::from(req.baseline.to_string()) } else { JsValue::NULL });
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
    // Reference-major, as `familiarity` lists references (one per perturbation for prompt-only).
    let coverage = Coverage::of_request(cfg, &pred.familiarity, &req.perturbations);
    let names = (0..coverage.len()).map(|k| &perts[k % perts.len()].name);
    set(&out, "coverage", coverage.iter().zip(names.clone()).map(|(c, n)| coverage_js(c, n)).collect::<Result<Array, _>>()?);
    let context = req.contexts.first().cloned().unwrap_or_default();
    let mut warnings = metadata::request_warnings(cfg, &context, &req.condition_on, &req.perturbations);
    // A combination never measured is already one of request_warnings'; a context unlike the
    // sample's is said here.
    let elsewhere = coverage.iter().zip(names).filter(|(c, _)| c.measured == crate::coverage::Measured::Elsewhere);
    for w in elsewhere.filter_map(|(c, n)| c.warning(n)) {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    set(&out, "warnings", strings(warnings));
    Ok(out.into())
}

/// A reference with the library size given for it, if any (see [`Reference::with_library_size`]).
fn with_library_size(r: Reference, library_size: Option<f64>) -> crate::Result<Reference> {
    match library_size {
        Some(reads) => r.with_library_size(reads),
        None => Ok(r),
    }
}


async fn screen(
    engine: &mut Engine,
    cfg: &ModelConfig,
    gene_sets: Option<Arc<GeneSets>>,
    memo: &RefCell<SampleMemo>,
    sample: Vec<u8>,
    o: ScreenOptionsJs,
    on_progress: Option<js_sys::Function>,
) -> Result<JsValue, JsValue> {
    let enrichment = match (gene_sets, &o.rank_by) {
        (None, Some(key)) => return Err(usage(format!("rankBy '{key}' needs gene sets: call loadGeneSets first (refcast-genesets.safetensors, beside the model)"))),
        (None, None) if o.all_sets == Some(true) || o.pathways == Some(true) => {
            return Err(usage("pathways and allSets need gene sets: call loadGeneSets first"));
        }
        (None, None) => None,
        (Some(gene_sets), key) => {
            let rank_by = key.as_deref().map(|k| gene_sets.find(k)).transpose().map_err(refcast_error)?;
            Some(ScreenEnrichment { gene_sets, rank_by, all_sets: o.all_sets.unwrap_or(false) })
        }
    };
    let (file, reference) = {
        let mut memo = memo.borrow_mut();
        let how = ReadOptions { values: o.values, file_name: o.file_name, gzip: o.gzip, tenx: o.tenx };
        let file = memo.file(sample, how)?;
        let s = column(&file.table, o.column.as_ref())?;
        let reference = memo.reference(engine, &file, s)?;
        (file, with_library_size(reference, o.library_size).map_err(refcast_error)?)
    };
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
        enrichment,
    };
    let mut progress = |done: usize, total: usize| {
        if let Some(f) = &on_progress {
            let _ = f.call2(&JsValue::NULL, &(done as u32).into(), &(total as u32).into());
        }
    };
    let screen = engine.screen(&reference, &ctx, &options, &mut progress).await.map_err(refcast_error)?;
    let out = Object::new();
    // Each hit's set scores only when asked for: a screen of every perturbation would hand JS
    // hundreds of thousands of values it may not show.
    let with_sets = options.enrichment.is_some();
    let set_scores = with_sets && (o.pathways == Some(true) || o.all_sets == Some(true));
    let ranked: Array = screen.hits.iter().map(|h| hit_js(h, cfg, with_sets, set_scores).map(JsValue::from)).collect::<Result<_, _>>()?;
    set(&out, "hits", ranked);
    let ranked_by_set = options.enrichment.as_ref().is_some_and(|e| e.rank_by.is_some());
    set(&out, "legend", screen_legend_js(options.signature.is_some(), ranked_by_set, Coverage::recorded(cfg)));
    if let Some(e) = &options.enrichment {
        let key = e.rank_by.map(|s| &e.gene_sets.sets()[s]);
        set(&out, "rankedBy", key.map(|s| JsValue::from(format!("{}:{}", s.collection, s.id))).unwrap_or(JsValue::NULL));
    }
    set(&out, "foldChangeUnits", crate::request::FOLD_CHANGE_UNITS);
    set(&out, "mode", screen.mode.to_string());
    set(&out, "baseline", screen.baseline.to_string());
    set(&out, "signatureUnknown", screen.signature_unknown.iter().map(|g| JsValue::from(g.as_str())).collect::<Array>());
    set(&out, "familiarity", familiarity_list(&screen.familiarity)?);
    let condition_on = options.condition_on.clone().unwrap_or_else(|| vec![Group::Technical, Group::Biological]);
    set(&out, "warnings", strings(metadata::request_warnings(cfg, &ctx, &condition_on, &[])));
    set(&out, "reference", reference_js(&reference, &file));
    set(&out, "interpretation", file.interpretation.to_string());
    Ok(out.into())
}

/// Rust panics show up in the browser console with their message.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn strings(list: Vec<String>) -> Array {
    list.into_iter().map(JsValue::from).collect()
}
