//! Samples: expression tables (TSV/CSV: a gene column, then one value column per sample) read
//! strictly, and matched to a model's gene vocabulary. Every error names the line, column, gene
//! or limit; nothing is dropped without being counted.
//! (Over 500 lines with its tests: the reader of files and of in-memory tables share their checks.)

use foldhash::HashMap;

use crate::error::{Error, Result};
use crate::format::Gene;

/// Largest sample file refcast reads (a genome-wide matrix of a few hundred samples fits).
pub const MAX_SAMPLE_BYTES: usize = 256 << 20;
/// Most gene rows a sample file may have (genome-wide tables have ~60,000 genes, transcript-level
/// ones a few hundred thousand). With the column limit, keeps the memory a hostile file can make
/// refcast use to a small multiple of the file's size.
pub const MAX_ROWS: usize = 2_000_000;
/// Most value (sample) columns a sample file may have.
pub const MAX_COLUMNS: usize = 100_000;
/// A reference must match at least this fraction of the model's genes to be meaningful: below it,
/// the encoder sees mostly the model's gene means and the prediction says little about the sample.
pub const MIN_MATCHED_FRACTION: f64 = 0.2;
/// Largest log-CPM a sample can hold: ln(1 + 10⁶), a single gene holding every count, plus
/// rounding slack. Larger values mean the column is not natural-log CPM (counts with decimals,
/// TPM, …).
pub const MAX_LOG_CPM: f64 = 13.9;
/// The largest library size (reads) a log-CPM sample may be given.
pub const MAX_LIBRARY_SIZE: f64 = 1e12;

/// What the values of a table are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueKind {
    /// Decide from the header (`count`/`counts` vs `log_cpm`/`logcpm`) or, without one, from the
    /// values (all non-negative integers → counts).
    #[default]
    Auto,
    Counts,
    LogCpm,
}

impl std::str::FromStr for ValueKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "auto" => Ok(ValueKind::Auto),
            "counts" | "count" => Ok(ValueKind::Counts),
            "logcpm" => Ok(ValueKind::LogCpm),
            _ => Err(format!("unknown value kind '{s}' (expected auto, counts or log-cpm)")),
        }
    }
}

/// A parsed expression table.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleTable {
    pub genes: Vec<String>,
    /// One name per value column (from the header, or `sample1`, …).
    pub samples: Vec<String>,
    /// `values[s][g]`.
    pub values: Vec<Vec<f64>>,
    /// Counts or log-CPM, resolved.
    pub kind: ValueKind,
    /// Read-counter summary rows (HTSeq `__no_feature`, STAR `N_unmapped`, …) left out: they are
    /// not genes, and their reads are not part of any gene's library.
    pub summary_rows: Vec<String>,
}

