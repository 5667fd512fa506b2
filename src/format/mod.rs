//! Model files: safetensors with a `refcast` metadata document (docs/FORMAT.md). Reading checks
//! everything before allocating tensors: header size, offsets, dtypes, shapes against the
//! architecture, vocabularies.

pub mod checksum;
pub mod config;
pub mod prior;
mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};

use safetensors::{Dtype, View};

pub use config::*;
pub use validate::is_unsafe_char;
use validate::{inner, validate_config};

use crate::error::{Error, Result};
use crate::quant::{DType, Matrix};

/// Largest JSON header refcast accepts. Real headers are well under 1 MiB (the gene list
/// dominates); the limit stops a hostile length from driving an allocation.
pub const MAX_HEADER_BYTES: usize = 16 << 20;

/// Largest model file refcast reads. The shipped models are tens of MiB; the limit keeps a
/// hostile or mistaken file (a multi-GiB download of something else) from being read whole.
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Linear weights that are never quantized although they are linear layers.
const NEVER_QUANTIZED: [&str; 1] = ["encoder.covariate.weight"];

/// Key of the refcast document in the safetensors `__metadata__`.
pub const METADATA_KEY: &str = "refcast";

/// A parsed, validated model: its document and its tensors (1-D tensors are `[1, n]`).
#[derive(Clone, Debug)]
pub struct ModelFile {
    pub config: ModelConfig,
    pub tensors: HashMap<String, Matrix>,
}

impl ModelFile {
    /// Parses and validates a model from the bytes of a file.
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile> {
        if bytes.len() as u64 > MAX_MODEL_BYTES {
            return Err(Error::format(format!("the file is {} bytes, over the {MAX_MODEL_BYTES}-byte limit for a model", bytes.len())));
        }
        check_header_length(bytes, "a refcast model (.safetensors): a sample or signature given as the model?")?;
        let layout = check_layout(bytes).map_err(|e| Error::format(format!("not a valid safetensors file: {}", inner(&e))))?;
        let doc = layout
            .metadata
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::format(format!("no '{METADATA_KEY}' entry in the safetensors __metadata__ (is this a refcast model?)")))?;
        let config = parse_config(doc)?;
        validate_config(&config)?;

        let expected = expected_tensors(&config);
        let mut tensors = HashMap::with_capacity(expected.len());
        for stored in &layout.tensors {
            let name = stored.name.as_str();
            let Some(&(rows, cols)) = expected.get(name) else {
                return Err(Error::format(format!("unexpected tensor '{name}' (not part of the architecture)")));
            };
            let (dtype, shape) = logical(&config, name, stored.dtype, &stored.shape)?;
            if dtype.is_quantized() && NEVER_QUANTIZED.contains(&name) {
                return Err(Error::format(format!("tensor '{name}' is {dtype}; it must be f32 or f16 (it has a column per covariate)")));
            }
            let logical_shape = match shape.as_slice() {
                [n] => (1, *n),
                [r, c] => (*r, *c),
                other => return Err(Error::format(format!("tensor '{name}' has shape {other:?}; refcast uses 1-D and 2-D tensors"))),
            };
            let want = if rows == 1 { (1, cols) } else { (rows, cols) };
            if logical_shape != want {
                return Err(Error::format(format!(
                    "tensor '{name}' has shape {shape:?} but the architecture needs {}",
                    if rows == 1 { format!("[{cols}]") } else { format!("[{rows}, {cols}]") }
                )));
            }
            let size = dtype.byte_size(want.0, want.1).ok_or_else(|| {
                Error::format(format!("tensor '{name}': {dtype} needs a column count divisible by 32, got {}", want.1))
            })?;
            if stored.data.len() != size {
                return Err(Error::format(format!("tensor '{name}' holds {} bytes, {dtype} {shape:?} needs {size}", stored.data.len())));
            }
            check_finite(name, dtype, stored.data)?;
            if name == DENOISE_THRESHOLD {
                check_thresholds(dtype, stored.data)?;
            }
            tensors.insert(name.to_string(), Matrix { rows: want.0, cols: want.1, dtype, bytes: stored.data.to_vec() });
        }
        if let Some(missing) = expected.keys().find(|k| !tensors.contains_key(*k)) {
            return Err(Error::format(format!("tensor '{missing}' is missing")));
        }
        Ok(ModelFile { config, tensors })
    }

    /// Serialises a model (the inverse of [`ModelFile::from_bytes`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut config = self.config.clone();
        config.tensors = self
            .tensors
            .iter()
            .filter(|(_, m)| m.dtype.is_quantized())
            .map(|(k, m)| (k.clone(), TensorSpec { dtype: m.dtype, shape: vec![m.rows, m.cols] }))
            .collect();
        let doc = serde_json::to_string(&config).map_err(|e| Error::format(e.to_string()))?;
        let meta = HashMap::from([(METADATA_KEY.to_string(), doc)]);
        let expected = expected_tensors(&config);
        let views: BTreeMap<&str, StoredView<'_>> = self
            .tensors
            .iter()
            .map(|(k, m)| {
                let shape = if m.dtype.is_quantized() {
                    vec![m.bytes.len()]
                } else if expected.get(k.as_str()).is_some_and(|s| s.0 == 1) {
                    vec![m.cols]
                } else {
                    vec![m.rows, m.cols]
                };
                (k.as_str(), StoredView { matrix: m, shape })
            })
            .collect();
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::format(e.to_string()))
    }

    /// A tensor by name (present after validation).
    pub fn tensor(&self, name: &str) -> &Matrix {
        &self.tensors[name]
    }

    /// An f32 copy of a (small) tensor.
    pub fn vector(&self, name: &str) -> Vec<f32> {
        self.tensors[name].to_f32()
    }
}

