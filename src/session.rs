//! The Rust API: a model loaded on a backend, answering `predict` and `screen`.
//!
//! ```no_run
//! # async fn run() -> refcast::Result<()> {
//! use refcast::{ModelFile, Session, Request, SampleTable, ValueKind};
//! let file = ModelFile::from_bytes(&std::fs::read("models/refcast-q8_0.safetensors").unwrap())?;
//! let mut session = Session::cpu(&file)?;
//! let table = SampleTable::parse(&std::fs::read("examples/sample.tsv").unwrap(), ValueKind::Auto)?;
//! let reference = session.reference(&table, 0)?;
//! let perturbation = refcast::metadata! { "perturbation" => "IFN-beta" };
//! // Counterfactual by default: the measured reference moved by the predicted change.
//! let prediction = session.predict(&Request::conditioned(vec![reference], vec![perturbation])).await?;
//! # Ok(()) }
//! ```

use crate::backend::{Backend, CpuBackend};
use crate::error::{Error, Result};
use crate::familiarity::Familiarity;
use crate::format::{Group, Metadata, ModelConfig, ModelFile};
use crate::metadata;
use crate::model::Model;
use crate::ops::reparameterize::Streams;
use crate::sample::{GeneIndex, Reference, SampleTable};

pub use crate::request::{Baseline, Prediction, PredictionMode, Request, Row, Sampling};
pub use crate::screen::{Screen, ScreenHit, ScreenOptions, ScreenRun};
pub use crate::signature::Signature;
pub use crate::familiarity::pearson;

/// What `forward` makes of the decoder's output.
enum Output {
    /// The decoder's profile; fold changes against the measured reference when `fold_changes`.
    Decoded { fold_changes: bool },
    /// The counterfactual profile ([`PredictionMode::Counterfactual`]) against this control
    /// perturbation, with fold changes against the reference; the request has references.
    /// `denoise`: [`PredictionMode::Denoised`] with the model's thresholds.
    Counterfactual { control: Metadata, denoise: bool },
}

/// Where a request's decoded rows already hold the control row of each reference (the
/// familiarity's reconstruction, with mean latents).
#[derive(Clone, Copy)]
enum ControlRow {
    /// The chunks decode it after their rows: counterfactual chunks always (their fold changes
    /// need it), decoded ones while a reference of the chunk still lacks its reconstruction, so
    /// that it shares the pass over the decoder's weights with the prediction.
    Appended,
    /// The request's own perturbation at this position is the control.
    Among(usize),
}

/// A model loaded on a backend.
pub struct Session<B: Backend> {
    backend: B,
    model: Model<B>,
    genes: GeneIndex,
}

/// Most predicted values (profiles × genes) one request may ask for: each output array of the
/// prediction holds this many f32 (256 MiB), e.g. 8,192 profiles of 8,192 genes. Larger requests
/// are errors, to be split, rather than allocations that abort the process.
pub const MAX_PREDICTION_VALUES: usize = 1 << 26;

/// Largest decoder output handled in one pass, in values; keeps device buffers bounded for
/// screens of thousands of perturbations.
const MAX_DECODE_VALUES: usize = 16 << 20;

impl Session<CpuBackend> {
    /// A session on the CPU backend.
    pub fn cpu(file: &ModelFile) -> Result<Self> {
        Session::new(CpuBackend::new(), file)
    }

    /// A session on the CPU backend with the given kernels for quantized weights (f32: the oracle;
    /// integer: faster, within `CpuKernels::INTEGER_ERROR_BOUND` of it).
    pub fn cpu_with(file: &ModelFile, kernels: crate::backend::CpuKernels) -> Result<Self> {
        Session::new(CpuBackend::with_kernels(kernels), file)
    }
}

