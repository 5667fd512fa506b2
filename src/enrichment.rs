//! Gene-set enrichment of predicted fold changes: which pathways and processes move.
//!
//! The gene sets ship in a small safetensors file beside the model
//! (`models/refcast-genesets.safetensors`, docs/FORMAT.md "Gene sets"), built by
//! `python -m training.genesets` from PROGENy's pathway footprints and GO biological process,
//! already mapped to the model's genes. A file is read only against the model whose gene list it
//! was built for (checked by the list's SHA-256).
//!
//! Scores are decoupler's univariate linear model (ULM): for each set, the fold changes of the
//! universe's genes are regressed on the set's weights (0 for genes outside the set) with an
//! intercept; the score is the slope's t-value (n − 2 degrees of freedom), its p-value two-sided
//! from Student's t, and the FDR Benjamini–Hochberg within each collection. The universe is the
//! genes the sample measured (or all the model's genes). Sums run over each set's members only,
//! so scoring every set costs one pass over the memberships.

use serde_json::Value;
use sha2::{Digest, Sha256};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::error::{Error, Result};
use crate::format::ModelConfig;

/// The gene-set file's name, beside the model file.
pub const GENE_SETS_FILE: &str = "refcast-genesets.safetensors";
/// Key of the gene-set document in the safetensors `__metadata__`.
pub const METADATA_KEY: &str = "refcast_genesets";
/// The gene-set file format this build reads.
pub const FORMAT_VERSION: u64 = 1;
/// Sets with fewer members in the universe are not scored (decoupler's `tmin`).
pub const MIN_SET_SIZE: usize = 5;
/// Leading genes listed per set.
pub const LEADING_GENES: usize = 10;
/// The collection of pathway footprints (PROGENy) and of GO biological process terms.
pub const PATHWAYS: &str = "progeny";
pub const GO_BP: &str = "go_bp";

fn err(msg: impl Into<String>) -> Error {
    Error::GeneSets(msg.into())
}

/// One gene set: its identifier (a pathway name, a GO id), readable name and collection.
#[derive(Clone, Debug)]
pub struct GeneSet {
    pub id: String,
    pub name: String,
    pub collection: String,
}

/// A collection of sets (PROGENy pathways, GO biological process) and how it was made.
#[derive(Clone, Debug)]
pub struct Collection {
    pub name: String,
    pub title: String,
    pub method: String,
}

/// Gene sets mapped to a model's genes: members as sorted gene indices with weights.
#[derive(Clone, Debug)]
pub struct GeneSets {
    genes: usize,
    sets: Vec<GeneSet>,
    collections: Vec<Collection>,
    offsets: Vec<usize>,
    indices: Vec<u32>,
    weights: Vec<f32>,
    /// The packages the sets were built from (name, version, archive SHA-256, licence).
    pub sources: serde_json::Value,
}

/// One set's score against a vector of fold changes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SetScore {
    /// Index of the set in [`GeneSets::sets`].
    pub set: usize,
    /// The ULM t-value: positive when the set's genes (by weight) go up.
    pub score: f64,
    /// Two-sided p-value of the t-value.
    pub p_value: f64,
    /// Benjamini–Hochberg FDR within the set's collection.
    pub fdr: f64,
    /// The set's members in the universe.
    pub size: usize,
}

/// `value[key]`, or an error naming the key and `what` holds it.
fn field<'a>(value: &'a Value, key: &str, what: &str) -> Result<&'a Value> {
    value.get(key).ok_or_else(|| err(format!("{what} has no '{key}'")))
}

/// `value[key]` as text.
fn text_field<'a>(value: &'a Value, key: &str, what: &str) -> Result<&'a str> {
    field(value, key, what)?.as_str().ok_or_else(|| err(format!("'{key}' of {what} is not text")))
}

/// A set's score with its leading genes (gene index, fold change).
#[derive(Clone, Debug, PartialEq)]
pub struct SetResult {
    pub score: SetScore,
    pub leading: Vec<(usize, f32)>,
}

/// Every scored set (those with at least [`MIN_SET_SIZE`] members in the universe), in set order.
#[derive(Clone, Debug, Default)]
pub struct Enrichment {
    pub scores: Vec<SetScore>,
}

