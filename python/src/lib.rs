//! The Python front end (`refcast._refcast`), thin over [`Engine`]: Python values in, the
//! library's types through, numpy arrays and plain dicts out. The backend policy, checksums, name
//! resolution, baselines, screen ranking and every check of the inputs are the library's; the
//! `refcast` package (python/refcast/) shapes AnnData and pandas objects around this module.
//!
//! The engine runs on a thread of its own ([`worker`]), so every call releases the GIL while
//! the model loads and computes.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use refcast::format::{Metadata, ModelConfig, Named, Value, checksum};
use refcast::sample::{MAX_SAMPLE_BYTES, SampleTable, ValueKind};
use refcast::screen::ScreenOptions;
use refcast::{BackendKind, Baseline, Group, PredictionMode, Request, Sampling, Signature, metadata};

mod convert;
mod worker;

use convert::*;
use worker::EngineThread;

/// An expression table checked by the library: genes, one value column per sample, counts or
/// log-CPM.
#[pyclass(frozen, module = "refcast._refcast")]
struct Table {
    table: SampleTable,
    /// What a file was read as (format, value kind, gzip), for files.
    interpretation: Option<String>,
}

#[pymethods]
impl Table {
    /// A table from a `samples × genes` matrix (the library's checks of a sample file apply).
    #[staticmethod]
    #[pyo3(signature = (genes, samples, values, kind = "auto"))]
    fn from_columns(genes: Vec<String>, samples: Vec<String>, values: PyReadonlyArray2<'_, f64>, kind: &str) -> PyResult<Table> {
        let kind: ValueKind = kind.parse().map_err(usage)?;
        let matrix = values.as_array();
        let columns: Vec<Vec<f64>> = matrix.outer_iter().map(|row| row.to_vec()).collect();
        let table = SampleTable::from_columns(genes, samples, columns, kind).map_err(error)?;
        Ok(Table { table, interpretation: None })
    }

    /// A TSV/CSV sample file read by the library, as the CLI reads `--sample`.
    #[staticmethod]
    #[pyo3(signature = (path, kind = "auto"))]
    fn read(py: Python<'_>, path: PathBuf, kind: &str) -> PyResult<Table> {
        let kind: ValueKind = kind.parse().map_err(usage)?;
        let table = py.detach(|| -> refcast::Result<refcast::sample::SampleFile> {
            let io = |source| refcast::Error::Io { path: path.display().to_string(), source };
            let size = std::fs::metadata(&path).map_err(io)?.len();
            if size > MAX_SAMPLE_BYTES as u64 {
                return Err(refcast::Error::Sample(format!("{}: {size} bytes, over the {MAX_SAMPLE_BYTES}-byte limit for a sample file", path.display())));
            }
            let bytes = std::fs::read(&path).map_err(io)?;
            refcast::sample::read(&bytes, &path.to_string_lossy(), kind)
        });
        let file = table.map_err(error)?;
        Ok(Table { table: file.table, interpretation: Some(file.interpretation.to_string()) })
    }

    /// What the file was read as (format, value kind and how it was decided, gzip); None for a
    /// table made from columns.
    #[getter]
    fn interpretation(&self) -> Option<String> {
        self.interpretation.clone()
    }

    #[getter]
    fn genes(&self) -> Vec<String> {
        self.table.genes.clone()
    }

    #[getter]
    fn samples(&self) -> Vec<String> {
        self.table.samples.clone()
    }

    /// `counts` or `log-cpm`, as resolved.
    #[getter]
    fn kind(&self) -> &'static str {
        kind_name(self.table.kind)
    }
}

/// A model loaded on the backend the library's policy chose.
#[pyclass(frozen, module = "refcast._refcast")]
struct Model {
    engine: EngineThread,
    config: Arc<ModelConfig>,
    backend: &'static str,
    backend_reason: String,
    adapter: String,
    checksum: String,
}

