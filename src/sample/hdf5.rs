//! HDF5 samples: an AnnData `.h5ad` file or a 10x Genomics Cell Ranger `.h5` matrix, its cells'
//! raw counts summed into pseudobulk samples: all cells into one, one per value of an AnnData
//! `obs` column, or one per group of a barcode → group table (as for a 10x directory, `tenx`).
//!
//! Read with `hdf5-pure` (pure Rust: no libhdf5 to install or link), from a file in windows
//! of at most [`WINDOW`] values, so that memory is the sums, the cells' names and one window
//! whatever the size of the matrix. AnnData's matrices are dense or CSR/CSC groups (anndata's
//! `encoding-type` or the older `h5sparse_format`); categorical `obs` columns are read in both
//! encodings (a group of `codes` and `categories`, or codes whose categories sit in
//! `obs/__categories`). Values must be raw counts (finite, ≥ 0, whole): a normalized matrix is
//! refused with the layers to name instead.

use std::path::Path;

use hdf5_pure::{AttrValue, DType, Dataset, File, Group};

use super::format_detect::{Format, Interpretation, SampleFile};
use super::tenx::{MAX_BARCODES, MAX_FEATURES, MAX_GROUPS};
use super::*;

/// Most values of a matrix read at once (8 MiB of f64).
pub const WINDOW: u64 = 1 << 20;

/// HDF5's signature, the first 8 bytes of a file without a user block.
pub const SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

/// How to turn an HDF5 file's cells into samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct CellOptions<'a> {
    /// AnnData: the `obs` column whose values group the cells (one sample per value).
    pub groupby: Option<&'a str>,
    /// AnnData: where the raw counts are: `X`, `raw` (`.raw.X`) or a layer's name. Default:
    /// `.raw` when the file has one, else `X`.
    pub layer: Option<&'a str>,
    /// AnnData: the `var` column holding the gene names (default: the var index).
    pub gene_names: Option<&'a str>,
    /// A barcode → group table (two columns, tab or comma; see `tenx`), either format.
    pub groups: Option<&'a [u8]>,
}

/// Reads the HDF5 file at `path` (streamed: only what is needed is read). `name` is its name
/// for messages and for naming the one sample when the cells are not grouped.
pub fn read_path(path: &Path, name: &str, options: &CellOptions) -> Result<SampleFile> {
    let file = File::open_streaming(path).map_err(|e| Error::Sample(format!("not a readable HDF5 file: {e}")))?;
    read_file(&file, name, options)
}

/// [`read_path`] for a file's bytes in memory.
pub fn read_bytes(bytes: Vec<u8>, name: &str, options: &CellOptions) -> Result<SampleFile> {
    let file = File::from_bytes(bytes).map_err(|e| Error::Sample(format!("not a readable HDF5 file: {e}")))?;
    read_file(&file, name, options)
}

fn read_file(file: &File, name: &str, options: &CellOptions) -> Result<SampleFile> {
    let root = file.root();
    let (groups, datasets) = (names(root.groups(), "/")?, names(root.datasets(), "/")?);
    let has = |list: &[String], n: &str| list.iter().any(|g| g == n);
    if has(&groups, "matrix") {
        return tenx_h5(file, "matrix", name, options);
    }
    // Cell Ranger 2: one group per genome holding the matrix.
    if let Some(genome) = groups.iter().find(|g| file.dataset(&format!("{g}/indptr")).is_ok() && file.dataset(&format!("{g}/genes")).is_ok()) {
        return tenx_h5(file, genome, name, options);
    }
    if has(&datasets, "matrix") && has(&groups, "row_attrs") {
        return Err(Error::Sample(
            "a loom file, which refcast does not read: convert it with anndata.read_loom(...).write_h5ad(...), or use the Python package \
             (refcast.load().predict(adata, groupby=...))"
                .into(),
        ));
    }
    if (has(&groups, "X") || has(&datasets, "X")) && has(&groups, "obs") && has(&groups, "var") {
        return anndata(file, name, options);
    }
    let mut top: Vec<String> = groups.iter().map(|g| format!("{g}/")).chain(datasets).collect();
    top.truncate(12);
    Err(Error::Sample(format!(
        "an HDF5 file that is neither an AnnData .h5ad (X, obs and var at its top level) nor a 10x Genomics .h5 matrix \
         (/matrix); its top level holds: {}",
        if top.is_empty() { "nothing".into() } else { top.join(", ") }
    )))
}