/// What each field of a set's score means, one `(field, meaning)` per field, in the order of the
/// CLI's `--enrichment` columns: the legend every front end shows beside gene-set scores.
pub fn column_legend() -> Vec<(&'static str, String)> {
    let units = crate::request::FOLD_CHANGE_UNITS;
    vec![
        ("collection", format!("{PATHWAYS} = PROGENy pathway activity (footprint genes weighted by how they respond); {GO_BP} = GO biological process term (every member weighs 1)")),
        ("set", "the pathway's name or the GO term's id".to_string()),
        ("name", "the pathway or process in words".to_string()),
        ("score", format!("activity: decoupler's ULM t-value of the predicted {units} regressed on the set's weights, over the genes the sample measured; > 0 = the set's genes go up, < 0 = down; |t| grows with both the effect and the set's size")),
        ("p_value", "two-sided p-value of the t-value (Student's t)".to_string()),
        ("fdr", "Benjamini–Hochberg false discovery rate within the collection (≤ 0.05 is the usual cut-off)".to_string()),
        ("size", "the set's genes that the sample measured".to_string()),
        ("leading_genes", format!("the set's genes contributing most in the score's direction, with their predicted {units} (log2 = ln / ln 2)")),
    ]
}

/// SHA-256 of a gene list as the gene-set file records it: `symbol\tensembl\n` per gene.
pub fn genes_sha256(config: &ModelConfig) -> String {
    let mut h = Sha256::new();
    for g in &config.genes {
        h.update(format!("{}\t{}\n", g.symbol, g.ensembl.as_deref().unwrap_or("")).as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl GeneSets {
    /// Reads a gene-set file and checks it against `model`: the format version, the gene list it
    /// was built for, offsets, indices (in range, ascending within a set) and weights (finite).
    pub fn from_bytes(bytes: &[u8], model: &ModelConfig) -> Result<GeneSets> {
        // The model's own safetensors reader (src/format): one set of header checks and messages.
        let layout = crate::format::read_layout(bytes, "a safetensors file (is it refcast-genesets.safetensors?)").map_err(|e| match e {
            Error::Format(m) => err(m),
            other => other,
        })?;
        let text = layout
            .metadata
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("no '{METADATA_KEY}' entry in the safetensors __metadata__ (is this a refcast gene-set file?)")))?;
        let doc: Value = serde_json::from_str(text).map_err(|e| err(format!("the '{METADATA_KEY}' document: {e}")))?;
        let format_version = field(&doc, "format_version", "the document")?.as_u64();
        if format_version != Some(FORMAT_VERSION) {
            return Err(err(format!("format_version {} is not supported (this build reads {FORMAT_VERSION})", doc["format_version"])));
        }
        let built_for = field(&doc, "model", "the document")?;
        let (doc_genes, doc_sha) = (field(built_for, "genes", "model")?.as_u64().unwrap_or(u64::MAX), text_field(built_for, "genes_sha256", "model")?);
        let want = genes_sha256(model);
        if doc_genes != model.genes.len() as u64 || doc_sha != want {
            return Err(err(format!(
                "built for the {doc_genes} genes of model '{}' (gene list SHA-256 {}…), but this model '{}' has {} genes (SHA-256 {}…): \
                 rebuild it with `python -m training.genesets` for this model",
                built_for.get("name").and_then(Value::as_str).unwrap_or("?"),
                doc_sha.get(..12).unwrap_or(doc_sha),
                model.name,
                model.genes.len(),
                &want[..12]
            )));
        }
        let entries = |key: &str| field(&doc, key, "the document")?.as_array().ok_or_else(|| err(format!("'{key}' is not a list")));
        let collections = entries("collections")?
            .iter()
            .map(|c| Ok(Collection { name: text_field(c, "name", "a collection")?.into(), title: text_field(c, "title", "a collection")?.into(), method: text_field(c, "method", "a collection")?.into() }))
            .collect::<Result<Vec<_>>>()?;
        let sets = entries("sets")?
            .iter()
            .map(|s| Ok(GeneSet { id: text_field(s, "id", "a set")?.into(), name: text_field(s, "name", "a set")?.into(), collection: text_field(s, "collection", "a set")?.into() }))
            .collect::<Result<Vec<_>>>()?;
        let weighted_sets = field(&doc, "weighted_sets", "the document")?.as_u64().ok_or_else(|| err("'weighted_sets' is not a count"))? as usize;
        let tensor = |name: &str, dtype: safetensors::Dtype| -> Result<&[u8]> {
            let t = layout.tensors.iter().find(|t| t.name == name).ok_or_else(|| err(format!("no tensor '{name}'")))?;
            if t.dtype != dtype || t.shape.len() != 1 {
                return Err(err(format!("tensor '{name}' is {:?} {:?}; expected a vector of {dtype:?}", t.dtype, t.shape)));
            }
            Ok(t.data)
        };
        let offsets: Vec<usize> =
            tensor("offsets", safetensors::Dtype::U32)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4")) as usize).collect();
        let indices: Vec<u32> = tensor("indices", safetensors::Dtype::U16)?.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect();
        let stored: Vec<f32> = tensor("weights", safetensors::Dtype::F32)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect();
        let n = sets.len();
        if offsets.len() != n + 1 || offsets[0] != 0 || offsets[n] != indices.len() {
            return Err(err(format!(
                "'offsets' has {} entries from {:?} to {:?}; {n} sets and {} memberships need {} from 0 to {}",
                offsets.len(),
                offsets.first(),
                offsets.last(),
                indices.len(),
                n + 1,
                indices.len()
            )));
        }
        if weighted_sets > n || stored.len() != offsets[weighted_sets] {
            return Err(err(format!("'weights' has {} entries; the {} weighted sets have {} members", stored.len(), weighted_sets, offsets[weighted_sets.min(n)])));
        }
        // Duplicates by (collection, id): sorted by a hash of both, then sets of equal hash compared.
        let mut keys: Vec<(u64, usize)> = sets.iter().enumerate().map(|(i, s)| (fnv1a(&[&s.collection, &s.id]), i)).collect();
        keys.sort_unstable();
        for run in keys.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
            for (k, &(_, i)) in run.iter().enumerate() {
                if let Some(&(_, j)) = run[k + 1..].iter().find(|&&(_, j)| (&sets[i].collection, &sets[i].id) == (&sets[j].collection, &sets[j].id)) {
                    return Err(err(format!("set '{}' of '{}' appears twice (sets {i} and {j})", sets[i].id, sets[i].collection)));
                }
            }
        }
        for (s, set) in sets.iter().enumerate() {
            if !collections.iter().any(|c| c.name == set.collection) {
                return Err(err(format!("set '{}' is in collection '{}', which the file does not describe", set.id, set.collection)));
            }
            let (a, b) = (offsets[s], offsets[s + 1]);
            if a > b {
                return Err(err(format!("set '{}': offsets decrease ({a} then {b})", set.id)));
            }
            let members = &indices[a..b];
            if let Some(&g) = members.iter().find(|&&g| g as usize >= model.genes.len()) {
                return Err(err(format!("set '{}' names gene index {g}; the model has {} genes", set.id, model.genes.len())));
            }
            if members.windows(2).any(|w| w[0] >= w[1]) {
                return Err(err(format!("set '{}': gene indices are not strictly ascending", set.id)));
            }
        }
        if let Some((i, w)) = stored.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(err(format!("weight {i} is {w}; weights must be finite")));
        }
        let mut weights = stored;
        weights.resize(indices.len(), 1.0);
        let sources = doc.get("sources").cloned().unwrap_or(Value::Null);
        Ok(GeneSets { genes: model.genes.len(), sets, collections, offsets, indices, weights, sources })
    }

    pub fn sets(&self) -> &[GeneSet] {
        &self.sets
    }

    pub fn collections(&self) -> &[Collection] {
        &self.collections
    }

    /// A set's member genes (model indices, ascending) and their weights.
    pub fn members(&self, set: usize) -> (&[u32], &[f32]) {
        let r = self.offsets[set]..self.offsets[set + 1];
        (&self.indices[r.clone()], &self.weights[r])
    }

    /// A set by `pathway:NAME`, `go:GO:0000000`, `COLLECTION:ID` or a bare id (names of
    /// pathways and GO ids ignore case).
    pub fn find(&self, key: &str) -> Result<usize> {
        let (collection, id) = match key.split_once(':') {
            Some(("pathway" | "progeny", id)) => (Some(PATHWAYS), id),
            Some(("go" | "go_bp", id)) => (Some(GO_BP), id),
            Some((c, id)) if self.collections.iter().any(|x| x.name == c) => (Some(c), id),
            _ => (None, key),
        };
        let id = id.trim();
        let go_id = if collection == Some(GO_BP) && !id.to_ascii_uppercase().starts_with("GO:") { format!("GO:{id}") } else { id.to_string() };
        let hit = self.sets.iter().position(|s| collection.is_none_or(|c| s.collection == c) && (s.id.eq_ignore_ascii_case(&go_id)));
        hit.ok_or_else(|| {
            let pathways: Vec<&str> = self.sets.iter().filter(|s| s.collection == PATHWAYS).map(|s| s.id.as_str()).collect();
            Error::request(format!(
                "no gene set '{key}'; give pathway:NAME ({}) or go:GO:NNNNNNN (a GO biological process term of the gene-set file)",
                pathways.join(", ")
            ))
        })
    }

    /// Centred fold changes over the universe (0 outside it), their sum of squares and the
    /// universe's size.
    fn centred(&self, values: &[f32], universe: Option<&[bool]>) -> Result<(Vec<f64>, f64, usize)> {
        if values.len() != self.genes {
            return Err(Error::Request(format!("{} fold changes for a model of {} genes", values.len(), self.genes)));
        }
        if let Some(u) = universe.filter(|u| u.len() != self.genes) {
            return Err(Error::Request(format!("a universe of {} flags for a model of {} genes", u.len(), self.genes)));
        }
        let inside = |g: usize| universe.is_none_or(|u| u[g]);
        let mut n = 0usize;
        let mut sum = 0.0f64;
        for (g, &v) in values.iter().enumerate().filter(|&(g, _)| inside(g)) {
            if !v.is_finite() {
                return Err(Error::Request(format!("the fold change of gene {g} is {v}; enrichment needs finite values")));
            }
            n += 1;
            sum += v as f64;
        }
        if n < 3 {
            return Err(Error::Request(format!("{n} genes in the universe; enrichment needs at least 3")));
        }
        let mean = sum / n as f64;
        let y: Vec<f64> = values.iter().enumerate().map(|(g, &v)| if inside(g) { v as f64 - mean } else { 0.0 }).collect();
        let syy = y.iter().map(|v| v * v).sum();
        Ok((y, syy, n))
    }

    /// The ULM t-value of one set and its size in the universe (`None` below [`MIN_SET_SIZE`]).
    fn ulm(&self, set: usize, y: &[f64], syy: f64, n: usize, universe: Option<&[bool]>) -> Option<(f64, usize)> {
        let (idx, w) = self.members(set);
        let (mut size, mut sx, mut sxx, mut sxy) = (0usize, 0.0f64, 0.0f64, 0.0f64);
        for (&g, &w) in idx.iter().zip(w) {
            if universe.is_some_and(|u| !u[g as usize]) {
                continue;
            }
            let w = w as f64;
            size += 1;
            sx += w;
            sxx += w * w;
            sxy += w * y[g as usize];
        }
        if size < MIN_SET_SIZE {
            return None;
        }
        let sxx_c = sxx - sx * sx / n as f64;
        if sxx_c <= 0.0 || syy <= 0.0 {
            return Some((0.0, size));
        }
        let r = (sxy / (sxx_c * syy).sqrt()).clamp(-1.0, 1.0);
        let df = (n - 2) as f64;
        // decoupler's guard against r = ±1 (machine epsilon in both factors), kept for parity.
        const EPS: f64 = 2.2e-16;
        Some((r * (df / ((1.0 - r + EPS) * (1.0 + r + EPS))).sqrt(), size))
    }

    /// Scores every set against `values` (one fold change per model gene) over `universe` (the
    /// genes the sample measured; `None` for every gene).
    pub fn score(&self, values: &[f32], universe: Option<&[bool]>) -> Result<Enrichment> {
        self.score_sets(values, universe, 0..self.sets.len())
    }

    /// Scores the sets of `which` only (FDR over those of each collection).
    pub fn score_sets(&self, values: &[f32], universe: Option<&[bool]>, which: impl IntoIterator<Item = usize>) -> Result<Enrichment> {
        let (y, syy, n) = self.centred(values, universe)?;
        let t_dist = StudentsT::new(0.0, 1.0, (n - 2) as f64).map_err(|e| Error::Request(format!("Student t with {} degrees of freedom: {e}", n - 2)))?;
        let mut which: Vec<usize> = which.into_iter().collect();
        which.sort_unstable();
        let mut scores: Vec<SetScore> = which
            .into_iter()
            .filter_map(|s| {
                let (t, size) = self.ulm(s, &y, syy, n, universe)?;
                let p = (2.0 * t_dist.sf(t.abs())).min(1.0);
                Some(SetScore { set: s, score: t, p_value: p, fdr: 1.0, size })
            })
            .collect();
        for c in &self.collections {
            let mut members: Vec<usize> = (0..scores.len()).filter(|&i| self.sets[scores[i].set].collection == c.name).collect();
            let p: Vec<f64> = members.iter().map(|&i| scores[i].p_value).collect();
            for (i, q) in members.drain(..).zip(benjamini_hochberg(&p)) {
                scores[i].fdr = q;
            }
        }
        Ok(Enrichment { scores })
    }

    /// One set's ULM score against `values` over `universe` (`None` when the set has fewer than
    /// [`MIN_SET_SIZE`] members there): what a screen ranks by.
    pub fn score_one(&self, set: usize, values: &[f32], universe: Option<&[bool]>) -> Result<Option<f64>> {
        let (y, syy, n) = self.centred(values, universe)?;
        Ok(self.ulm(set, &y, syy, n, universe).map(|(t, _)| t))
    }

    /// The set's genes that contribute most in the direction of `score`: the largest
    /// weight × (fold change − the universe's mean) of that sign, at most `k`, as (gene index,
    /// fold change).
    pub fn leading(&self, set: usize, score: f64, values: &[f32], universe: Option<&[bool]>, k: usize) -> Vec<(usize, f32)> {
        self.leading_around(set, score, values, universe, k, universe_mean(values, universe))
    }

    fn leading_around(&self, set: usize, score: f64, values: &[f32], universe: Option<&[bool]>, k: usize, mean: f64) -> Vec<(usize, f32)> {
        let sign = if score < 0.0 { -1.0 } else { 1.0 };
        let (idx, w) = self.members(set);
        // (largest contribution first, then gene order)
        let mut c: Vec<(u64, usize)> = idx
            .iter()
            .zip(w)
            .filter(|(g, _)| universe.is_none_or(|u| u[**g as usize]))
            .map(|(&g, &w)| (sign * w as f64 * (values[g as usize] as f64 - mean), g as usize))
            .filter(|(c, _)| *c > 0.0)
            .map(|(c, g)| (descending(c), g))
            .collect();
        if c.len() > k && k > 0 {
            c.select_nth_unstable(k - 1);
            c.truncate(k);
        }
        c.sort_unstable();
        c.into_iter().take(k).map(|(_, g)| (g, values[g])).collect()
    }

    /// `scores` with their [`LEADING_GENES`] leading genes each.
    pub fn results(&self, scores: &[SetScore], values: &[f32], universe: Option<&[bool]>) -> Vec<SetResult> {
        let mean = universe_mean(values, universe);
        scores
            .iter()
            .map(|&score| SetResult { leading: self.leading_around(score.set, score.score, values, universe, LEADING_GENES, mean), score })
            .collect()
    }
}

