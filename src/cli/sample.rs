//! Reading `--sample`: a table file (gzip or not, any format `refcast::sample::read` tells), a
//! 10x Genomics `filtered_feature_bc_matrix/` directory or an HDF5 file (AnnData `.h5ad`, 10x
//! `.h5`) pseudobulked over its cells (`--groups`, `--groupby`: one sample per group). What it was
//! read as is printed on standard error.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use refcast::sample::hdf5::{self, CellOptions};
use refcast::sample::{self, MAX_SAMPLE_BYTES, MAX_STREAM_BYTES, SampleFile, SampleTable, StreamedTable, ValueKind, tenx};

use super::input::{Limit, display, is_dash, open_bounded, read_bounded};

const SAMPLE_LIMIT: Limit = Limit { what: "sample file", bytes: MAX_SAMPLE_BYTES as u64, fix: "split the samples into several files" };

/// How the cells of a single-cell sample (a 10x matrix, an AnnData file) make samples.
#[derive(Clone, Copy, Default)]
pub struct Cells<'a> {
    /// `--groups`: a barcode → group table.
    pub groups: Option<&'a Path>,
    /// `--groupby`: an AnnData obs column.
    pub groupby: Option<&'a str>,
    /// `--layer`: X, raw or a layer of an AnnData file.
    pub layer: Option<&'a str>,
    /// `--gene-names`: an AnnData var column.
    pub gene_names: Option<&'a str>,
}

impl Cells<'_> {
    /// The options given, by name (empty when none is).
    fn given(&self) -> Vec<&'static str> {
        let named = [("--groups", self.groups.is_some()), ("--groupby", self.groupby.is_some()), ("--layer", self.layer.is_some()), ("--gene-names", self.gene_names.is_some())];
        named.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect()
    }
}

/// Whether the file at `path` starts with HDF5's signature.
fn is_hdf5(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::metadata(path).is_ok_and(|m| m.is_file()) && File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == hdf5::SIGNATURE
}

/// Reads the sample at `path` (already located) and says on standard error what it was read as.
pub fn load(path: &Path, kind: ValueKind, cells: &Cells) -> Result<SampleFile> {
    let file = if path.is_dir() {
        if cells.groupby.is_some() || cells.layer.is_some() || cells.gene_names.is_some() {
            bail!("{}: --groupby, --layer and --gene-names are for AnnData .h5ad files; group a 10x matrix's cells with --groups", display(path));
        }
        read_10x(path, kind, cells.groups)?
    } else if is_hdf5(path) {
        read_hdf5(path, kind, cells)?
    } else {
        if let [first, ..] = cells.given()[..] {
            bail!("{first} is for single-cell samples (a 10x Genomics matrix directory or .h5 file, an AnnData .h5ad file); {} is a table", display(path));
        }
        let bytes = read_bounded(path, &SAMPLE_LIMIT)?;
        let name = if is_dash(path) { String::new() } else { path.to_string_lossy().into_owned() };
        sample::read(&bytes, &name, kind).with_context(|| display(path))?
    };
    note!("refcast: {}: {}", display(path), file.interpretation)?;
    Ok(file)
}

/// The first of `names` in `dir` that exists.
fn find(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).with_context(|| {
        format!(
            "{}: no {} in the directory; a 10x Genomics matrix directory holds matrix.mtx.gz, features.tsv.gz and barcodes.tsv.gz",
            display(dir),
            names.join(" or ")
        )
    })
}

/// A small file of the matrix directory, decompressed when gzip, bounded before and after.
fn read_small(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_bounded(path, &SAMPLE_LIMIT)?;
    if bytes.starts_with(b"\x1f\x8b") {
        return sample::gunzip(&bytes, MAX_SAMPLE_BYTES).with_context(|| display(path));
    }
    Ok(bytes)
}

fn read_10x(dir: &Path, kind: ValueKind, groups: Option<&Path>) -> Result<SampleFile> {
    if !matches!(kind, ValueKind::Auto | ValueKind::Counts) {
        bail!("{}: a 10x Genomics matrix holds counts; --values {} does not apply", display(dir), kind.name());
    }
    let matrix = find(dir, &["matrix.mtx.gz", "matrix.mtx"])?;
    let features = read_small(&find(dir, &["features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"])?)?;
    let barcodes = read_small(&find(dir, &["barcodes.tsv.gz", "barcodes.tsv"])?)?;
    let groups = groups.map(|g| read_bounded(g, &Limit { what: "group table", ..SAMPLE_LIMIT })).transpose()?;
    let file = std::fs::File::open(&matrix).with_context(|| format!("cannot read {}", display(&matrix)))?;
    let mut head = [0u8; 2];
    let gzip = (&file).read(&mut head).is_ok_and(|n| n == 2) && head == *b"\x1f\x8b";
    let file = std::fs::File::open(&matrix).with_context(|| format!("cannot read {}", display(&matrix)))?;
    let reader: Box<dyn BufRead> =
        if gzip { Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))) } else { Box::new(BufReader::new(file)) };
    // Cell Ranger's layout is SAMPLE/outs/filtered_feature_bc_matrix: the sample's name is the
    // directory above `outs` when there is one.
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let parts: Vec<String> = absolute.components().rev().take(3).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let name = match parts.as_slice() {
        [_, outs, sample] if outs == "outs" => sample.clone(),
        [_, parent, ..] if absolute.ends_with("filtered_feature_bc_matrix") || absolute.ends_with("raw_feature_bc_matrix") => parent.clone(),
        [own, ..] => own.clone(),
        [] => "pseudobulk".into(),
    };
    let mut file = tenx::pseudobulk(reader, &features, &barcodes, groups.as_deref(), &name).with_context(|| display(dir))?;
    file.interpretation.gzip = gzip;
    Ok(file)
}

