//! A sample file's bytes to a table, whatever form it came in: gzip-compressed or not, a plain
//! TSV/CSV table, featureCounts output, a Salmon or kallisto quantification. What the file was
//! read as is an [`Interpretation`], one line that every front end prints. HDF5 files (AnnData,
//! 10x .h5) go to `hdf5` natively. Formats refcast does not read (loom, R data, spreadsheets,
//! other compressions) are refused by name, each with what to do instead.

use super::table::Columns;
use super::*;

/// The layout a sample file was read as.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// A gene column, then value columns; `delimiter` is tab or comma.
    Table { delimiter: char },
    /// featureCounts output: `Geneid`, five annotation columns, then one count column per BAM.
    FeatureCounts,
    /// Salmon's `quant.sf` / `quant.genes.sf`: the `NumReads` column.
    Salmon,
    /// kallisto's `abundance.tsv`: the `est_counts` column.
    Kallisto,
    /// A 10x Genomics feature-barcode matrix, `cells` cells summed into one sample per group
    /// (`groups`: from a barcode → group table) or into one sample.
    TenX { cells: usize, groups: Option<usize> },
    /// An AnnData `.h5ad` file: `cells` cells of `matrix` (`raw/X`, `layers/NAME`, `X`) summed
    /// into `samples` pseudobulk samples, by an obs column (`by`: its name), a barcode → group
    /// table (`by`: empty) or all together (`by`: none).
    AnnData { cells: usize, matrix: String, by: Option<String>, samples: usize },
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Format::Table { delimiter: '\t' } => write!(f, "a TSV table"),
            Format::Table { .. } => write!(f, "a CSV table"),
            Format::FeatureCounts => write!(f, "featureCounts output (annotation columns Chr, Start, End, Strand, Length skipped)"),
            Format::Salmon => write!(f, "a Salmon quantification (its NumReads column)"),
            Format::Kallisto => write!(f, "a kallisto abundance table (its est_counts column)"),
            Format::TenX { cells, groups: None } => write!(f, "a 10x Genomics matrix, {cells} cells summed into one pseudobulk sample"),
            Format::TenX { cells, groups: Some(g) } => {
                write!(f, "a 10x Genomics matrix, {cells} cells summed into {g} pseudobulk sample{} by group", if *g == 1 { "" } else { "s" })
            }
            Format::AnnData { cells, matrix, by, samples } => {
                let s = if *samples == 1 { "" } else { "s" };
                write!(f, "an AnnData file, {cells} cells of {matrix} summed into {samples} pseudobulk sample{s}")?;
                match by.as_deref() {
                    Some("") => write!(f, " by the group table"),
                    Some(column) => write!(f, " by obs column '{column}'"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// What a sample file was read as: printed by every front end, so a misreading shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Interpretation {
    pub format: Format,
    /// The file was gzip-compressed.
    pub gzip: bool,
    /// What the values are (never `Auto`).
    pub kind: ValueKind,
    /// How `kind` was decided.
    pub source: KindSource,
    /// Read-counter summary rows left out of the genes and the library size
    /// ([`SampleTable::summary_rows`]).
    pub summary_rows: Vec<String>,
}

impl std::fmt::Display for Interpretation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "read as {}{}; values: {}", self.format, if self.gzip { " (gzip-compressed)" } else { "" }, self.kind.describe())?;
        match &self.source {
            KindSource::Stated => write!(f, " (as stated)")?,
            KindSource::Format => write!(f, " (the tool's read counts)")?,
            KindSource::Header(h) => write!(f, " (from the header '{h}')")?,
            KindSource::Values(why) => write!(f, " (from the values: {why})")?,
        }
        if self.kind.is_abundance() {
            write!(f, ", rescaled to sum to 10⁶ over the model's genes")?;
        }
        if let Some((last, rest)) = self.summary_rows.split_last() {
            let names: Vec<String> = rest.iter().map(|r| excerpt(r)).collect();
            let names = if names.is_empty() { excerpt(last) } else { format!("{} and {}", names.join(", "), excerpt(last)) };
            let n = self.summary_rows.len();
            write!(f, "; {names}: read-counter summary row{}, left out of the genes and the library size", if n == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

/// A sample file read: its table and what it was read as.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleFile {
    pub table: SampleTable,
    pub interpretation: Interpretation,
}

/// Reads a sample file's bytes: gzip is decompressed (natively; in the browser the page does it
/// and calls [`read_decompressed`]), the format told from the first bytes and the header, and a
/// lone generic value column named after the file. `name` is the file's name or path (for
/// messages, for the formats told by their extension, and for naming the sample).
pub fn read(bytes: &[u8], name: &str, kind: ValueKind) -> Result<SampleFile> {
    #[cfg(all(feature = "hdf5", not(target_arch = "wasm32")))]
    if bytes.starts_with(super::hdf5::SIGNATURE) && !name.to_ascii_lowercase().ends_with(".loom") {
        if !matches!(kind, ValueKind::Auto | ValueKind::Counts) {
            return Err(Error::Sample(format!("the cells of an HDF5 file are summed as raw counts; values of kind {} do not apply", kind.name())));
        }
        return super::hdf5::read_bytes(bytes.to_vec(), name, &Default::default());
    }
    match decompress(bytes)? {
        Some(text) => read_decompressed(&text, name, kind, true),
        None => read_decompressed(bytes, name, kind, false),
    }
}

/// gzip bytes decompressed (natively); `None` for other bytes, and in wasm, where gzip reaches
/// [`read_decompressed`] only if the JS layer left it, and is refused there by name.
#[cfg(not(target_arch = "wasm32"))]
fn decompress(bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    if bytes.starts_with(GZIP_MAGIC) { gunzip(bytes, MAX_SAMPLE_BYTES).map(Some) } else { Ok(None) }
}

#[cfg(target_arch = "wasm32")]
fn decompress(_: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(None)
}

/// Whether a file whose first bytes are `head` (and whose name is `name`) is a plain TSV or CSV
/// table, which can be read as a stream ([`super::StreamedTable`]); other files (gzip, the
/// tools' tables, refused formats) are read whole by [`read`].
pub fn is_plain_table(head: &[u8], name: &str) -> bool {
    !head.starts_with(b"\x1f\x8b") && refused(head, name).is_none() && matches!(detect(head).0, Format::Table { .. })
}

/// [`read`] for bytes already decompressed; `gzip` says they were (for the interpretation).
pub fn read_decompressed(bytes: &[u8], name: &str, kind: ValueKind, gzip: bool) -> Result<SampleFile> {
    if let Some(what) = refused(bytes, name) {
        return Err(Error::Sample(format!("the file is {what}, not a table of text")));
    }
    let (format, columns) = detect(bytes);
    let kind_given = kind;
    let kind = match format {
        // Tools' read counts: estimated counts are counts, whole or not.
        Format::FeatureCounts | Format::Salmon | Format::Kallisto if kind == ValueKind::Auto => ValueKind::Counts,
        _ => kind,
    };
    let by_format = !matches!(format, Format::Table { .. }) && kind_given == ValueKind::Auto;
    let (mut table, source) = SampleTable::parse_columns(bytes, kind, columns)?;
    match format {
        Format::FeatureCounts => name_by_bam(&mut table)?,
        Format::Salmon | Format::Kallisto => {
            if let Some(gene) = table.genes.iter().find(|g| g.to_ascii_uppercase().starts_with("ENST")) {
                return Err(Error::Sample(format!(
                    "the table lists transcripts ('{}'), not genes: sum them per gene first (tximport in R, or the \
                     quant.genes.sf Salmon writes with --geneMap)",
                    excerpt(gene)
                )));
            }
            table.samples[0] = sample_name_of_quant(name);
        }
        _ => table.name_after_file(name),
    }
    let source = if by_format { KindSource::Format } else { source };
    let interpretation = Interpretation { format, gzip, kind: table.kind, source, summary_rows: table.summary_rows.clone() };
    Ok(SampleFile { table, interpretation })
}

#[cfg(not(target_arch = "wasm32"))]
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";

/// Decompresses gzip (one member or several, as bgzip writes), refusing more than `limit`
/// decompressed bytes: a small file may expand to gigabytes (a decompression bomb).
#[cfg(not(target_arch = "wasm32"))]
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1).read_to_end(&mut out);
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Error::Sample(format!("the gzip stream is truncated after {} decompressed bytes (the file was cut short; copy it again)", out.len())))
        }
        Err(e) => Err(Error::Sample(format!("the gzip data is corrupt after {} decompressed bytes: {e}", out.len()))),
        Ok(_) if out.len() > limit => Err(Error::Sample(format!(
            "the gzip file ({} bytes) decompresses to more than {limit} bytes, over the limit for a sample file \
             (a decompression bomb, or a table to split into several files)",
            bytes.len()
        ))),
        Ok(_) => Ok(out),
    }
}

