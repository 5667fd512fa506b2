//! The model graph and the predict/screen API on the CPU backend, on a synthetic model: batching
//! never changes a row, samples are reproducible, inputs are checked, the prediction modes are
//! what they say (also through the command line).

use refcast::synthetic::{SyntheticSpec, random_model, random_model_v3};
use refcast::quant::DType;
use refcast::sample::{SampleTable, ValueKind};
use refcast::session::{Baseline, PredictionMode, Request, Sampling, ScreenOptions, Session, Signature};
use refcast::{Group, Metadata, Reference, metadata};

fn session() -> Session<refcast::CpuBackend> {
    Session::cpu(&random_model(SyntheticSpec::tiny(DType::Q8_0))).unwrap()
}

fn predict(s: &mut Session<refcast::CpuBackend>, req: &Request) -> refcast::Prediction {
    pollster::block_on(s.predict(req)).unwrap()
}

/// The model's control perturbation.
fn control(s: &Session<refcast::CpuBackend>) -> Metadata {
    s.config().perturbations.iter().find(|n| refcast::ModelConfig::is_control(n)).unwrap().metadata.clone()
}

/// A request as `req`, in the decoded mode.
fn decoded(req: &Request) -> Request {
    Request { mode: PredictionMode::Decoded, ..req.clone() }
}

/// A counts table over the model's first `genes` genes, with two columns.
fn references(s: &Session<refcast::CpuBackend>, genes: usize) -> Vec<Reference> {
    let mut text = String::from("gene\ta_count\tb_count\n");
    for g in 0..genes {
        text += &format!("GENE{g}\t{}\t{}\n", (g * 7919) % 97, (g * 104_729) % 53 + 1);
    }
    text += "NOT_A_GENE\t5\t5\n";
    let table = SampleTable::parse(text.as_bytes(), ValueKind::Auto).unwrap();
    (0..2).map(|i| s.reference(&table, i).unwrap()).collect()
}

fn perts() -> Vec<Metadata> {
    vec![metadata! { "perturbation" => "drug_a", "time_hours" => 6.0 }, metadata! { "perturbation" => "cytokine_c" }]
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "value {i}: {x} vs {y}");
    }
}

#[test]
fn references_report_matches_and_fill_missing_genes() {
    let s = session();
    let refs = references(&s, 150);
    let r = &refs[0];
    assert_eq!((r.report.matched, r.report.missing, r.report.unknown), (150, 10, 1));
    assert_eq!(r.report.unknown_examples, ["NOT_A_GENE"]);
    assert!(!r.measured[155]);
}

#[test]
fn a_batch_gives_the_same_rows_as_single_predictions() {
    let mut s = session();
    let refs = references(&s, 160);
    let all = pollster::block_on(s.predict(&Request::conditioned(refs.clone(), perts()))).unwrap();
    assert_eq!(all.rows.len(), 4);
    let g = all.genes;
    for (r, row) in all.rows.iter().enumerate() {
        let one = Request::conditioned(vec![refs[row.reference].clone()], vec![perts()[row.perturbation].clone()]);
        let one = pollster::block_on(s.predict(&one)).unwrap();
        close(&all.log_cpm[r * g..(r + 1) * g], &one.log_cpm);
        close(&all.counts[r * g..(r + 1) * g], &one.counts);
        let lfc = all.log_fold_change.as_ref().unwrap();
        close(&lfc[r * g..(r + 1) * g], one.log_fold_change.as_ref().unwrap());
    }
    // Outputs agree with each other: counts and fold changes follow from log-CPM.
    let lib = refs[0].library_size;
    for i in 0..g {
        let want = all.log_cpm[i].exp_m1() * lib / 1e6;
        assert!((all.counts[i] - want).abs() <= 1e-4 * want.abs().max(1.0));
        assert!((all.log_fold_change.as_ref().unwrap()[i] - (all.log_cpm[i] - refs[0].log_cpm[i])).abs() < 1e-5);
    }
}

