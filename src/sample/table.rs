//! Reading an expression table: a file's bytes (TSV or CSV, quoted fields, a header or none,
//! read-counter summary rows left out) or columns already in memory, checked the same way.

use super::reference::normalise_into;
use super::units::{self, KindSource, ValueSums};
use super::*;

/// Which columns of a table hold the gene ids and the values (0-based).
pub(super) enum Columns {
    /// The first column genes, every other one values.
    All,
    Some { gene: usize, values: Vec<usize> },
}

impl SampleTable {
    /// Names a lone value column with a generic header ("count", "log_cpm", …) after the file it
    /// came from: `tumour_01.tsv` → "tumour_01". Other columns keep their headers.
    pub fn name_after_file(&mut self, file_name: &str) {
        name_lone_column(&mut self.samples, file_name);
    }

    /// Parses a table from a file's bytes. `kind` says what the values are.
    pub fn parse(bytes: &[u8], kind: ValueKind) -> Result<SampleTable> {
        Ok(Self::parse_columns(bytes, kind, Columns::All)?.0)
    }

    /// [`SampleTable::parse`] reading only some columns (a tool's table with annotation columns),
    /// and saying how the value kind was decided.
    pub(super) fn parse_columns(bytes: &[u8], kind: ValueKind, columns: Columns) -> Result<(SampleTable, KindSource)> {
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
        let mut lines = text.lines().enumerate().filter(|(_, l)| is_content(l));
        let Some((first_no, first)) = lines.next() else {
            return Err(Error::Sample("the file is empty".into()));
        };
        let layout = Layout::read(first_no, first, columns)?;
        let columns = layout.samples.len();
        // Sized from the line count so that nothing grows while reading.
        let rows = text.bytes().filter(|&b| b == b'\n').count().min(MAX_ROWS) + 1;
        let mut values = vec![Vec::with_capacity(rows); columns];
        let body = if layout.header.is_some() { None } else { Some((first_no, first)) };
        let mut reader = Rows::new(layout, rows);
        let mut row = Vec::with_capacity(columns);
        for (no, line) in body.into_iter().chain(lines) {
            if reader.read(no, line, &mut row)? {
                for (column, &v) in values.iter_mut().zip(&row) {
                    column.push(v);
                }
            }
        }
        let Rows { layout, genes, line_of, summary_rows, .. } = reader.finish()?;
        let header: Option<Vec<&str>> = layout.header.as_ref().map(|h| h.iter().map(String::as_str).collect());
        let (kind, source) = units::resolve(kind, header.as_deref(), &ValueSums::of(&values), genes.len())?;
        let table = SampleTable { genes, samples: layout.samples, values, kind, summary_rows };
        table.check_counts(|g| format!("line {}: ", line_of[g]))?;
        Ok((table, source))
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
        if let Some((s, name)) = samples.iter().enumerate().find(|(_, n)| n.len() > MAX_NAME_BYTES) {
            return Err(Error::Sample(format!("sample {}: {}", s + 1, too_long("sample name", name))));
        }
        let mut seen = Seen::with_capacity(genes.len());
        for (g, gene) in genes.iter().enumerate() {
            if gene.trim().is_empty() {
                return Err(Error::Sample(format!("gene {} has an empty name", g + 1)));
            }
            if gene.len() > MAX_NAME_BYTES {
                return Err(Error::Sample(format!("gene {}: {}", g + 1, too_long("gene name", gene))));
            }
            if let Some(c) = unsafe_char(gene, ',') {
                return Err(Error::Sample(format!("gene {}: the name contains the control character U+{:04X}", g + 1, c as u32)));
            }
            if let Some(prev) = seen.insert(gene, g, &genes) {
                return Err(Error::Sample(format!("gene '{}' appears twice (genes {} and {})", excerpt(gene), prev + 1, g + 1)));
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
        let (kind, _) = units::resolve(kind, None, &ValueSums::of(&values), genes.len())?;
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
        for (column, name) in self.values.iter().zip(&self.samples) {
            ColumnStats::of(column).check_counts(&self.genes, name, &place)?;
        }
        Ok(())
    }
}

/// What the checks need to know of a column, gathered one value at a time (a file streamed by
/// rows holds no column whole).
#[derive(Clone, Debug)]
pub(super) struct ColumnStats {
    /// The first gene row with a negative value, and the value.
    first_negative: Option<(usize, f64)>,
    /// The first gene row outside the log-CPM range `0..=MAX_LOG_CPM`.
    pub(super) first_outside_log_cpm: Option<usize>,
    /// The sum of the values, added in row order.
    library: f64,
    /// The first gene row holding the largest value (row 0 and 0 when none is positive).
    top: (usize, f64),
    /// Whether every value is a non-negative integer.
    pub(super) integral: bool,
}

impl Default for ColumnStats {
    fn default() -> Self {
        ColumnStats { first_negative: None, first_outside_log_cpm: None, library: 0.0, top: (0, 0.0), integral: true }
    }
}

impl ColumnStats {
    pub(super) fn of(column: &[f64]) -> ColumnStats {
        let mut stats = ColumnStats::default();
        for (g, &v) in column.iter().enumerate() {
            stats.push(g, v);
        }
        stats
    }

    /// Adds the value of gene row `g` (rows in order).
    pub(super) fn push(&mut self, g: usize, v: f64) {
        if v < 0.0 && self.first_negative.is_none() {
            self.first_negative = Some((g, v));
        }
        if !(0.0..=MAX_LOG_CPM).contains(&v) && self.first_outside_log_cpm.is_none() {
            self.first_outside_log_cpm = Some(g);
        }
        self.library += v;
        if v > self.top.1 {
            self.top = (g, v);
        }
        self.integral &= v >= 0.0 && v.fract() == 0.0;
    }

    /// The checks of a counts column named `sample`: no negative value, and a library size > 0,
    /// within f32 and not held by one gene. `place(g)` prefixes a message about gene row `g`.
    pub(super) fn check_counts(&self, genes: &[String], sample: &str, place: impl Fn(usize) -> String) -> Result<()> {
        let library = self.library;
        if let Some((g, v)) = self.first_negative {
            return Err(Error::Sample(format!("{}gene '{}' in sample '{sample}' has a negative count ({})", place(g), genes[g], number(v))));
        }
        if library <= 0.0 {
            return Err(Error::Sample(format!("sample '{sample}' has no counts (library size 0)")));
        }
        let (g, top) = self.top;
        if !library.is_finite() || library > MAX_LIBRARY_SIZE {
            return Err(Error::Sample(format!(
                "{}sample '{sample}': the counts sum to {library:.3e}, more reads than a sequencing library holds (limit \
                 {MAX_LIBRARY_SIZE:.0e}); the largest is gene '{}' with {top:.3e}",
                place(g),
                genes[g]
            )));
        }
        if genes.len() >= DOMINANCE_MIN_GENES && top > MAX_GENE_FRACTION * library {
            return Err(Error::Sample(format!(
                "{}sample '{sample}': gene '{}' holds {:.1} % of the sample's {library:.0} counts, which would push every other \
                 gene's CPM toward 0; an implausible library (a data-entry error?)",
                place(g),
                genes[g],
                100.0 * top / library
            )));
        }
        Ok(())
    }
}

/// [`SampleTable::name_after_file`] on a table's sample names.
pub(super) fn name_lone_column(samples: &mut [String], file_name: &str) {
    const GENERIC: [&str; 17] = [
        "count", "counts", "value", "values", "log_cpm", "logcpm", "ln_cpm", "log2_cpm", "log10_cpm", "tpm", "fpkm", "rpkm", "cpm",
        "numreads", "est_counts", "expression", "sample1",
    ];
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let base = base.strip_suffix(".gz").unwrap_or(base);
    let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem).trim();
    if let ([name], false) = (samples, stem.is_empty()) {
        if GENERIC.contains(&name.to_ascii_lowercase().as_str()) {
            *name = stem.to_string();
        }
    }
}

/// The message for a gene or sample name over [`MAX_NAME_BYTES`], quoting its start only.
fn too_long(what: &str, name: &str) -> String {
    format!("a {what} of {} bytes ('{}'), over the limit of {MAX_NAME_BYTES} bytes for a name", name.len(), excerpt(name))
}

/// Whether a line holds data: blank lines and `#` comments are skipped.
pub(super) fn is_content(line: &str) -> bool {
    !line.trim().is_empty() && !line.starts_with('#')
}

/// A table's first line: its delimiter, and its header (sample names) or its first row.
pub(super) struct Layout {
    pub(super) delim: char,
    /// The line (1-based).
    line: usize,
    /// Fields per line, the gene's column and the value columns (0-based).
    width: usize,
    gene: usize,
    values: Vec<usize>,
    /// The names of the value columns when the first line is a header.
    pub(super) header: Option<Vec<String>>,
    /// One name per value column (the header's, or `sample1`, …).
    pub(super) samples: Vec<String>,
}

impl Layout {
    /// Reads the first content line, `no` (0-based).
    pub(super) fn read(no: usize, first: &str, columns: Columns) -> Result<Layout> {
        let line = no + 1;
        let delim = if first.contains('\t') {
            '\t'
        } else if first.contains(',') {
            ','
        } else {
            return Err(Error::Sample(format!(
                "line {line}: no tab or comma found; expected a gene column and a value column separated by tabs (TSV) or commas (CSV)"
            )));
        };
        if let Some(c) = first.chars().find(|&c| c != delim && crate::format::is_unsafe_char(c)) {
            return Err(Error::Sample(format!("line {line}: contains the control character U+{:04X}", c as u32)));
        }
        let head = split_fields(first, delim);
        let width = head.len();
        let (gene, values): (usize, Vec<usize>) = match columns {
            Columns::All => (0, (1..width).collect()),
            Columns::Some { gene, values } => (gene, values),
        };
        if let Some(&c) = values.iter().chain([&gene]).find(|&&c| c >= width) {
            return Err(Error::Sample(format!("line {line}: {width} columns, but column {} was expected", c + 1)));
        }
        let has_header = head[1..].iter().any(|f| f.parse::<f64>().is_err());
        let columns = values.len();
        if columns == 0 {
            return Err(Error::Sample(format!("line {line}: only one column; expected gene and value columns")));
        }
        if columns > MAX_COLUMNS {
            return Err(Error::Sample(format!("line {line}: {columns} value columns, over the limit of {MAX_COLUMNS}")));
        }
        if let Some(name) = values.iter().map(|&c| head[c]).find(|n| n.len() > MAX_NAME_BYTES).filter(|_| has_header) {
            return Err(Error::Sample(format!("line {line}: {}", too_long("sample name", name))));
        }
        let header: Option<Vec<String>> = has_header.then(|| values.iter().map(|&c| head[c].to_string()).collect());
        let samples = header.clone().unwrap_or_else(|| (1..=columns).map(|i| format!("sample{i}")).collect());
        // Each name's first column, so that a wide header is checked in linear time.
        let mut first_of = foldhash::HashMap::<&str, usize>::default();
        for (c, name) in samples.iter().enumerate() {
            if let Some(&first) = first_of.get(name.as_str()) {
                return Err(Error::Sample(format!(
                    "line {line}: columns {} and {} are both named '{}': their results could not be told apart; rename one",
                    values[first] + 1,
                    values[c] + 1,
                    excerpt(name)
                )));
            }
            first_of.insert(name, c);
        }
        Ok(Layout { delim, line, width, gene, values, header, samples })
    }
}

/// The gene rows of a table read so far, and the checks of each new row.
pub(super) struct Rows {
    pub(super) layout: Layout,
    pub(super) genes: Vec<String>,
    /// The line (1-based) of each gene row.
    pub(super) line_of: Vec<usize>,
    pub(super) summary_rows: Vec<String>,
    seen: Seen,
}

impl Rows {
    /// `rows`: the number of rows expected (capacity only).
    pub(super) fn new(layout: Layout, rows: usize) -> Rows {
        Rows { layout, genes: Vec::with_capacity(rows), line_of: Vec::with_capacity(rows), summary_rows: Vec::new(), seen: Seen::with_capacity(rows) }
    }

