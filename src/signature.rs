//! Gene signatures to reverse (`screen --signature`): the file format and the reversal score.
//!
//! A signature file is a TSV/CSV table with a gene column first and then either
//! - no value column: a gene set, all up in the state to reverse; a `direction` column (`up` or
//!   `down` per gene) makes it an up/down set;
//! - a weight column: `weight` (any case), the column chosen by name, or the only value column;
//!   weights > 0 for genes up in the state to reverse, < 0 for down.
//!
//! Scores follow the connectivity-map convention, positive when the perturbation moves the genes
//! against the signature (see [`Signature`]).

use foldhash::HashMap;

use crate::error::{Error, Result};
use crate::sample::{GeneIndex, MAX_ROWS, binary_format, excerpt, normalise_id};

/// Fewest signature genes the model must know for a reversal score to mean anything.
pub const MIN_KNOWN_GENES: usize = 3;

/// Names a gene column may have, for telling a one-column file's header from its first gene.
const GENE_COLUMN_NAMES: &[&str] = &["gene", "genes", "gene_id", "gene_symbol", "gene_name", "symbol", "id", "ensembl", "ensembl_id"];

/// A gene signature to reverse, and how its reversal is scored from a predicted log fold change
/// (LFC).
#[derive(Clone, Debug, PartialEq)]
pub enum Signature {
    /// Unweighted genes up and down in the state to reverse. Reversal = mean LFC of the down
    /// genes − mean LFC of the up genes (a side with no gene counts as 0).
    Sets { up: Vec<String>, down: Vec<String> },
    /// Weighted genes: weight > 0 up in the state to reverse, < 0 down. Reversal =
    /// −Σ w·LFC / Σ |w|: a weighted mean LFC, the same for weights scaled by any factor. Equal
    /// weights give the score of the up set.
    Weighted(Vec<(String, f64)>),
}

/// A signature matched to a model's genes, ready to score predictions.
#[derive(Clone, Debug)]
pub struct MatchedSignature {
    scoring: Scoring,
    /// The signature's genes the model does not know (left out of the score), in file order.
    pub unknown: Vec<String>,
}

#[derive(Clone, Debug)]
enum Scoring {
    Sets { up: Vec<usize>, down: Vec<usize> },
    /// Weights divided by the largest |weight|, so no sum overflows, with Σ |w| of those.
    Weighted { genes: Vec<(usize, f64)>, total: f64 },
}

impl Signature {
    /// Every gene of the signature, in order.
    pub fn genes(&self) -> Vec<&str> {
        match self {
            Signature::Sets { up, down } => up.iter().chain(down).map(String::as_str).collect(),
            Signature::Weighted(genes) => genes.iter().map(|(g, _)| g.as_str()).collect(),
        }
    }

    /// Matches the signature to a model's genes. Refuses a signature with fewer than
    /// [`MIN_KNOWN_GENES`] known genes, a non-finite weight, or known weights all 0.
    pub fn matched(&self, index: &GeneIndex) -> Result<MatchedSignature> {
        let all = self.genes();
        let unknown: Vec<String> = all.iter().filter(|g| index.get(g).is_none()).map(|g| g.to_string()).collect();
        let known = all.len() - unknown.len();
        if known < MIN_KNOWN_GENES {
            let examples = unknown.iter().take(5).map(|g| format!("'{}'", excerpt(g))).collect::<Vec<_>>().join(", ");
            return Err(Error::Signature(format!(
                "only {known} of the signature's {} genes are in the model (not in it: {examples}{}); at least {MIN_KNOWN_GENES} are needed",
                all.len(),
                if unknown.len() > 5 { ", …" } else { "" }
            )));
        }
        let positions = |genes: &[String]| genes.iter().filter_map(|g| index.get(g)).collect::<Vec<usize>>();
        let scoring = match self {
            Signature::Sets { up, down } => Scoring::Sets { up: positions(up), down: positions(down) },
            Signature::Weighted(genes) => {
                if let Some((g, w)) = genes.iter().find(|(_, w)| !w.is_finite()) {
                    return Err(Error::Signature(format!("gene '{}' has the weight {w}; weights must be finite numbers", excerpt(g))));
                }
                let known: Vec<(usize, f64)> = genes.iter().filter_map(|(g, w)| index.get(g).map(|i| (i, *w))).collect();
                let largest = known.iter().map(|(_, w)| w.abs()).fold(0.0, f64::max);
                if largest == 0.0 {
                    return Err(Error::Signature("every weight of the signature's genes in the model is 0; give weights > 0 for genes up in the state to reverse, < 0 for down".into()));
                }
                let genes: Vec<(usize, f64)> = known.into_iter().map(|(i, w)| (i, w / largest)).collect();
                let total = genes.iter().map(|(_, w)| w.abs()).sum();
                Scoring::Weighted { genes, total }
            }
        };
        Ok(MatchedSignature { scoring, unknown })
    }