#[pymethods]
impl Model {
    /// `cpu` or `gpu`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// Why this backend: "requested", "a GPU adapter was found", or why `auto` fell back.
    #[getter]
    fn backend_reason(&self) -> String {
        self.backend_reason.clone()
    }

    /// Backend and adapter, for people.
    #[getter]
    fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// How the file's checksum was verified.
    #[getter]
    fn checksum(&self) -> String {
        self.checksum.clone()
    }

    /// Gene symbols, in model order.
    #[getter]
    fn genes(&self) -> Vec<String> {
        self.config.genes.iter().map(|g| g.symbol.clone()).collect()
    }

    /// Ensembl ids in model order (None where the model has none).
    #[getter]
    fn ensembl(&self) -> Vec<Option<String>> {
        self.config.genes.iter().map(|g| g.ensembl.clone()).collect()
    }

    /// The model's description: see `refcast.Model.info`.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &info_json(&self.config, self.backend, &self.backend_reason, &self.adapter))
    }

    /// Predicts every sample of `table` (None: prompt-only generation from `context`) under each
    /// perturbation; returns the library's `Prediction` as arrays and dicts.
    #[pyo3(signature = (table, perturbations, *, context = None, condition_on = None, mode = None, versus = None, num_samples = None, seed = 0, library_size = None))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        table: Option<&Table>,
        perturbations: Option<Vec<Bound<'py, PyAny>>>,
        context: Option<Bound<'py, PyAny>>,
        condition_on: Option<Vec<String>>,
        mode: Option<&str>,
        versus: Option<&str>,
        num_samples: Option<usize>,
        seed: u64,
        library_size: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cfg = self.config.clone();
        let perts = match perturbations {
            Some(list) if list.is_empty() => return Err(usage("no perturbation given (see info()['perturbations'])")),
            Some(list) => list.iter().map(|p| named_perturbation(&cfg, p)).collect::<PyResult<Vec<Named>>>()?,
            None => vec![cfg.default_perturbation().cloned().ok_or_else(|| usage("the model lists no perturbations; name one"))?],
        };
        let context = context.map(|c| context_metadata(&cfg, &c)).transpose()?;
        let mode = parse_mode(mode)?;
        let baseline = parse_baseline(versus)?.unwrap_or_else(|| Baseline::default_for(mode, cfg.control().is_some()));
        let condition_on = condition_on.map(|gs| gs.iter().map(|g| g.parse::<Group>().map_err(usage)).collect::<PyResult<Vec<_>>>()).transpose()?;
        let sampling = match num_samples {
            Some(n) => Sampling::Samples { num_samples: n, seed },
            None => Sampling::Mean,
        };
        let table = table.map(|t| t.table.clone());
        let metadata: Vec<Metadata> = perts.iter().map(|p| p.metadata.clone()).collect();
        let (pred, references, req) = py
            .detach(|| {
                self.engine.run(move |engine| {
                    let mut req = match &table {
                        Some(table) => {
                            let references = (0..table.samples.len())
                                .map(|s| {
                                    let r = engine.reference(table, s)?;
                                    match library_size {
                                        Some(reads) => r.with_library_size(reads),
                                        None => Ok(r),
                                    }
                                })
                                .collect::<refcast::Result<Vec<_>>>()?;
                            Request::conditioned(references, metadata)
                        }
                        None => {
                            let mut req = Request::prompt(vec![], metadata);
                            if let Some(reads) = library_size {
                                req.library_size = reads as f32;
                            }
                            req
                        }
                    };
                    req.contexts = context.into_iter().collect();
                    if let Some(groups) = condition_on {
                        req.condition_on = groups;
                    }
                    req.sampling = sampling;
                    req.mode = mode;
                    req.baseline = baseline;
                    let pred = pollster::block_on(engine.predict(&req))?;
                    let references = std::mem::take(&mut req.references);
                    Ok((pred, references, req))
                })
            })
            .map_err(error)?;
        let prompt_only = references.is_empty();
        let out = PyDict::new(py);
        let rows = pred.rows.len();
        let genes = pred.genes;
        out.set_item("genes", genes)?;
        out.set_item("reference_index", pred.rows.iter().map(|r| r.reference).collect::<Vec<_>>())?;
        out.set_item("perturbation_index", pred.rows.iter().map(|r| r.perturbation).collect::<Vec<_>>())?;
        out.set_item("draw", pred.rows.iter().map(|r| r.sample).collect::<Vec<_>>())?;
        let width = pred.latents.len().checked_div(rows).unwrap_or(0);
        out.set_item("log_cpm", matrix(py, pred.log_cpm, rows, genes))?;
        out.set_item("counts", matrix(py, pred.counts, rows, genes))?;
        out.set_item("log_fold_change", pred.log_fold_change.map(|v| matrix(py, v, rows, genes)))?;
        out.set_item("latents", matrix(py, pred.latents, rows, width))?;
        out.set_item("sigma", pred.sigma.into_pyarray(py))?;
        let perturbations = PyList::empty(py);
        for p in &perts {
            perturbations.append(named_py(py, p)?)?;
        }
        out.set_item("perturbations", perturbations)?;
        let refs = PyList::empty(py);
        for r in references {
            refs.append(reference_py(py, r)?)?;
        }
        out.set_item("references", refs)?;
        // Prompt-only predictions are always decoded.
        out.set_item("mode", if prompt_only { PredictionMode::Decoded } else { req.mode }.to_string())?;
        out.set_item("baseline", if out.get_item("log_fold_change")?.is_some_and(|v| !v.is_none()) { Some(req.baseline.to_string()) } else { None })?;
        out.set_item("condition_on", req.condition_on.iter().map(|g| g.name()).collect::<Vec<_>>())?;
        out.set_item("familiarity", familiarity_py(py, &pred.familiarity)?)?;
        // Reference-major (one per perturbation for prompt-only), as `familiarity` lists references.
        let coverage = PyList::empty(py);
        for (k, c) in refcast::Coverage::of_request(&cfg, &pred.familiarity, &req.perturbations).iter().enumerate() {
            let d = PyDict::new(py);
            d.set_item("measured", c.measured.as_str())?;
            d.set_item("context", c.context.as_deref())?;
            d.set_item("distance", c.distance)?;
            d.set_item("warning", c.warning(&perts[k % perts.len()].name))?;
            coverage.append(d)?;
        }
        out.set_item("coverage", coverage)?;
        // Settings without effect and combinations never trained on, as the CLI warns of them.
        let context = req.contexts.first().cloned().unwrap_or_default();
        out.set_item("warnings", metadata::request_warnings(&cfg, &context, &req.condition_on, &req.perturbations))?;
        Ok(out)
    }

    /// Ranks perturbations by their predicted effect on the one sample of `table`, or by reversal
    /// of a signature (`up`/`down` sets, or `weights`).
    #[pyo3(signature = (table, *, perturbations = None, up = None, down = None, weights = None, context = None, condition_on = None, mode = None, versus = None, library_size = None))]
    #[allow(clippy::too_many_arguments)]
    fn screen<'py>(
        &self,
        py: Python<'py>,
        table: &Table,
        perturbations: Option<Vec<Bound<'py, PyAny>>>,
        up: Option<Vec<String>>,
        down: Option<Vec<String>>,
        weights: Option<Vec<(String, f64)>>,
        context: Option<Bound<'py, PyAny>>,
        condition_on: Option<Vec<String>>,
        mode: Option<&str>,
        versus: Option<&str>,
        library_size: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cfg = self.config.clone();
        if table.table.samples.len() != 1 {
            return Err(usage(format!("a screen takes one sample; the table has {} ({})", table.table.samples.len(), table.table.samples.join(", "))));
        }
        let signature = match (up, down, weights) {
            (None, None, None) => None,
            (up, down, None) => Some(Signature::Sets { up: up.unwrap_or_default(), down: down.unwrap_or_default() }),
            (None, None, Some(w)) => Some(Signature::Weighted(w)),
            _ => return Err(usage("a signature is up/down sets or weights, not both")),
        };
        let options = ScreenOptions {
            perturbations: perturbations.map(|ps| ps.iter().map(|p| named_perturbation(&cfg, p)).collect::<PyResult<Vec<_>>>()).transpose()?,
            signature,
            mode: parse_mode(mode)?,
            baseline: parse_baseline(versus)?,
            condition_on: condition_on.map(|gs| gs.iter().map(|g| g.parse::<Group>().map_err(usage)).collect::<PyResult<Vec<_>>>()).transpose()?,
            ..Default::default()
        };
        let context = context.map(|c| context_metadata(&cfg, &c)).transpose()?.unwrap_or_default();
        let condition_on = options.condition_on.clone().unwrap_or_else(|| vec![Group::Technical, Group::Biological]);
        let warnings = metadata::request_warnings(&cfg, &context, &condition_on, &[]);
        let table = table.table.clone();
        let (screen, reference) = py
            .detach(|| {
                self.engine.run(move |engine| {
                    let mut reference = engine.reference(&table, 0)?;
                    if let Some(reads) = library_size {
                        reference = reference.with_library_size(reads)?;
                    }
                    let screen = pollster::block_on(engine.screen(&reference, &context, &options, &mut |_, _| {}))?;
                    Ok((screen, reference))
                })
            })
            .map_err(error)?;
        let out = PyDict::new(py);
        let hits = PyList::empty(py);
        for h in &screen.hits {
            let d = PyDict::new(py);
            d.set_item("perturbation", &h.name)?;
            d.set_item("metadata", metadata_py(py, &h.metadata)?)?;
            d.set_item("effect_size", h.effect_size)?;
            d.set_item("reversal", h.reversal)?;
            d.set_item("top_up", top_genes(&cfg, &h.top_up))?;
            d.set_item("top_down", top_genes(&cfg, &h.top_down))?;
            d.set_item("measured", h.coverage.measured.as_str())?;
            d.set_item("measured_context", h.coverage.context.as_deref())?;
            d.set_item("measured_distance", h.coverage.distance)?;
            d.set_item("coverage_warning", h.coverage.warning(&h.name))?;
            hits.append(d)?;
        }
        out.set_item("hits", hits)?;
        out.set_item("mode", screen.mode.to_string())?;
        out.set_item("baseline", screen.baseline.to_string())?;
        out.set_item("signature_unknown", &screen.signature_unknown)?;
        out.set_item("familiarity", familiarity_py(py, &screen.familiarity)?)?;
        out.set_item("warnings", warnings)?;
        out.set_item("reference", reference_py(py, reference)?)?;
        Ok(out)
    }
}

