//! Screens: one reference against many perturbations, ranked. The ranking (effect size or
//! reversal of a signature), the baseline a screen's fold changes are measured against and the
//! chunking that bounds its memory are decided here, once, for every front end.
//!
//! A screen runs a chunk of perturbations at a time ([`Session::advance_screen`]), so that a
//! front end can report progress and, in a browser, return to the event loop between chunks;
//! [`Session::screen`] runs it to the end.

use std::sync::Arc;

use crate::backend::Backend;
use crate::coverage::Coverage;
use crate::enrichment::{GeneSets, MIN_SET_SIZE, PATHWAYS, SetResult};
use crate::error::{Error, Result};
use crate::familiarity::Familiarity;
use crate::format::{Group, Metadata, Named};
use crate::request::{Baseline, Prediction, PredictionMode, Request, top_changes};
use crate::sample::Reference;
use crate::session::Session;
use crate::signature::{MatchedSignature, Signature};

/// Predicted values (perturbations × genes) per chunk of a screen: each of a chunk's output
/// arrays holds at most this many f32 (16 MiB), whatever the number of perturbations screened.
const SCREEN_CHUNK_VALUES: usize = 4 << 20;

/// Genes listed per direction for each perturbation of a screen.
pub const TOP_GENES: usize = 10;

/// How to run a screen; `ScreenOptions::default()` is the ranking by effect size of every known
/// perturbation, counterfactual profiles, conditioned on the technical and biological latents.
#[derive(Clone, Debug, Default)]
pub struct ScreenOptions {
    /// The perturbations to rank; `None` for every one the model knows.
    pub perturbations: Option<Vec<Named>>,
    /// Rank by reversal of this signature instead of by effect size.
    pub signature: Option<Signature>,
    pub mode: PredictionMode,
    /// What fold changes are measured against; `None` for [`Baseline::default_for`].
    pub baseline: Option<Baseline>,
    /// Groups taken from the reference's encoding; `None` for technical and biological.
    pub condition_on: Option<Vec<Group>>,
    /// Gene-set scores of each perturbation, and ranking by one set's activity.
    pub enrichment: Option<ScreenEnrichment>,
}

/// GO terms kept per perturbation of a screen that scores every set (those with the largest
/// |score|), beside every pathway.
pub const SCREEN_GO_TERMS: usize = 20;

/// Gene-set scores in a screen (see [`crate::enrichment`]), over the genes the sample measured.
#[derive(Clone, Debug)]
pub struct ScreenEnrichment {
    pub gene_sets: Arc<GeneSets>,
    /// Rank the perturbations by this set's score (highest first: the strongest activation)
    /// instead of by effect size or reversal.
    pub rank_by: Option<usize>,
    /// Score every set (else the pathways only) and keep, per perturbation, every pathway and
    /// the [`SCREEN_GO_TERMS`] other sets with the largest |score|.
    pub all_sets: bool,
}

/// One perturbation's place in a screen.
#[derive(Clone, Debug)]
pub struct ScreenHit {
    pub name: String,
    pub metadata: Metadata,
    /// Root mean square of the predicted log fold change (natural log,
    /// [`FOLD_CHANGE_UNITS`](crate::request::FOLD_CHANGE_UNITS)) over the measured genes.
    pub effect_size: f32,
    /// How far the predicted log fold change moves the signature's genes against it
    /// ([`Signature`]): positive reverses the signature.
    pub reversal: Option<f32>,
    /// Genes with the largest predicted increase and decrease (gene index, log fold change).
    pub top_up: Vec<(usize, f32)>,
    pub top_down: Vec<(usize, f32)>,
    /// With [`ScreenOptions::enrichment`]: the pathways' scores, then the kept GO terms' (with
    /// their leading genes).
    pub enrichment: Vec<SetResult>,
    /// With a rank-by set: that set's score (ULM t-value), which the ranking then sorts by.
    pub activity: Option<f32>,
    /// Whether the model saw this perturbation, at this time and dose, in a context like the
    /// sample's.
    pub coverage: Coverage,
}