#[test]
fn seeded_samples_are_reproducible_and_independent_of_batch_size() {
    let mut s = session();
    let refs = references(&s, 160);
    let mut req = Request::conditioned(refs[..1].to_vec(), perts());
    req.sampling = Sampling::Samples { num_samples: 3, seed: 42 };
    let three = pollster::block_on(s.predict(&req)).unwrap();
    req.sampling = Sampling::Samples { num_samples: 1, seed: 42 };
    let one = pollster::block_on(s.predict(&req)).unwrap();
    let g = one.genes;
    close(&three.log_cpm[..2 * g], &one.log_cpm);
    assert_ne!(three.log_cpm[..g], three.log_cpm[2 * g..3 * g], "different samples differ");
    req.sampling = Sampling::Mean;
    let mean = pollster::block_on(s.predict(&req)).unwrap();
    assert_ne!(mean.log_cpm[..g], one.log_cpm[..g], "sampling moves the prediction");
}

#[test]
fn prompt_only_and_partial_conditioning_use_the_priors() {
    let mut s = session();
    let refs = references(&s, 160);
    let ctx = metadata! { "cell_type" => "T", "platform" => "10x" };
    let prompt = pollster::block_on(s.predict(&Request::prompt(vec![ctx.clone()], perts()))).unwrap();
    assert!(prompt.log_fold_change.is_none());
    assert_eq!(prompt.rows.len(), 2);
    let mut req = Request::conditioned(refs[..1].to_vec(), perts());
    req.contexts = vec![ctx];
    req.condition_on = vec![Group::Technical];
    let tech = pollster::block_on(s.predict(&req)).unwrap();
    let lat = s.config().architecture.latent;
    // The biological latent now comes from the prior, so it matches the prompt-only one.
    let d = lat.total();
    let bio = lat.technical..lat.technical + lat.biological;
    close(&tech.latents[bio.clone()], &prompt.latents[bio]);
    assert_ne!(tech.latents[..lat.technical], prompt.latents[..lat.technical]);
    assert_eq!(tech.latents.len(), 2 * d);
}

#[test]
fn bad_requests_are_explained() {
    let mut s = session();
    let refs = references(&s, 160);
    let err = |req: Request, s: &mut Session<refcast::CpuBackend>| pollster::block_on(s.predict(&req)).unwrap_err().to_string();
    let e = err(Request::conditioned(refs.clone(), vec![metadata! { "perturbation" => "drug_aa" }]), &mut s);
    assert!(e.contains("drug_aa") && e.contains("did you mean 'drug_a'"), "{e}");
    let e = err(Request::conditioned(refs.clone(), vec![metadata! { "perturbation" => "drug_a", "time_hours" => 500.0 }]), &mut s);
    assert!(e.contains("time_hours") && e.contains("168"), "{e}");
    let e = err(Request::conditioned(refs.clone(), vec![metadata! { "perturbaton" => "drug_a" }]), &mut s);
    assert!(e.contains("did you mean 'perturbation'"), "{e}");
    let mut misspelt = Request::conditioned(refs.clone(), perts());
    misspelt.contexts = vec![metadata! { "cell_type" => "Monoo" }];
    let e = err(misspelt, &mut s);
    assert!(e.contains("cell_type 'Monoo'") && e.contains("did you mean 'Mono'"), "{e}");
    let e = err(Request::conditioned(refs, vec![]), &mut s);
    assert!(e.contains("no perturbation"), "{e}");
    let few = SampleTable::parse(b"gene\tcount\nGENE1\t5\nGENE2\t7\n", ValueKind::Auto).unwrap();
    let e = s.reference(&few, 0).unwrap_err().to_string();
    assert!(e.contains("only 2 of the model's 160 genes"), "{e}");
}

#[test]
fn screen_ranks_every_known_perturbation() {
    let mut s = session();
    let refs = references(&s, 160);
    let hits = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &ScreenOptions::default())).unwrap().hits;
    assert_eq!(hits.len(), s.config().perturbations.len());
    assert!(hits.windows(2).all(|w| w[0].score() >= w[1].score()));
    // Counterfactual (the default): every perturbation moves the sample but the control.
    let control = control(&s);
    assert!(hits.iter().all(|h| (h.effect_size > 0.0 && h.top_up.len() == 10) || (h.metadata == control && h.top_up.is_empty() && h.top_down.is_empty())));
    // Reversing the strongest hit's own profile ranks it last.
    let top = &hits[0];
    let sig = Signature::Weighted(top.top_up.iter().chain(&top.top_down).map(|(g, v)| (format!("GENE{g}"), *v as f64)).collect());
    let rev = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &signed(sig))).unwrap().hits;
    assert_eq!(rev.last().unwrap().name, top.name);
    assert!(rev.last().unwrap().reversal.unwrap() < 0.0);
}

