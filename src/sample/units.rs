//! What a sample's values are, and how that is decided: stated by the user, read from the header,
//! or worked out from the values. Counts and log-CPM in base 2, e or 10 are told apart by what the
//! values sum to once back-transformed; TPM, FPKM and CPM are abundances, rescaled to sum to 10⁶
//! over the model's genes (see [`Reference::from_table`](super::Reference::from_table)).

use crate::error::{Error, Result};

/// What the values of a table are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueKind {
    /// Decide from the header (`count`, `log2_cpm`, `tpm`, …) or, without one, from the values:
    /// all non-negative integers → counts; sums of 10⁶ → an abundance; otherwise the one log base
    /// that brings every sample's CPM to a sum of 10⁶, or an error asking for the kind.
    #[default]
    Auto,
    Counts,
    /// Natural-log CPM, ln(1 + CPM) (`log-cpm`, `ln-cpm`): what the model works in.
    LogCpm,
    /// log2(1 + CPM).
    Log2Cpm,
    /// log10(1 + CPM).
    Log10Cpm,
    /// Transcripts per million (an abundance).
    Tpm,
    /// Fragments (or reads) per kilobase per million (an abundance).
    Fpkm,
    /// Counts per million, not logged (an abundance).
    Cpm,
}

/// The names `--values` takes, for messages.
pub const KIND_NAMES: &str = "counts, log-cpm (natural log, ln(1 + CPM)), log2-cpm, log10-cpm, tpm, fpkm, cpm";

impl std::str::FromStr for ValueKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "auto" => Ok(ValueKind::Auto),
            "counts" | "count" => Ok(ValueKind::Counts),
            "logcpm" | "lncpm" => Ok(ValueKind::LogCpm),
            "log2cpm" => Ok(ValueKind::Log2Cpm),
            "log10cpm" => Ok(ValueKind::Log10Cpm),
            "tpm" => Ok(ValueKind::Tpm),
            "fpkm" | "rpkm" => Ok(ValueKind::Fpkm),
            "cpm" => Ok(ValueKind::Cpm),
            _ => Err(format!("unknown value kind '{s}' (expected auto, {KIND_NAMES})")),
        }
    }
}

impl ValueKind {
    /// The name `--values` takes.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Auto => "auto",
            ValueKind::Counts => "counts",
            ValueKind::LogCpm => "log-cpm",
            ValueKind::Log2Cpm => "log2-cpm",
            ValueKind::Log10Cpm => "log10-cpm",
            ValueKind::Tpm => "tpm",
            ValueKind::Fpkm => "fpkm",
            ValueKind::Cpm => "cpm",
        }
    }

    /// What the values are, in words.
    pub fn describe(self) -> &'static str {
        match self {
            ValueKind::Auto => "to be decided",
            ValueKind::Counts => "counts",
            ValueKind::LogCpm => "ln(1 + CPM)",
            ValueKind::Log2Cpm => "log2(1 + CPM)",
            ValueKind::Log10Cpm => "log10(1 + CPM)",
            ValueKind::Tpm => "TPM",
            ValueKind::Fpkm => "FPKM",
            ValueKind::Cpm => "CPM",
        }
    }

    /// The base of a log-CPM kind.
    pub fn log_base(self) -> Option<f64> {
        match self {
            ValueKind::LogCpm => Some(std::f64::consts::E),
            ValueKind::Log2Cpm => Some(2.0),
            ValueKind::Log10Cpm => Some(10.0),
            _ => None,
        }
    }

    /// TPM, FPKM and CPM: relative abundances, rescaled over the model's genes.
    pub fn is_abundance(self) -> bool {
        matches!(self, ValueKind::Tpm | ValueKind::Fpkm | ValueKind::Cpm)
    }
}

/// How the value kind was decided.
#[derive(Clone, Debug, PartialEq)]
pub enum KindSource {
    /// `--values` (or the API's argument).
    Stated,
    /// The file's format: a quantifier's read counts.
    Format,
    /// The header's value columns (the first one quoted).
    Header(String),
    /// The values themselves (why, in words).
    Values(String),
}

/// Fewest genes from which the log base is told by the sums: with fewer, a table is a panel and
/// its CPM sums say little.
pub const MIN_GENES_FOR_BASE: usize = 5_000;
/// The range every sample's back-transformed CPM must sum into for a log base (or, not logged,
/// an abundance) to fit: tables filtered to some genes keep at least 80 % of the library; 2 %
/// over allows rounding of the written values.
pub const CPM_SUM_RANGE: (f64, f64) = (0.8e6, 1.02e6);

const BASES: [(ValueKind, f64, &str); 3] = [(ValueKind::Log2Cpm, 2.0, "2"), (ValueKind::LogCpm, std::f64::consts::E, "e"), (ValueKind::Log10Cpm, 10.0, "10")];