fn h5err(path: &str, e: hdf5_pure::Error) -> Error {
    Error::Sample(format!("cannot read {path}: {e}"))
}

fn names(list: std::result::Result<Vec<String>, hdf5_pure::Error>, path: &str) -> Result<Vec<String>> {
    list.map_err(|e| h5err(path, e))
}

fn dataset(file: &File, path: &str) -> Result<Dataset> {
    file.dataset(path).map_err(|_| Error::Sample(format!("no dataset {path}")))
}

fn strings(file: &File, path: &str) -> Result<Vec<String>> {
    dataset(file, path)?.read_string().map_err(|e| h5err(path, e))
}

fn integers(file: &File, path: &str) -> Result<Vec<i64>> {
    dataset(file, path)?.read_i64().map_err(|e| h5err(path, e))
}

/// A string attribute's value (anndata writes them variable-length or fixed).
fn string_attr(attrs: &std::collections::HashMap<String, AttrValue>, key: &str) -> Option<String> {
    match attrs.get(key)? {
        AttrValue::String(s) | AttrValue::AsciiString(s) | AttrValue::StringSized { value: s, .. } | AttrValue::AsciiStringSized { value: s, .. } => Some(s.clone()),
        AttrValue::VarLenString(s) | AttrValue::VarLenAsciiString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_array_attr(attrs: &std::collections::HashMap<String, AttrValue>, key: &str) -> Option<Vec<i64>> {
    match attrs.get(key)? {
        AttrValue::I64Array(v) => Some(v.clone()),
        AttrValue::I32Array(v) => Some(v.iter().map(|&x| x as i64).collect()),
        AttrValue::U64Array(v) => Some(v.iter().map(|&x| x as i64).collect()),
        AttrValue::U32Array(v) => Some(v.iter().map(|&x| x as i64).collect()),
        _ => None,
    }
}

/// How a matrix of cells is stored.
enum Storage {
    /// `indptr` runs over the major axis (cells when `by_cell`, else genes); `indices` index the
    /// other axis.
    Sparse { data: Dataset, indices: Dataset, indptr: Vec<u64>, by_cell: bool },
    /// Cells × genes.
    Dense(Dataset),
}

/// A cells × genes matrix; `what` names it in messages (`raw/X`, `/matrix`, …).
struct Matrix {
    what: String,
    cells: usize,
    genes: usize,
    storage: Storage,
}

impl Matrix {
    /// A sparse matrix in `group` (`data`, `indices`, `indptr`); `major` is the length of the
    /// axis `indptr` runs over.
    fn sparse(file: &File, group: &str, what: String, cells: usize, genes: usize, by_cell: bool) -> Result<Matrix> {
        let major = if by_cell { cells } else { genes };
        let path = |d: &str| format!("{group}/{d}");
        let indptr = integers(file, &path("indptr"))?;
        if indptr.len() != major + 1 {
            return Err(Error::Sample(format!("{what}: indptr has {} entries for {major} {}", indptr.len(), if by_cell { "cells" } else { "genes" })));
        }
        if indptr[0] != 0 || indptr.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::Sample(format!("{what}: indptr does not rise from 0: the matrix is damaged")));
        }
        let indptr: Vec<u64> = indptr.into_iter().map(|p| p as u64).collect();
        let (data, indices) = (dataset(file, &path("data"))?, dataset(file, &path("indices"))?);
        let nnz = *indptr.last().expect("major + 1 ≥ 1 entries");
        for (d, n) in [(&data, "data"), (&indices, "indices")] {
            let len = d.shape().map_err(|e| h5err(&path(n), e))?.iter().product::<u64>();
            if len != nnz {
                return Err(Error::Sample(format!("{what}: {n} holds {len} values, but indptr ends at {nnz}")));
            }
        }
        Ok(Matrix { what, cells, genes, storage: Storage::Sparse { data, indices, indptr, by_cell } })
    }

    /// Whether the values are stored as integers (then they are counts without looking).
    fn integer(&self) -> bool {
        let d = match &self.storage {
            Storage::Sparse { data, .. } => data,
            Storage::Dense(d) => d,
        };
        matches!(d.dtype(), Ok(DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 | DType::U64))
    }

    /// Calls `add(cell, gene, value)` for every stored non-zero value, in windows of at most
    /// [`WINDOW`] values. `value` is checked to be a count; otherwise the error quotes the cell
    /// and gene (by `cell_name`, `gene_name`) and ends with `hint`.
    fn each(&self, cell_name: &dyn Fn(usize) -> String, gene_name: &dyn Fn(usize) -> String, hint: &str, mut add: impl FnMut(usize, usize, f64)) -> Result<()> {
        let what = &self.what;
        let mut check = |cell: usize, gene: usize, v: f64| {
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0) {
                return Err(Error::Sample(format!(
                    "{what} holds {v} for cell '{}', gene '{}': not a raw count (finite, ≥ 0, whole); {hint}",
                    excerpt(&cell_name(cell)),
                    excerpt(&gene_name(gene))
                )));
            }
            if v != 0.0 {
                add(cell, gene, v);
            }
            Ok(())
        };
        match &self.storage {
            Storage::Sparse { data, indices, indptr, by_cell } => {
                let (major, minor) = if *by_cell { (self.cells, self.genes) } else { (self.genes, self.cells) };
                let nnz = indptr[major];
                let mut m = 0;
                let mut start = 0;
                while start < nnz {
                    let n = WINDOW.min(nnz - start);
                    let values = data.read_f64_rows(start, n).map_err(|e| h5err(&format!("{what}/data"), e))?;
                    let index = indices.read_i64_rows(start, n).map_err(|e| h5err(&format!("{what}/indices"), e))?;
                    if values.len() as u64 != n || index.len() as u64 != n {
                        return Err(Error::Sample(format!("{what}: a read of {n} values at {start} gave {}", values.len().min(index.len()))));
                    }
                    for k in 0..n as usize {
                        let pos = start + k as u64;
                        while indptr[m + 1] <= pos {
                            m += 1;
                        }
                        let i = index[k];
                        if i < 0 || i as usize >= minor {
                            return Err(Error::Sample(format!("{what}: index {i} (value {}) is outside the {minor} {}", pos + 1, if *by_cell { "genes" } else { "cells" })));
                        }
                        let (cell, gene) = if *by_cell { (m, i as usize) } else { (i as usize, m) };
                        check(cell, gene, values[k])?;
                    }
                    start += n;
                }
            }
            Storage::Dense(d) => {
                let rows = (WINDOW / self.genes.max(1) as u64).max(1);
                let mut start = 0;
                while start < self.cells as u64 {
                    let n = rows.min(self.cells as u64 - start);
                    let values = d.read_f64_rows(start, n).map_err(|e| h5err(what, e))?;
                    if values.len() as u64 != n * self.genes as u64 {
                        return Err(Error::Sample(format!("{what}: a read of {n} cells at {start} gave {} values", values.len())));
                    }
                    for (r, row) in values.chunks_exact(self.genes).enumerate() {
                        for (g, &v) in row.iter().enumerate() {
                            check(start as usize + r, g, v)?;
                        }
                    }
                    start += n;
                }
            }
        }
        Ok(())
    }
}