impl ScreenHit {
    /// What the ranking sorts by (descending): the rank-by set's activity when the screen has
    /// one, else the reversal of the signature when it has one, else the effect size.
    pub fn score(&self) -> f32 {
        self.activity.or(self.reversal).unwrap_or(self.effect_size)
    }
}

/// The columns of a screen's table, in every front end's order, after `rank` and `perturbation`.
pub const SCREEN_COLUMNS: [&str; 4] = ["effect_size", "reversal", "top_up", "top_down"];

/// What each column of a screen's table means, one `(column, meaning)` per column, for the
/// legend every front end prints beside the table. `ranked_by_reversal`: the screen had a
/// signature; `top_genes`: how many genes the front end lists per direction.
pub fn column_legend(ranked_by_reversal: bool, top_genes: usize) -> Vec<(&'static str, String)> {
    let units = crate::request::FOLD_CHANGE_UNITS;
    let (rank, reversal) = if ranked_by_reversal {
        ("1 = reverses the signature most (ranked by reversal)", "the ranking: how far the predicted change moves the signature's genes against it (mean over the down genes − mean over the up genes, or −Σ w·LFC / Σ |w|); > 0 reverses it")
    } else {
        ("1 = largest predicted effect (ranked by effect_size)", "how far the predicted change reverses a signature; '-' without --signature")
    };
    vec![
        ("rank", rank.to_string()),
        ("perturbation", "a perturbation the model knows (see `refcast info`)".to_string()),
        ("effect_size", format!("root mean square of the predicted {units} over the sample's measured genes; 0 = no change")),
        ("reversal", reversal.to_string()),
        ("top_up", format!("the {top_genes} genes with the largest predicted increase, as gene:{units}")),
        ("top_down", format!("the {top_genes} genes with the largest predicted decrease, as gene:{units}")),
    ]
}

/// The column a screen ranked by a gene set's activity adds after the others, and its meaning.
pub fn activity_legend() -> (&'static str, String) {
    ("activity", "the ranking: the rank-by gene set's ULM t-value over the predicted change (> 0 activates it; see --enrichment)".to_string())
}

/// The columns a screen adds after the others for a model that records where its perturbations
/// were measured ([`Coverage`]), and their meanings.
pub fn coverage_legend() -> [(&'static str, &'static str); 3] {
    [
        ("measured", "whether the model saw this perturbation, at this time and dose, in training: 'nearby' = in a context like this sample's; 'elsewhere' = only in other contexts (an extrapolation here); 'never' = not at this time and dose"),
        ("measured_context", "the training context nearest the sample among those that hold this perturbation"),
        ("measured_distance", "that context's distance from the sample (encoder latent space; 'nearby' is within the model's familiarity threshold)"),
    ]
}

/// The legend of a screen's table as it was ranked: [`column_legend`], and when ranked by a gene
/// set's activity, the rank's meaning said so and the [`activity_legend`] column added.
pub fn ranked_legend(ranked_by_reversal: bool, ranked_by_set: bool, coverage: bool, top_genes: usize) -> Vec<(&'static str, String)> {
    let mut legend = column_legend(ranked_by_reversal, top_genes);
    if ranked_by_set {
        legend[0].1 = "1 = activates the rank-by gene set most (ranked by activity)".to_string();
        legend.push(activity_legend());
    }
    if coverage {
        legend.extend(coverage_legend().into_iter().map(|(c, m)| (c, m.to_string())));
    }
    legend
}

/// A screen's ranking, and the familiarity of its reference.
#[derive(Clone, Debug)]
pub struct Screen {
    /// Every perturbation screened, best [`ScreenHit::score`] first.
    pub hits: Vec<ScreenHit>,
    /// One entry (the reference's), or none for a model without a control perturbation.
    pub familiarity: Vec<Familiarity>,
    /// The signature's genes the model does not know, left out of the reversal scores.
    pub signature_unknown: Vec<String>,
    /// How the profiles were formed and what their fold changes are against.
    pub mode: PredictionMode,
    pub baseline: Baseline,
}