impl SampleTable {
    /// Names a lone value column with a generic header ("count", "log_cpm", …) after the file it
    /// came from: `tumour_01.tsv` → "tumour_01". Other columns keep their headers.
    pub fn name_after_file(&mut self, file_name: &str) {
        const GENERIC: [&str; 8] = ["count", "counts", "value", "values", "log_cpm", "logcpm", "expression", "sample1"];
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem).trim();
        if let ([name], false) = (self.samples.as_mut_slice(), stem.is_empty()) {
            if GENERIC.contains(&name.to_ascii_lowercase().as_str()) {
                *name = stem.to_string();
            }
        }
    }

    /// Parses a table from a file's bytes. `kind` says what the values are.
    pub fn parse(bytes: &[u8], kind: ValueKind) -> Result<SampleTable> {
        if bytes.len() > MAX_SAMPLE_BYTES {
            return Err(Error::Sample(format!("the file is {} bytes, over the {MAX_SAMPLE_BYTES}-byte limit", bytes.len())));
        }
        if let Some(format) = binary_format(bytes) {
            return Err(Error::Sample(format!("the file is {format}, not a table of text")));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            Error::Sample(format!("line {line}: the file is not UTF-8 text"))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
        let Some((first_no, first)) = lines.next() else {
            return Err(Error::Sample("the file is empty".into()));
        };
        let delim = if first.contains('\t') {
            '\t'
        } else if first.contains(',') {
            ','
        } else {
            return Err(Error::Sample(format!(
                "line {}: no tab or comma found; expected a gene column and a value column separated by tabs (TSV) or commas (CSV)",
                first_no + 1
            )));
        };
        if let Some(c) = first.chars().find(|&c| c != delim && crate::format::is_unsafe_char(c)) {
            return Err(Error::Sample(format!("line {}: contains the control character U+{:04X}", first_no + 1, c as u32)));
        }
        let head = split_fields(first, delim);
        let has_header = head[1..].iter().any(|f| f.parse::<f64>().is_err());
        let columns = head.len() - 1;
        if columns == 0 {
            return Err(Error::Sample(format!("line {}: only one column; expected gene and value columns", first_no + 1)));
        }
        if columns > MAX_COLUMNS {
            return Err(Error::Sample(format!(
                "line {}: {columns} value columns, over the limit of {MAX_COLUMNS}",
                first_no + 1
            )));
        }
        let samples: Vec<String> = if has_header {
            head[1..].iter().map(|s| s.to_string()).collect()
        } else {
            (1..=columns).map(|i| format!("sample{i}")).collect()
        };
        for (c, name) in samples.iter().enumerate() {
            if let Some(first) = samples[..c].iter().position(|n| n == name) {
                return Err(Error::Sample(format!(
                    "line {}: columns {} and {} are both named '{}': their results could not be told apart; rename one",
                    first_no + 1,
                    first + 2,
                    c + 2,
                    excerpt(name)
                )));
            }
        }
        // Sized from the line count so that nothing grows while reading.
        let rows = text.bytes().filter(|&b| b == b'\n').count().min(MAX_ROWS) + 1;
        let mut genes = Vec::with_capacity(rows);
        let mut values = vec![Vec::with_capacity(rows); columns];
        let mut seen = Seen::with_capacity(rows);
        let mut line_of = Vec::with_capacity(rows);
        let mut fields = Vec::with_capacity(columns + 1);
        let mut summary_rows = Vec::new();
        let other = if delim == '\t' { ("comma", ',') } else { ("tab", '\t') };
        let body = if has_header { None } else { Some((first_no, first)) };
        for (no, line) in body.into_iter().chain(lines) {
            if let Some(c) = unsafe_char(line, delim) {
                return Err(Error::Sample(format!("line {}: contains the control character U+{:04X}", no + 1, c as u32)));
            }
            if genes.len() == MAX_ROWS {
                return Err(Error::Sample(format!("line {}: more than {MAX_ROWS} gene rows, the limit for a sample file", no + 1)));
            }
            fields.clear();
            if line.contains('"') {
                fields.extend(split_quoted(line, delim));
            } else {
                fields.extend(split(line, delim));
            }
            if fields.len() != columns + 1 {
                let hint = if line.contains(other.1) {
                    format!("; the line is separated by {}s but line {} by {}", other.0, first_no + 1, if delim == '\t' { "tabs" } else { "commas" })
                } else {
                    String::new()
                };
                return Err(Error::Sample(format!(
                    "line {}: {} fields, expected {} (gene + {columns} value column{}){hint}",
                    no + 1,
                    fields.len(),
                    columns + 1,
                    if columns == 1 { "" } else { "s" }
                )));
            }
            let gene = fields[0];
            if gene.is_empty() {
                return Err(Error::Sample(format!("line {}: empty gene name", no + 1)));
            }
            if is_counter_summary(gene) {
                // Reads no gene got: they are not part of the library of any gene.
                if summary_rows.len() < MAX_SUMMARY_ROWS {
                    summary_rows.push(gene.to_string());
                }
                continue;
            }
            if let Some(prev) = seen.insert(gene, genes.len(), &genes) {
                let prev = line_of[prev];
                return Err(Error::Sample(format!("line {}: gene '{gene}' appears twice (first on line {prev})", no + 1)));
            }
            for (c, f) in fields[1..].iter().enumerate() {
                let v: f64 = f.parse().map_err(|_| {
                    Error::Sample(format!("line {}, column {} (gene '{}'): '{}' is not a number", no + 1, c + 2, excerpt(gene), excerpt(f)))
                })?;
                if !v.is_finite() {
                    return Err(Error::Sample(format!(
                        "line {}, column {} (gene '{}'): {} is not a finite number",
                        no + 1,
                        c + 2,
                        excerpt(gene),
                        excerpt(f)
                    )));
                }
                values[c].push(v);
            }
            genes.push(gene.to_string());
            line_of.push(no + 1);
        }
        if genes.is_empty() {
            return Err(Error::Sample(format!("the file has a header (line {}) but no gene rows", first_no + 1)));
        }
        let kind = resolve_kind(kind, has_header.then_some(&head[1..]), &values);
        let table = SampleTable { genes, samples, values, kind, summary_rows };
        table.check_counts(|g| format!("line {}: ", line_of[g]))?;
        Ok(table)
    }

    /// A table from values already in memory (a data frame or matrix of a front end), checked as
    /// [`SampleTable::parse`] checks a file: the limits, empty and duplicate gene ids, finite
    /// values, and for counts, no negative value and a library size > 0 per sample. `values[s][g]`
    /// is sample `s`'s value of `genes[g]`; `ValueKind::Auto` decides from the values (all
    /// non-negative integers → counts), there being no header to read.
    pub fn from_columns(genes: Vec<String>, samples: Vec<String>, values: Vec<Vec<f64>>, kind: ValueKind) -> Result<SampleTable> {
        if genes.is_empty() {
            return Err(Error::Sample("no genes".into()));
        }
        if genes.len() > MAX_ROWS {
            return Err(Error::Sample(format!("{} genes, over the limit of {MAX_ROWS}", genes.len())));
        }
        if samples.is_empty() {
            return Err(Error::Sample("no samples".into()));
        }
        if samples.len() > MAX_COLUMNS {
            return Err(Error::Sample(format!("{} samples, over the limit of {MAX_COLUMNS}", samples.len())));
        }
        if values.len() != samples.len() {
            return Err(Error::Sample(format!("{} sample names for {} value columns", samples.len(), values.len())));
        }
        let mut seen = Seen::with_capacity(genes.len());
        for (g, gene) in genes.iter().enumerate() {
            if gene.trim().is_empty() {
                return Err(Error::Sample(format!("gene {} has an empty name", g + 1)));
            }
            if let Some(c) = unsafe_char(gene, ',') {
                return Err(Error::Sample(format!("gene {}: the name contains the control character U+{:04X}", g + 1, c as u32)));
            }
            if let Some(prev) = seen.insert(gene, g, &genes) {
                return Err(Error::Sample(format!("gene '{gene}' appears twice (genes {} and {})", prev + 1, g + 1)));
            }
        }
        for (s, column) in values.iter().enumerate() {
            if column.len() != genes.len() {
                return Err(Error::Sample(format!("sample '{}' has {} values for {} genes", samples[s], column.len(), genes.len())));
            }
            if let Some(g) = column.iter().position(|v| !v.is_finite()) {
                return Err(Error::Sample(format!("gene '{}' in sample '{}': {} is not a finite number", genes[g], samples[s], column[g])));
            }
        }
        let kind = resolve_kind(kind, None, &values);
        let table = SampleTable { genes, samples, values, kind, summary_rows: Vec::new() };
        table.check_counts(|_| String::new())?;
        Ok(table)
    }

    /// For counts: no negative value, and each sample's library size > 0 and within f32.
    /// `place(g)` prefixes a message about gene row `g` (the line of a file).
    fn check_counts(&self, place: impl Fn(usize) -> String) -> Result<()> {
        if self.kind != ValueKind::Counts {
            return Ok(());
        }
        let SampleTable { genes, samples, values, .. } = self;
        for (c, col) in values.iter().enumerate() {
            if let Some(g) = col.iter().position(|&v| v < 0.0) {
                return Err(Error::Sample(format!("{}gene '{}' in sample '{}' has a negative count ({})", place(g), genes[g], samples[c], col[g])));
            }
            let library = col.iter().sum::<f64>();
            if library <= 0.0 {
                return Err(Error::Sample(format!("sample '{}' has no counts (library size 0)", samples[c])));
            }
            let (g, top) = col.iter().enumerate().fold((0, 0.0), |best, (g, &v)| if v > best.1 { (g, v) } else { best });
            if !library.is_finite() || library > MAX_LIBRARY_SIZE {
                return Err(Error::Sample(format!(
                    "{}sample '{}': the counts sum to {library:.3e}, more reads than a sequencing library holds (limit \
                     {MAX_LIBRARY_SIZE:.0e}); the largest is gene '{}' with {top:.3e}",
                    place(g),
                    samples[c],
                    genes[g]
                )));
            }
            if genes.len() >= DOMINANCE_MIN_GENES && top > MAX_GENE_FRACTION * library {
                return Err(Error::Sample(format!(
                    "{}sample '{}': gene '{}' holds {:.1} % of the sample's {library:.0} counts, which would push every other \
                     gene's CPM toward 0; an implausible library (a data-entry error?)",
                    place(g),
                    samples[c],
                    genes[g],
                    100.0 * top / library
                )));
            }
        }
        Ok(())
    }
}

