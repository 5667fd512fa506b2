//! Tables too large to hold: a genes × samples matrix of thousands of samples read in one pass,
//! with the memory of a chunk.
//!
//! A file has one line per gene, but a prediction needs one column (sample) at a time. The pass
//! checks every line as [`SampleTable::parse`] does (the same code: `table::Rows`), gathers what
//! the column checks need (`table::ColumnStats`), and writes the values to a spill file in blocks
//! of rows, each block column by column, so that a run of columns can be read back with one read
//! per block. Every check, the counts' included, is done when [`StreamedTable::read`] returns:
//! a bad value in the last line or column is refused before any column is used.

use std::io::{BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;

use super::format_detect::{Format, Interpretation};
use super::table::{ColumnStats, Columns, Layout, Rows, is_content, name_lone_column};
use super::units::{self, ValueSums};
use super::*;

/// Most bytes a streamed table may have (a genome-wide matrix of tens of thousands of samples).
pub const MAX_STREAM_BYTES: u64 = 16 << 30;
/// Most values (gene rows × sample columns) a streamed table may have: 16 GB in the spill file.
pub const MAX_STREAM_CELLS: u64 = 2_000_000_000;
/// Longest line of a streamed table (a line of 100,000 columns of 12-digit values fits).
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// The memory a streamed table uses for a block of rows while reading, and for a chunk of
/// columns afterwards, unless told otherwise.
pub const DEFAULT_CHUNK_BUDGET: usize = 64 << 20;

/// A table read in one pass, its values in a spill file; chunks of its columns come back as
/// [`SampleTable`]s (see the module's documentation).
pub struct StreamedTable<F> {
    pub genes: Vec<String>,
    /// One name per value column.
    pub samples: Vec<String>,
    /// What the values are, resolved.
    pub kind: ValueKind,
    /// What the file was read as (a plain table, never gzip: those are read whole).
    pub interpretation: Interpretation,
    /// Read-counter summary rows left out (see [`SampleTable::summary_rows`]).
    pub summary_rows: Vec<String>,
    stats: Vec<ColumnStats>,
    spill: Spill<F>,
    budget: usize,
}

/// Consecutive gene rows in the spill file: `rows` values of column 0, then of column 1, …
#[derive(Clone, Copy, Debug)]
struct Block {
    offset: u64,
    first_row: usize,
    rows: usize,
}

struct Spill<F> {
    file: F,
    end: u64,
    blocks: Vec<Block>,
    bytes: Vec<u8>,
}

fn spill_error(source: std::io::Error) -> Error {
    Error::Io { path: "the temporary file of the sample's columns".into(), source }
}

impl<F: Read + Write + Seek> Spill<F> {
    /// Appends the rows `block` (row-major, `columns` values each) from row `first_row`.
    fn write(&mut self, block: &[f64], columns: usize, first_row: usize) -> Result<()> {
        let rows = block.len() / columns;
        self.file.seek(SeekFrom::Start(self.end)).map_err(spill_error)?;
        let mut w = BufWriter::with_capacity(1 << 20, &mut self.file);
        for c in 0..columns {
            for r in 0..rows {
                w.write_all(&block[r * columns + c].to_le_bytes()).map_err(spill_error)?;
            }
        }
        w.flush().map_err(spill_error)?;
        self.blocks.push(Block { offset: self.end, first_row, rows });
        self.end += (block.len() * 8) as u64;
        Ok(())
    }

    /// Columns `range` into `values` (one `Vec` per column, each as long as the table).
    fn read(&mut self, range: Range<usize>, values: &mut [Vec<f64>]) -> Result<()> {
        for &Block { offset, first_row, rows } in &self.blocks {
            self.bytes.resize(range.len() * rows * 8, 0);
            self.file.seek(SeekFrom::Start(offset + (range.start * rows * 8) as u64)).map_err(spill_error)?;
            self.file.read_exact(&mut self.bytes).map_err(spill_error)?;
            for (column, bytes) in values.iter_mut().zip(self.bytes.chunks_exact(rows * 8)) {
                for (v, b) in column[first_row..first_row + rows].iter_mut().zip(bytes.chunks_exact(8)) {
                    *v = f64::from_le_bytes(b.try_into().expect("8 bytes"));
                }
            }
        }
        Ok(())
    }
}

/// The pass over the lines after the first content line.
struct Reader<F> {
    rows: Rows,
    stats: Vec<ColumnStats>,
    sums: ValueSums,
    /// Rows not yet spilled, row-major.
    block: Vec<f64>,
    block_rows: usize,
    row: Vec<f64>,
    spill: Spill<F>,
}

impl<F: Read + Write + Seek> Reader<F> {
    fn line(&mut self, no: usize, line: &str) -> Result<()> {
        if !self.rows.read(no, line, &mut self.row)? {
            return Ok(());
        }
        let (g, columns) = (self.rows.genes.len() - 1, self.row.len());
        if (g as u64 + 1) * columns as u64 > MAX_STREAM_CELLS {
            return Err(Error::Sample(format!(
                "line {}: more than {MAX_STREAM_CELLS} values (gene rows × sample columns), the limit for a sample file; split the samples into several files",
                no + 1
            )));
        }
        for (s, (stats, &v)) in self.stats.iter_mut().zip(&self.row).enumerate() {
            stats.push(g, v);
            self.sums.add(s, v);
        }
        self.block.extend_from_slice(&self.row);
        if self.block.len() == self.block_rows * columns {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let columns = self.stats.len();
        let rows = self.block.len() / columns;
        if rows > 0 {
            self.spill.write(&self.block, columns, self.rows.genes.len() - rows)?;
            self.block.clear();
        }
        Ok(())
    }
}

impl<F: Read + Write + Seek> StreamedTable<F> {
    /// Reads a table (TSV or CSV, as [`SampleTable::parse`] reads) from `input`, spilling its
    /// values to `spill` (an empty file: an anonymous temporary one). `budget` bounds the bytes of
    /// values held at once, while reading and in each chunk of [`StreamedTable::chunks`].
    pub fn read(mut input: impl BufRead, kind: ValueKind, spill: F, budget: usize) -> Result<StreamedTable<F>> {
        let mut raw = Vec::new();
        let mut total = 0u64;
        let mut spill = Some(spill);
        let mut reader: Option<Reader<F>> = None;
        for no in 0.. {
            raw.clear();
            let n = (&mut input)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut raw)
                .map_err(|source| Error::Io { path: "the sample".into(), source })?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > MAX_STREAM_BYTES {
                return Err(Error::Sample(format!(
                    "line {}: more than {MAX_STREAM_BYTES} bytes, the limit for a sample file; split the samples into several files",
                    no + 1
                )));
            }
            if no == 0 {
                if let Some(format) = binary_format(&raw) {
                    return Err(Error::Sample(format!("the file is {format}, not a table of text")));
                }
            }
            let bytes = match raw.strip_suffix(b"\n") {
                Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
                None if raw.len() > MAX_LINE_BYTES => {
                    return Err(Error::Sample(format!("line {}: longer than {MAX_LINE_BYTES} bytes, the limit for a line", no + 1)));
                }
                None => &raw,
            };
            let line = std::str::from_utf8(bytes).map_err(|_| Error::Sample(format!("line {}: the file is not UTF-8 text", no + 1)))?;
            let line = if no == 0 { line.strip_prefix('\u{feff}').unwrap_or(line) } else { line };
            if !is_content(line) {
                continue;
            }
            if let Some(reader) = reader.as_mut() {
                reader.line(no, line)?;
                continue;
            }
            let layout = Layout::read(no, line, Columns::All)?;
            let columns = layout.samples.len();
            let headerless = layout.header.is_none();
            let block_rows = (budget / 2 / (columns * 8)).max(1);
            let mut first = Reader {
                rows: Rows::new(layout, 0),
                stats: vec![ColumnStats::default(); columns],
                sums: ValueSums::new(columns),
                block: Vec::with_capacity(block_rows * columns),
                block_rows,
                row: Vec::with_capacity(columns),
                spill: Spill { file: spill.take().expect("one first line"), end: 0, blocks: Vec::new(), bytes: Vec::new() },
            };
            if headerless {
                first.line(no, line)?;
            }
            reader = Some(first);
        }
        let Some(mut reader) = reader else {
            return Err(Error::Sample("the file is empty".into()));
        };
        reader.flush()?;
        let Reader { rows, stats, sums, spill, .. } = reader;
        let Rows { layout, genes, line_of, summary_rows, .. } = rows.finish()?;
        let header: Option<Vec<&str>> = layout.header.as_ref().map(|h| h.iter().map(String::as_str).collect());
        let (kind, source) = units::resolve(kind, header.as_deref(), &sums, genes.len())?;
        let interpretation = Interpretation { format: Format::Table { delimiter: layout.delim }, gzip: false, kind, source, summary_rows: summary_rows.clone() };
        if kind == ValueKind::Counts {
            for (s, name) in stats.iter().zip(&layout.samples) {
                s.check_counts(&genes, name, |g| format!("line {}: ", line_of[g]))?;
            }
        }
        Ok(StreamedTable { genes, samples: layout.samples, kind, interpretation, summary_rows, stats, spill, budget })
    }

    /// [`SampleTable::name_after_file`].
    pub fn name_after_file(&mut self, file_name: &str) {
        name_lone_column(&mut self.samples, file_name);
    }

    /// The runs of columns that fit the budget (at least one column each), in order.
    pub fn chunks(&self) -> impl Iterator<Item = Range<usize>> + use<F> {
        // The values of a chunk, and the bytes they are read through.
        let per_chunk = (self.budget / (16 * self.genes.len())).max(1);
        let n = self.samples.len();
        (0..n).step_by(per_chunk).map(move |a| a..(a + per_chunk).min(n))
    }

    /// A table with this table's genes and no columns yet, for [`StreamedTable::read_columns`].
    pub fn empty_chunk(&self) -> SampleTable {
        SampleTable { genes: self.genes.clone(), samples: Vec::new(), values: Vec::new(), kind: self.kind, summary_rows: self.summary_rows.clone() }
    }

    /// Columns `range` as the columns of `chunk` (made by [`StreamedTable::empty_chunk`]).
    pub fn read_columns(&mut self, range: Range<usize>, chunk: &mut SampleTable) -> Result<()> {
        if range.end > self.samples.len() || range.start > range.end {
            return Err(Error::Sample(format!("there are no columns {range:?}: the table has {} value column(s)", self.samples.len())));
        }
        chunk.samples.clear();
        chunk.samples.extend_from_slice(&self.samples[range.clone()]);
        chunk.values.resize_with(range.len(), Vec::new);
        for column in &mut chunk.values {
            column.resize(self.genes.len(), 0.0);
        }
        self.spill.read(range, &mut chunk.values)
    }

    /// Calls `check` (typically the building of a reference: the model's gene matching and
    /// value ranges) on the columns that can fail it, before any column is used: the first
    /// column, whose genes are every column's, and for log-CPM the first column with a value
    /// outside the log-CPM range.
    pub fn check_columns<E: From<Error>>(&mut self, mut check: impl FnMut(&SampleTable, usize) -> std::result::Result<(), E>) -> std::result::Result<(), E> {
        let outside = (self.kind != ValueKind::Counts).then(|| self.stats.iter().position(|s| s.first_outside_log_cpm.is_some())).flatten();
        let mut chunk = self.empty_chunk();
        for s in std::iter::once(0).chain(outside) {
            self.read_columns(s..s + 1, &mut chunk)?;
            check(&chunk, 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn streamed(text: &str, budget: usize) -> Result<StreamedTable<Cursor<Vec<u8>>>> {
        streamed_as(text, ValueKind::Auto, budget)
    }

    fn streamed_as(text: &str, kind: ValueKind, budget: usize) -> Result<StreamedTable<Cursor<Vec<u8>>>> {
        StreamedTable::read(text.as_bytes(), kind, Cursor::new(Vec::new()), budget)
    }

    /// A headered counts table of `genes` × `columns` with distinct values.
    fn wide(genes: usize, columns: usize) -> String {
        let mut t = String::from("gene");
        for c in 0..columns {
            t += &format!("\ts{c}");
        }
        t += "\n__no_feature";
        t += &"\t7".repeat(columns);
        t += "\n";
        for g in 0..genes {
            t += &format!("G{g}");
            for c in 0..columns {
                t += &format!("\t{}", 1 + g * 31 + c * 7);
            }
            t += "\n";
        }
        t
    }

    /// Every chunking, down to one value per block and column per chunk, gives back the table
    /// that `SampleTable::parse` reads.
    #[test]
    fn chunks_of_any_size_give_back_the_parsed_table() {
        for (genes, columns) in [(1, 1), (5, 3), (17, 9), (40, 2)] {
            let text = wide(genes, columns);
            let parsed = SampleTable::parse(text.as_bytes(), ValueKind::Auto).unwrap();
            for budget in [0, 8, 100, 1000, 1 << 20] {
                let mut t = streamed(&text, budget).unwrap();
                assert_eq!((&t.genes, &t.samples, t.kind, &t.summary_rows), (&parsed.genes, &parsed.samples, parsed.kind, &parsed.summary_rows));
                let mut chunk = t.empty_chunk();
                let mut values = Vec::new();
                for range in t.chunks().collect::<Vec<_>>() {
                    t.read_columns(range, &mut chunk).unwrap();
                    values.extend(chunk.values.iter().cloned());
                }
                assert_eq!(values, parsed.values, "{genes}×{columns}, budget {budget}");
            }
        }
    }

    /// The refusals of `SampleTable::parse`, word for word, also for a bad value in the last
    /// line and column; and the streamed limits.
    #[test]
    fn bad_tables_are_refused_as_parse_refuses_them() {
        let late_negative = wide(30, 5).replacen("\t928\n", "\t-928\n", 1);
        assert!(late_negative.contains("-928"));
        for text in [
            "",
            "gene\tcount\n",
            "gene;count\nG;1\n",
            "gene\tA\tB\tA\nG\t1\t2\t3\n",
            "gene\tcount\nG0\t1\ng0\t2\n",
            "gene\tcount\nG0\t1\nG1\tseven\n",
            "gene,a,b\nG0,1,inf\n",
            "gene\tcount\nG0\t1\nG1,2\n",
            "gene\tcount\nG0\t0\nG1\t0\n",
            "gene\tcount\nG0\t1\nG\u{1b}[2J\t2\n",
            late_negative.as_str(),
        ] {
            let want = SampleTable::parse(text.as_bytes(), ValueKind::Counts).unwrap_err().to_string();
            let got = streamed_as(text, ValueKind::Counts, 64).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(want.as_str()), "{text:?}");
        }
        let e = StreamedTable::read(&b"gene\tcount\nG0\t1\nGEN\xe9\t2\n"[..], ValueKind::Auto, Cursor::new(Vec::new()), 64).err().unwrap();
        assert_eq!(e.to_string(), "invalid sample: line 3: the file is not UTF-8 text");
        let e = StreamedTable::read(&b"\x1f\x8b\x08\x00"[..], ValueKind::Auto, Cursor::new(Vec::new()), 64).err().unwrap();
        assert!(e.to_string().contains("gzip-compressed"), "{e}");
        let long = format!("gene\tcount\nG0\t{}\n", "1".repeat(MAX_LINE_BYTES + 1));
        let e = streamed(&long, 64).err().unwrap().to_string();
        assert!(e.contains(&format!("line 2: longer than {MAX_LINE_BYTES} bytes")), "{e}");
    }

    /// A log-CPM value out of range in a late column is found before any column is used.
    #[test]
    fn columns_that_would_fail_are_checked_first() {
        let text = "gene\tlog_cpm_a\tlog_cpm_b\tlog_cpm_c\nG0\t1\t2\t3\nG1\t1\t2\t99\n";
        let mut t = streamed(text, 8).unwrap();
        let mut seen = Vec::new();
        t.check_columns(|chunk, s| -> Result<()> {
            seen.push((chunk.samples[s].clone(), chunk.values[s].clone()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [("log_cpm_a".to_string(), vec![1.0, 1.0]), ("log_cpm_c".to_string(), vec![3.0, 99.0])]);
    }
}