    /// Parses a signature file (see the module documentation). `column` names the weight column
    /// when the file has several value columns and none is called `weight`.
    pub fn parse(bytes: &[u8], column: Option<&str>) -> Result<Signature> {
        let err = |msg: String| Error::Signature(msg);
        if let Some(format) = binary_format(bytes) {
            return Err(err(format!("the file is {format}, not a list of genes")));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            err(format!("line {line}: the file is not UTF-8 text"))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')).map(|(no, l)| (no + 1, l));
        let Some((first_no, first)) = lines.next() else {
            return Err(err("the file is empty; expected a gene column, then optionally a weight or a direction column".into()));
        };
        let delim = if first.contains('\t') { '\t' } else { ',' };
        let split = |line: &str| -> Vec<String> { line.split(delim).map(|f| f.trim().trim_matches('"').to_string()).collect() };
        let head = split(first);
        let has_header = if head.len() == 1 {
            GENE_COLUMN_NAMES.contains(&head[0].to_ascii_lowercase().as_str())
        } else {
            head[1..].iter().any(|f| f.parse::<f64>().is_err())
        };
        let names: Vec<String> = if has_header { head.clone() } else { (1..=head.len()).map(|c| format!("column {c}")).collect() };
        let layout = Layout::choose(&names, has_header, column)?;
        let body = if has_header { None } else { Some((first_no, first)) };
        let mut seen: HashMap<String, usize> = HashMap::default();
        let (mut up, mut down, mut weighted) = (Vec::new(), Vec::new(), Vec::new());
        for (no, line) in body.into_iter().chain(lines) {
            if let Some(c) = line.chars().find(|&c| c != delim && crate::format::is_unsafe_char(c)) {
                return Err(err(format!("line {no}: contains the control character U+{:04X}", c as u32)));
            }
            if seen.len() == MAX_ROWS {
                return Err(err(format!("line {no}: more than {MAX_ROWS} genes, the limit for a signature")));
            }
            let fields = split(line);
            if fields.len() != names.len() {
                return Err(err(format!("line {no}: {} fields, expected {} ({})", fields.len(), names.len(), names.join(", "))));
            }
            let gene = &fields[0];
            if gene.is_empty() {
                return Err(err(format!("line {no}: empty gene name")));
            }
            let quoted = excerpt(gene);
            if let Some(prev) = seen.insert(normalise_id(gene), no) {
                return Err(err(format!("line {no}: gene '{quoted}' appears twice (first on line {prev}); keep one")));
            }
            match layout {
                Layout::Weight(c) => {
                    let cell = &fields[c];
                    let w: f64 = cell.parse().map_err(|_| {
                        err(format!("line {no} (gene '{quoted}'): weight '{}' in column '{}' is not a number", excerpt(cell), names[c]))
                    })?;
                    if !w.is_finite() {
                        return Err(err(format!(
                            "line {no} (gene '{quoted}'): weight '{}' in column '{}' is not a finite number; give a finite weight or remove the gene",
                            excerpt(cell),
                            names[c]
                        )));
                    }
                    weighted.push((gene.clone(), w));
                }
                Layout::Direction(c) => match fields[c].to_ascii_lowercase().as_str() {
                    "up" => up.push(gene.clone()),
                    "down" => down.push(gene.clone()),
                    other => {
                        return Err(err(format!(
                            "line {no} (gene '{quoted}'): direction '{}' in column '{}' is neither up nor down",
                            excerpt(other),
                            names[c]
                        )));
                    }
                },
                Layout::Set => up.push(gene.clone()),
            }
        }
        if seen.is_empty() {
            return Err(err(format!("the file has a header (line {first_no}) but no genes")));
        }
        Ok(match layout {
            Layout::Weight(_) => Signature::Weighted(weighted),
            Layout::Direction(_) | Layout::Set => Signature::Sets { up, down },
        })
    }
}

/// What a signature file's columns say: where the weights or directions are.
#[derive(Clone, Copy)]
enum Layout {
    Set,
    Direction(usize),
    Weight(usize),
}

impl Layout {
    /// Picks the weight or direction column from the column names (the first is the gene's).
    fn choose(names: &[String], has_header: bool, chosen: Option<&str>) -> Result<Layout> {
        let err = |msg: String| Err(Error::Signature(msg));
        let listing = || names[1..].iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        let find = |name: &str| (1..names.len()).find(|&c| has_header && names[c].eq_ignore_ascii_case(name));
        let direction = find("direction");
        let weight = match chosen {
            Some(name) => match find(name) {
                Some(c) if Some(c) == direction => return err(format!("column '{name}' holds directions (up/down), not weights")),
                Some(c) => Some(c),
                None if names.len() == 1 => return err(format!("no column '{name}': the file has only a gene column")),
                None => return err(format!("no column '{name}'; the value columns are {}", listing())),
            },
            None => find("weight"),
        };
        let values: Vec<usize> = (1..names.len()).filter(|&c| Some(c) != direction).collect();
        match (weight, direction) {
            (Some(w), Some(_)) => err(format!(
                "both a direction column and the weight column '{}'; give signed weights (> 0 up, < 0 down) without the direction column, or directions alone",
                names[w]
            )),
            (Some(w), None) => Ok(Layout::Weight(w)),
            (None, Some(d)) => Ok(Layout::Direction(d)),
            (None, None) => match values.as_slice() {
                [] => Ok(Layout::Set),
                [only] => Ok(Layout::Weight(*only)),
                _ if !has_header => err(format!("{} value columns and no header to name the weight column; add a header with a column named 'weight'", values.len())),
                _ => err(format!(
                    "{} value columns ({}) and none is named 'weight'; choose the weights with --signature-column NAME, or rename that column to 'weight'",
                    values.len(),
                    listing()
                )),
            },
        }
    }
}

/// A gene name or cell as messages quote it: at most 40 characters, so a huge cell stays short.

impl MatchedSignature {
    /// How far `lfc` (one predicted log fold change per model gene) moves the signature's genes
    /// against it: positive reverses the signature, negative pushes further along it.
    pub fn reversal(&self, lfc: &[f32]) -> f32 {
        let mean = |genes: &[usize]| if genes.is_empty() { 0.0 } else { genes.iter().map(|&g| lfc[g] as f64).sum::<f64>() / genes.len() as f64 };
        let score = match &self.scoring {
            Scoring::Sets { up, down } => mean(down) - mean(up),
            Scoring::Weighted { genes, total } => -genes.iter().map(|&(g, w)| w * lfc[g] as f64).sum::<f64>() / total,
        };
        score as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Gene;

    fn index() -> GeneIndex {
        let genes: Vec<Gene> = ["A", "B", "C", "D"].iter().map(|s| Gene { symbol: s.to_string(), ensembl: None }).collect();
        GeneIndex::new(&genes)
    }

    fn parse(text: &str) -> Result<Signature> {
        Signature::parse(text.as_bytes(), None)
    }

    #[test]
    fn a_gene_set_is_up_and_scores_minus_its_mean_change() {
        let sig = parse("gene\nA\nB\nC\n").unwrap();
        assert_eq!(sig, Signature::Sets { up: vec!["A".into(), "B".into(), "C".into()], down: vec![] });
        let m = sig.matched(&index()).unwrap();
        assert_eq!(m.reversal(&[1.0, 2.0, 3.0, 9.0]), -2.0);
        assert_eq!(m.reversal(&[-1.0, -2.0, -3.0, 9.0]), 2.0);
        // Without a header, the first line is a gene.
        assert_eq!(parse("A\nB\nC\n").unwrap().genes(), ["A", "B", "C"]);
    }

    #[test]
    fn an_up_down_set_scores_down_mean_minus_up_mean() {
        let sig = parse("gene\tdirection\nA\tup\nB\tUP\nC\tdown\n").unwrap();
        let m = sig.matched(&index()).unwrap();
        // down: C → 0.5; up: A, B → (1 + 3) / 2 = 2.
        assert_eq!(m.reversal(&[1.0, 3.0, 0.5, 0.0]), 0.5 - 2.0);
        let e = parse("gene,direction\nA,up\nB,sideways\n").unwrap_err().to_string();
        assert!(e.contains("line 3 (gene 'B')") && e.contains("'sideways'") && e.contains("neither up nor down"), "{e}");
    }

    #[test]
    fn weights_score_a_scale_free_weighted_mean() {
        // −(2·1 + (−1)·(−2) + 1·0.5) / (2 + 1 + 1) = −4.5 / 4.
        let sig = parse("gene\tweight\nA\t2\nB\t-1\nC\t1\n").unwrap();
        let lfc = [1.0, -2.0, 0.5, 7.0];
        assert_eq!(sig.matched(&index()).unwrap().reversal(&lfc), -1.125);
        let huge = parse("gene\tweight\nA\t2e300\nB\t-1e300\nC\t1e300\n").unwrap();
        assert_eq!(huge.matched(&index()).unwrap().reversal(&lfc), -1.125);
        let max = parse("gene\tweight\nA\t1e308\nB\t-1e308\nC\t1.7e308\n").unwrap();
        assert!(max.matched(&index()).unwrap().reversal(&lfc).is_finite());
        let zero = parse("gene\tweight\nA\t0\nB\t0\nC\t0\n").unwrap().matched(&index()).unwrap_err().to_string();
        assert!(zero.contains("every weight") && zero.contains("is 0"), "{zero}");
    }

    #[test]
    fn the_weight_column_is_named() {
        let sig = parse("gene,pval,weight\nA,0.01,-3\nB,0.02,1\nC,0.5,2\n").unwrap();
        assert_eq!(sig, Signature::Weighted(vec![("A".into(), -3.0), ("B".into(), 1.0), ("C".into(), 2.0)]));
        let e = parse("gene,pval,logfc\nA,0.01,-3\n").unwrap_err().to_string();
        assert!(e.contains("'pval', 'logfc'") && e.contains("--signature-column"), "{e}");
        let chosen = Signature::parse(b"gene,pval,logFC\nA,0.01,-3\nB,0.2,1\n", Some("logfc")).unwrap();
        assert_eq!(chosen, Signature::Weighted(vec![("A".into(), -3.0), ("B".into(), 1.0)]));
        let e = Signature::parse(b"gene,pval,logFC\nA,0.01,-3\n", Some("lfc")).unwrap_err().to_string();
        assert!(e.contains("no column 'lfc'") && e.contains("'pval', 'logFC'"), "{e}");
        // The only value column is the weight, header or not.
        assert_eq!(parse("gene\tscore\nA\t1\n").unwrap(), Signature::Weighted(vec![("A".into(), 1.0)]));
        assert_eq!(parse("A\t1\nB\t-1\n").unwrap(), Signature::Weighted(vec![("A".into(), 1.0), ("B".into(), -1.0)]));
        let e = parse("gene,direction,weight\nA,up,1\n").unwrap_err().to_string();
        assert!(e.contains("both a direction column and the weight column 'weight'"), "{e}");
    }

    #[test]
    fn bad_weights_and_genes_name_the_line_and_gene() {
        for cell in ["nan", "inf", "-inf", "1e400"] {
            let e = parse(&format!("gene\tweight\nA\t1\nB\t{cell}\n")).unwrap_err().to_string();
            assert!(e.contains("line 3 (gene 'B')") && e.contains("not a finite number") && e.contains("column 'weight'"), "{e}");
        }
        let e = parse("gene\tweight\nA\t1\nB\thigh\n").unwrap_err().to_string();
        assert!(e.contains("line 3 (gene 'B')") && e.contains("'high'") && e.contains("not a number"), "{e}");
        let e = parse("gene\tweight\nA\t1\na\t2\n").unwrap_err().to_string();
        assert!(e.contains("line 3: gene 'a' appears twice (first on line 2)"), "{e}");
        assert!(parse("").unwrap_err().to_string().contains("empty"));
        let weighted = Signature::Weighted(vec![("A".into(), 1.0), ("B".into(), f64::NAN), ("C".into(), 1.0)]);
        let e = weighted.matched(&index()).unwrap_err().to_string();
        assert!(e.contains("gene 'B'") && e.contains("finite"), "{e}");
    }

    #[test]
    fn unknown_genes_are_listed_and_too_few_known_is_an_error() {
        let m = parse("gene\nA\nX1\nB\nC\nX2\n").unwrap().matched(&index()).unwrap();
        assert_eq!(m.unknown, ["X1", "X2"]);
        let e = parse("gene\nA\nX1\nB\n").unwrap().matched(&index()).unwrap_err().to_string();
        assert!(e.contains("only 2 of the signature's 3 genes") && e.contains("'X1'") && e.contains("at least 3"), "{e}");
    }
}