/// The refcast document, read straight into [`ModelConfig`] (no intermediate JSON tree: the gene
/// list makes it the larger part of a header). When that fails, or names another version, the
/// version alone is read to say which.
fn parse_config(doc: &str) -> Result<ModelConfig> {
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: Option<serde_json::Value>,
    }
    let problem = match serde_json::from_str::<ModelConfig>(doc) {
        Ok(config) if FORMAT_VERSIONS.contains(&config.format_version) => return Ok(config),
        Ok(_) => None,
        Err(e) => Some(e),
    };
    let version: Version =
        serde_json::from_str(doc).map_err(|e| Error::format(format!("the '{METADATA_KEY}' metadata is not JSON: {e}")))?;
    match version.format_version.as_ref().and_then(|v| v.as_u64()) {
        Some(v) if FORMAT_VERSIONS.iter().any(|&known| known as u64 == v) => {
            Err(Error::format(format!("refcast metadata: {}", problem.map_or_else(String::new, |e| e.to_string()))))
        }
        Some(v) => Err(Error::format(format!("format version {v} is not supported (this refcast reads versions {})", versions()))),
        None => Err(Error::format("the refcast metadata has no format_version")),
    }
}

/// "1 and 2".
fn versions() -> String {
    let names: Vec<String> = FORMAT_VERSIONS.iter().map(u32::to_string).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// `not_text`: what a text file given here is not, in words (with a hint).
fn check_header_length(bytes: &[u8], not_text: &str) -> Result<()> {
    let Some(len) = bytes.get(..8) else {
        return Err(Error::format(format!("file is {} bytes, too short for a safetensors header", bytes.len())));
    };
    let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    // A safetensors file starts with a small binary length; text there is some other file.
    if n > MAX_HEADER_BYTES as u64 && len.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        let start: String = bytes.iter().take(24).map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { ' ' }).collect();
        return Err(Error::format(format!(
            "this is a text file ('{}…'), not {not_text}",
            start.trim_end()
        )));
    }
    // A compressed or archived file, a spreadsheet or an HDF5 file, named by its first bytes
    // when they cannot start a safetensors file (a header in the file, starting with '{').
    let not_safetensors = n > MAX_HEADER_BYTES as u64 || 8 + n > bytes.len() as u64 || bytes.get(8) != Some(&b'{');
    if let Some(what) = crate::sample::binary_format(bytes).filter(|_| not_safetensors) {
        let what = what.split(" (").next().unwrap_or(what);
        return Err(Error::format(format!(
            "this file is {what}, not a refcast model (.safetensors){}",
            if what.ends_with("-compressed") { ": decompress it first (a model file is read as it is)" } else { "" }
        )));
    }
    if n > MAX_HEADER_BYTES as u64 {
        return Err(Error::format(format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")));
    }
    if 8 + n > bytes.len() as u64 {
        return Err(Error::format(format!("header length {n} runs past the end of the {}-byte file (truncated?)", bytes.len())));
    }
    Ok(())
}

/// A safetensors file's header, checked: its `__metadata__` and its tensors' bytes.
pub(crate) struct Layout<'a> {
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) tensors: Vec<Stored<'a>>,
}

