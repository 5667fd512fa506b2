//! Python values to the library's types (names resolved by the library's lookups), and the
//! library's results to Python objects; errors to the exception classes of `refcast.errors`.

use numpy::IntoPyArray;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use refcast::format::{Metadata, ModelConfig, Named};
use refcast::sample::Reference;
use refcast::{Baseline, Familiarity, PredictionMode, metadata};

use super::value_from_py;

/// A library error as the `refcast.errors` class of its kind (`FormatError`, `SampleError`, …),
/// with the library's message.
pub fn error(e: refcast::Error) -> PyErr {
    let class = match e.kind() {
        "format" => "FormatError",
        "sample" => "SampleError",
        "signature" => "SignatureError",
        "metadata" => "MetadataError",
        "request" => "RequestError",
        "gpu" => "GpuError",
        _ => "IoError",
    };
    let message = e.to_string();
    Python::attach(|py| {
        let raised = py.import("refcast.errors").and_then(|m| m.getattr(class)).and_then(|c| c.call1((message.clone(),)));
        match raised {
            Ok(instance) => PyErr::from_value(instance),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

/// A wrong argument of the Python API (an unknown mode, a bad option): `ValueError`.
pub fn usage(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

pub fn parse_mode(mode: Option<&str>) -> PyResult<PredictionMode> {
    mode.map_or(Ok(PredictionMode::default()), |m| m.parse().map_err(usage))
}

pub fn parse_baseline(versus: Option<&str>) -> PyResult<Option<Baseline>> {
    versus.map(|b| b.parse().map_err(usage)).transpose()
}

pub fn metadata_from_py(fields: &Bound<'_, PyDict>) -> PyResult<Metadata> {
    let mut m = Metadata::new();
    for (k, v) in fields.iter() {
        let key: String = k.extract().map_err(|_| usage(format!("metadata field names are text, got {}", k.get_type())))?;
        let value = value_from_py(&v, &key)?;
        m.insert(key, value);
    }
    Ok(m)
}

/// A perturbation by name (`ModelConfig::perturbation`) or as a dict of fields.
pub fn named_perturbation(cfg: &ModelConfig, p: &Bound<'_, PyAny>) -> PyResult<Named> {
    if let Ok(fields) = p.cast::<PyDict>() {
        let metadata = metadata_from_py(fields)?;
        return Ok(Named::new(metadata::describe(&metadata), metadata));
    }
    let name: String = p.extract().map_err(|_| usage(format!("a perturbation is a name or a dict of fields, got {}", p.get_type())))?;
    Ok(cfg.perturbation(&name))
}

/// A context by name (`metadata::context_named`) or as a dict of fields.
pub fn context_metadata(cfg: &ModelConfig, c: &Bound<'_, PyAny>) -> PyResult<Metadata> {
    if let Ok(fields) = c.cast::<PyDict>() {
        return metadata_from_py(fields);
    }
    let name: String = c.extract().map_err(|_| usage(format!("a context is a name or a dict of fields, got {}", c.get_type())))?;
    metadata::context_named(cfg, &name).map_err(error)
}

pub fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    py.import("json")?.getattr("loads")?.call1((text,))
}

pub fn metadata_py<'py>(py: Python<'py>, m: &Metadata) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &serde_json::to_value(m).map_err(|e| PyRuntimeError::new_err(e.to_string()))?)
}

pub fn named_py<'py>(py: Python<'py>, n: &Named) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &n.name)?;
    d.set_item("metadata", metadata_py(py, &n.metadata)?)?;
    d.set_item("control", ModelConfig::is_control(n))?;
    Ok(d)
}

/// A reference as the library read it; its arrays move into numpy.
pub fn reference_py(py: Python<'_>, r: Reference) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &r.name)?;
    d.set_item("library_size", r.library_size)?;
    d.set_item("sequencing_depth", r.sequencing_depth())?;
    d.set_item("matched", r.report.matched)?;
    d.set_item("missing", r.report.missing)?;
    d.set_item("unknown", r.report.unknown)?;
    d.set_item("unknown_examples", &r.report.unknown_examples)?;
    d.set_item("report", r.report.to_string())?;
    d.set_item("log_cpm", r.log_cpm.into_pyarray(py))?;
    d.set_item("measured", r.measured.into_pyarray(py))?;
    Ok(d)
}

/// Familiarity reports: the fields of [`Familiarity`] and its `summary`.
pub fn familiarity_py<'py>(py: Python<'py>, list: &[Familiarity]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for f in list {
        let d = PyDict::new(py);
        d.set_item("reference", &f.reference)?;
        d.set_item("reconstruction_r2", f.reconstruction_r2)?;
        d.set_item("nearest_context", &f.nearest_context)?;
        d.set_item("distance", f.distance)?;
        d.set_item("outside", f.outside)?;
        d.set_item("reasons", &f.reasons)?;
        d.set_item("summary", f.summary())?;
        out.append(d)?;
    }
    Ok(out)
}

/// (gene symbol, log fold change) pairs.
pub fn top_genes(cfg: &ModelConfig, list: &[(usize, f32)]) -> Vec<(String, f32)> {
    list.iter().map(|&(g, lfc)| (cfg.genes[g].symbol.clone(), lfc)).collect()
}

/// `info()`: what the JS package's `info()` gives, in snake case, with the backend.
pub fn info_json(c: &ModelConfig, backend: &str, reason: &str, adapter: &str) -> serde_json::Value {
    let perturbations: Vec<serde_json::Value> = c
        .perturbations
        .iter()
        .map(|n| serde_json::json!({ "name": n.name, "metadata": n.metadata, "control": ModelConfig::is_control(n) }))
        .collect();
    serde_json::json!({
        "name": c.name,
        "genes": c.architecture.genes,
        "latent": c.architecture.latent,
        "metadata": {
            "technical": c.priors.technical,
            "biological": c.priors.biological,
            "perturbation": c.priors.perturbation,
        },
        "perturbations": perturbations,
        "default_perturbation": c.default_perturbation().map(|n| n.name.as_str()),
        "control": c.control().map(|n| n.name.as_str()),
        "contexts": c.contexts,
        "covariates": c.covariates,
        "provenance": c.provenance,
        "familiarity": c.familiarity.as_ref().map(|f| serde_json::json!({
            "contexts": f.centroids.iter().map(|c| c.context.as_str()).collect::<Vec<_>>(),
            "max_distance": f.max_distance,
            "min_reconstruction_r2": f.min_reconstruction_r2,
            "calibration": f.calibration,
        })),
        "backend": backend,
        "backend_reason": reason,
        "adapter": adapter,
    })
}