/// Each cell's group and the groups' names, from a barcode → group table or from labels.
struct Grouping {
    group_of: Vec<Option<usize>>,
    names: Vec<String>,
}

impl Grouping {
    fn all(cells: usize, name: &str) -> Grouping {
        Grouping { group_of: vec![Some(0); cells], names: vec![name.to_string()] }
    }
}

/// Sums `matrix` into one count sample per group, over the features `keep` says are genes;
/// the table and the number of cells with a count summed.
fn pseudobulk(matrix: &Matrix, features: &[String], keep: &[bool], cells: &[String], grouping: Grouping, hint: &str) -> Result<(SampleTable, usize)> {
    let mut column = vec![None; features.len()];
    let mut genes = Vec::new();
    for (f, name) in features.iter().enumerate().filter(|(f, _)| keep[*f]) {
        column[f] = Some(genes.len());
        genes.push(name.clone());
    }
    if genes.is_empty() {
        return Err(Error::Sample(format!("{}: no Gene Expression features", matrix.what)));
    }
    let mut sums = vec![vec![0.0f64; genes.len()]; grouping.names.len()];
    let mut used = vec![false; matrix.cells];
    matrix.each(&|c| cells[c].clone(), &|g| features[g].clone(), hint, |c, g, v| {
        if let (Some(s), Some(k)) = (grouping.group_of[c], column[g]) {
            sums[s][k] += v;
            used[c] = true;
        }
    })?;
    // Groups without a counted cell (an unused category) are not samples.
    let (mut names, mut values) = (Vec::new(), Vec::new());
    for (n, s) in grouping.names.into_iter().zip(sums) {
        if s.iter().any(|&v| v > 0.0) {
            names.push(n);
            values.push(s);
        }
    }
    if names.is_empty() {
        return Err(Error::Sample(format!("{}: the cells chosen hold no counts", matrix.what)));
    }
    let used = used.iter().filter(|&&u| u).count();
    Ok((SampleTable::from_columns(genes, names, values, ValueKind::Counts)?, used))
}