pub(crate) struct Stored<'a> {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: &'a [u8],
}

/// Any refcast safetensors file's header and tensors (a model's, a gene-set file's), checked as
/// [`ModelFile::from_bytes`] checks a model's: one reader, and one set of messages, for both.
/// `not_text` says what a text file given here is not (see [`check_header_length`]).
pub(crate) fn read_layout<'a>(bytes: &'a [u8], not_text: &str) -> Result<Layout<'a>> {
    check_header_length(bytes, not_text)?;
    check_layout(bytes).map_err(|e| Error::format(format!("not a valid safetensors file: {}", inner(&e))))
}

/// Reads the safetensors header (refcast's own reader, so that every problem gets a message
/// naming the tensor, its offsets or the byte): the header is UTF-8 JSON, `__metadata__` maps
/// names to strings, every tensor has a dtype refcast reads, a shape and offsets inside the data
/// section that match each other, and the tensors cover the data section without overlaps or gaps.
fn check_layout(bytes: &[u8]) -> Result<Layout<'_>> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = &bytes[8..8 + n];
    let data_len = (bytes.len() - 8 - n) as u64;
    let text = std::str::from_utf8(header)
        .map_err(|e| Error::format(format!("the header is not UTF-8 text (invalid byte at header offset {})", e.valid_up_to())))?;
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::format(format!("the header is not valid JSON: {e}")))?;
    let serde_json::Value::Object(mut entries) = json else {
        return Err(Error::format("the header is not a JSON object of tensors"));
    };
    let metadata = match entries.remove("__metadata__") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(m)) if m.values().all(|v| v.is_string()) => Some(m),
        Some(_) => return Err(Error::format("the header's __metadata__ must map names to strings")),
    };
    let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(entries.len());
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, t) in &entries {
        let dtype = t.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| Error::format(format!("tensor '{name}' has no dtype")))?;
        let (width, dtype): (u64, Dtype) = match dtype {
            "F32" => (4, Dtype::F32),
            "F16" => (2, Dtype::F16),
            "U8" => (1, Dtype::U8),
            // Gene-set files (crate::enrichment); a model refuses them in `logical`.
            "U16" => (2, Dtype::U16),
            "U32" => (4, Dtype::U32),
            other => {
                return Err(Error::format(format!("tensor '{name}' has dtype '{other}'; refcast reads F32, F16 and U8 (quantized), and U16 and U32 in gene-set files")));
            }
        };
        let shape: Option<Vec<u64>> = t.get("shape").and_then(|s| s.as_array()).and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let Some(shape) = shape else {
            return Err(Error::format(format!("tensor '{name}' has no shape (a list of non-negative integers)")));
        };
        let offsets: Option<Vec<u64>> =
            t.get("data_offsets").and_then(|s| s.as_array()).and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let (begin, end) = match offsets.as_deref() {
            Some(&[b, e]) => (b, e),
            _ => return Err(Error::format(format!("tensor '{name}' has no data_offsets [begin, end]"))),
        };
        if begin > end || end > data_len {
            return Err(Error::format(format!(
                "tensor '{name}': data_offsets [{begin}, {end}] lie outside the {data_len}-byte data section (truncated file?)"
            )));
        }
        let size = shape.iter().try_fold(width, |acc, &d| acc.checked_mul(d));
        if size != Some(end - begin) {
            return Err(Error::format(format!(
                "tensor '{name}' spans {} bytes but {dtype} {shape:?} needs {}",
                end - begin,
                size.map_or("more than 2^64".to_string(), |s| s.to_string())
            )));
        }
        spans.push((begin, end, name));
        let shape: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
        let shape = shape.ok_or_else(|| Error::format(format!("tensor '{name}': a dimension does not fit this machine's address space")))?;
        let data_start = bytes.len() - data_len as usize;
        tensors.push((name.clone(), dtype, shape, &bytes[data_start + begin as usize..data_start + end as usize]));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        let ((_, end_a, a), (begin_b, _, b)) = (w[0], w[1]);
        if begin_b < end_a {
            return Err(Error::format(format!("tensors '{a}' and '{b}' overlap (byte {begin_b} of the data section is in both)")));
        }
    }
    let mut pos = 0u64;
    for &(begin, end, _) in &spans {
        if begin > pos {
            return Err(Error::format(format!("bytes {pos}..{begin} of the data section belong to no tensor")));
        }
        pos = end;
    }
    if pos != data_len {
        return Err(Error::format(format!("the data section has {data_len} bytes but the tensors end at byte {pos}")));
    }
    Ok(Layout { metadata, tensors: tensors.into_iter().map(|(name, dtype, shape, data)| Stored { name, dtype, shape, data }).collect() })
}