/// Rows of read counters that count reads no gene got: HTSeq's `__no_feature`, `__ambiguous`,
/// …, and STAR's `N_unmapped`, `N_multimapping`, `N_noFeature`, `N_ambiguous`.
fn is_counter_summary(id: &str) -> bool {
    id.starts_with("__") || matches!(id, "N_unmapped" | "N_multimapping" | "N_noFeature" | "N_ambiguous")
}

/// The summary rows a table lists at most (HTSeq writes five, STAR four).
const MAX_SUMMARY_ROWS: usize = 16;

/// A sample with at least this many genes, one of which holds more than this fraction of its
/// counts, is refused: no real library puts 90 % of its reads on one gene.
const DOMINANCE_MIN_GENES: usize = 100;
const MAX_GENE_FRACTION: f64 = 0.9;

/// What a file that is not text is, by its first bytes, with what to do instead.
pub fn binary_format(bytes: &[u8]) -> Option<&'static str> {
    const FORMATS: [(&[u8], &str); 5] = [
        (b"\x1f\x8b", "gzip-compressed (decompress it first, e.g. gunzip; a Seurat .rds file is gzip too: export its counts as TSV)"),
        (b"PK\x03\x04", "a ZIP archive, such as an Excel .xlsx workbook (save the sheet as TSV or CSV)"),
        (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook (save the sheet as TSV or CSV)"),
        (b"\x89HDF", "an HDF5 file, such as an AnnData .h5ad or a 10x .h5 (read it with the Python package, refcast.load(...).predict(adata))"),
        (b"\x89PNG", "a PNG image"),
    ];
    FORMATS.iter().find(|(magic, _)| bytes.starts_with(magic)).map(|(_, what)| *what)
}