/// The sample's name when the cells are not grouped: the file's name without its extension, or
/// for Cell Ranger's `SAMPLE/outs/filtered_feature_bc_matrix.h5`, the sample's directory.
fn sample_name(name: &str) -> String {
    let parts: Vec<&str> = name.rsplit(['/', '\\']).filter(|p| !p.is_empty() && *p != ".").collect();
    let file = parts.first().copied().unwrap_or("pseudobulk");
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    match parts.as_slice() {
        [_, "outs", sample, ..] if stem.ends_with("feature_bc_matrix") => sample.to_string(),
        [_, dir, ..] if stem.ends_with("feature_bc_matrix") => dir.to_string(),
        _ if stem.is_empty() => "pseudobulk".into(),
        _ => stem.to_string(),
    }
}

/// Cell Ranger's `.h5`: a features × barcodes CSC matrix in `group` (`/matrix` from Cell Ranger
/// 3 on, with `features/{id, name, feature_type}`; a genome's group with `genes` before).
fn tenx_h5(file: &File, group: &str, name: &str, options: &CellOptions) -> Result<SampleFile> {
    if options.groupby.is_some() || options.layer.is_some() || options.gene_names.is_some() {
        return Err(Error::Sample(
            "a 10x Genomics .h5 matrix has no obs columns or layers: group its cells with a barcode → group table (--groups) instead".into(),
        ));
    }
    let path = |d: &str| format!("{group}/{d}");
    let v3 = file.group(&path("features")).is_ok();
    let ids = strings(file, &path(if v3 { "features/id" } else { "genes" }))?;
    if ids.len() > MAX_FEATURES {
        return Err(Error::Sample(format!("/{group}: more than {MAX_FEATURES} features")));
    }
    let types = if v3 { Some(strings(file, &path("features/feature_type"))?) } else { None };
    if types.as_ref().is_some_and(|t| t.len() != ids.len()) {
        return Err(Error::Sample(format!("/{group}/features: feature_type and id differ in length")));
    }
    let keep: Vec<bool> = (0..ids.len()).map(|i| types.as_ref().is_none_or(|t| t[i] == "Gene Expression")).collect();
    let barcodes = strings(file, &path("barcodes"))?;
    if barcodes.len() > MAX_BARCODES {
        return Err(Error::Sample(format!("/{group}: more than {MAX_BARCODES} barcodes")));
    }
    let shape = integers(file, &path("shape"))?;
    if shape != [ids.len() as i64, barcodes.len() as i64] {
        return Err(Error::Sample(format!("/{group}: the matrix's shape is {shape:?}, but it lists {} features and {} barcodes", ids.len(), barcodes.len())));
    }
    let matrix = Matrix::sparse(file, group, format!("/{group}"), barcodes.len(), ids.len(), true)?;
    let grouping = match options.groups {
        None => Grouping::all(barcodes.len(), &sample_name(name)),
        Some(bytes) => {
            let b: Vec<&str> = barcodes.iter().map(String::as_str).collect();
            let (group_of, names) = super::tenx::read_groups(bytes, &b, "the matrix's barcodes")?;
            Grouping { group_of, names }
        }
    };
    let grouped = options.groups.is_some();
    let (table, cells) = pseudobulk(&matrix, &ids, &keep, &barcodes, grouping, "a 10x Genomics matrix holds raw counts: is the file damaged?")?;
    let format = Format::TenX { cells, groups: grouped.then_some(table.samples.len()) };
    Ok(SampleFile { interpretation: Interpretation { format, gzip: false, kind: ValueKind::Counts, source: KindSource::Format, summary_rows: Vec::new() }, table })
}

/// The `_index` of an AnnData dataframe group, and its columns.
fn frame(file: &File, group: &str) -> Result<(Vec<String>, Vec<String>)> {
    let g = file.group(group).map_err(|_| Error::Sample(format!("no group {group}")))?;
    let attrs = g.attrs().map_err(|e| h5err(group, e))?;
    let index = string_attr(&attrs, "_index").unwrap_or_else(|| "_index".into());
    let names = strings(file, &format!("{group}/{index}"))?;
    let mut columns: Vec<String> = names_of(&g, group)?.into_iter().filter(|c| *c != index && c != "__categories").collect();
    columns.sort();
    Ok((names, columns))
}