/// A screen under way: the perturbations left, and the hits so far (see
/// [`Session::begin_screen`]).
pub struct ScreenRun {
    reference: Reference,
    context: Metadata,
    list: Vec<Named>,
    /// Whether `list` is the model's own list: each hit's coverage is then read from its entry
    /// ([`Coverage::of_entry`]); a list given in the options may hold other metadata, searched for.
    entries: bool,
    signature: Option<MatchedSignature>,
    mode: PredictionMode,
    baseline: Baseline,
    condition_on: Option<Vec<Group>>,
    enrichment: Option<ScreenEnrichment>,
    measured_genes: Vec<usize>,
    chunk: usize,
    done: usize,
    hits: Vec<ScreenHit>,
    familiarity: Option<Vec<Familiarity>>,
}

impl ScreenRun {
    /// Perturbations ranked so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Perturbations in the screen.
    pub fn total(&self) -> usize {
        self.list.len()
    }

    pub fn is_finished(&self) -> bool {
        self.done == self.list.len()
    }

    /// The ranking, best [`ScreenHit::score`] first (ties keep the order screened).
    pub fn finish(mut self) -> Screen {
        crate::sort::sort_by(&mut self.hits, |a, b| b.score().total_cmp(&a.score()));
        Screen {
            hits: self.hits,
            familiarity: self.familiarity.unwrap_or_default(),
            signature_unknown: self.signature.map(|s| s.unknown).unwrap_or_default(),
            mode: self.mode,
            baseline: self.baseline,
        }
    }

    fn hit(&self, config: &crate::ModelConfig, named: &Named, lfc: &[f32]) -> Result<ScreenHit> {
        let measured = &self.reference.measured;
        let squares: f32 = lfc.iter().zip(measured).filter(|(_, m)| **m).map(|(v, _)| v * v).sum();
        let effect_size = (squares / self.measured_genes.len().max(1) as f32).sqrt();
        let reversal = self.signature.as_ref().map(|s| s.reversal(lfc));
        let (top_up, top_down) = top_changes(lfc, &self.measured_genes, TOP_GENES);
        let (mut enrichment, mut activity) = (Vec::new(), None);
        if let Some(e) = &self.enrichment {
            let sets = &e.gene_sets;
            let universe = Some(measured.as_slice());
            if let Some(s) = e.rank_by {
                activity = sets.score_one(s, lfc, universe)?;
            }
            let scored = if e.all_sets {
                sets.score(lfc, universe)?
            } else {
                sets.score_sets(lfc, universe, (0..sets.sets().len()).filter(|&s| sets.sets()[s].collection == PATHWAYS))?
            };
            let (mut pathways, mut others): (Vec<_>, Vec<_>) = scored.scores.into_iter().partition(|s| sets.sets()[s.set].collection == PATHWAYS);
            crate::sort::sort_by(&mut others, |a, b| b.score.abs().total_cmp(&a.score.abs()).then(a.set.cmp(&b.set)));
            others.truncate(SCREEN_GO_TERMS);
            pathways.extend(others);
            enrichment = sets.results(&pathways, lfc, universe);
        }
        Ok(ScreenHit {
            name: named.name.clone(),
            metadata: named.metadata.clone(),
            activity: activity.map(|t| t as f32),
            effect_size,
            reversal,
            top_up,
            top_down,
            enrichment,
            coverage: self.coverage(config, named),
        })
    }

    /// Whether the model saw `named` in a context like the reference's.
    fn coverage(&self, config: &crate::ModelConfig, named: &Named) -> Coverage {
        let familiarity = self.familiarity.as_ref().and_then(|f| f.first());
        if self.entries { Coverage::of_entry(config, familiarity, named) } else { Coverage::assess(config, familiarity, &named.metadata) }
    }
}

impl<B: Backend> Session<B> {
    /// Runs one reference against every perturbation the model knows (or those `options` lists)
    /// and ranks them: by effect size, or by how well each reverses the signature.
    pub async fn screen(&mut self, reference: &Reference, context: &Metadata, options: &ScreenOptions) -> Result<Screen> {
        let mut run = self.begin_screen(reference, context, options)?;
        while !run.is_finished() {
            self.advance_screen(&mut run).await?;
        }
        Ok(run.finish())
    }