/// A gene-set file read against a model's genes (`refcast::enrichment::GeneSets`).
#[pyclass(frozen, module = "refcast._refcast")]
struct GeneSetFile {
    sets: Arc<refcast::enrichment::GeneSets>,
    checksum: String,
}

#[pymethods]
impl GeneSetFile {
    /// Every set's id, name and collection, in file order (the `set` indices of `score`).
    #[getter]
    fn sets(&self) -> Vec<(String, String, String)> {
        self.sets.sets().iter().map(|s| (s.id.clone(), s.name.clone(), s.collection.clone())).collect()
    }

    /// The collections: (name, title, method).
    #[getter]
    fn collections(&self) -> Vec<(String, String, String)> {
        self.sets.collections().iter().map(|c| (c.name.clone(), c.title.clone(), c.method.clone())).collect()
    }

    /// How the file's checksum was verified (or why it was not).
    #[getter]
    fn checksum(&self) -> String {
        self.checksum.clone()
    }

    /// Scores each row of `log_fold_change` (rows × model genes) against every set over the
    /// genes `measured` flags in that row, as the CLI's `--enrichment`: per row, each collection's
    /// sets highest score first. Columns: row, set, score, p_value, fdr, size, and the leading
    /// genes of result i at `leading_offsets[i]..leading_offsets[i + 1]` of `leading_gene` and
    /// `leading_lfc`.
    fn score<'py>(&self, py: Python<'py>, log_fold_change: PyReadonlyArray2<'py, f32>, measured: PyReadonlyArray2<'py, bool>) -> PyResult<Bound<'py, PyDict>> {
        let (lfc, measured) = (log_fold_change.as_array(), measured.as_array());
        if lfc.shape() != measured.shape() {
            return Err(usage(format!("log_fold_change is {:?} but measured is {:?}", lfc.shape(), measured.shape())));
        }
        let rows: Vec<(Vec<f32>, Vec<bool>)> = lfc.outer_iter().zip(measured.outer_iter()).map(|(l, m)| (l.to_vec(), m.to_vec())).collect();
        let sets = self.sets.clone();
        let results = py
            .detach(|| -> refcast::Result<Vec<(usize, refcast::enrichment::SetResult)>> {
                let mut out = Vec::new();
                for (r, (l, m)) in rows.iter().enumerate() {
                    let scored = sets.score(l, Some(m))?;
                    for c in sets.collections() {
                        out.extend(sets.results(&scored.ranked(&sets, &c.name), l, Some(m)).into_iter().map(|x| (r, x)));
                    }
                }
                Ok(out)
            })
            .map_err(error)?;
        let out = PyDict::new(py);
        let column = |f: fn(&(usize, refcast::enrichment::SetResult)) -> f64| results.iter().map(f).collect::<Vec<f64>>().into_pyarray(py);
        out.set_item("row", results.iter().map(|r| r.0 as u64).collect::<Vec<u64>>().into_pyarray(py))?;
        out.set_item("set", results.iter().map(|r| r.1.score.set as u64).collect::<Vec<u64>>().into_pyarray(py))?;
        out.set_item("score", column(|r| r.1.score.score))?;
        out.set_item("p_value", column(|r| r.1.score.p_value))?;
        out.set_item("fdr", column(|r| r.1.score.fdr))?;
        out.set_item("size", results.iter().map(|r| r.1.score.size as u64).collect::<Vec<u64>>().into_pyarray(py))?;
        let mut offsets = vec![0u64];
        for r in &results {
            offsets.push(offsets[offsets.len() - 1] + r.1.leading.len() as u64);
        }
        out.set_item("leading_offsets", offsets.into_pyarray(py))?;
        out.set_item("leading_gene", results.iter().flat_map(|r| r.1.leading.iter().map(|l| l.0 as u64)).collect::<Vec<u64>>().into_pyarray(py))?;
        out.set_item("leading_lfc", results.iter().flat_map(|r| r.1.leading.iter().map(|l| l.1)).collect::<Vec<f32>>().into_pyarray(py))?;
        Ok(out)
    }
}