/// `GENE{g}` for each gene of a screen hit's top list.
fn names(genes: &[(usize, f32)]) -> Vec<String> {
    genes.iter().map(|(g, _)| format!("GENE{g}")).collect()
}

fn mean(genes: &[(usize, f32)]) -> f32 {
    genes.iter().map(|(_, v)| v).sum::<f32>() / genes.len() as f32
}

/// Screen options ranking by reversal of `signature`.
fn signed(signature: Signature) -> ScreenOptions {
    ScreenOptions { signature: Some(signature), ..Default::default() }
}

/// The screen of the first reference against `sig`.
fn screen_with(s: &mut Session<refcast::CpuBackend>, refs: &[Reference], sig: &Signature) -> Vec<refcast::ScreenHit> {
    pollster::block_on(s.screen(&refs[0], &Metadata::new(), &signed(sig.clone()))).unwrap().hits
}

fn hit<'a>(hits: &'a [refcast::ScreenHit], name: &str) -> &'a refcast::ScreenHit {
    hits.iter().find(|h| h.name == name).unwrap()
}

/// A plain 3-gene up set: a perturbation that raises the genes scores −(their mean change) and
/// ranks below the control (0); one that lowers them scores above it. (The score was once
/// −Pearson against constant weights: 0 for every perturbation.)
#[test]
fn a_gene_set_ranks_lowering_its_genes_above_raising_them() {
    let mut s = session();
    let refs = references(&s, 160);
    let hits = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &ScreenOptions::default())).unwrap().hits;
    let (top, control_name) = (&hits[0], hits.iter().find(|h| h.metadata == control(&s)).unwrap().name.clone());
    let raised = &top.top_up[..3];
    let lowered = &top.top_down[..3];
    let up_raised = screen_with(&mut s, &refs, &Signature::Sets { up: names(raised), down: vec![] });
    let r = hit(&up_raised, &top.name).reversal.unwrap();
    assert!((r - -mean(raised)).abs() < 1e-5 && r < 0.0, "{r} vs −{}", mean(raised));
    assert_eq!(hit(&up_raised, &control_name).reversal, Some(0.0));
    let rank = |hits: &[refcast::ScreenHit], name: &str| hits.iter().position(|h| h.name == name).unwrap();
    assert!(rank(&up_raised, &top.name) > rank(&up_raised, &control_name));
    let up_lowered = screen_with(&mut s, &refs, &Signature::Sets { up: names(lowered), down: vec![] });
    let r = hit(&up_lowered, &top.name).reversal.unwrap();
    assert!((r - -mean(lowered)).abs() < 1e-5 && r > 0.0, "{r}");
    assert!(rank(&up_lowered, &top.name) < rank(&up_lowered, &control_name));
    // Equal weights are the same score as the set.
    let equal = Signature::Weighted(names(lowered).into_iter().map(|g| (g, 1.0)).collect());
    assert_eq!(hit(&screen_with(&mut s, &refs, &equal), &top.name).reversal, Some(r));
}

/// Up/down sets: mean change of the down genes − mean change of the up genes.
#[test]
fn an_up_down_set_scores_the_down_mean_minus_the_up_mean() {
    let mut s = session();
    let refs = references(&s, 160);
    let top = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &ScreenOptions::default())).unwrap().hits.remove(0);
    let (up, down) = (&top.top_up[..3], &top.top_down[..2]);
    let sig = Signature::Sets { up: names(up), down: names(down) };
    let r = hit(&screen_with(&mut s, &refs, &sig), &top.name).reversal.unwrap();
    assert!((r - (mean(down) - mean(up))).abs() < 1e-5, "{r} vs {}", mean(down) - mean(up));
}

