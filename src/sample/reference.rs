//! A sample column matched to a model's genes: identifiers compared without case or Ensembl
//! version, the model's gene index, and the reference the model is conditioned on.

use foldhash::HashMap;

use super::*;
use crate::format::Gene;

/// Gene identifiers compare case-insensitively, with an Ensembl version suffix removed
/// (`ENSG00000187608.10` → `ensg00000187608`).
pub fn normalise_id(id: &str) -> String {
    let mut out = String::new();
    normalise_into(id, &mut out);
    out
}

/// [`normalise_id`] into a buffer (no allocation once the buffer has grown).
pub(super) fn normalise_into(id: &str, out: &mut String) {
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
            return Err(Error::Sample(format!("a library size must be a number of reads between 1 and 10^12, got {}", super::number(reads))));
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
        let kind = table.kind;
        let library_size = match kind {
            ValueKind::Counts => values.iter().sum::<f64>(),
            _ => 1e6,
        };
        let sample = &table.samples[s];
        // Each model gene the sample gives, with its value; converted to log-CPM below, once an
        // abundance's sum over the model's genes is known.
        let mut given = Vec::with_capacity(index.genes.min(values.len()));
        let mut buf = String::new();
        for (gene, &v) in table.genes.iter().zip(values) {
            check_value(kind, gene, sample, v)?;
            match index.get_with(gene, &mut buf) {
                Some(i) if measured[i] => {
                    return Err(Error::Sample(format!("gene '{gene}' maps to model gene {i}, which another row of the sample already gave")));
                }
                Some(i) => {
                    measured[i] = true;
                    given.push((i, v));
                }
                None => {
                    report.unknown += 1;
                    if report.unknown_examples.len() < 5 {
                        report.unknown_examples.push(gene.clone());
                    }
                }
            }
        }
        // Abundances are rescaled to sum to 10⁶ over the model's genes: TPM and FPKM are
        // relative to whatever genes the quantifier saw, and only their proportions carry over.
        let scale = if kind.is_abundance() {
            let total: f64 = given.iter().map(|&(_, v)| v).sum();
            if total <= 0.0 {
                return Err(Error::Sample(format!("sample '{sample}': the {} of the model's genes sum to 0", kind.describe())));
            }
            1e6 / total
        } else {
            1.0
        };
        for (i, v) in given {
            log_cpm[i] = match kind {
                ValueKind::Counts => (v / library_size * 1e6).ln_1p(),
                k if k.is_abundance() => (v * scale).ln_1p(),
                k => v * k.log_base().map_or(1.0, f64::ln),
            } as f32;
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
        let depth_known = kind == ValueKind::Counts;
        Ok(Reference { name: table.samples[s].clone(), log_cpm, library_size: library_size as f32, depth_known, measured, report })
    }
}

/// A value's range for its kind: log-CPM between 0 and ln(1 + 10⁶) (in its base), abundances not
/// negative (counts are checked when the table is read).
fn check_value(kind: ValueKind, gene: &str, sample: &str, v: f64) -> Result<()> {
    if let Some(base) = kind.log_base() {
        let label = match kind {
            ValueKind::Log2Cpm => "log2-CPM",
            ValueKind::Log10Cpm => "log10-CPM",
            _ => "log-CPM",
        };
        let max = MAX_LOG_CPM / base.ln();
        if !(0.0..=max).contains(&v) {
            let why = if v < 0.0 {
                format!("{} is never negative", kind.describe())
            } else {
                let largest = kind.describe().replace("CPM", "10⁶");
                format!("above {max:.1}, the largest possible {label} ({largest}); if the values are counts, say so (--values counts)")
            };
            return Err(Error::Sample(format!("gene '{gene}' in sample '{sample}' has {label} {}: {why}", super::number(v))));
        }
    } else if kind.is_abundance() && v < 0.0 {
        return Err(Error::Sample(format!("gene '{gene}' in sample '{sample}' has a negative {} ({})", kind.describe(), super::number(v))));
    }
    Ok(())
}