fn names_of(g: &Group, path: &str) -> Result<Vec<String>> {
    let mut all = names(g.groups(), path)?;
    all.extend(names(g.datasets(), path)?);
    Ok(all)
}

/// A dataframe column as labels: each row's code (`None` for a missing value) and the labels
/// the codes index. Categorical columns (a group of `codes` and `categories`, or codes with
/// their categories in `__categories`), string columns and integer columns are read.
/// More than `limit` distinct labels is an error.
fn labels(file: &File, group: &str, column: &str, columns: &[String], limit: usize) -> Result<(Vec<Option<usize>>, Vec<String>)> {
    let path = format!("{group}/{column}");
    if !columns.iter().any(|c| c == column) {
        return Err(Error::Sample(format!(
            "{group} has no column '{}'; its columns: {}",
            excerpt(column),
            if columns.is_empty() { "none".into() } else { columns.iter().map(|c| excerpt(c)).collect::<Vec<_>>().join(", ") }
        )));
    }
    let (codes, categories) = if let Ok(g) = file.group(&path) {
        let encoding = g.attrs().ok().and_then(|a| string_attr(&a, "encoding-type"));
        if encoding.as_deref().is_some_and(|e| e != "categorical") {
            return Err(Error::Sample(format!(
                "{path} is a {} column: refcast groups cells by categorical, string or integer columns \
                 (in Python: adata.obs[\"{column}\"] = adata.obs[\"{column}\"].astype(\"category\"))",
                encoding.unwrap_or_default()
            )));
        }
        (integers(file, &format!("{path}/codes"))?, strings(file, &format!("{path}/categories"))?)
    } else if let Ok(categories) = strings(file, &format!("{group}/__categories/{column}")) {
        (integers(file, &path)?, categories)
    } else {
        let d = dataset(file, &path)?;
        match d.dtype().map_err(|e| h5err(&path, e))? {
            DType::String | DType::VariableLengthString => {
                let values = strings(file, &path)?;
                let mut categories: Vec<String> = Vec::new();
                let mut index = foldhash::HashMap::default();
                let codes = values
                    .into_iter()
                    .map(|v| {
                        *index.entry(v.clone()).or_insert_with(|| {
                            categories.push(v);
                            categories.len() as i64 - 1
                        })
                    })
                    .collect();
                (codes, categories)
            }
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
                let values = integers(file, &path)?;
                let mut distinct = values.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let codes = values.iter().map(|v| distinct.binary_search(v).expect("listed") as i64).collect();
                (codes, distinct.iter().map(i64::to_string).collect())
            }
            other => return Err(Error::Sample(format!("{path} holds {other} values, not labels to group cells by"))),
        }
    };
    if categories.len() > limit {
        return Err(Error::Sample(format!("{path} has {} distinct values, over the limit of {limit} groups", categories.len())));
    }
    let codes = codes
        .into_iter()
        .map(|c| match c {
            c if c < 0 => Ok(None),
            c if (c as usize) < categories.len() => Ok(Some(c as usize)),
            c => Err(Error::Sample(format!("{path}: code {c} has no category (there are {})", categories.len()))),
        })
        .collect::<Result<_>>()?;
    Ok((codes, categories))
}