/// The logical dtype and shape of a stored tensor.
fn logical(config: &ModelConfig, name: &str, dtype: Dtype, shape: &[usize]) -> Result<(DType, Vec<usize>)> {
    let spec = config.tensors.get(name);
    match (dtype, spec) {
        (Dtype::U8, Some(spec)) => {
            if shape.len() != 1 {
                return Err(Error::format(format!("quantized tensor '{name}' must be stored as a 1-D U8 tensor")));
            }
            Ok((spec.dtype, spec.shape.clone()))
        }
        (Dtype::U8, None) => Err(Error::format(format!("U8 tensor '{name}' has no entry in the metadata 'tensors' table"))),
        (Dtype::F32 | Dtype::F16, spec) => {
            let d = if dtype == Dtype::F32 { DType::F32 } else { DType::F16 };
            if let Some(spec) = spec.filter(|s| s.dtype != d || s.shape != shape) {
                return Err(Error::format(format!(
                    "tensor '{name}' is stored as {d} {shape:?} but the metadata says {} {:?}",
                    spec.dtype, spec.shape
                )));
            }
            Ok((d, shape.to_vec()))
        }
        (other, _) => Err(Error::format(format!("tensor '{name}' has dtype {other:?}; refcast reads F32, F16 and U8 (quantized)"))),
    }
}

/// Format 3: per-gene thresholds of the denoised prediction mode (ln units).
pub const DENOISE_THRESHOLD: &str = "denoise.threshold";

/// The denoising thresholds are soft-threshold widths: a negative one would add noise, not drop it.
fn check_thresholds(dtype: DType, data: &[u8]) -> Result<()> {
    let value = |i: usize| match dtype {
        DType::F32 => f32::from_le_bytes(data[4 * i..4 * i + 4].try_into().expect("4 bytes")),
        DType::F16 => half::f16::from_le_bytes([data[2 * i], data[2 * i + 1]]).to_f32(),
        _ => 0.0,
    };
    if dtype.is_quantized() {
        return Err(Error::format(format!("tensor '{DENOISE_THRESHOLD}' is {dtype}; it must be f32 or f16")));
    }
    let n = data.len() / if dtype == DType::F32 { 4 } else { 2 };
    match (0..n).find(|&i| value(i) < 0.0) {
        Some(i) => Err(Error::format(format!("tensor '{DENOISE_THRESHOLD}': gene {i} has threshold {} (must be ≥ 0)", value(i)))),
        None => Ok(()),
    }
}