/// Reads the gene-set file at `path` for `model` (checked against its gene list; its checksum
/// against a SHA256SUMS beside it when it lists the file).
#[pyfunction]
fn load_gene_sets(py: Python<'_>, path: PathBuf, model: &Model) -> PyResult<GeneSetFile> {
    let config = model.config.clone();
    let (sets, verified) = py
        .detach(|| -> refcast::Result<_> {
            let io = |source| refcast::Error::Io { path: path.display().to_string(), source };
            let size = std::fs::metadata(&path).map_err(io)?.len();
            if size > MAX_GENE_SETS_BYTES {
                return Err(refcast::Error::GeneSets(format!("{}: {size} bytes, over the {MAX_GENE_SETS_BYTES}-byte limit for a gene-set file", path.display())));
            }
            let bytes = std::fs::read(&path).map_err(io)?;
            let verified = checksum::verify_file(&path, &bytes, None)?;
            Ok((refcast::enrichment::GeneSets::from_bytes(&bytes, &config)?, verified))
        })
        .map_err(error)?;
    let checksum = match verified {
        checksum::Verified::Given => "verified against the sha256 given".to_string(),
        checksum::Verified::Manifest(m) => format!("verified against {}", m.display()),
        checksum::Verified::NotListed(m) => format!("not verified: {} does not list the file", m.display()),
        checksum::Verified::Unknown => "not verified: no SHA256SUMS beside the file".to_string(),
    };
    Ok(GeneSetFile { sets: Arc::new(sets), checksum })
}

