//! Reading `--sample`: a table file (gzip or not, any format `refcast::sample::read` tells), or a
//! 10x Genomics `filtered_feature_bc_matrix/` directory pseudobulked over its cells (`--groups`:
//! one sample per group). What it was read as is printed on standard error.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use refcast::sample::{self, MAX_SAMPLE_BYTES, SampleFile, ValueKind, tenx};

use super::input::{Limit, display, is_dash, read_bounded};

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