/// What a file refcast does not read is, with what to do instead; the extension of `name`
/// tells the HDF5 formats apart (the native build reads AnnData and 10x .h5 files before this).
fn refused(bytes: &[u8], name: &str) -> Option<String> {
    let what = binary_format(bytes)?;
    let lower = name.to_ascii_lowercase();
    if bytes.starts_with(b"\x89HDF") {
        let python = "refcast.load().predict(adata, layer=\"counts\", groupby=\"cell_type\") in the Python package (pip install refcast)";
        if lower.ends_with(".loom") {
            return Some(format!("a loom file (HDF5), which refcast does not read: use {python} on adata = anndata.read_loom(...)"));
        }
        let cli = "the command line reads it (refcast predict --sample FILE, with --groupby COLUMN or --groups FILE)";
        if lower.ends_with(".h5ad") {
            return Some(format!("an AnnData .h5ad file (HDF5), which this build does not read: {cli}, and so does {python} on adata = anndata.read_h5ad(...)"));
        }
        if lower.ends_with(".h5") {
            return Some(format!("a 10x Genomics .h5 matrix (HDF5), which this build does not read: {cli}, and so does {python} on scanpy.read_10x_h5(...)"));
        }
    }
    Some(what.to_string())
}

/// The layout of a table, from its first line (after `#` comments).
fn detect(bytes: &[u8]) -> (Format, Columns) {
    let text = &bytes[..bytes.len().min(64 << 10)];
    let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.find(|l| !l.iter().all(u8::is_ascii_whitespace) && !l.starts_with(b"#")).unwrap_or(b"");
    let delimiter = if first.contains(&b'\t') { '\t' } else { ',' };
    let head: Vec<String> = first.split(|&b| b == b'\t').map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase()).collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    match head.as_slice() {
        ["geneid", "chr", "start", "end", "strand", "length", rest @ ..] if !rest.is_empty() => {
            (Format::FeatureCounts, Columns::Some { gene: 0, values: (6..head.len()).collect() })
        }
        ["name", "length", "effectivelength", "tpm", "numreads"] => (Format::Salmon, Columns::Some { gene: 0, values: vec![4] }),
        ["target_id", "length", "eff_length", "est_counts", "tpm"] => (Format::Kallisto, Columns::Some { gene: 0, values: vec![3] }),
        _ => (Format::Table { delimiter }, Columns::All),
    }
}