/// Largest gene-set file read (the shipped one is 1.3 MB; the CLI's limit).
const MAX_GENE_SETS_BYTES: u64 = 256 << 20;

/// Loads the model file at `path` (its checksum checked against `sha256`, else a SHA256SUMS
/// beside it) on `backend`: `auto`, `gpu` or `cpu`.
#[pyfunction]
#[pyo3(signature = (path, backend = "auto", sha256 = None))]
fn load(py: Python<'_>, path: PathBuf, backend: &str, sha256: Option<String>) -> PyResult<Model> {
    let kind: BackendKind = backend.parse().map_err(usage)?;
    let (engine, opened) = py.detach(|| EngineThread::open(kind, path.clone(), sha256)).map_err(error)?;
    let checksum = match &opened.checksum {
        checksum::Verified::Given => "verified against the sha256 given".to_string(),
        checksum::Verified::Manifest(m) => format!("verified against {}", m.display()),
        checksum::Verified::NotListed(m) => format!("not verified: {} does not list {}", m.display(), path.file_name().and_then(|n| n.to_str()).unwrap_or_default()),
        checksum::Verified::Unknown => "not verified: no sha256 given and no SHA256SUMS beside the file".to_string(),
    };
    let backend = match opened.choice.backend {
        BackendKind::Gpu => "gpu",
        _ => "cpu",
    };
    Ok(Model { engine, config: Arc::new(opened.config), backend, backend_reason: opened.choice.reason, adapter: opened.describe, checksum })
}