/// At most 40 characters of a cell, for quoting it in a message.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The fields of a line, trimmed and unquoted (borrowed: a sample has tens of thousands of lines).
fn split(line: &str, delim: char) -> impl Iterator<Item = &str> {
    line.split(delim).map(|f| f.trim().trim_matches('"'))
}

fn split_fields(line: &str, delim: char) -> Vec<&str> {
    if line.contains('"') { split_quoted(line, delim) } else { split(line, delim).collect() }
}

/// [`split`] for a line with quotes: a field in double quotes may hold the delimiter
/// (`"sample, one"`), and a doubled quote inside it is kept as it is. Borrowed, like `split`.
fn split_quoted(line: &str, delim: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        let field = rest.trim_start();
        if let Some(inner) = field.strip_prefix('"') {
            let bytes = inner.as_bytes();
            let mut i = 0;
            let close = loop {
                match bytes.get(i) {
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break Some(i),
                    Some(_) => i += 1,
                    None => break None,
                }
            };
            let Some(close) = close else {
                // No closing quote: the rest of the line is the field.
                out.push(inner.trim());
                return out;
            };
            out.push(&inner[..close]);
            match inner[close + 1..].find(delim) {
                Some(d) => rest = &inner[close + 1 + d + delim.len_utf8()..],
                None => return out,
            }
        } else {
            match rest.find(delim) {
                Some(d) => {
                    out.push(rest[..d].trim().trim_matches('"'));
                    rest = &rest[d + delim.len_utf8()..];
                }
                None => {
                    out.push(rest.trim().trim_matches('"'));
                    return out;
                }
            }
        }
    }
}