/// featureCounts names each count column by its BAM file's path: the file's base name without
/// `.bam` names the sample.
fn name_by_bam(table: &mut SampleTable) -> Result<()> {
    for s in 0..table.samples.len() {
        let path = &table.samples[s];
        let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let base = base.strip_suffix(".bam").unwrap_or(base).to_string();
        if let Some(first) = table.samples[..s].iter().position(|n| *n == base) {
            return Err(Error::Sample(format!(
                "count columns {} and {} both come from a BAM file named '{}': their results could not be told apart; rename one",
                first + 7,
                s + 7,
                excerpt(&base)
            )));
        }
        table.samples[s] = base;
    }
    Ok(())
}

/// A Salmon or kallisto file is named by the tool (`quant.genes.sf`, `abundance.tsv`): the
/// sample is the directory it is in, when `name` has one.
fn sample_name_of_quant(name: &str) -> String {
    let mut parts = name.rsplit(['/', '\\']).filter(|p| !p.is_empty() && *p != ".");
    let file = parts.next().unwrap_or(name);
    match parts.next() {
        Some(dir) => dir.to_string(),
        None => {
            let file = file.strip_suffix(".gz").unwrap_or(file);
            file.rsplit_once('.').map_or(file, |(stem, _)| stem).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_tables_are_told_by_their_header() {
        let fc = b"# Program:featureCounts v2.0.3; Command:\"featureCounts\"\nGeneid\tChr\tStart\tEnd\tStrand\tLength\t/data/a.bam\tb.bam\nTP53\tchr17\t1\t9\t-\t900\t5\t7\n";
        let f = read(fc, "counts.txt", ValueKind::Auto).unwrap();
        assert_eq!(f.interpretation.format, Format::FeatureCounts);
        assert_eq!(f.table.samples, ["a", "b"]);
        assert_eq!(f.table.values, [vec![5.0], vec![7.0]]);
        let salmon = b"Name\tLength\tEffectiveLength\tTPM\tNumReads\nTP53\t900\t700.5\t12.5\t30.25\n";
        let f = read(salmon, "out/sampleA/quant.genes.sf", ValueKind::Auto).unwrap();
        assert_eq!((f.interpretation.format, f.table.kind, f.table.samples.clone()), (Format::Salmon, ValueKind::Counts, vec!["sampleA".to_string()]));
        assert_eq!(f.table.values, [vec![30.25]]);
        let kallisto = b"target_id\tlength\teff_length\test_counts\ttpm\nTP53\t900\t700.5\t30.5\t12.5\n";
        let f = read(kallisto, "abundance.tsv", ValueKind::Auto).unwrap();
        assert_eq!((f.interpretation.format, f.table.samples.clone()), (Format::Kallisto, vec!["abundance".to_string()]));
        let e = read(b"target_id\tlength\teff_length\test_counts\ttpm\nENST00000269305.9\t900\t700\t30\t12\n", "abundance.tsv", ValueKind::Auto);
        assert!(e.unwrap_err().to_string().contains("lists transcripts"));
    }

    #[test]
    fn the_interpretation_reads_as_a_sentence() {
        let f = read(b"gene\ttpm\nA\t10.5\nB\t3\n", "x.tsv", ValueKind::Auto).unwrap();
        assert_eq!(f.interpretation.to_string(), "read as a TSV table; values: TPM (from the header 'tpm'), rescaled to sum to 10⁶ over the model's genes");
        assert_eq!(f.table.samples, ["x"]);
        // HTSeq's summary rows are said, by name.
        let f = read(b"gene\tcount\nA\t10\nB\t3\n__no_feature\t50\n__ambiguous\t7\n", "h.tsv", ValueKind::Auto).unwrap();
        assert_eq!(
            f.interpretation.to_string(),
            "read as a TSV table; values: counts (from the header 'count'); __no_feature and __ambiguous: read-counter summary rows, \
             left out of the genes and the library size"
        );
    }
}
