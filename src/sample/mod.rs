//! Samples: expression tables (TSV/CSV: a gene column, then one value column per sample) read
//! strictly, and matched to a model's gene vocabulary. Every error names the line, column, gene
//! or limit; nothing is dropped without being counted.
//!
//! `format_detect`: a file's bytes to a table, whatever its format (gzip, featureCounts, Salmon,
//! kallisto, plain TSV/CSV), with the [`Interpretation`] every front end prints; formats refcast
//! does not read are refused by name there;
//! `units`: what the values are (counts, log-CPM in base 2, e or 10, TPM/FPKM/CPM) and how that
//! is decided;
//! `tenx`: a 10x Genomics matrix (Matrix Market + features + barcodes), pseudobulked;
//! `hdf5` (native, feature `hdf5`): AnnData `.h5ad` and 10x `.h5` files, pseudobulked;
//! `table`: reading and checking tables (files and in-memory columns share the checks);
//! `stream`: tables too large to hold, read in one pass and given back in chunks of columns;
//! `reference`: gene identifiers, the model's gene index, and a column matched to it.

use crate::error::{Error, Result};

mod format_detect;
#[cfg(all(feature = "hdf5", not(target_arch = "wasm32")))]
pub mod hdf5;
mod reference;
mod stream;
mod table;
pub mod tenx;
mod units;

#[cfg(not(target_arch = "wasm32"))]
pub use format_detect::gunzip;
pub use format_detect::{Format, Interpretation, SampleFile, is_plain_table, read, read_decompressed};
pub use reference::{GeneIndex, MatchReport, Reference, normalise_id};
pub use stream::{DEFAULT_CHUNK_BUDGET, MAX_LINE_BYTES, MAX_STREAM_BYTES, MAX_STREAM_CELLS, StreamedTable};
pub use table::{binary_format, excerpt, number};
pub use units::{CPM_SUM_RANGE, KIND_NAMES, KindSource, MIN_GENES_FOR_BASE, ValueKind};

/// Largest sample file refcast reads (a genome-wide matrix of a few hundred samples fits).
pub const MAX_SAMPLE_BYTES: usize = 256 << 20;
/// Most gene rows a sample file may have (genome-wide tables have ~60,000 genes, transcript-level
/// ones a few hundred thousand). With the column limit, keeps the memory a hostile file can make
/// refcast use to a small multiple of the file's size.
pub const MAX_ROWS: usize = 2_000_000;
/// Longest gene or sample name (bytes): gene ids are tens of characters, sample names (a
/// featureCounts BAM path) hundreds; a longer cell is not a name, and would be echoed whole.
pub const MAX_NAME_BYTES: usize = 1024;
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

/// A parsed expression table.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleTable {
    pub genes: Vec<String>,
    /// One name per value column (from the header, or `sample1`, …).
    pub samples: Vec<String>,
    /// `values[s][g]`.
    pub values: Vec<Vec<f64>>,
    /// What the values are, resolved (never `Auto`).
    pub kind: ValueKind,
    /// Read-counter summary rows (HTSeq `__no_feature`, STAR `N_unmapped`, …) left out: they are
    /// not genes, and their reads are not part of any gene's library.
    pub summary_rows: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::table::split_quoted;
    use super::*;

    #[test]
    fn reads_tsv_with_header_and_detects_counts() {
        let t = SampleTable::parse(b"gene\tcount\nISG15\t10\nENSG00000000003.14\t0\n", ValueKind::Auto).unwrap();
        assert_eq!(t.kind, ValueKind::Counts);
        assert_eq!(t.genes, ["ISG15", "ENSG00000000003.14"]);
        assert_eq!(t.values, vec![vec![10.0, 0.0]]);
    }

    #[test]
    fn reads_headerless_csv_of_a_stated_kind() {
        let t = SampleTable::parse(b"A,1.5\nB,2.25\n", ValueKind::LogCpm).unwrap();
        assert_eq!(t.kind, ValueKind::LogCpm);
        assert_eq!(t.samples, ["sample1"]);
        // Two genes cannot tell a log base from the values: the kind is asked for.
        let e = SampleTable::parse(b"A,1.5\nB,2.25\n", ValueKind::Auto).unwrap_err().to_string();
        assert!(e.contains("too few") && e.contains("--values"), "{e}");
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
        let log_cpm = reference(b"gene,log_cpm\nA,1.5\nB,2.25\n");
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
        let stated = SampleTable::from_columns(strings(&["A", "B"]), strings(&["s"]), vec![vec![1.5, 2.25]], ValueKind::LogCpm);
        assert_eq!(stated.unwrap().kind, ValueKind::LogCpm);
        assert!(SampleTable::from_columns(strings(&["A", "B"]), strings(&["s"]), vec![vec![1.5, 2.25]], ValueKind::Auto).is_err());
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