/// The kind a header names: every value column must name the same one.
fn from_header(header: &[&str]) -> Option<ValueKind> {
    let one = |h: &&str| {
        let h = h.to_ascii_lowercase().replace(['-', '_', ' ', '(', ')', '+', '.'], "");
        if h.contains("cpm") {
            Some(if h.contains("log2") {
                ValueKind::Log2Cpm
            } else if h.contains("log10") {
                ValueKind::Log10Cpm
            } else if h.contains("log") || h.contains("ln") {
                ValueKind::LogCpm
            } else {
                ValueKind::Cpm
            })
        } else if h.contains("tpm") {
            Some(ValueKind::Tpm)
        } else if h.contains("fpkm") || h.contains("rpkm") {
            Some(ValueKind::Fpkm)
        } else if h.contains("count") {
            Some(ValueKind::Counts)
        } else {
            None
        }
    };
    let first = one(header.first()?)?;
    header.iter().all(|h| one(h) == Some(first)).then_some(first)
}

/// What a table's kind is decided from, gathered value by value (so a streamed table gathers it
/// in its one pass): each sample's sum of its values and of `base^v - 1` for each log base (its
/// CPM, were the values log(1 + CPM) in that base), whether every value is a whole number ≥ 0, and
/// the first negative value.
#[derive(Clone, Debug)]
pub struct ValueSums {
    raw: Vec<f64>,
    by_base: [Vec<f64>; 3],
    whole: bool,
    negative: Option<f64>,
}

impl ValueSums {
    pub fn new(samples: usize) -> ValueSums {
        ValueSums { raw: vec![0.0; samples], by_base: std::array::from_fn(|_| vec![0.0; samples]), whole: true, negative: None }
    }

    /// Adds sample `s`'s next value.
    pub fn add(&mut self, s: usize, v: f64) {
        self.raw[s] += v;
        for (sums, &(_, base, _)) in self.by_base.iter_mut().zip(&BASES) {
            sums[s] += (v * base.ln()).exp_m1();
        }
        self.whole &= v >= 0.0 && v.fract() == 0.0;
        if v < 0.0 && self.negative.is_none() {
            self.negative = Some(v);
        }
    }

    /// The sums of columns in memory.
    pub fn of(values: &[Vec<f64>]) -> ValueSums {
        let mut sums = ValueSums::new(values.len());
        for (s, column) in values.iter().enumerate() {
            column.iter().for_each(|&v| sums.add(s, v));
        }
        sums
    }

    fn base(&self, base: f64) -> &[f64] {
        let i = BASES.iter().position(|&(_, b, _)| b == base).expect("one of BASES");
        &self.by_base[i]
    }
}

fn within(sums: &[f64]) -> bool {
    sums.iter().all(|s| (CPM_SUM_RANGE.0..=CPM_SUM_RANGE.1).contains(s))
}