/// Weights: −Σ w·LFC / Σ |w|, by hand; the same scores and ranking for weights scaled by 1e300,
/// and finite scores for weights near the largest double (once NaN).
#[test]
fn weighted_scores_are_scale_free_and_finite() {
    let mut s = session();
    let refs = references(&s, 160);
    let top = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &ScreenOptions::default())).unwrap().hits.remove(0);
    let genes: Vec<(usize, f32)> = top.top_up[..2].iter().chain(&top.top_down[..2]).copied().collect();
    let weights = [2.0, 1.0, -1.0, -0.5];
    let weighted = |scale: f64| Signature::Weighted(genes.iter().zip(weights).map(|((g, _), w)| (format!("GENE{g}"), w * scale)).collect());
    let want = -genes.iter().zip(weights).map(|((_, v), w)| *v as f64 * w).sum::<f64>() / 4.5;
    let plain = screen_with(&mut s, &refs, &weighted(1.0));
    assert!((hit(&plain, &top.name).reversal.unwrap() as f64 - want).abs() < 1e-5);
    let huge = screen_with(&mut s, &refs, &weighted(1e300));
    let order = |hits: &[refcast::ScreenHit]| hits.iter().map(|h| (h.name.clone(), h.score())).collect::<Vec<_>>();
    assert_eq!(order(&plain), order(&huge));
    let largest = screen_with(&mut s, &refs, &weighted(f64::MAX / 2.0));
    assert!(largest.iter().all(|h| h.score().is_finite()));
}

/// Unknown signature genes are reported; fewer than three known genes is an error.
#[test]
fn unknown_signature_genes_are_reported() {
    let mut s = session();
    let refs = references(&s, 160);
    let sig = Signature::Sets { up: vec!["GENE1".into(), "NOPE1".into(), "GENE2".into(), "GENE3".into()], down: vec!["NOPE2".into()] };
    let screen = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &signed(sig))).unwrap();
    assert_eq!(screen.signature_unknown, ["NOPE1", "NOPE2"]);
    let few = Signature::Sets { up: vec!["GENE1".into(), "NOPE1".into(), "GENE2".into()], down: vec![] };
    let e = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &signed(few))).unwrap_err().to_string();
    assert!(e.contains("only 2 of the signature's 3 genes") && e.contains("'NOPE1'"), "{e}");
}

#[test]
fn fold_changes_against_the_predicted_control() {
    let mut s = session();
    let refs = references(&s, 160);
    let control = s.config().perturbations.iter().find(|n| refcast::ModelConfig::is_control(n)).unwrap().metadata.clone();
    let mut req = decoded(&Request::conditioned(refs.clone(), vec![perts()[0].clone(), control.clone()]));
    req.baseline = refcast::Baseline::Control;
    let pred = pollster::block_on(s.predict(&req)).unwrap();
    let lfc = pred.log_fold_change.as_ref().unwrap();
    let g = pred.genes;
    for (r, row) in pred.rows.iter().enumerate() {
        let own = &lfc[r * g..(r + 1) * g];
        if row.perturbation == 1 {
            // The control against itself (batched with other rows, so equal up to summation order).
            close(own, &vec![0.0; g]);
        } else {
            let ctl = decoded(&Request::conditioned(vec![refs[row.reference].clone()], vec![control.clone()]));
            let ctl = pollster::block_on(s.predict(&ctl)).unwrap();
            let want: Vec<f32> = pred.log_cpm[r * g..(r + 1) * g].iter().zip(&ctl.log_cpm).map(|(p, c)| p - c).collect();
            close(own, &want);
        }
    }
    // Prompt-only predictions get fold changes too.
    let mut prompt = Request::prompt(vec![metadata! { "cell_type" => "T" }], perts());
    prompt.baseline = refcast::Baseline::Control;
    assert!(pollster::block_on(s.predict(&prompt)).unwrap().log_fold_change.is_some());
}