/// An AnnData file: the matrix `options.layer` names (default `.raw`, else X), its genes from
/// the var index or a var column, summed over all cells or by groups.
fn anndata(file: &File, name: &str, options: &CellOptions) -> Result<SampleFile> {
    let has_raw = file.dataset("raw/X").is_ok() || file.group("raw/X").is_ok();
    let layers: Vec<String> = file.group("layers").ok().map(|g| names_of(&g, "layers")).transpose()?.unwrap_or_default();
    // The matrices to name instead of `not` (the one refused).
    let choices = |not: &str| {
        let mut c: Vec<String> = layers.iter().filter(|l| format!("layers/{l}") != not).map(|l| format!("--layer {}", excerpt(l))).collect();
        if has_raw && not != "raw/X" {
            c.push("--layer raw".into());
        }
        if not != "X" {
            c.push("--layer X".into());
        }
        if c.is_empty() { "the file has no other (write the raw counts into a layer, e.g. adata.layers[\"counts\"])".into() } else { c.join(", ") }
    };
    let (path, var) = match options.layer {
        None if has_raw => ("raw/X".to_string(), "raw/var"),
        None | Some("X") => ("X".to_string(), "var"),
        Some("raw") if has_raw => ("raw/X".to_string(), "raw/var"),
        Some(l) if layers.iter().any(|x| x == l) => (format!("layers/{l}"), "var"),
        Some(l) => return Err(Error::Sample(format!("no layer '{}' in the file; name one of: {}", excerpt(l), choices("")))),
    };
    let (cells, obs_columns) = frame(file, "obs")?;
    let (index, var_columns) = frame(file, var)?;
    let genes = match options.gene_names {
        None => index,
        Some(column) => {
            // `.raw` keeps a var of its own, often without the columns of var: var's column
            // names raw's genes too when both list the same genes.
            let (var, var_columns) = match frame(file, "var") {
                Ok((main, columns)) if var == "raw/var" && !var_columns.iter().any(|c| c == column) && columns.iter().any(|c| c == column) && main == index => {
                    ("var", columns)
                }
                _ => (var, var_columns),
            };
            let (codes, categories) = labels(file, var, column, &var_columns, MAX_FEATURES)?;
            codes
                .into_iter()
                .enumerate()
                .map(|(g, c)| c.map(|c| categories[c].clone()).ok_or_else(|| Error::Sample(format!("{var}/{column}: gene {} has no name", g + 1))))
                .collect::<Result<_>>()?
        }
    };
    if genes.len() > MAX_FEATURES || cells.len() > MAX_BARCODES {
        return Err(Error::Sample(format!("{} cells × {} genes, over the limits of {MAX_BARCODES} cells and {MAX_FEATURES} genes", cells.len(), genes.len())));
    }
    let matrix = if let Ok(g) = file.group(&path) {
        let attrs = g.attrs().map_err(|e| h5err(&path, e))?;
        let encoding = string_attr(&attrs, "encoding-type").or_else(|| string_attr(&attrs, "h5sparse_format").map(|f| format!("{f}_matrix")));
        let shape = int_array_attr(&attrs, "shape").or_else(|| int_array_attr(&attrs, "h5sparse_shape"));
        let by_cell = match encoding.as_deref() {
            Some("csr_matrix") => true,
            Some("csc_matrix") => false,
            other => return Err(Error::Sample(format!("{path} is a group of encoding '{}', not a CSR or CSC matrix", other.unwrap_or("none")))),
        };
        if shape != Some(vec![cells.len() as i64, genes.len() as i64]) {
            return Err(Error::Sample(format!("{path}: its shape {shape:?} is not obs × var ({} × {})", cells.len(), genes.len())));
        }
        Matrix::sparse(file, &path, path.clone(), cells.len(), genes.len(), by_cell)?
    } else {
        let d = dataset(file, &path)?;
        let shape = d.shape().map_err(|e| h5err(&path, e))?;
        if shape != [cells.len() as u64, genes.len() as u64] {
            return Err(Error::Sample(format!("{path}: its shape {shape:?} is not obs × var ({} × {})", cells.len(), genes.len())));
        }
        Matrix { what: path.clone(), cells: cells.len(), genes: genes.len(), storage: Storage::Dense(d) }
    };
    let grouping = match (options.groupby, options.groups) {
        (Some(_), Some(_)) => return Err(Error::Sample("group the cells by an obs column or by a group table, not both".into())),
        (Some(column), None) => {
            let (group_of, names) = labels(file, "obs", column, &obs_columns, MAX_GROUPS)?;
            Grouping { group_of, names }
        }
        (None, Some(bytes)) => {
            let b: Vec<&str> = cells.iter().map(String::as_str).collect();
            let (group_of, names) = super::tenx::read_groups(bytes, &b, "obs's index")?;
            Grouping { group_of, names }
        }
        (None, None) => Grouping::all(cells.len(), &sample_name(name)),
    };
    let hint = format!(
        "{path} looks normalized{}. Name the matrix that holds raw counts: {}",
        if matrix.integer() { "" } else { " (it holds decimals)" },
        choices(&path)
    );
    let by = options.groupby.map(str::to_string).or(options.groups.map(|_| String::new()));
    let (table, used) = pseudobulk(&matrix, &genes, &vec![true; genes.len()], &cells, grouping, &hint)?;
    let format = Format::AnnData { cells: used, matrix: path, by, samples: table.samples.len() };
    Ok(SampleFile { interpretation: Interpretation { format, gzip: false, kind: ValueKind::Counts, source: KindSource::Format, summary_rows: Vec::new() }, table })
}