/// The first control or bidirectional-override character of `line` other than `delim`.
fn unsafe_char(line: &str, delim: char) -> Option<char> {
    if line.is_ascii() {
        // ASCII: the control characters are below 0x20 and 0x7f.
        let b = *line.as_bytes().iter().find(|&&b| (b < 0x20 || b == 0x7f) && b as char != delim)?;
        return Some(b as char);
    }
    line.chars().find(|&c| c != delim && crate::format::is_unsafe_char(c))
}

/// The gene ids of a table seen so far, for the duplicate check: row indices in a hash table
/// keyed by the hash of each normalised id, ids compared only when hashes meet, so reading a row
/// allocates nothing.
struct Seen {
    rows: hashbrown::HashTable<usize>,
    key: String,
    other: String,
    hasher: foldhash::fast::RandomState,
}

impl Seen {
    fn with_capacity(n: usize) -> Seen {
        Seen { rows: hashbrown::HashTable::with_capacity(n), key: String::new(), other: String::new(), hasher: Default::default() }
    }

    /// Records `gene` as row `row`; the earlier row with the same normalised id, if any.
    fn insert(&mut self, gene: &str, row: usize, genes: &[String]) -> Option<usize> {
        use std::hash::BuildHasher;
        let Seen { rows, key, other, hasher } = self;
        normalise_into(gene, key);
        let h = hasher.hash_one(key.as_str());
        let same = |&r: &usize| {
            normalise_into(&genes[r], other);
            other == key
        };
        if let Some(&prev) = rows.find(h, same) {
            return Some(prev);
        }
        rows.insert_unique(h, row, |&r| hasher.hash_one(normalise_id(&genes[r])));
        None
    }
}

fn resolve_kind(kind: ValueKind, header: Option<&[&str]>, values: &[Vec<f64>]) -> ValueKind {
    if kind != ValueKind::Auto {
        return kind;
    }
    if let Some(h) = header {
        let h: Vec<String> = h.iter().map(|s| s.to_ascii_lowercase().replace(['-', '_', ' '], "")).collect();
        if h.iter().all(|s| s.contains("logcpm")) {
            return ValueKind::LogCpm;
        }
        if h.iter().all(|s| s.contains("count")) {
            return ValueKind::Counts;
        }
    }
    let integral = values.iter().flatten().all(|&v| v >= 0.0 && v.fract() == 0.0);
    if integral { ValueKind::Counts } else { ValueKind::LogCpm }
}

/// Gene identifiers compare case-insensitively, with an Ensembl version suffix removed
/// (`ENSG00000187608.10` → `ensg00000187608`).
pub fn normalise_id(id: &str) -> String {
    let mut out = String::new();
    normalise_into(id, &mut out);
    out
}

/// [`normalise_id`] into a buffer (no allocation once the buffer has grown).
fn normalise_into(id: &str, out: &mut String) {
    out.clear();
    out.push_str(id.trim());
    out.make_ascii_lowercase();
    if out.starts_with("ens") {
        if let Some(dot) = out.find('.') {
            if out[dot + 1..].bytes().all(|b| b.is_ascii_digit()) {
                out.truncate(dot);
            }
        }
    }
}

/// Looks up model gene positions by symbol or Ensembl id.
#[derive(Clone, Debug)]
pub struct GeneIndex {
    by_id: HashMap<String, usize>,
    genes: usize,
}