/// The counterfactual mode: max(0, reference + decode(perturbation) − decode(control)), from the decoded
/// mode's own rows for the perturbation and the control (in sampling mode the same draw: the
/// control is one more perturbation after the request's); counts and fold changes follow from it,
/// and against the control they are the fold changes against the reference.
#[test]
fn counterfactual_is_the_reference_moved_by_the_decoded_change() {
    let mut s = session();
    let refs = references(&s, 150); // ten genes unmeasured: the gene mean stands in
    let control = control(&s);
    let p_n = perts().len();
    let mut clamped = 0;
    for sampling in [Sampling::Mean, Sampling::Samples { num_samples: 2, seed: 7 }] {
        let mut req = Request::conditioned(refs.clone(), perts());
        req.sampling = sampling;
        assert_eq!(req.mode, PredictionMode::Denoised, "the default mode");
        // A model without denoising thresholds (format 1) gives the counterfactual profile in the
        // default mode, bit for bit.
        let default = predict(&mut s, &req);
        req.mode = PredictionMode::Counterfactual;
        let got = predict(&mut s, &req);
        assert_eq!((&default.log_cpm, &default.log_fold_change), (&got.log_cpm, &got.log_fold_change));
        let mut with_control = decoded(&req);
        with_control.perturbations.push(control.clone());
        let dec = predict(&mut s, &with_control);
        let (g, lfc) = (got.genes, got.log_fold_change.as_ref().unwrap());
        let d = got.latents.len() / got.rows.len();
        assert_eq!(got.rows.len(), sampling_count(sampling) * refs.len() * p_n);
        for (r, row) in got.rows.iter().enumerate() {
            // The decoded request's rows run over p_n + 1 perturbations, the control last.
            let dr = (row.sample * refs.len() + row.reference) * (p_n + 1) + row.perturbation;
            let cr = dr - row.perturbation + p_n;
            let (reference, lib) = (&refs[row.reference].log_cpm, refs[row.reference].library_size);
            let (pred, ctl) = (&dec.log_cpm[dr * g..(dr + 1) * g], &dec.log_cpm[cr * g..(cr + 1) * g]);
            let own = &got.log_cpm[r * g..(r + 1) * g];
            for j in 0..g {
                let raw = reference[j] + (pred[j] - ctl[j]);
                clamped += usize::from(raw < 0.0);
                let want = raw.max(0.0);
                // Rows decoded in other batches may sum in another order.
                let tol = 1e-5 * (2.0 + pred[j].abs() + ctl[j].abs());
                assert!((own[j] - want).abs() <= tol, "{sampling:?} row {r} gene {j}: {} vs {want}", own[j]);
                assert!(own[j] >= 0.0);
                assert_eq!(lfc[r * g + j], own[j] - reference[j], "fold change against the reference");
                let counts = own[j].exp_m1() * lib / 1e6;
                assert!((got.counts[r * g + j] - counts).abs() <= 1e-4 * counts.max(1.0));
            }
            close(&got.latents[r * d..(r + 1) * d], &dec.latents[dr * d..(dr + 1) * d]);
        }
        let mut versus = req.clone();
        versus.baseline = Baseline::Control;
        let versus = predict(&mut s, &versus);
        assert_eq!(versus.log_fold_change, got.log_fold_change, "against the control = against the reference");
        assert_eq!(versus.log_cpm, got.log_cpm);
    }
    assert!(clamped > 0, "no gene reached the floor at 0: the clamp is untested");
}

/// The denoised mode (the default) on a model with thresholds τ (format 3):
/// max(0, decode(perturbation) + soft(reference − decode(control), τ)), soft(r, τ) = r − clamp(r,
/// −τ, τ), from the decoded mode's own rows; where the reference is within τ of its
/// reconstruction the prediction is the decoded profile, elsewhere the counterfactual one moved
/// back by τ; fold changes are against the reference, whichever baseline is asked for.
#[test]
fn denoised_is_the_decoded_profile_plus_the_deviation_beyond_the_threshold() {
    let file = random_model_v3(SyntheticSpec::tiny(DType::Q8_0));
    let threshold = file.vector(refcast::format::DENOISE_THRESHOLD);
    let mut s = Session::cpu(&file).unwrap();
    let refs = references(&s, 150);
    let control = control(&s);
    let p_n = perts().len();
    let (mut within, mut beyond, mut zero) = (0, 0, 0);
    for sampling in [Sampling::Mean, Sampling::Samples { num_samples: 2, seed: 11 }] {
        let mut req = Request::conditioned(refs.clone(), perts());
        req.sampling = sampling;
        let got = predict(&mut s, &req);
        let mut with_control = decoded(&req);
        with_control.perturbations.push(control.clone());
        let dec = predict(&mut s, &with_control);
        let (g, lfc) = (got.genes, got.log_fold_change.as_ref().unwrap());
        for (r, row) in got.rows.iter().enumerate() {
            let dr = (row.sample * refs.len() + row.reference) * (p_n + 1) + row.perturbation;
            let cr = dr - row.perturbation + p_n;
            let reference = &refs[row.reference].log_cpm;
            let (pred, ctl) = (&dec.log_cpm[dr * g..(dr + 1) * g], &dec.log_cpm[cr * g..(cr + 1) * g]);
            for j in 0..g {
                let residual = reference[j] - ctl[j];
                let t = threshold[j];
                match () {
                    _ if t == 0.0 => zero += 1,
                    _ if residual.abs() <= t => within += 1,
                    _ => beyond += 1,
                }
                let want = (pred[j] + (residual - residual.clamp(-t, t))).max(0.0);
                let tol = 1e-5 * (2.0 + pred[j].abs() + ctl[j].abs());
                let own = got.log_cpm[r * g + j];
                assert!((own - want).abs() <= tol, "{sampling:?} row {r} gene {j}: {own} vs {want}");
                assert_eq!(lfc[r * g + j], own - reference[j]);
            }
        }
        let mut versus = req.clone();
        versus.baseline = Baseline::Control;
        assert_eq!(predict(&mut s, &versus).log_fold_change, got.log_fold_change, "against the control = against the reference");
        req.mode = PredictionMode::Counterfactual;
        assert_ne!(predict(&mut s, &req).log_cpm, got.log_cpm, "the thresholds change the profile");
    }
    assert!(within > 0 && beyond > 0 && zero > 0, "{within} within, {beyond} beyond, {zero} without a threshold: each case must be covered");
}