impl<B: Backend> Session<B> {
    /// Uploads the model to `backend`.
    pub fn new(mut backend: B, file: &ModelFile) -> Result<Self> {
        let model = Model::load(&mut backend, file)?;
        Ok(Session { genes: GeneIndex::new(&file.config.genes), backend, model })
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// Backend and adapter, for people.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The backend, e.g. to read the GPU buffer pool's size or release its idle buffers.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (see [`Session::backend`]).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Column `s` of a sample table, matched to the model's genes.
    pub fn reference(&self, table: &SampleTable, s: usize) -> Result<Reference> {
        Reference::from_table(table, s, &self.genes, &self.model.gene_mean)
    }

    /// The model's genes, by symbol and Ensembl id.
    pub(crate) fn genes(&self) -> &GeneIndex {
        &self.genes
    }

    /// Position of a gene (symbol or Ensembl id) in the model.
    pub fn gene(&self, id: &str) -> Option<usize> {
        self.genes.get(id)
    }

    /// Predicts every (sample, reference, perturbation) combination of the request.
    pub async fn predict(&mut self, req: &Request) -> Result<Prediction> {
        if req.mode.anchored() && !req.references.is_empty() {
            // The control is decoded beside each reference's rows; the reference stands for it,
            // so both baselines give the fold changes against the reference.
            let need = format!("the {} prediction mode needs", req.mode);
            let control = self.control(&need, "use the decoded mode")?;
            let denoise = req.mode == PredictionMode::Denoised && self.model.denoise_threshold.is_some();
            return self.forward(req, Output::Counterfactual { control, denoise }).await;
        }
        if req.baseline == Baseline::Reference {
            return self.forward(req, Output::Decoded { fold_changes: true }).await;
        }
        // The control rides along as one more perturbation, so the references are encoded once.
        let control = self.control("fold changes against the control need", "use the measured reference as the baseline")?;
        let mut with_control = req.clone();
        with_control.perturbations.push(control);
        let full = self.forward(&with_control, Output::Decoded { fold_changes: false }).await?;
        let (g, p_n) = (full.genes, req.perturbations.len());
        let d = full.latents.len() / full.rows.len().max(1);
        let mut out = Prediction { genes: g, sigma: full.sigma.clone(), ..Default::default() };
        let mut lfc = Vec::with_capacity(full.log_cpm.len());
        for (r, row) in full.rows.iter().enumerate().filter(|(_, row)| row.perturbation < p_n) {
            // Rows run perturbation-innermost: the control of row r is r − p + P.
            let control = Prediction::row(&full.log_cpm, g, r - row.perturbation + p_n);
            let pred = Prediction::row(&full.log_cpm, g, r);
            lfc.extend(pred.iter().zip(control).map(|(p, c)| p - c));
            out.log_cpm.extend_from_slice(pred);
            out.counts.extend_from_slice(Prediction::row(&full.counts, g, r));
            out.latents.extend_from_slice(&full.latents[r * d..(r + 1) * d]);
            out.rows.push(*row);
        }
        out.log_fold_change = Some(lfc);
        out.familiarity = full.familiarity;
        Ok(out)
    }

    /// The model's control perturbation (its first known perturbation that is "none"), or an error
    /// that says what `needs` it and what to do instead.
    fn control(&self, needs: &str, instead: &str) -> Result<Metadata> {
        self.control_metadata().ok_or_else(|| {
            Error::request(format!("{needs} a control among the model's perturbations; this model lists none ({instead})"))
        })
    }

    fn control_metadata(&self) -> Option<Metadata> {
        self.model.config().control().map(|n| n.metadata.clone())
    }

    /// The forward pass of a request, with what `output` asks of the decoder's rows.
    async fn forward(&mut self, req: &Request, output: Output) -> Result<Prediction> {
        let cfg = self.model.config();
        let genes = cfg.architecture.genes;
        let lat = cfg.architecture.latent;
        let (b_n, p_n, s_n) = (req.bases(), req.perturbations.len(), req.sampling.count());
        if p_n == 0 {
            return Err(Error::request("no perturbation given"));
        }
        if s_n == 0 {
            return Err(Error::request("num_samples must be at least 1"));
        }
        let values = s_n.checked_mul(b_n).and_then(|n| n.checked_mul(p_n)).and_then(|n| n.checked_mul(genes.max(1)));
        if values.is_none_or(|v| v > MAX_PREDICTION_VALUES) {
            return Err(Error::request(format!(
                "{s_n} sample(s) × {b_n} reference(s) × {p_n} perturbation(s) × {genes} genes is over the limit of \
                 {MAX_PREDICTION_VALUES} predicted values per request; split the request"
            )));
        }
        if !req.contexts.is_empty() && req.contexts.len() != 1 && req.contexts.len() != b_n {
            return Err(Error::request(format!("{} contexts for {b_n} references: give one, or one per reference", req.contexts.len())));
        }
        if req.condition_on.contains(&Group::Perturbation) {
            return Err(Error::request("the perturbation latent always comes from its prior; condition on technical and/or biological"));
        }
        if req.references.is_empty() && !(req.library_size.is_finite() && req.library_size > 0.0) {
            return Err(Error::request(format!("library_size must be a positive number, got {}", req.library_size)));
        }
        if !req.condition_on.is_empty() && req.references.is_empty() {
            return Err(Error::request("conditioning on the reference needs a reference sample"));
        }
        for r in &req.references {
            if r.log_cpm.len() != genes {
                return Err(Error::request(format!("reference '{}' has {} values, the model has {genes} genes", r.name, r.log_cpm.len())));
            }
        }
        for m in req.contexts.iter().chain(&req.perturbations) {
            metadata::check_fields(cfg, m)?;
        }
        // Context values are checked even for groups taken from the reference: a misspelt cell
        // type must not pass silently.
        let contexts: Vec<&Metadata> = req.contexts.iter().collect();
        for g in [Group::Technical, Group::Biological] {
            metadata::encode(cfg.priors.of(g), g, &contexts)?;
        }
        let empty = Metadata::new();
        let context = |b: usize| req.contexts.get(if req.contexts.len() == 1 { 0 } else { b }).unwrap_or(&empty);
        // The technical prior sees the sequencing depth the prediction is for, when it has a
        // library_size field the context leaves unset: the reference's, or the request's.
        let technical_contexts: Vec<Metadata> = (0..b_n)
            .map(|b| {
                let depth = match req.references.get(b) {
                    Some(r) => r.sequencing_depth(),
                    None => Some(req.library_size),
                };
                metadata::with_depth(cfg, context(b), depth)
            })
            .collect();
        let covariates = metadata::covariates(cfg, &req.references)?;
        // Familiarity needs each reference's encoder μ and its decoded profile under the control.
        let familiarity_control = if req.references.is_empty() { None } else { self.control_metadata() };
        let noise = req.sampling.noise();
        let be = &mut self.backend;

        // The references' log-CPM, uploaded once: encoder input and fold-change baseline.
        let x = if req.references.is_empty() {
            None
        } else {
            let x: Vec<f32> = req.references.iter().flat_map(|r| r.log_cpm.iter().copied()).collect();
            Some(be.tensor_owned(x, b_n, genes)?)
        };
        // Technical and biological latents: from the encoder or from their priors, [S·B, ·].
        let mut head = match &x {
            Some(x) if !req.condition_on.is_empty() || familiarity_control.is_some() => Some(self.model.encode(be, x, &covariates)?),
            _ => None,
        };
        let encoder_streams = Streams { latent: lat.technical + lat.biological, split: lat.technical, lo: 0, hi: 1 };
        let enc_z = match &head {
            Some(head) if !req.condition_on.is_empty() => Some(be.reparameterize(head, encoder_streams, noise, s_n)?),
            _ => None,
        };
        let prior_head = |be: &mut B, g: Group, rows: &[&Metadata]| -> Result<B::Tensor> {
            let inputs = metadata::encode(cfg.priors.of(g), g, rows)?;
            self.model.prior(be, g, &inputs)
        };
        // (group, prior head, latents) of the groups not conditioned on.
        let mut own = Vec::new();
        for g in [Group::Technical, Group::Biological] {
            if !req.condition_on.contains(&g) {
                let rows: Vec<&Metadata> = match g {
                    Group::Technical => technical_contexts.iter().collect(),
                    _ => (0..b_n).map(context).collect(),
                };
                let head = prior_head(be, g, &rows)?;
                let z = be.reparameterize(&head, Streams::single(lat.of(g), g.stream()), noise, s_n)?;
                own.push((g, head, z));
            }
        }
        // The counterfactual's control is one more row of the perturbation prior, after the
        // request's (so a draw of it is that of an extra perturbation P of a P-perturbation request).
        let control = match &output {
            Output::Counterfactual { control, .. } => Some(control),
            Output::Decoded { .. } => None,
        };
        let threshold = match &output {
            Output::Counterfactual { denoise: true, .. } => self.model.denoise_threshold.as_ref(),
            _ => None,
        };
        // With mean latents, a decoded control row of (sample 0, reference b) is the reference's
        // reconstruction: read it from the chunks rather than decode it again. A decoded
        // request that does not ask for the control appends it like a counterfactual one.
        let reused_control = match (&familiarity_control, noise) {
            (Some(_), None) if control.is_some() => Some(ControlRow::Appended),
            (Some(c), None) => Some(req.perturbations.iter().position(|p| p == c).map_or(ControlRow::Appended, ControlRow::Among)),
            _ => None,
        };
        let appended = match reused_control {
            Some(ControlRow::Appended) => control.or(familiarity_control.as_ref()),
            _ => control,
        };
        let pert_rows: Vec<&Metadata> = req.perturbations.iter().chain(appended).collect();
        let pz_n = pert_rows.len();
        let pert_head = prior_head(be, Group::Perturbation, &pert_rows)?;
        let pert_streams = Streams::single(lat.perturbation, Group::Perturbation.stream());
        let pert_z = be.reparameterize(&pert_head, pert_streams, noise, s_n)?;
        let source = |g: Group| -> (&B::Tensor, usize, usize) {
            match own.iter().find(|(h, _, _)| *h == g) {
                Some((_, _, z)) => (z, 0, lat.of(g)),
                None => {
                    let z = enc_z.as_ref().expect("conditioned groups have encoder latents");
                    (z, if g == Group::Technical { 0 } else { lat.technical }, lat.of(g))
                }
            }
        };
        let parts = [source(Group::Technical), source(Group::Biological), (&pert_z, 0, lat.perturbation)];
        let mut reconstructions: Vec<Vec<f32>> = vec![Vec::new(); b_n];
        let mut encoder_head: Vec<f32> = Vec::new();

        let reference_fold_changes = match output {
            Output::Decoded { fold_changes } => fold_changes,
            Output::Counterfactual { .. } => true,
        };
        let reference = x.as_ref().filter(|_| reference_fold_changes);
        let library: Vec<f32> = if req.references.is_empty() {
            vec![req.library_size; b_n]
        } else {
            req.references.iter().map(|r| r.library_size).collect()
        };

        let total = s_n * b_n * p_n;
        let chunk = (MAX_DECODE_VALUES / genes).clamp(1, 4096);
        // A counterfactual chunk also decodes the control row of every (sample, reference) it
        // touches: whole groups of P rows and their control when they fit, else part of a group.
        let step = match appended {
            None => chunk,
            Some(_) if p_n < chunk => chunk / (p_n + 1) * p_n,
            Some(_) => chunk.saturating_sub(2).max(1),
        };
        let mut out = Prediction {
            genes,
            rows: Vec::with_capacity(total),
            log_fold_change: reference.as_ref().map(|_| Vec::new()),
            sigma: self.model.sigma.clone(),
            ..Default::default()
        };
        let mut start = 0;
        while start < total {
            let end = (start + step).min(total);
            let (first, n) = (start / p_n, end - start);
            let mut index = Vec::with_capacity((end - start) * 3);
            let mut base = Vec::with_capacity(end - start);
            for r in start..end {
                let (s, b, p) = (r / (b_n * p_n), r / p_n % b_n, r % p_n);
                let enc_row = (s * b_n + b) as u32;
                index.extend([enc_row, enc_row, (s * pz_n + p) as u32]);
                base.push(b as u32);
                out.rows.push(Row { reference: b, perturbation: p, sample: s });
            }
            // The control rows of groups (s, b) = r / P follow the chunk's rows; a counterfactual
            // output row r pairs reference b with its group's control row.
            let groups = first..=(end - 1) / p_n;
            let with_controls = appended.is_some() && (control.is_some() || groups.clone().any(|g| reconstructions[g % b_n].is_empty()));
            let mut pairs = Vec::new();
            if with_controls {
                for group in groups.clone() {
                    let (s, row) = (group / b_n, group as u32);
                    index.extend([row, row, (s * pz_n + p_n) as u32]);
                }
            }
            if control.is_some() {
                pairs = (start..end).flat_map(|r| [(r / p_n % b_n) as u32, (n + r / p_n - first) as u32]).collect();
            }
            let z = be.assemble(parts, &index)?;
            let decoded = self.model.decode(be, &z)?;
            // The control rows of this chunk's references still without a reconstruction,
            // gathered with `assemble` (one part as wide as a profile).
            let mut gathered_for = Vec::new();
            let mut gather = Vec::new();
            for (b, done) in reconstructions.iter().enumerate().filter(|(_, r)| r.is_empty()) {
                let row = match reused_control {
                    // Sample 0 of reference b is group b.
                    Some(ControlRow::Appended) if with_controls => groups.contains(&b).then(|| n + b - first),
                    Some(ControlRow::Appended) => None,
                    Some(ControlRow::Among(c)) => (start..end).contains(&(b * p_n + c)).then(|| b * p_n + c - start),
                    None => None,
                };
                if let Some(row) = row {
                    debug_assert!(done.is_empty());
                    gather.extend([row as u32, 0, 0]);
                    gathered_for.push(b);
                }
            }
            let gathered =
                if gather.is_empty() { None } else { Some(be.assemble([(&decoded, 0, genes), (&decoded, 0, 0), (&decoded, 0, 0)], &gather)?) };
            let pred = match &x {
                Some(x) if control.is_some() => be.counterfactual(&decoded, x, threshold, &pairs)?,
                // A decoded chunk's own rows, without the control rows appended for familiarity.
                _ if with_controls => {
                    let own: Vec<u32> = (0..n as u32).flat_map(|r| [r, 0, 0]).collect();
                    be.assemble([(&decoded, 0, genes), (&decoded, 0, 0), (&decoded, 0, 0)], &own)?
                }
                _ => decoded,
            };
            let counts = be.counts(&pred, &library, &base)?;
            let lfc = match &reference {
                Some(x) => Some(be.log_fold_change(&pred, x, &base)?),
                None => None,
            };
            let has_lfc = lfc.is_some();
            let mut wanted = vec![pred, counts, z];
            wanted.extend(lfc);
            wanted.extend(gathered);
            let head_now = if reused_control.is_some() { head.take() } else { None };
            let read_head = head_now.is_some();
            wanted.extend(head_now);
            let mut read = be.read_owned(wanted).await?.into_iter();
            append(&mut out.log_cpm, read.next().unwrap());
            append(&mut out.counts, read.next().unwrap());
            let mut z = read.next().unwrap();
            z.truncate((end - start) * lat.total());
            append(&mut out.latents, z);
            if let (Some(all), true) = (out.log_fold_change.as_mut(), has_lfc) {
                append(all, read.next().unwrap());
            }
            if !gathered_for.is_empty() {
                let v = read.next().unwrap();
                for (k, &b) in gathered_for.iter().enumerate() {
                    reconstructions[b] = v[k * genes..(k + 1) * genes].to_vec();
                }
            }
            if read_head {
                encoder_head = read.next().unwrap();
            }
            start = end;
        }

        if let Some(control) = &familiarity_control {
            if reused_control.is_none() {
                // Decode each reference's mean latents (those the request's rows use: the
                // encoder's, or the priors' for groups not conditioned on) under the control's.
                let head = head.take().expect("familiarity encodes the references");
                let encoder_mean = be.reparameterize(&head, encoder_streams, None, 1)?;
                let mut own_means = Vec::new();
                for (g, prior, _) in &own {
                    own_means.push((*g, be.reparameterize(prior, Streams::single(lat.of(*g), g.stream()), None, 1)?));
                }
                let control_head = prior_head(be, Group::Perturbation, &[control])?;
                let control_mean = be.reparameterize(&control_head, pert_streams, None, 1)?;
                let mean_source = |g: Group| -> (&B::Tensor, usize, usize) {
                    match own_means.iter().find(|(h, _)| *h == g) {
                        Some((_, z)) => (z, 0, lat.of(g)),
                        None => (&encoder_mean, if g == Group::Technical { 0 } else { lat.technical }, lat.of(g)),
                    }
                };
                let parts = [mean_source(Group::Technical), mean_source(Group::Biological), (&control_mean, 0, lat.perturbation)];
                let index: Vec<u32> = (0..b_n as u32).flat_map(|b| [b, b, 0]).collect();
                let z = be.assemble(parts, &index)?;
                let decoded = self.model.decode(be, &z)?;
                let mut read = be.read_owned(vec![decoded, head]).await?.into_iter();
                let decoded = read.next().unwrap();
                reconstructions = decoded.chunks_exact(genes).map(<[f32]>::to_vec).collect();
                encoder_head = read.next().unwrap();
            }
            let width = lat.technical + lat.biological;
            out.familiarity = req
                .references
                .iter()
                .zip(&reconstructions)
                .zip(encoder_head.chunks_exact(2 * width))
                .map(|((r, recon), head)| Familiarity::assess(cfg.familiarity.as_ref(), r, recon, &head[..width]))
                .collect();
        }
        Ok(out)
    }
}

/// Appends one chunk's values; the first chunk's buffer is taken over rather than copied.
fn append(all: &mut Vec<f32>, chunk: Vec<f32>) {
    if all.is_empty() {
        *all = chunk;
    } else {
        all.extend_from_slice(&chunk);
    }
}