impl GeneIndex {
    pub fn new(genes: &[Gene]) -> GeneIndex {
        let mut by_id = HashMap::with_capacity_and_hasher(genes.len() * 2, Default::default());
        // Ensembl ids first, then symbols; a symbol never overrides an earlier entry.
        for (i, g) in genes.iter().enumerate() {
            if let Some(e) = &g.ensembl {
                by_id.entry(normalise_id(e)).or_insert(i);
            }
        }
        for (i, g) in genes.iter().enumerate() {
            by_id.entry(normalise_id(&g.symbol)).or_insert(i);
        }
        GeneIndex { by_id, genes: genes.len() }
    }

    pub fn get(&self, id: &str) -> Option<usize> {
        self.by_id.get(&normalise_id(id)).copied()
    }

    /// [`GeneIndex::get`] with a buffer for the normalised id, for many lookups in a row.
    fn get_with(&self, id: &str, buf: &mut String) -> Option<usize> {
        normalise_into(id, buf);
        self.by_id.get(buf.as_str()).copied()
    }
}

/// A sample ready for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub name: String,
    /// log-CPM in model gene order; genes the sample lacks hold the model's gene mean.
    pub log_cpm: Vec<f32>,
    /// Sum of counts (for log-CPM input: 10⁶, so counts come out as CPM).
    pub library_size: f32,
    /// Whether `library_size` is the sample's sequencing depth: it gave counts, or its log-CPM
    /// came with the library size they were computed from.
    pub depth_known: bool,
    /// Whether the sample measured each model gene.
    pub measured: Vec<bool>,
    pub report: MatchReport,
}

/// How a sample's genes met the model's vocabulary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatchReport {
    /// Model genes found in the sample.
    pub matched: usize,
    /// Model genes the sample lacks (filled with the gene mean).
    pub missing: usize,
    /// Sample genes the model does not know (count, and the first few names).
    pub unknown: usize,
    pub unknown_examples: Vec<String>,
}

impl std::fmt::Display for MatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} model genes matched; {} filled with the model's gene mean", self.matched, self.matched + self.missing, self.missing)?;
        if self.unknown > 0 {
            write!(f, "; {} sample genes not in the model (e.g. {})", self.unknown, self.unknown_examples.join(", "))?;
        }
        Ok(())
    }
}

impl Reference {
    /// Positions of the model's genes the sample measured.
    pub fn measured_genes(&self) -> Vec<usize> {
        (0..self.measured.len()).filter(|&g| self.measured[g]).collect()
    }

    /// The sample's sequencing depth (its library size) when it gave counts and the sum is a
    /// finite number > 0; `None` for log-CPM input, whose depth is unknown.
    pub fn sequencing_depth(&self) -> Option<f32> {
        Some(self.library_size).filter(|l| self.depth_known && l.is_finite() && *l > 0.0)
    }

    /// A log-CPM reference given the library size (reads) its values were computed from, so that
    /// a model with a depth covariate knows its sequencing depth; counts in the predicted output
    /// are then at that library size. A counts reference has its own and is refused.
    pub fn with_library_size(mut self, reads: f64) -> Result<Reference> {
        if self.depth_known {
            return Err(Error::Sample(format!(
                "sample '{}' gives counts, whose sum is its library size; a library size is for log-CPM samples",
                self.name
            )));
        }
        if !(reads.is_finite() && (1.0..=MAX_LIBRARY_SIZE).contains(&reads)) {
            return Err(Error::Sample(format!("a library size must be a number of reads between 1 and 10^12, got {reads}")));
        }
        self.library_size = reads as f32;
        self.depth_known = true;
        Ok(self)
    }