fn read_hdf5(path: &Path, kind: ValueKind, cells: &Cells) -> Result<SampleFile> {
    if !matches!(kind, ValueKind::Auto | ValueKind::Counts) {
        bail!("{}: the cells of an HDF5 file are summed as raw counts; --values {} does not apply", display(path), kind.name());
    }
    let groups = cells.groups.map(|g| read_bounded(g, &Limit { what: "group table", ..SAMPLE_LIMIT })).transpose()?;
    let options = CellOptions { groupby: cells.groupby, layer: cells.layer, gene_names: cells.gene_names, groups: groups.as_deref() };
    hdf5::read_path(path, &path.to_string_lossy(), &options).with_context(|| display(path))
}

/// `predict`'s sample: a plain TSV or CSV table (a file, a pipe or standard input) is streamed, in
/// flat memory whatever its number of samples; a 10x directory, a gzip file or a tool's table is
/// read whole, as the other commands read every sample.
pub enum PredictSample {
    Streamed(StreamedTable<File>),
    Whole { table: Option<SampleTable>, samples: Vec<String> },
}

/// Reads `predict`'s sample at `path` (already located) and says on standard error what it was
/// read as; `budget`: bytes of values held at once when streamed.
pub fn for_predict(path: &Path, kind: ValueKind, cells: &Cells, budget: usize) -> Result<PredictSample> {
    // Only a regular file is looked at before it is read: a pipe's first bytes would be lost.
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
    let plain = !regular || {
        let mut head = Vec::with_capacity(64 << 10);
        File::open(path).and_then(|f| f.take(64 << 10).read_to_end(&mut head)).with_context(|| format!("cannot read {}", display(path)))?;
        sample::is_plain_table(&head, &path.to_string_lossy())
    };
    if plain && cells.given().is_empty() && !path.is_dir() {
        let table = stream(path, kind, budget)?;
        note!("refcast: {}: {}", display(path), table.interpretation)?;
        return Ok(PredictSample::Streamed(table));
    }
    let table = load(path, kind, cells)?.table;
    Ok(PredictSample::Whole { samples: table.samples.clone(), table: Some(table) })
}

/// Reads a plain table in one pass, its columns spilled to an anonymous temporary file (removed
/// by the system however the process ends), every check done before it returns.
fn stream(path: &Path, kind: ValueKind, budget: usize) -> Result<StreamedTable<File>> {
    let limit = Limit { what: "sample file", bytes: MAX_STREAM_BYTES, fix: "split the samples into several files" };
    let input = open_bounded(path, &limit)?;
    let spill = tempfile::tempfile().context("cannot create a temporary file for the sample's columns")?;
    let reader = BufReader::with_capacity(1 << 20, input);
    let mut table = StreamedTable::read(reader, kind, spill, budget).with_context(|| display(path))?;
    if let Some(file) = path.file_name().and_then(|s| s.to_str()).filter(|_| !is_dash(path)) {
        table.name_after_file(file);
    }
    Ok(table)
}

impl PredictSample {
    pub fn samples(&self) -> &[String] {
        match self {
            PredictSample::Streamed(t) => &t.samples,
            PredictSample::Whole { samples, .. } => samples,
        }
    }

    /// Calls `check` on the columns that can fail it before any column is used (see
    /// [`StreamedTable::check_columns`]); a table read whole has every column checked.
    pub fn check_columns(&mut self, mut check: impl FnMut(&SampleTable, usize) -> Result<()>) -> Result<()> {
        match self {
            PredictSample::Streamed(t) => t.check_columns(check),
            PredictSample::Whole { table, samples } => {
                let table = table.as_ref().expect("checked before it is used");
                (0..samples.len()).try_for_each(|s| check(table, s))
            }
        }
    }

    /// The chunks of columns to predict, in order: one for a table read whole.
    pub fn chunks(&self) -> Vec<Range<usize>> {
        match self {
            PredictSample::Streamed(t) => t.chunks().collect(),
            PredictSample::Whole { samples, .. } => vec![0..samples.len()],
        }
    }

    /// The columns `range` of a chunk from [`PredictSample::chunks`], as a table.
    pub fn read_columns(&mut self, range: Range<usize>) -> Result<SampleTable> {
        match self {
            PredictSample::Streamed(t) => {
                let mut chunk = t.empty_chunk();
                t.read_columns(range, &mut chunk)?;
                Ok(chunk)
            }
            PredictSample::Whole { table, .. } => table.take().context("a table read whole is one chunk"),
        }
    }
}
