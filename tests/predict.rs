//! The model graph and the predict/screen API on the CPU backend, on a synthetic model: batching
//! never changes a row, samples are reproducible, inputs are checked.

use refcast::format::synthetic::{SyntheticSpec, random_model};
use refcast::quant::DType;
use refcast::sample::{SampleTable, ValueKind};
use refcast::session::{Request, Sampling, Session};
use refcast::{Group, Metadata, Reference, metadata};

fn session() -> Session<refcast::CpuBackend> {
    Session::cpu(&random_model(SyntheticSpec::tiny(DType::Q8_0))).unwrap()
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
    let hits = pollster::block_on(s.screen(&refs[0], &Metadata::new(), None, None)).unwrap();
    assert_eq!(hits.len(), s.config().perturbations.len());
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits.iter().all(|h| h.effect_size > 0.0 && h.top_up.len() == 10));
    // Reversing the strongest hit's own profile ranks it last.
    let top = &hits[0];
    let sig = refcast::Signature {
        genes: top.top_up.iter().chain(&top.top_down).map(|(g, v)| (format!("GENE{g}"), *v)).collect(),
    };
    let rev = pollster::block_on(s.screen(&refs[0], &Metadata::new(), None, Some(&sig))).unwrap();
    assert_eq!(rev.last().unwrap().name, top.name);
    assert!(rev.last().unwrap().reversal.unwrap() < -0.9);
}

#[test]
fn fold_changes_against_the_predicted_control() {
    let mut s = session();
    let refs = references(&s, 160);
    let control = s.config().perturbations.iter().find(|n| refcast::ModelConfig::is_control(n)).unwrap().metadata.clone();
    let mut req = Request::conditioned(refs.clone(), vec![perts()[0].clone(), control.clone()]);
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
            let ctl = Request::conditioned(vec![refs[row.reference].clone()], vec![control.clone()]);
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