fn sampling_count(s: Sampling) -> usize {
    match s {
        Sampling::Mean => 1,
        Sampling::Samples { num_samples, .. } => num_samples,
    }
}

/// The decoded mode is the decoder's output, bit for bit: the same forward pass written out with
/// the model's own operations gives the same log-CPM, fold changes, counts and latents. The
/// familiarity's reconstruction (the reference under the control) is decoded in the same pass,
/// as a second row, so the written-out pass decodes both rows too.
#[test]
fn decoded_mode_is_the_decoder_output_bit_for_bit() {
    use refcast::backend::Backend;
    use refcast::ops::reparameterize::Streams;
    let file = random_model(SyntheticSpec::tiny(DType::Q8_0));
    let mut s = Session::cpu(&file).unwrap();
    let refs = references(&s, 150);
    let req = decoded(&Request::conditioned(refs[..1].to_vec(), perts()[..1].to_vec()));
    let got = predict(&mut s, &req);

    let mut be = refcast::CpuBackend::new();
    let model = refcast::model::Model::load(&mut be, &file).unwrap();
    let (cfg, genes) = (&file.config, file.config.architecture.genes);
    let lat = cfg.architecture.latent;
    let x = be.tensor(&refs[0].log_cpm, 1, genes).unwrap();
    let enc_head = model.encode(&mut be, &x, &[]).unwrap();
    let streams = Streams { latent: lat.technical + lat.biological, split: lat.technical, lo: 0, hi: 1 };
    let enc = be.reparameterize(&enc_head, streams, None, 1).unwrap();
    let control = control(&s);
    let inputs = refcast::metadata::encode(cfg.priors.of(Group::Perturbation), Group::Perturbation, &[&perts()[0], &control]).unwrap();
    let head = model.prior(&mut be, Group::Perturbation, &inputs).unwrap();
    let pert = be.reparameterize(&head, Streams::single(lat.perturbation, Group::Perturbation.stream()), None, 1).unwrap();
    let parts = [(&enc, 0, lat.technical), (&enc, lat.technical, lat.biological), (&pert, 0, lat.perturbation)];
    let z = be.assemble(parts, &[0, 0, 0, 0, 0, 1]).unwrap();
    let both = model.decode(&mut be, &z).unwrap();
    let y = be.tensor(&both.data[..genes], 1, genes).unwrap();
    let lfc = be.log_fold_change(&y, &x, &[0]).unwrap();
    let counts = be.counts(&y, &[refs[0].library_size], &[0]).unwrap();
    assert_eq!(got.log_cpm, y.data);
    assert_eq!(got.log_fold_change.as_ref().unwrap(), &lfc.data);
    assert_eq!(got.counts, counts.data);
    assert_eq!(got.latents, z.data[..lat.total()]);
    // The second row is the reconstruction the familiarity report scores.
    let width = lat.technical + lat.biological;
    let report = refcast::familiarity::Familiarity::assess(cfg.familiarity.as_ref(), &refs[0], &both.data[genes..], &enc_head.data[..width]);
    assert_eq!(got.familiarity, [report]);
}