    /// A screen to run a chunk at a time with [`Session::advance_screen`]; its inputs are checked
    /// here, before any work.
    pub fn begin_screen(&self, reference: &Reference, context: &Metadata, options: &ScreenOptions) -> Result<ScreenRun> {
        let cfg = self.config();
        let entries = options.perturbations.is_none();
        let list = options.perturbations.clone().unwrap_or_else(|| cfg.perturbations.clone());
        if list.is_empty() {
            return Err(Error::request("the model lists no perturbations to screen"));
        }
        let signature = options.signature.as_ref().map(|s| s.matched(self.genes())).transpose()?;
        let baseline = options.baseline.unwrap_or_else(|| Baseline::default_for(options.mode, cfg.control().is_some()));
        let genes = cfg.architecture.genes.max(1);
        if let Some(e) = &options.enrichment {
            if let Some(s) = e.rank_by {
                let set = e.gene_sets.sets().get(s).ok_or_else(|| Error::request(format!("rank by gene set {s}: there are {}", e.gene_sets.sets().len())))?;
                let measured = e.gene_sets.members(s).0.iter().filter(|&&g| reference.measured[g as usize]).count();
                if measured < MIN_SET_SIZE {
                    return Err(Error::request(format!(
                        "cannot rank by '{}' ({}): the sample measured {measured} of its {} genes; at least {MIN_SET_SIZE} are needed",
                        set.id,
                        set.name,
                        e.gene_sets.members(s).0.len()
                    )));
                }
            }
        }
        Ok(ScreenRun {
            reference: reference.clone(),
            context: context.clone(),
            signature,
            mode: options.mode,
            baseline,
            condition_on: options.condition_on.clone(),
            enrichment: options.enrichment.clone(),
            measured_genes: reference.measured_genes(),
            chunk: (SCREEN_CHUNK_VALUES / genes).clamp(1, list.len()),
            list,
            entries,
            done: 0,
            hits: Vec::new(),
            familiarity: None,
        })
    }