/// Rejects NaN and infinite weights (f32/f16 values, quantization scales): they would turn every
/// prediction into NaN without an error.
fn check_finite(name: &str, dtype: DType, data: &[u8]) -> Result<()> {
    let bad = match dtype {
        DType::F32 => data.chunks_exact(4).position(|c| !f32::from_le_bytes(c.try_into().expect("4 bytes")).is_finite()),
        DType::F16 => data.chunks_exact(2).position(|c| !half::f16::from_le_bytes([c[0], c[1]]).is_finite()),
        DType::Q8_0 => data
            .chunks_exact(crate::quant::Q8_0_BLOCK_BYTES)
            .position(|b| !half::f16::from_le_bytes([b[0], b[1]]).is_finite())
            .map(|b| b * crate::quant::BLOCK),
        DType::Q4_0 => data
            .chunks_exact(crate::quant::Q4_0_BLOCK_BYTES)
            .position(|b| !half::f16::from_le_bytes([b[0], b[1]]).is_finite())
            .map(|b| b * crate::quant::BLOCK),
    };
    match bad {
        Some(i) => Err(Error::format(format!("tensor '{name}' holds a non-finite value (NaN or infinity) at element {i}"))),
        None => Ok(()),
    }
}

/// Every tensor the architecture needs, with its logical `(rows, cols)`; 1-D tensors have
/// `rows == 1`.
pub fn expected_tensors(c: &ModelConfig) -> BTreeMap<String, (usize, usize)> {
    let a = &c.architecture;
    let mut t = BTreeMap::new();
    let linear = |t: &mut BTreeMap<String, (usize, usize)>, name: &str, out: usize, inp: usize| {
        t.insert(format!("{name}.weight"), (out, inp));
        t.insert(format!("{name}.bias"), (1, out));
    };
    let trunk = |t: &mut BTreeMap<String, (usize, usize)>, net: &str, s: Trunk, head: usize| {
        for i in 0..s.blocks {
            let b = format!("{net}.blocks.{i}");
            t.insert(format!("{b}.norm.weight"), (1, s.hidden));
            t.insert(format!("{b}.norm.bias"), (1, s.hidden));
            linear(t, &format!("{b}.fc1"), s.ff, s.hidden);
            linear(t, &format!("{b}.fc2"), s.hidden, s.ff);
        }
        t.insert(format!("{net}.norm.weight"), (1, s.hidden));
        t.insert(format!("{net}.norm.bias"), (1, s.hidden));
        linear(t, &format!("{net}.head"), head, s.hidden);
    };
    let enc_latent = a.latent.technical + a.latent.biological;
    linear(&mut t, "encoder.input", a.encoder.hidden, a.genes);
    trunk(&mut t, "encoder", a.encoder, 2 * enc_latent);
    linear(&mut t, "decoder.input", a.decoder.hidden, a.latent.total());
    trunk(&mut t, "decoder", a.decoder, a.genes);
    if c.format_version >= 2 {
        linear(&mut t, "encoder.covariate", a.encoder.hidden, c.covariates.len());
        linear(&mut t, "decoder.perturbation", a.genes, a.latent.perturbation);
    }
    if c.format_version >= 3 {
        t.insert(DENOISE_THRESHOLD.into(), (1, a.genes));
    }
    for g in Group::ALL {
        let net = format!("prior.{}", g.name());
        t.insert(format!("{net}.embedding"), (c.priors.of(g).table_rows(), a.prior.hidden));
        t.insert(format!("{net}.input.bias"), (1, a.prior.hidden));
        trunk(&mut t, &net, a.prior, 2 * a.latent.of(g));
    }
    t.insert("decoder.logvar".into(), (1, a.genes));
    t.insert("input.gene_mean".into(), (1, a.genes));
    t
}

/// A stored matrix as a safetensors view: f32/f16 natively, quantized as 1-D U8.
struct StoredView<'a> {
    matrix: &'a Matrix,
    shape: Vec<usize>,
}

impl View for StoredView<'_> {
    fn dtype(&self) -> Dtype {
        match self.matrix.dtype {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::Q8_0 | DType::Q4_0 => Dtype::U8,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.matrix.bytes)
    }
    fn data_len(&self) -> usize {
        self.matrix.bytes.len()
    }
}