/// Without a reference the mode does not apply: prompt-only predictions are decoded whatever it
/// says, and the default does not make them fail.
#[test]
fn prompt_only_predictions_ignore_the_mode() {
    let mut s = session();
    let req = Request::prompt(vec![metadata! { "cell_type" => "T" }], perts());
    assert_eq!(req.mode, PredictionMode::Denoised);
    let default = predict(&mut s, &req);
    let dec = predict(&mut s, &decoded(&req));
    assert_eq!(default.log_cpm, dec.log_cpm);
    assert_eq!(default.counts, dec.counts);
    assert!(default.log_fold_change.is_none());
}

#[test]
fn prediction_modes_parse_and_print_their_names() {
    for (text, mode) in [("denoised", PredictionMode::Denoised), ("counterfactual", PredictionMode::Counterfactual), ("Decoded", PredictionMode::Decoded)] {
        assert_eq!(text.parse::<PredictionMode>().unwrap(), mode);
        assert_eq!(mode.to_string(), text.to_ascii_lowercase());
    }
    let e = "reconstructed".parse::<PredictionMode>().unwrap_err();
    assert!(e.contains("'reconstructed'") && e.contains("denoised, counterfactual or decoded"), "{e}");
    assert_eq!(PredictionMode::default(), PredictionMode::Denoised);
    assert_eq!(PredictionMode::ALL[0], PredictionMode::default());
}

/// A model that lists no control cannot give counterfactual predictions: the error says to ask
/// for the decoded mode, which still works.
#[test]
fn counterfactual_without_a_control_is_explained() {
    let mut file = random_model(SyntheticSpec::tiny(DType::Q8_0));
    file.config.perturbations.retain(|n| !refcast::ModelConfig::is_control(n));
    let mut s = Session::cpu(&file).unwrap();
    let refs = references(&s, 150);
    let req = Request::conditioned(refs, perts());
    let e = pollster::block_on(s.predict(&req)).unwrap_err().to_string();
    assert!(e.contains("the denoised prediction mode needs") && e.contains("lists none") && e.contains("decoded mode"), "{e}");
    let counterfactual = Request { mode: PredictionMode::Counterfactual, ..req.clone() };
    let e = pollster::block_on(s.predict(&counterfactual)).unwrap_err().to_string();
    assert!(e.contains("the counterfactual prediction mode needs"), "{e}");
    predict(&mut s, &decoded(&req));
}

/// Screens rank with the chosen mode: the counterfactual screen's fold changes are its rows'
/// predicted − reference, and differ from the decoded screen's.
#[test]
fn screens_rank_in_the_chosen_mode() {
    let mut s = session();
    let refs = references(&s, 150);
    let screen = |s: &mut Session<refcast::CpuBackend>, mode| {
        pollster::block_on(s.screen(&refs[0], &Metadata::new(), &ScreenOptions { mode, baseline: Some(Baseline::Reference), ..Default::default() })).unwrap().hits
    };
    let cf = screen(&mut s, PredictionMode::Counterfactual);
    let dec = screen(&mut s, PredictionMode::Decoded);
    let default = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &ScreenOptions::default())).unwrap().hits;
    assert_eq!(cf.iter().map(|h| (&h.name, h.score())).collect::<Vec<_>>(), default.iter().map(|h| (&h.name, h.score())).collect::<Vec<_>>());
    let known: Vec<Metadata> = s.config().perturbations.iter().map(|n| n.metadata.clone()).collect();
    let mut req = Request::conditioned(refs[..1].to_vec(), known);
    let want = predict(&mut s, &req);
    let names: Vec<&str> = s.config().perturbations.iter().map(|n| n.name.as_str()).collect();
    let g = want.genes;
    for h in &cf {
        let p = names.iter().position(|n| *n == h.name).unwrap();
        let row = &want.log_fold_change.as_ref().unwrap()[p * g..(p + 1) * g];
        let measured: Vec<f32> = row.iter().zip(&refs[0].measured).filter(|(_, m)| **m).map(|(v, _)| *v).collect();
        let rms = (measured.iter().map(|v| v * v).sum::<f32>() / measured.len() as f32).sqrt();
        assert!((h.effect_size - rms).abs() <= 1e-5 * (1.0 + rms), "{}: {} vs {rms}", h.name, h.effect_size);
    }
    // The control moves nothing in the counterfactual mode (but its reconstruction error in the
    // decoded one).
    let control = control(&s);
    let ctl = |hits: &[refcast::ScreenHit]| hits.iter().find(|h| h.metadata == control).unwrap().effect_size;
    assert!(ctl(&cf) < 1e-5 && ctl(&dec) > 1e-3, "control effect: counterfactual {}, decoded {}", ctl(&cf), ctl(&dec));
    req.mode = PredictionMode::Decoded;
    assert_ne!(predict(&mut s, &req).log_cpm, want.log_cpm);
}