    /// Column `s` of a table as a reference for a model with `index` and `gene_mean`.
    pub fn from_table(table: &SampleTable, s: usize, index: &GeneIndex, gene_mean: &[f32]) -> Result<Reference> {
        let Some(values) = table.values.get(s) else {
            return Err(Error::Sample(format!("there is no sample {s}: the table has {} value column(s)", table.values.len())));
        };
        let mut log_cpm = gene_mean.to_vec();
        let mut measured = vec![false; index.genes];
        let mut report = MatchReport::default();
        let library_size = match table.kind {
            ValueKind::Counts => values.iter().sum::<f64>(),
            _ => 1e6,
        };
        let mut buf = String::new();
        for (gene, &v) in table.genes.iter().zip(values) {
            if table.kind != ValueKind::Counts && !(0.0..=MAX_LOG_CPM).contains(&v) {
                let why = if v < 0.0 {
                    "log-CPM is ln(1 + CPM) and never negative".to_string()
                } else {
                    format!("above {MAX_LOG_CPM}, the largest possible log-CPM (ln(1 + 10⁶)); if the values are counts, say so (--values counts)")
                };
                return Err(Error::Sample(format!("gene '{gene}' in sample '{}' has log-CPM {v}: {why}", table.samples[s])));
            }
            match index.get_with(gene, &mut buf) {
                Some(i) if measured[i] => {
                    return Err(Error::Sample(format!("gene '{gene}' maps to model gene {i}, which another row of the sample already gave")));
                }
                Some(i) => {
                    measured[i] = true;
                    log_cpm[i] = match table.kind {
                        ValueKind::Counts => (v / library_size * 1e6).ln_1p() as f32,
                        _ => v as f32,
                    };
                }
                None => {
                    report.unknown += 1;
                    if report.unknown_examples.len() < 5 {
                        report.unknown_examples.push(gene.clone());
                    }
                }
            }
        }
        report.matched = measured.iter().filter(|&&m| m).count();
        report.missing = index.genes - report.matched;
        let needed = (MIN_MATCHED_FRACTION * index.genes as f64).ceil() as usize;
        if report.matched == 0 {
            return Err(Error::Sample(format!(
                "no gene of sample '{}' is in the model's vocabulary (first genes: {}); use gene symbols or Ensembl ids",
                table.samples[s],
                table.genes.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if report.matched < needed {
            return Err(Error::Sample(format!(
                "sample '{}' matches only {} of the model's {} genes; at least {needed} ({:.0}%) are needed for a meaningful prediction",
                table.samples[s],
                report.matched,
                index.genes,
                MIN_MATCHED_FRACTION * 100.0
            )));
        }
        let depth_known = table.kind == ValueKind::Counts;
        Ok(Reference { name: table.samples[s].clone(), log_cpm, library_size: library_size as f32, depth_known, measured, report })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tsv_with_header_and_detects_counts() {
        let t = SampleTable::parse(b"gene\tcount\nISG15\t10\nENSG00000000003.14\t0\n", ValueKind::Auto).unwrap();
        assert_eq!(t.kind, ValueKind::Counts);
        assert_eq!(t.genes, ["ISG15", "ENSG00000000003.14"]);
        assert_eq!(t.values, vec![vec![10.0, 0.0]]);
    }

    #[test]
    fn reads_headerless_csv_as_log_cpm() {
        let t = SampleTable::parse(b"A,1.5\nB,2.25\n", ValueKind::Auto).unwrap();
        assert_eq!(t.kind, ValueKind::LogCpm);
        assert_eq!(t.samples, ["sample1"]);
    }

    #[test]
    fn errors_name_the_line_and_gene() {
        let e = SampleTable::parse(b"gene\tcount\nA\t1\nB\tx\n", ValueKind::Auto).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("'B'") && e.contains("'x'"), "{e}");
        let e = SampleTable::parse(b"gene\tcount\nA\t1\na\t2\n", ValueKind::Auto).unwrap_err().to_string();
        assert!(e.contains("appears twice") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_log_cpm_sample_given_a_library_size_has_a_known_depth() {
        let reference = |text: &[u8]| {
            let t = SampleTable::parse(text, ValueKind::Auto).unwrap();
            Reference { name: "s".into(), log_cpm: vec![], library_size: 1e6, depth_known: t.kind == ValueKind::Counts, measured: vec![], report: MatchReport::default() }
        };
        let log_cpm = reference(b"A,1.5\nB,2.25\n");
        assert_eq!(log_cpm.sequencing_depth(), None);
        let given = log_cpm.clone().with_library_size(2.5e7).unwrap();
        assert_eq!((given.sequencing_depth(), given.library_size), (Some(2.5e7), 2.5e7));
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY, 2e12] {
            let e = log_cpm.clone().with_library_size(bad).unwrap_err().to_string();
            assert!(e.contains("between 1 and 10^12"), "{bad}: {e}");
        }
        let counts = reference(b"gene\tcount\nA\t10\n");
        let e = counts.with_library_size(2.5e7).unwrap_err().to_string();
        assert!(e.contains("gives counts"), "{e}");
    }

    /// In-memory tables meet the checks of files: the same table as parsed, and the same refusals.
    #[test]
    fn tables_from_columns_are_checked_as_files_are() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = SampleTable::from_columns(strings(&["ISG15", "ENSG00000000003.14"]), strings(&["count"]), vec![vec![10.0, 0.0]], ValueKind::Auto).unwrap();
        assert_eq!(t, SampleTable::parse(b"gene\tcount\nISG15\t10\nENSG00000000003.14\t0\n", ValueKind::Auto).unwrap());
        assert_eq!(SampleTable::from_columns(strings(&["A", "B"]), strings(&["s"]), vec![vec![1.5, 2.25]], ValueKind::Auto).unwrap().kind, ValueKind::LogCpm);
        let refused = |genes: &[&str], values: Vec<Vec<f64>>, kind| {
            let samples = (0..values.len()).map(|s| format!("s{s}")).collect();
            SampleTable::from_columns(strings(genes), samples, values, kind).unwrap_err()
        };
        for (e, want) in [
            (refused(&["A", "a"], vec![vec![1.0, 2.0]], ValueKind::Auto), "gene 'a' appears twice (genes 1 and 2)"),
            (refused(&["A", "B"], vec![vec![1.0, f64::NAN]], ValueKind::Auto), "gene 'B' in sample 's0': NaN is not a finite number"),
            (refused(&["A", "B"], vec![vec![1.0, -2.0]], ValueKind::Counts), "gene 'B' in sample 's0' has a negative count (-2)"),
            (refused(&["A", "B"], vec![vec![0.0, 0.0]], ValueKind::Counts), "sample 's0' has no counts (library size 0)"),
            (refused(&["A", "B"], vec![vec![1.0]], ValueKind::Auto), "sample 's0' has 1 values for 2 genes"),
            (refused(&["A", " "], vec![vec![1.0, 2.0]], ValueKind::Auto), "gene 2 has an empty name"),
            (refused(&[], vec![vec![]], ValueKind::Auto), "no genes"),
        ] {
            assert!(matches!(e, Error::Sample(_)), "{e}");
            assert!(e.to_string().contains(want), "{e}");
        }
        let e = SampleTable::parse(b"gene\tcount\nA\t1\nB\t-2\n", ValueKind::Counts).unwrap_err().to_string();
        assert!(e.contains("line 3: gene 'B' in sample 'count' has a negative count (-2)"), "{e}");
    }

    #[test]
    fn version_suffixes_and_case_are_ignored() {
        assert_eq!(normalise_id("ENSG00000187608.10"), "ensg00000187608");
        assert_eq!(normalise_id("Isg15"), "isg15");
    }

    #[test]
    fn quoted_csv_fields_may_hold_the_delimiter() {
        assert_eq!(split_quoted(r#"gene,"sample, one","b""c",d"#, ','), ["gene", "sample, one", r#"b""c"#, "d"]);
        assert_eq!(split_quoted(r#""GENE0", 1 ,"2""#, ','), ["GENE0", "1", "2"]);
        assert_eq!(split_quoted(r#"a,"unterminated, field"#, ','), ["a", "unterminated, field"]);
        assert_eq!(split_quoted("a,\"b\",", ','), ["a", "b", ""]);
        let t = SampleTable::parse(b"gene,\"sample, one\",\"two\"\n\"GENE0\",1,2\nGENE1,\"3\",4\n", ValueKind::Auto).unwrap();
        assert_eq!(t.samples, ["sample, one", "two"]);
        assert_eq!(t.genes, ["GENE0", "GENE1"]);
        assert_eq!(t.values, [vec![1.0, 3.0], vec![2.0, 4.0]]);
    }
}