    /// Reads content line `no` (0-based), its values into `values`; false for a read-counter
    /// summary row, which is recorded and has no values.
    pub(super) fn read(&mut self, no: usize, line: &str, values: &mut Vec<f64>) -> Result<bool> {
        let (delim, first_line, columns, width) = (self.layout.delim, self.layout.line, self.layout.samples.len(), self.layout.width);
        if let Some(c) = unsafe_char(line, delim) {
            return Err(Error::Sample(format!("line {}: contains the control character U+{:04X}", no + 1, c as u32)));
        }
        if self.genes.len() == MAX_ROWS {
            return Err(Error::Sample(format!("line {}: more than {MAX_ROWS} gene rows, the limit for a sample file", no + 1)));
        }
        let fields = split_fields(line, delim);
        if fields.len() != width {
            let other = if delim == '\t' { ("comma", ',') } else { ("tab", '\t') };
            let hint = if line.contains(other.1) {
                format!("; the line is separated by {}s but line {first_line} by {}", other.0, if delim == '\t' { "tabs" } else { "commas" })
            } else {
                String::new()
            };
            return Err(Error::Sample(format!(
                "line {}: {} fields, expected {width} ({}){hint}",
                no + 1,
                fields.len(),
                if width == columns + 1 {
                    format!("gene + {columns} value column{}", if columns == 1 { "" } else { "s" })
                } else {
                    format!("as the header, line {first_line}")
                }
            )));
        }
        let gene = fields[self.layout.gene];
        if gene.is_empty() {
            return Err(Error::Sample(format!("line {}: empty gene name", no + 1)));
        }
        if gene.len() > MAX_NAME_BYTES {
            return Err(Error::Sample(format!("line {}: {}", no + 1, too_long("gene name", gene))));
        }
        if is_counter_summary(gene) {
            // Reads no gene got: they are not part of the library of any gene.
            if self.summary_rows.len() < MAX_SUMMARY_ROWS {
                self.summary_rows.push(gene.to_string());
            }
            return Ok(false);
        }
        if let Some(prev) = self.seen.insert(gene, self.genes.len(), &self.genes) {
            let prev = self.line_of[prev];
            return Err(Error::Sample(format!("line {}: gene '{}' appears twice (first on line {prev})", no + 1, excerpt(gene))));
        }
        values.clear();
        for &c in &self.layout.values {
            let f = fields[c];
            let v: f64 = f.parse().map_err(|_| {
                Error::Sample(format!("line {}, column {} (gene '{}'): '{}' is not a number", no + 1, c + 1, excerpt(gene), excerpt(f)))
            })?;
            if !v.is_finite() {
                return Err(Error::Sample(format!(
                    "line {}, column {} (gene '{}'): {} is not a finite number",
                    no + 1,
                    c + 1,
                    excerpt(gene),
                    excerpt(f)
                )));
            }
            values.push(v);
        }
        self.genes.push(gene.to_string());
        self.line_of.push(no + 1);
        Ok(true)
    }