// ---------------------------------------------------------------------------------------------
// The command line

/// `refcast predict|screen --mode`: counterfactual by default, decoded on request (its fold
/// changes against the predicted control by default), the same fold changes against the control
/// as against the reference in the counterfactual mode, and a clear error for an unknown mode.
#[test]
fn the_command_line_takes_the_prediction_mode() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    std::fs::write(&model, random_model(SyntheticSpec::tiny(DType::Q8_0)).to_bytes().unwrap()).unwrap();
    let sample = dir.path().join("sample.tsv");
    let mut text = String::from("gene\tcount\n");
    for g in 0..160 {
        text += &format!("GENE{g}\t{}\n", (g * 7919) % 97);
    }
    std::fs::write(&sample, text).unwrap();
    let run = |cmd: &str, extra: &[&str]| -> (bool, String, String) {
        let mut args = vec![cmd, "--backend", "cpu", "--model", model.to_str().unwrap(), "--sample", sample.to_str().unwrap()];
        args.extend(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_refcast")).args(&args).output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let table = |extra: &[&str]| -> Vec<Vec<f64>> {
        let (ok, stdout, stderr) = run("predict", extra);
        assert!(ok, "{extra:?}: {stderr}");
        let mut lines = stdout.lines();
        assert_eq!(lines.next().unwrap(), "gene\treference\tpredicted\tlog_fold_change\tcounts\tsigma\tmeasured");
        lines.map(|l| l.split('\t').skip(1).map(|v| v.parse().unwrap()).collect()).collect()
    };
    let p = ["--perturbation", "drug_a"];
    let default = table(&p);
    let cf = table(&[&p[..], &["--mode", "counterfactual"]].concat());
    let cf_versus_control = table(&[&p[..], &["--mode", "counterfactual", "--versus", "control"]].concat());
    let dec = table(&[&p[..], &["--mode", "decoded"]].concat());
    let dec_versus_reference = table(&[&p[..], &["--mode", "decoded", "--versus", "reference"]].concat());
    let dec_control = table(&["--perturbation", "none (control)", "--mode", "decoded"]);
    assert_eq!(default, cf, "the default, denoised, is the counterfactual profile on a model without thresholds");
    assert_eq!(cf_versus_control, cf);
    assert_eq!(dec.len(), 160);
    for g in 0..160 {
        let (reference, predicted, lfc) = (cf[g][0], cf[g][1], cf[g][2]);
        let want = (reference + dec[g][1] - dec_control[g][1]).max(0.0);
        assert!((predicted - want).abs() <= 2e-5, "gene {g}: {predicted} vs {want}");
        assert!((lfc - (predicted - reference)).abs() <= 2e-5, "gene {g}: fold change {lfc}");
        // Decoded profiles are measured against the predicted control unless asked otherwise.
        assert!((dec[g][2] - (dec[g][1] - dec_control[g][1])).abs() <= 2e-5, "gene {g}: decoded fold change");
        let vs_reference = &dec_versus_reference[g];
        assert!((vs_reference[2] - (vs_reference[1] - vs_reference[0])).abs() <= 2e-5, "gene {g}: decoded fold change vs the reference");
    }
    let (ok, _, stderr) = run("predict", &["--mode", "reconstruction"]);
    assert!(!ok && stderr.contains("unknown prediction mode 'reconstruction'") && stderr.contains("counterfactual or decoded"), "{stderr}");
    let scores = |extra: &[&str]| -> String {
        let (ok, stdout, stderr) = run("screen", extra);
        assert!(ok, "{stderr}");
        stdout
    };
    assert_eq!(scores(&[]), scores(&["--mode", "counterfactual"]));
    assert_ne!(scores(&[]), scores(&["--mode", "decoded"]));
}