/// A key whose ascending order is `x`'s descending order (as `f64::total_cmp`). Every ranking
/// here sorts `(key, index)` pairs, so the wasm module carries one sort, not one per comparator.
fn descending(x: f64) -> u64 {
    let b = x.to_bits();
    !(if b >> 63 == 1 { !b } else { b | 1 << 63 })
}

/// FNV-1a of strings (each followed by a 0 byte): a hash for spotting duplicate names.
fn fnv1a(parts: &[&str]) -> u64 {
    parts.iter().flat_map(|p| p.bytes().chain([0])).fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The mean of `values` over `universe` (every value without one).
fn universe_mean(values: &[f32], universe: Option<&[bool]>) -> f64 {
    let (n, sum) = values.iter().enumerate().filter(|&(g, _)| universe.is_none_or(|u| u[g])).fold((0usize, 0.0f64), |(n, s), (_, &v)| (n + 1, s + v as f64));
    sum / n.max(1) as f64
}

impl Enrichment {
    /// The scored sets of `collection`, highest score first (ties by set order).
    pub fn ranked(&self, sets: &GeneSets, collection: &str) -> Vec<SetScore> {
        // (highest score first, then set order: `scores` is in set order)
        let mut order: Vec<(u64, usize)> =
            self.scores.iter().enumerate().filter(|(_, s)| sets.sets[s.set].collection == collection).map(|(i, s)| (descending(s.score), i)).collect();
        order.sort_unstable();
        order.into_iter().map(|(_, i)| self.scores[i]).collect()
    }

    /// The score of set `set`, when it was scored.
    pub fn get(&self, set: usize) -> Option<&SetScore> {
        self.scores.binary_search_by_key(&set, |s| s.set).ok().map(|i| &self.scores[i])
    }
}

/// Benjamini–Hochberg adjusted p-values, in the order given.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    // (largest p first; ties in any order give the same values)
    let mut order: Vec<(u64, usize)> = p.iter().enumerate().map(|(i, &p)| (descending(p), i)).collect();
    order.sort_unstable();
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (k, &(_, i)) in order.iter().enumerate() {
        let rank = (m - k) as f64;
        running = running.min(p[i] * m as f64 / rank);
        q[i] = running.min(1.0);
    }
    q
}