fn show(sums: &[f64]) -> String {
    let shown: Vec<String> = sums.iter().take(3).map(|s| if s.is_finite() && *s < 1e30 { format!("{s:.3e}") } else { "overflow".into() }).collect();
    let more = if sums.len() > 3 { format!(" (and {} more samples)", sums.len() - 3) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// The sums under each base, for a message.
fn sums_by_base(sums: &ValueSums) -> String {
    BASES.iter().map(|&(_, b, name)| format!("base {name}: {}", show(sums.base(b)))).collect::<Vec<_>>().join("; ")
}

/// The one log base under which every sample's CPM sums into [`CPM_SUM_RANGE`], if exactly one.
fn unique_base(sums: &ValueSums) -> Option<ValueKind> {
    let fits: Vec<ValueKind> = BASES.iter().filter(|&&(_, b, _)| within(sums.base(b))).map(|&(k, _, _)| k).collect();
    (fits.len() == 1).then(|| fits[0])
}

/// Decides what a table's values are. `header`: its value columns' names, if it has a header;
/// `genes`: how many gene rows it has.
pub(super) fn resolve(kind: ValueKind, header: Option<&[&str]>, values: &ValueSums, genes: usize) -> Result<(ValueKind, KindSource)> {
    let ask = |why: String| Error::Sample(format!("{why}; state what the values are with --values, e.g. --values log2-cpm (one of {KIND_NAMES})"));
    // A log base, stated or named by the header, that the values contradict (the sums fit one
    // other base only) is refused rather than followed: that misreading moves every gene.
    let contradicted = |k: ValueKind, said: String| -> Result<()> {
        if k.log_base().is_some() && genes >= MIN_GENES_FOR_BASE {
            if let Some(fit) = unique_base(values).filter(|&fit| fit != k) {
                return Err(ask(format!(
                    "{said} {}, but only {} brings every sample's CPM to a sum near 10⁶ ({})",
                    k.describe(),
                    fit.describe(),
                    sums_by_base(values)
                )));
            }
        }
        Ok(())
    };
    if kind != ValueKind::Auto {
        contradicted(kind, format!("--values {} reads the values as", kind.name()))?;
        return Ok((kind, KindSource::Stated));
    }
    if let Some(k) = header.and_then(from_header) {
        let head = header.and_then(|h| h.first()).map_or(String::new(), |h| super::excerpt(h));
        contradicted(k, format!("the header '{head}' reads as"))?;
        return Ok((k, KindSource::Header(head)));
    }
    if values.whole {
        return Ok((ValueKind::Counts, KindSource::Values("whole numbers".into())));
    }
    if within(&values.raw) && values.negative.is_none() {
        return Ok((ValueKind::Cpm, KindSource::Values(format!("every sample sums to about 10⁶ ({}), as TPM or CPM do", show(&values.raw)))));
    }
    if let Some(v) = values.negative {
        return Err(ask(format!("the values include negative numbers ({v}), which neither counts, abundances nor log(1 + CPM) hold")));
    }
    if genes < MIN_GENES_FOR_BASE {
        return Err(ask(format!(
            "the values are not whole numbers, and {genes} genes are too few to tell a log base from the values \
             ({MIN_GENES_FOR_BASE} needed)"
        )));
    }
    match unique_base(values) {
        Some(k) => {
            let sums = values.base(k.log_base().expect("a log kind"));
            Ok((k, KindSource::Values(format!("only this base brings every sample's CPM to a sum near 10⁶ ({})", show(sums)))))
        }
        None => Err(ask(format!(
            "the values are not whole numbers, and no single log base brings every sample's CPM to a sum between {:.1e} and \
             {:.2e} ({})",
            CPM_SUM_RANGE.0,
            CPM_SUM_RANGE.1,
            sums_by_base(values)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPM profile over `n` genes (geometric, summing to 10⁶).
    fn cpm(n: usize) -> Vec<f64> {
        let raw: Vec<f64> = (0..n).map(|g| 0.999f64.powi(g as i32)).collect();
        let total: f64 = raw.iter().sum();
        raw.iter().map(|v| v / total * 1e6).collect()
    }

    #[test]
    fn each_log_base_is_told_from_the_values() {
        let c = cpm(8000);
        for (kind, base) in [(ValueKind::Log2Cpm, 2f64), (ValueKind::LogCpm, std::f64::consts::E), (ValueKind::Log10Cpm, 10.0)] {
            let logged: Vec<f64> = c.iter().map(|v| (1.0 + v).log(base)).collect();
            let (k, source) = resolve(ValueKind::Auto, None, &ValueSums::of(&[logged.clone()]), c.len()).unwrap();
            assert_eq!(k, kind);
            assert!(matches!(source, KindSource::Values(_)));
            // A header naming another base is refused, with the sums and the flag.
            let other = if kind == ValueKind::LogCpm { "log2_cpm" } else { "ln_cpm" };
            let e = resolve(ValueKind::Auto, Some(&[other]), &ValueSums::of(&[logged]), c.len()).unwrap_err().to_string();
            assert!(e.contains("--values") && e.contains("base 2:"), "{e}");
        }
        let (k, _) = resolve(ValueKind::Auto, None, &ValueSums::of(&[c.clone()]), c.len()).unwrap();
        assert_eq!(k, ValueKind::Cpm);
    }

    #[test]
    fn headers_name_the_kind() {
        for (h, k) in [
            ("TPM", ValueKind::Tpm),
            ("fpkm", ValueKind::Fpkm),
            ("log2(CPM+1)", ValueKind::Log2Cpm),
            ("log10_cpm", ValueKind::Log10Cpm),
            ("log_cpm", ValueKind::LogCpm),
            ("cpm", ValueKind::Cpm),
            ("counts", ValueKind::Counts),
        ] {
            assert_eq!(from_header(&[h]), Some(k), "{h}");
        }
        assert_eq!(from_header(&["tpm", "counts"]), None);
        assert_eq!(from_header(&["treated"]), None);
    }

    #[test]
    fn ambiguous_or_small_tables_are_asked_about() {
        let e = resolve(ValueKind::Auto, None, &ValueSums::of(&[vec![1.5, 2.25]]), 2).unwrap_err().to_string();
        assert!(e.contains("2 genes are too few") && e.contains("--values"), "{e}");
        // Values that fit no base: the sums under each are listed.
        let e = resolve(ValueKind::Auto, None, &ValueSums::of(&[vec![0.5; 6000]]), 6000).unwrap_err().to_string();
        assert!(e.contains("base 2:") && e.contains("base e:") && e.contains("base 10:") && e.contains("--values log2-cpm"), "{e}");
        assert_eq!(resolve(ValueKind::Tpm, None, &ValueSums::of(&[vec![0.5]]), 1).unwrap(), (ValueKind::Tpm, KindSource::Stated));
    }
}
