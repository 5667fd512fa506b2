//! A 10x Genomics feature-barcode matrix (Cell Ranger's `filtered_feature_bc_matrix/`:
//! `matrix.mtx`, `features.tsv`, `barcodes.tsv`) summed over cells into pseudobulk samples: all
//! cells into one, or one per group of a barcode → group table. The matrix is read as a stream
//! (it may hold hundreds of millions of entries); only the sums are kept.

use std::io::BufRead;

use super::format_detect::{Format, Interpretation, SampleFile};
use super::*;

/// Largest decompressed `matrix.mtx` read (a few hundred thousand cells).
pub const MAX_MATRIX_BYTES: u64 = 16 << 30;
/// Most features (rows) and barcodes (columns) a matrix may have.
pub const MAX_FEATURES: usize = 1_000_000;
pub const MAX_BARCODES: usize = 10_000_000;
/// Most groups a barcode → group table may name (each becomes a sample).
pub const MAX_GROUPS: usize = 10_000;

fn err(file: &str, msg: String) -> Error {
    Error::Sample(format!("{file}: {msg}"))
}

/// The lines of a small text file of the matrix (features, barcodes, groups), without blank ones.
fn lines<'a>(file: &'a str, bytes: &'a [u8]) -> Result<impl Iterator<Item = (usize, &'a str)>> {
    if bytes.len() > MAX_SAMPLE_BYTES {
        return Err(err(file, format!("{} bytes, over the {MAX_SAMPLE_BYTES}-byte limit", bytes.len())));
    }
    if let Some(what) = binary_format(bytes) {
        return Err(err(file, format!("the file is {what}, not text")));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        err(file, format!("line {line}: not UTF-8 text"))
    })?;
    Ok(text.lines().enumerate().map(|(n, l)| (n + 1, l.trim_end_matches('\r'))).filter(|(_, l)| !l.trim().is_empty()))
}

/// Sums the cells of a 10x matrix into pseudobulk count samples. `matrix` streams the
/// (decompressed) Matrix Market file; `features`, `barcodes` and `groups` (a two-column
/// barcode → group table, tab or comma separated, a header optional) are the other files'
/// decompressed bytes. Without groups, the one sample is called `name`.
pub fn pseudobulk(matrix: impl BufRead, features: &[u8], barcodes: &[u8], groups: Option<&[u8]>, name: &str) -> Result<SampleFile> {
    // Features: id, name, type (Cell Ranger 3+) or id, name (genes.tsv); only gene expression.
    let mut feature_ids = 0;
    let mut genes = Vec::new();
    let mut gene_row = Vec::new();
    for (no, line) in lines("features.tsv", features)? {
        let f: Vec<&str> = line.split('\t').collect();
        if feature_ids == MAX_FEATURES {
            return Err(err("features.tsv", format!("more than {MAX_FEATURES} features")));
        }
        let id = f[0].trim();
        if id.is_empty() {
            return Err(err("features.tsv", format!("line {no}: empty feature id")));
        }
        // Rows of gene-expression features are numbered among themselves.
        let gene = f.get(2).is_none_or(|t| t.trim() == "Gene Expression");
        gene_row.push(gene.then_some(genes.len()));
        if gene {
            genes.push(id.to_string());
        }
        feature_ids += 1;
    }
    if genes.is_empty() {
        return Err(err("features.tsv", "no Gene Expression features".into()));
    }
    let mut barcode_names = Vec::new();
    for (_, line) in lines("barcodes.tsv", barcodes)? {
        if barcode_names.len() == MAX_BARCODES {
            return Err(err("barcodes.tsv", format!("more than {MAX_BARCODES} barcodes")));
        }
        barcode_names.push(line.trim());
    }
    if barcode_names.is_empty() {
        return Err(err("barcodes.tsv", "no barcodes".into()));
    }
    // Each barcode's group (sample), or none when the group table leaves it out.
    let (group_of, samples): (Vec<Option<usize>>, Vec<String>) = match groups {
        None => (vec![Some(0); barcode_names.len()], vec![name.to_string()]),
        Some(bytes) => read_groups(bytes, &barcode_names, "barcodes.tsv")?,
    };
    let mut sums = vec![vec![0.0f64; genes.len()]; samples.len()];
    let cells = read_matrix(matrix, feature_ids, barcode_names.len(), |row, col, v| {
        if let (Some(g), Some(s)) = (gene_row[row], group_of[col]) {
            sums[s][g] += v;
        }
    })?;
    let used = (0..barcode_names.len()).filter(|&c| group_of[c].is_some() && cells[c]).count();
    let table = SampleTable::from_columns(genes, samples.clone(), sums, ValueKind::Counts)?;
    let format = Format::TenX { cells: used, groups: groups.map(|_| samples.len()) };
    let interpretation = Interpretation { format, gzip: false, kind: ValueKind::Counts, source: KindSource::Format, summary_rows: Vec::new() };
    Ok(SampleFile { table, interpretation })
}

