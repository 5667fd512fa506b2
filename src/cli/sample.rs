//! Reading `--sample`: a table file (gzip or not, any format `refcast::sample::read` tells), or a
//! 10x Genomics `filtered_feature_bc_matrix/` directory pseudobulked over its cells (`--groups`:
//! one sample per group). What it was read as is printed on standard error.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use refcast::sample::{self, MAX_SAMPLE_BYTES, MAX_STREAM_BYTES, SampleFile, SampleTable, StreamedTable, ValueKind, tenx};

use super::input::{Limit, display, is_dash, open_bounded, read_bounded};

const SAMPLE_LIMIT: Limit = Limit { what: "sample file", bytes: MAX_SAMPLE_BYTES as u64, fix: "split the samples into several files" };

/// Reads the sample at `path` (already located) and says on standard error what it was read as.
pub fn load(path: &Path, kind: ValueKind, groups: Option<&Path>) -> Result<SampleFile> {
    let file = if path.is_dir() {
        read_10x(path, kind, groups)?
    } else {
        if groups.is_some() {
            bail!("--groups is for a 10x Genomics matrix directory (filtered_feature_bc_matrix/); {} is a file", display(path));
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

/// `predict`'s sample: a plain TSV or CSV table (a file, a pipe or standard input) is streamed, in
/// flat memory whatever its number of samples; a 10x directory, a gzip file or a tool's table is
/// read whole, as the other commands read every sample.
pub enum PredictSample {
    Streamed(StreamedTable<File>),
    Whole { table: Option<SampleTable>, samples: Vec<String> },
}

/// Reads `predict`'s sample at `path` (already located) and says on standard error what it was
/// read as; `budget`: bytes of values held at once when streamed.
pub fn for_predict(path: &Path, kind: ValueKind, groups: Option<&Path>, budget: usize) -> Result<PredictSample> {
    // Only a regular file is looked at before it is read: a pipe's first bytes would be lost.
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
    let plain = !regular || {
        let mut head = Vec::with_capacity(64 << 10);
        File::open(path).and_then(|f| f.take(64 << 10).read_to_end(&mut head)).with_context(|| format!("cannot read {}", display(path)))?;
        sample::is_plain_table(&head, &path.to_string_lossy())
    };
    if plain && groups.is_none() && !path.is_dir() {
        let table = stream(path, kind, budget)?;
        note!("refcast: {}: {}", display(path), table.interpretation)?;
        return Ok(PredictSample::Streamed(table));
    }
    let table = load(path, kind, groups)?.table;
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