    /// The rows read, or the error of a table without any.
    pub(super) fn finish(self) -> Result<Rows> {
        if self.genes.is_empty() {
            return Err(Error::Sample(format!("the file has a header (line {}) but no gene rows", self.layout.line)));
        }
        Ok(self)
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
    const R: &str = "an R data file (.rds/.RData), such as a Seurat or DESeq2 object: export its counts in R, e.g. \
                     write.table(as.matrix(counts), \"counts.tsv\", sep = \"\\t\", quote = FALSE)";
    const FORMATS: [(&[u8], &str); 13] = [
        (b"\x1f\x8b", "gzip-compressed (decompress it first, e.g. gunzip; a Seurat .rds file is gzip too: export its counts as TSV)"),
        (b"PK\x03\x04", "a ZIP archive, such as an Excel .xlsx workbook (save the sheet as TSV or CSV)"),
        (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook (save the sheet as TSV or CSV)"),
        (b"\x89HDF", "an HDF5 file, such as an AnnData .h5ad or a 10x .h5 (read it as a sample file: the command line's --sample, sample::read, which sum its cells' counts)"),
        (b"\x89PNG", "a PNG image"),
        (b"\xfd7zXZ\x00", "xz-compressed (decompress it first: xz -d; refcast reads gzip)"),
        (b"BZh", "bzip2-compressed (decompress it first: bunzip2; refcast reads gzip)"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed (decompress it first: zstd -d; refcast reads gzip)"),
        (b"X\n\x00\x00\x00", R),
        (b"RDX2\n", R),
        (b"RDX3\n", R),
        (b"RDA2\n", R),
        (b"RDA3\n", R),
    ];
    FORMATS.iter().find(|(magic, _)| bytes.starts_with(magic)).map(|(_, what)| *what)
}

/// A number for a message, at most about 25 characters: written out between 10⁻⁴ and 10⁹,
/// in scientific notation otherwise (a cell of 300 digits is a 300-digit number).
pub fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e9).contains(&v.abs()) { format!("{v}") } else { format!("{v:.6e}") }
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
pub(super) fn split_quoted(line: &str, delim: char) -> Vec<&str> {
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