/// A barcode → group table: each barcode's group index, and the groups' names in order of first
/// appearance. `source` names where `barcodes` come from, for messages.
pub(super) fn read_groups(bytes: &[u8], barcodes: &[&str], source: &str) -> Result<(Vec<Option<usize>>, Vec<String>)> {
    let file = "the group table";
    let index: foldhash::HashMap<&str, usize> = barcodes.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let mut group_of = vec![None; barcodes.len()];
    let mut names: Vec<String> = Vec::new();
    let (mut header, mut unknown): (Option<String>, Option<String>) = (None, None);
    for (i, (no, line)) in lines(file, bytes)?.enumerate() {
        let f: Vec<&str> = line.split(if line.contains('\t') { '\t' } else { ',' }).map(|s| s.trim().trim_matches('"')).collect();
        if f.len() != 2 || f[1].is_empty() {
            return Err(err(file, format!("line {no}: expected two columns, a barcode and its group")));
        }
        let Some(&b) = index.get(f[0]) else {
            // A header line, or a cell the matrix lacks (filtered out by Cell Ranger).
            // The first line may be a header: a later unknown barcode is the one quoted.
            if i == 0 {
                header = Some(f[0].to_string());
            } else if unknown.is_none() {
                unknown = Some(f[0].to_string());
            }
            continue;
        };
        if group_of[b].is_some() {
            return Err(err(file, format!("line {no}: barcode '{}' is listed twice", excerpt(f[0]))));
        }
        let g = match names.iter().position(|n| n == f[1]) {
            Some(g) => g,
            None if names.len() == MAX_GROUPS => {
                return Err(err(file, format!("line {no}: more than {MAX_GROUPS} groups")));
            }
            None => {
                names.push(f[1].to_string());
                names.len() - 1
            }
        };
        group_of[b] = Some(g);
    }
    if names.is_empty() {
        return Err(err(
            file,
            format!(
                "none of its barcodes (the first: '{}') is in {source} (whose first is '{}'): is it for another sample?",
                excerpt(unknown.or(header).as_deref().unwrap_or("")),
                excerpt(barcodes[0])
            ),
        ));
    }
    Ok((group_of, names))
}