    /// Predicts and ranks the next chunk of `run`'s perturbations.
    pub async fn advance_screen(&mut self, run: &mut ScreenRun) -> Result<()> {
        let chunk = &run.list[run.done..(run.done + run.chunk).min(run.list.len())];
        let mut req = Request::conditioned(vec![run.reference.clone()], chunk.iter().map(|n| n.metadata.clone()).collect());
        req.contexts = vec![run.context.clone()];
        req.baseline = run.baseline;
        req.mode = run.mode;
        if let Some(groups) = &run.condition_on {
            req.condition_on = groups.clone();
        }
        let pred = self.predict(&req).await?;
        let lfc = pred.log_fold_change.as_deref().expect("screens have a reference");
        run.familiarity.get_or_insert(pred.familiarity.clone());
        let cfg = self.config();
        let hits: Vec<ScreenHit> = chunk.iter().enumerate().map(|(p, named)| run.hit(cfg, named, Prediction::row(lfc, pred.genes, p))).collect::<Result<_>>()?;
        run.done += hits.len();
        run.hits.extend(hits);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::DType;
    use crate::sample::{SampleTable, ValueKind};
    use crate::synthetic::{SyntheticSpec, random_model};

    fn reference(session: &Session<crate::CpuBackend>) -> Reference {
        let mut text = String::from("gene\tcount\n");
        for g in 0..150 {
            text += &format!("GENE{g}\t{}\n", (g * 7919) % 97);
        }
        session.reference(&SampleTable::parse(text.as_bytes(), ValueKind::Auto).unwrap(), 0).unwrap()
    }

    /// A screen run a few perturbations at a time ranks exactly as one run in a single chunk,
    /// reports its progress, and measures decoded profiles against the predicted control.
    #[test]
    fn a_screen_in_chunks_ranks_as_one_in_a_single_chunk() {
        let mut session = Session::cpu(&random_model(SyntheticSpec::tiny(DType::Q8_0))).unwrap();
        let reference = reference(&session);
        let context = Metadata::new();
        for mode in PredictionMode::ALL {
            let options = ScreenOptions { mode, ..Default::default() };
            let whole = pollster::block_on(session.screen(&reference, &context, &options)).unwrap();
            let mut run = session.begin_screen(&reference, &context, &options).unwrap();
            assert_eq!(run.chunk, run.total(), "a tiny model's screen is one chunk");
            run.chunk = 2;
            let mut seen = Vec::new();
            while !run.is_finished() {
                pollster::block_on(session.advance_screen(&mut run)).unwrap();
                seen.push(run.done());
            }
            let total = session.config().perturbations.len();
            assert_eq!(seen, (1..=total.div_ceil(2)).map(|c| (2 * c).min(total)).collect::<Vec<_>>());
            let chunked = run.finish();
            // The CPU kernels may take other paths for other batch sizes: the same numbers to
            // float rounding (1e-5 relative, f32 dot products of 64-256 terms).
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs()));
            assert_eq!(chunked.hits.iter().map(|h| &h.name).collect::<Vec<_>>(), whole.hits.iter().map(|h| &h.name).collect::<Vec<_>>(), "{mode}");
            for (c, w) in chunked.hits.iter().zip(&whole.hits) {
                assert!(close(c.score(), w.score()), "{mode} {}: {} vs {}", c.name, c.score(), w.score());
                for (a, b) in c.top_up.iter().chain(&c.top_down).zip(w.top_up.iter().chain(&w.top_down)) {
                    assert!(a.0 == b.0 && close(a.1, b.1), "{mode} {}: top genes {a:?} vs {b:?}", c.name);
                }
            }
            let (c, w) = (&chunked.familiarity[0], &whole.familiarity[0]);
            assert!(close(c.reconstruction_r2, w.reconstruction_r2) && c.outside == w.outside, "{c:?} vs {w:?}");
            let want = if mode == PredictionMode::Decoded { Baseline::Control } else { Baseline::Reference };
            assert_eq!((whole.mode, whole.baseline), (mode, want));
        }
    }

    /// A screen of every entry reads each one's coverage from its record; a listed screen
    /// searches for it: the same coverage.
    #[test]
    fn a_screen_of_every_entry_gives_each_the_coverage_a_listed_screen_finds() {
        let mut model = crate::synthetic::random_model_v2(SyntheticSpec::tiny(DType::Q8_0));
        for (k, p) in model.config.perturbations.iter_mut().enumerate() {
            p.measured_in = Some(if k == 1 { vec![] } else { vec![0] });
        }
        let mut session = Session::cpu(&model).unwrap();
        let reference = reference(&session);
        let every = pollster::block_on(session.screen(&reference, &Metadata::new(), &ScreenOptions::default())).unwrap();
        let listed = ScreenOptions { perturbations: Some(model.config.perturbations.clone()), ..Default::default() };
        let listed = pollster::block_on(session.screen(&reference, &Metadata::new(), &listed)).unwrap();
        assert_eq!(every.hits.len(), model.config.perturbations.len());
        for h in &every.hits {
            let l = listed.hits.iter().find(|l| l.name == h.name).unwrap();
            assert_eq!(h.coverage, l.coverage, "{}", h.name);
            assert_ne!(h.coverage.measured, crate::Measured::Unknown, "{}", h.name);
        }
        assert!(every.hits.iter().any(|h| h.coverage.measured == crate::Measured::Never));
    }

    #[test]
    fn an_empty_perturbation_list_is_refused_before_any_work() {
        let session = Session::cpu(&random_model(SyntheticSpec::tiny(DType::Q8_0))).unwrap();
        let options = ScreenOptions { perturbations: Some(vec![]), ..Default::default() };
        let e = session.begin_screen(&reference(&session), &Metadata::new(), &options).err().unwrap().to_string();
        assert!(e.contains("no perturbations to screen"), "{e}");
    }
}