/// `field=value field=value`: metadata as the library names it (for labels).
#[pyfunction]
fn describe_metadata(py: Python<'_>, fields: Bound<'_, PyDict>) -> PyResult<String> {
    let _ = py;
    Ok(metadata::describe(&metadata_from_py(&fields)?))
}

#[pymodule]
fn _refcast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Table>()?;
    m.add_class::<GeneSetFile>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(load_gene_sets, m)?)?;
    m.add("GENE_SETS_FILE", refcast::enrichment::GENE_SETS_FILE)?;
    m.add("ENRICHMENT_LEGEND", refcast::enrichment::column_legend())?;
    m.add_function(wrap_pyfunction!(describe_metadata, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FOLD_CHANGE_UNITS", refcast::request::FOLD_CHANGE_UNITS)?;
    m.add("FOLD_CHANGE_NOTE", refcast::request::FOLD_CHANGE_NOTE)?;
    let legend = |by_reversal: bool| -> Vec<(&'static str, String)> { refcast::screen::column_legend(by_reversal, refcast::screen::TOP_GENES) };
    m.add("SCREEN_LEGEND", legend(false))?;
    m.add("SCREEN_LEGEND_BY_REVERSAL", legend(true))?;
    m.add("SCREEN_COVERAGE_LEGEND", refcast::screen::coverage_legend().to_vec())?;
    Ok(())
}

/// A `[rows, cols]` array that takes over `values`' buffer (no copy).
fn matrix(py: Python<'_>, values: Vec<f32>, rows: usize, cols: usize) -> Bound<'_, numpy::PyArray2<f32>> {
    Array2::from_shape_vec((rows, cols), values).expect("the library's arrays are rows × columns").into_pyarray(py)
}

fn kind_name(kind: ValueKind) -> &'static str {
    kind.name()
}

/// A metadata value from Python: text, or a number (bool refused: no prior field is boolean).
fn value_from_py(v: &Bound<'_, PyAny>, key: &str) -> PyResult<Value> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(usage(format!("metadata field '{key}': expected text or a number, got a bool")));
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(Value::Text(s));
    }
    v.extract::<f64>().map(Value::Number).map_err(|_| usage(format!("metadata field '{key}': expected text or a number, got {}", v.get_type())))
}