/// Reads a coordinate Matrix Market file of `rows` × `cols`, calling `add(row, col, value)`
/// (0-based) per entry; which columns had an entry. Entries are checked: in range, finite, not
/// negative, not repeated within a column's run of entries (Cell Ranger writes one run per
/// barcode), and as many as the size line says.
fn read_matrix(matrix: impl BufRead, rows: usize, cols: usize, mut add: impl FnMut(usize, usize, f64)) -> Result<Vec<bool>> {
    let file = "matrix.mtx";
    let mut line = Vec::new();
    let mut input = Lines { reader: matrix, no: 0, total: 0 };
    // The number of the line last read, for messages.
    let mut no = 0;
    let mut next_line = |line: &mut Vec<u8>, no: &mut usize| {
        let more = input.next(line)?;
        *no = input.no;
        Ok::<bool, Error>(more)
    };
    if !next_line(&mut line, &mut no)? || !line.starts_with(b"%%MatrixMarket") {
        return Err(err(file, "line 1: not a Matrix Market file (expected '%%MatrixMarket matrix coordinate ...')".into()));
    }
    let banner = String::from_utf8_lossy(&line).to_ascii_lowercase();
    let words: Vec<&str> = banner.split_whitespace().collect();
    if words.get(1) != Some(&"matrix") || words.get(2) != Some(&"coordinate") || !matches!(words.get(3), Some(&"integer" | &"real")) {
        return Err(err(file, format!("line 1: '{}': only coordinate matrices of integer or real values are read", excerpt(banner.trim()))));
    }
    if words.get(4) != Some(&"general") {
        return Err(err(file, "line 1: only general (not symmetric) matrices are read".into()));
    }
    let size = loop {
        if !next_line(&mut line, &mut no)? {
            return Err(err(file, "no size line".into()));
        }
        if !line.starts_with(b"%") && !line.iter().all(u8::is_ascii_whitespace) {
            break String::from_utf8_lossy(&line).into_owned();
        }
    };
    let dims: Vec<usize> = size.split_whitespace().map(|w| w.parse().unwrap_or(usize::MAX)).collect();
    let [r, c, nnz] = dims[..] else {
        return Err(err(file, format!("line {no}: expected 'rows columns entries', got '{}'", excerpt(size.trim()))));
    };
    if r != rows || c != cols {
        return Err(err(file, format!("line {no}: the matrix is {r} × {c}, but features.tsv lists {rows} features and barcodes.tsv {cols} barcodes")));
    }
    let mut cells = vec![false; cols];
    // The column of each row's last entry, and the column of the current run: a repeat within a
    // run is a duplicate entry.
    let mut last_col = vec![usize::MAX; rows];
    let mut seen = 0usize;
    while next_line(&mut line, &mut no)? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = std::str::from_utf8(&line).map_err(|_| err(file, format!("line {no}: not UTF-8 text")))?;
        let mut w = text.split_whitespace();
        let (Some(i), Some(j), Some(v), None) = (w.next(), w.next(), w.next(), w.next()) else {
            return Err(err(file, format!("line {no}: expected 'row column value', got '{}'", excerpt(text.trim()))));
        };
        let (Ok(i), Ok(j), Ok(v)) = (i.parse::<usize>(), j.parse::<usize>(), v.parse::<f64>()) else {
            return Err(err(file, format!("line {no}: '{}' is not 'row column value' numbers", excerpt(text.trim()))));
        };
        if !(1..=rows).contains(&i) || !(1..=cols).contains(&j) {
            return Err(err(file, format!("line {no}: entry ({i}, {j}) is outside the {rows} × {cols} matrix")));
        }
        if !v.is_finite() || v < 0.0 {
            return Err(err(file, format!("line {no}: {v} is not a count")));
        }
        let (i, j) = (i - 1, j - 1);
        if last_col[i] == j {
            return Err(err(file, format!("line {no}: entry ({}, {}) appears twice", i + 1, j + 1)));
        }
        last_col[i] = j;
        seen += 1;
        if seen > nnz {
            return Err(err(file, format!("line {no}: more entries than the {nnz} the size line gives")));
        }
        cells[j] = true;
        add(i, j, v);
    }
    if seen != nnz {
        return Err(err(file, format!("{seen} entries, but the size line gives {nnz} (the file was cut short?)")));
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: &[u8] = b"ENSG1\tA\tGene Expression\nENSG2\tB\tGene Expression\nAB1\tCD3\tAntibody Capture\n";
    const BARCODES: &[u8] = b"AAA-1\nCCC-1\nGGG-1\n";

    fn mtx(body: &str) -> Vec<u8> {
        format!("%%MatrixMarket matrix coordinate integer general\n%metadata_json: {{}}\n{body}").into_bytes()
    }

    #[test]
    fn cells_are_summed_into_groups() {
        let m = mtx("3 3 5\n1 1 2\n2 1 3\n3 1 9\n1 2 5\n2 3 1\n");
        let f = pseudobulk(&m[..], FEATURES, BARCODES, None, "s").unwrap();
        assert_eq!(f.table.genes, ["ENSG1", "ENSG2"]);
        assert_eq!(f.table.values, [vec![7.0, 4.0]]);
        assert_eq!(f.interpretation.format, Format::TenX { cells: 3, groups: None });
        let groups = b"barcode,group\nAAA-1,x\nCCC-1,y\nGGG-1,x\nTTT-1,y\n";
        let f = pseudobulk(&m[..], FEATURES, BARCODES, Some(groups), "s").unwrap();
        assert_eq!(f.table.samples, ["x", "y"]);
        assert_eq!(f.table.values, [vec![2.0, 4.0], vec![5.0, 0.0]]);
    }

    #[test]
    fn bad_matrices_are_refused_by_line() {
        for (body, want) in [
            ("2 3 1\n1 1 1\n", "the matrix is 2 × 3, but features.tsv lists 3 features"),
            ("3 3 1\n4 1 1\n", "line 4: entry (4, 1) is outside the 3 × 3 matrix"),
            ("3 3 2\n1 1 1\n1 1 2\n", "line 5: entry (1, 1) appears twice"),
            ("3 3 3\n1 1 1\n", "1 entries, but the size line gives 3"),
            ("3 3 1\n1 1 -4\n", "-4 is not a count"),
        ] {
            let e = pseudobulk(&mtx(body)[..], FEATURES, BARCODES, None, "s").unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
        let m = mtx("3 3 1\n1 1 1\n");
        let e = pseudobulk(&m[..], FEATURES, BARCODES, Some(b"XXX,a\n"), "s").unwrap_err().to_string();
        assert!(e.contains("none of its barcodes (the first: 'XXX') is in barcodes.tsv (whose first is 'AAA-1')"), "{e}");
        let e = pseudobulk(&m[..], FEATURES, BARCODES, Some(b"AAA-1,a\nAAA-1,b\n"), "s").unwrap_err().to_string();
        assert!(e.contains("line 2: barcode 'AAA-1' is listed twice"), "{e}");
    }
}

/// The lines of a matrix file, counted and bounded as they are read.
struct Lines<R> {
    reader: R,
    no: usize,
    total: u64,
}

impl<R: BufRead> Lines<R> {
    /// Reads the next line into `line`; false at the end.
    fn next(&mut self, line: &mut Vec<u8>) -> Result<bool> {
        let file = "matrix.mtx";
        line.clear();
        let n = self.reader.read_until(b'\n', line).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => err(file, format!("the gzip stream is truncated after line {}", self.no)),
            _ => err(file, format!("cannot read after line {}: {e}", self.no)),
        })?;
        self.no += 1;
        self.total += n as u64;
        if self.total > MAX_MATRIX_BYTES {
            return Err(err(file, format!("more than {MAX_MATRIX_BYTES} bytes (decompressed), over the limit")));
        }
        Ok(n > 0)
    }
}
