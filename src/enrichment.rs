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

use std::collections::HashMap;

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
#[derive(Clone, Debug, serde::Deserialize)]
pub struct GeneSet {
    pub id: String,
    pub name: String,
    pub collection: String,
}

/// A collection of sets (PROGENy pathways, GO biological process) and how it was made.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Collection {
    pub name: String,
    pub title: String,
    pub method: String,
}

#[derive(serde::Deserialize)]
struct Doc {
    format_version: u64,
    model: DocModel,
    collections: Vec<Collection>,
    sets: Vec<GeneSet>,
    weighted_sets: usize,
    sources: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct DocModel {
    name: String,
    genes: usize,
    genes_sha256: String,
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
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let text = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| err(format!("no '{METADATA_KEY}' entry in the safetensors __metadata__ (is this a refcast gene-set file?)")))?;
        let doc: Doc = serde_json::from_str(text).map_err(|e| err(format!("the '{METADATA_KEY}' document: {e}")))?;
        if doc.format_version != FORMAT_VERSION {
            return Err(err(format!("format_version {} is not supported (this build reads {FORMAT_VERSION})", doc.format_version)));
        }
        let want = genes_sha256(model);
        if doc.model.genes != model.genes.len() || doc.model.genes_sha256 != want {
            return Err(err(format!(
                "built for the {} genes of model '{}' (gene list SHA-256 {}…), but this model '{}' has {} genes (SHA-256 {}…): \
                 rebuild it with `python -m training.genesets` for this model",
                doc.model.genes,
                doc.model.name,
                doc.model.genes_sha256.get(..12).unwrap_or(&doc.model.genes_sha256),
                model.name,
                model.genes.len(),
                &want[..12]
            )));
        }
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let tensor = |name: &str, dtype: safetensors::Dtype| -> Result<Vec<u8>> {
            let t = st.tensor(name).map_err(|_| err(format!("no tensor '{name}'")))?;
            if t.dtype() != dtype || t.shape().len() != 1 {
                return Err(err(format!("tensor '{name}' is {:?} {:?}; expected a vector of {dtype:?}", t.dtype(), t.shape())));
            }
            Ok(t.data().to_vec())
        };
        let offsets: Vec<usize> =
            tensor("offsets", safetensors::Dtype::U32)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4")) as usize).collect();
        let indices: Vec<u32> = tensor("indices", safetensors::Dtype::U16)?.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect();
        let stored: Vec<f32> = tensor("weights", safetensors::Dtype::F32)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect();
        let n = doc.sets.len();
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
        if doc.weighted_sets > n || stored.len() != offsets[doc.weighted_sets] {
            return Err(err(format!("'weights' has {} entries; the {} weighted sets have {} members", stored.len(), doc.weighted_sets, offsets[doc.weighted_sets.min(n)])));
        }
        let mut seen = HashMap::new();
        for (s, set) in doc.sets.iter().enumerate() {
            if !doc.collections.iter().any(|c| c.name == set.collection) {
                return Err(err(format!("set '{}' is in collection '{}', which the file does not describe", set.id, set.collection)));
            }
            if let Some(first) = seen.insert((set.collection.as_str(), set.id.as_str()), s) {
                return Err(err(format!("set '{}' of '{}' appears twice (sets {first} and {s})", set.id, set.collection)));
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
        Ok(GeneSets { genes: model.genes.len(), sets: doc.sets, collections: doc.collections, offsets, indices, weights, sources: doc.sources })
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
        let mut scores: Vec<SetScore> = which
            .into_iter()
            .filter_map(|s| {
                let (t, size) = self.ulm(s, &y, syy, n, universe)?;
                let p = (2.0 * t_dist.sf(t.abs())).min(1.0);
                Some(SetScore { set: s, score: t, p_value: p, fdr: 1.0, size })
            })
            .collect();
        scores.sort_by_key(|s| s.set);
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
        let mut c: Vec<(f64, usize)> = idx
            .iter()
            .zip(w)
            .filter(|(g, _)| universe.is_none_or(|u| u[**g as usize]))
            .map(|(&g, &w)| (sign * w as f64 * (values[g as usize] as f64 - mean), g as usize))
            .filter(|(c, _)| *c > 0.0)
            .collect();
        let order = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if c.len() > k && k > 0 {
            c.select_nth_unstable_by(k - 1, order);
            c.truncate(k);
        }
        c.sort_by(order);
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

/// The mean of `values` over `universe` (every value without one).
fn universe_mean(values: &[f32], universe: Option<&[bool]>) -> f64 {
    let (n, sum) = values.iter().enumerate().filter(|&(g, _)| universe.is_none_or(|u| u[g])).fold((0usize, 0.0f64), |(n, s), (_, &v)| (n + 1, s + v as f64));
    sum / n.max(1) as f64
}

impl Enrichment {
    /// The scored sets of `collection`, highest score first (ties by set order).
    pub fn ranked(&self, sets: &GeneSets, collection: &str) -> Vec<SetScore> {
        let mut v: Vec<SetScore> = self.scores.iter().filter(|s| sets.sets[s.set].collection == collection).copied().collect();
        v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.set.cmp(&b.set)));
        v
    }

    /// The score of set `set`, when it was scored.
    pub fn get(&self, set: usize) -> Option<&SetScore> {
        self.scores.binary_search_by_key(&set, |s| s.set).ok().map(|i| &self.scores[i])
    }
}

/// Benjamini–Hochberg adjusted p-values, in the order given.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (k, &i) in order.iter().enumerate() {
        let rank = (m - k) as f64;
        running = running.min(p[i] * m as f64 / rank);
        q[i] = running.min(1.0);
    }
    q
}
