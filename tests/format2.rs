//! Format 2 models (docs/FORMAT.md, "version 2") on both backends: the encoder's covariate and
//! the decoder's perturbation path are exactly the computation the format describes, format 1
//! predictions are unchanged by them, the familiarity report holds the numbers it promises, the
//! technical prior sees the sample's depth, and bad format 2 documents are refused by name.

mod common;

use refcast::backend::Backend;
use refcast::synthetic::{SyntheticSpec, library_size_field, random_model, random_model_v2};
use refcast::format::{Latent, ModelFile};
use refcast::ops::kernel::KernelStyle;
use refcast::quant::{DType, Matrix};
use refcast::sample::{SampleTable, ValueKind};
use refcast::session::{PredictionMode, Request, Sampling, ScreenOptions, Session, pearson};
use refcast::{CpuBackend, Group, Metadata, Prediction, Reference, metadata};

/// The tiny synthetic sizes with a 32-wide perturbation latent, so that the perturbation path's
/// weight is quantized like the other linear layers.
fn spec(dtype: DType) -> SyntheticSpec {
    SyntheticSpec { latent: Latent { technical: 3, biological: 5, perturbation: 32 }, ..SyntheticSpec::tiny(dtype) }
}

/// Column 0: counts (a library size of a few thousand); column 1: log-CPM (no library size).
fn references(s: &Session<impl Backend>) -> Vec<Reference> {
    let genes = s.config().architecture.genes;
    let mut counts = String::from("gene\tcount\n");
    let mut log_cpm = String::from("gene\tlog_cpm\n");
    for g in 0..genes - 7 {
        counts += &format!("GENE{g}\t{}\n", (g * 7919) % 97);
        log_cpm += &format!("GENE{g}\t{:.4}\n", 1.0 + ((g * 104_729) % 53) as f32 / 10.0);
    }
    let counts = SampleTable::parse(counts.as_bytes(), ValueKind::Auto).unwrap();
    let log_cpm = SampleTable::parse(log_cpm.as_bytes(), ValueKind::Auto).unwrap();
    vec![s.reference(&counts, 0).unwrap(), s.reference(&log_cpm, 0).unwrap()]
}

fn perts() -> Vec<Metadata> {
    vec![metadata! { "perturbation" => "drug_a", "time_hours" => 6.0 }, metadata! { "perturbation" => "cytokine_c" }]
}

fn control() -> Metadata {
    metadata! { "perturbation" => "none", "time_hours" => 0.0 }
}

fn predict<B: Backend>(s: &mut Session<B>, req: &Request) -> Prediction {
    pollster::block_on(s.predict(req)).unwrap()
}

fn decoded(req: Request) -> Request {
    Request { mode: PredictionMode::Decoded, ..req }
}

/// `|a − b| ≤ tol · (1 + |b|)` everywhere.
fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}: value {i}: {x} vs {y}");
    }
}

/// The file with a tensor replaced by `f` of its values.
fn edit(mut file: ModelFile, name: &str, f: impl Fn(&mut [f32])) -> ModelFile {
    let t = &file.tensors[name];
    let mut v = t.to_f32();
    f(&mut v);
    let m = Matrix::encode(t.rows, t.cols, &v, t.dtype);
    file.tensors.insert(name.to_string(), m);
    file
}

/// The format 1 model with the same tensors as a format 2 one (without what format 2 adds).
fn as_format1(v2: &ModelFile) -> ModelFile {
    let mut v1 = v2.clone();
    v1.config.format_version = 1;
    v1.config.covariates.clear();
    v1.config.familiarity = None;
    for name in ["encoder.covariate.weight", "encoder.covariate.bias", "decoder.perturbation.weight", "decoder.perturbation.bias"] {
        v1.tensors.remove(name);
    }
    v1
}

fn zeroed(file: ModelFile, names: &[&str]) -> ModelFile {
    names.iter().fold(file, |f, name| edit(f, name, |v| v.fill(0.0)))
}

#[test]
fn format2_files_read_back_identically() {
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
        let m = random_model_v2(spec(dtype));
        let back = ModelFile::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.config.format_version, 2);
        assert_eq!(back.config.familiarity, m.config.familiarity);
        assert_eq!(back.config.covariates.len(), 1);
        assert_eq!(back.tensors["decoder.perturbation.weight"].dtype, dtype, "encoded like the other linear layers");
        assert_eq!(back.tensors["encoder.covariate.weight"].dtype, DType::F32, "never quantized");
        for (name, t) in &m.tensors {
            assert_eq!(back.tensors[name].bytes, t.bytes, "{name}");
        }
    }
    // Format 1 documents stay free of the format 2 fields.
    let v1 = random_model(spec(DType::Q8_0)).to_bytes().unwrap();
    let header = String::from_utf8_lossy(&v1[8..8 + u64::from_le_bytes(v1[..8].try_into().unwrap()) as usize]).to_string();
    assert!(!header.contains("covariates") && !header.contains("familiarity"), "{header}");
}

/// Zero covariate and perturbation-path weights give exactly the format 1 model's numbers: the
/// new paths add 0 and nothing else changes.
#[test]
fn a_format2_model_with_zero_new_weights_predicts_as_format1_bit_for_bit() {
    let v2 = random_model_v2(spec(DType::Q8_0));
    let v1 = as_format1(&v2);
    let names = ["encoder.covariate.weight", "encoder.covariate.bias", "decoder.perturbation.weight", "decoder.perturbation.bias"];
    let mut s2 = Session::cpu(&zeroed(v2, &names)).unwrap();
    let mut s1 = Session::cpu(&v1).unwrap();
    let refs = references(&s1);
    for req in [Request::conditioned(refs.clone(), perts()), decoded(Request::conditioned(refs.clone(), perts()))] {
        let (a, b) = (predict(&mut s2, &req), predict(&mut s1, &req));
        assert_eq!(a.log_cpm, b.log_cpm);
        assert_eq!(a.latents, b.latents);
        assert_eq!(a.counts, b.counts);
        // Familiarity is computed for both formats; only format 2 has a calibration.
        assert_eq!(a.familiarity.len(), 2);
        assert_eq!(a.familiarity[0].reconstruction_r2, b.familiarity[0].reconstruction_r2);
        assert!(a.familiarity[0].outside.is_some() && b.familiarity[0].outside.is_none());
    }
}

/// The covariate is `encoder.covariate(c)` added to the encoder's first hidden state: the same
/// as a format 1 encoder whose input bias holds `W_c · c + b_c`, with c = (ln(1 + library
/// size) − mean) / std for a counts sample and 0 for a log-CPM one. Tolerance 1e-5 · (1 + |x|):
/// only the order of two f32 additions differs.
#[test]
fn the_covariate_shifts_the_encoder_input_by_its_linear_map() {
    let v2 = random_model_v2(spec(DType::Q8_0));
    let v2 = zeroed(v2, &["decoder.perturbation.weight", "decoder.perturbation.bias"]);
    let field = v2.config.covariates[0].clone();
    let (w, b) = (v2.tensors["encoder.covariate.weight"].to_f32(), v2.tensors["encoder.covariate.bias"].to_f32());
    let mut s2 = Session::cpu(&v2).unwrap();
    let refs = references(&s2);
    assert!(refs[0].depth_known && !refs[1].depth_known);
    let with_counts = predict(&mut s2, &decoded(Request::conditioned(vec![refs[0].clone()], perts())));
    let with_log_cpm = predict(&mut s2, &decoded(Request::conditioned(vec![refs[1].clone()], perts())));
    let c = field.transform(refs[0].library_size as f64);
    assert!(c.abs() > 0.5, "the test sample's depth must move the covariate: {c}");
    for (reference, c, got) in [(&refs[0], c, &with_counts), (&refs[1], 0.0, &with_log_cpm)] {
        let folded = edit(as_format1(&v2), "encoder.input.bias", |bias| {
            bias.iter_mut().enumerate().for_each(|(h, v)| *v += w[h] * c + b[h]);
        });
        let mut s1 = Session::cpu(&folded).unwrap();
        let want = predict(&mut s1, &decoded(Request::conditioned(vec![reference.clone()], perts())));
        close(&format!("latents of {}", reference.name), &got.latents, &want.latents, 1e-5);
        close(&format!("log-CPM of {}", reference.name), &got.log_cpm, &want.log_cpm, 1e-5);
    }
    // And it matters: without the covariate the latents differ.
    let plain = predict(&mut Session::cpu(&as_format1(&v2)).unwrap(), &decoded(Request::conditioned(vec![refs[0].clone()], perts())));
    let moved = plain.latents.iter().zip(&with_counts.latents).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-3, "the covariate changed the latents by only {moved}");
}

/// The decoder's output is the format 1 trunk's plus `W_p · z_pert + b_p`, computed here in f64
/// from the dequantized Q8_0 weight. Tolerance 1e-4 · (1 + |x|) (f32 sums over 32 terms).
#[test]
fn the_perturbation_path_adds_a_linear_map_of_the_perturbation_latent() {
    let v2 = random_model_v2(spec(DType::Q8_0));
    assert_eq!(v2.tensors["decoder.perturbation.weight"].dtype, DType::Q8_0);
    let (w, b) = (v2.tensors["decoder.perturbation.weight"].to_f32(), v2.tensors["decoder.perturbation.bias"].to_f32());
    let mut s2 = Session::cpu(&v2).unwrap();
    let refs = references(&s2);
    let got = predict(&mut s2, &decoded(Request::conditioned(refs.clone(), perts())));
    let lat = v2.config.architecture.latent;
    let (genes, d) = (v2.config.architecture.genes, lat.total());
    let v1 = as_format1(&v2);
    let mut be = CpuBackend::new();
    let trunk = refcast::model::Model::load(&mut be, &v1).unwrap();
    let rows = got.rows.len();
    let z = be.tensor(&got.latents, rows, d).unwrap();
    let y = trunk.decode(&mut be, &z).unwrap();
    let base = pollster::block_on(be.read(&[&y])).unwrap().remove(0);
    let mut want = vec![0f32; rows * genes];
    let mut path_size = 0f64;
    for r in 0..rows {
        let z_pert = &got.latents[r * d + lat.technical + lat.biological..(r + 1) * d];
        for g in 0..genes {
            let path: f64 = b[g] as f64 + (0..lat.perturbation).map(|k| w[g * lat.perturbation + k] as f64 * z_pert[k] as f64).sum::<f64>();
            path_size = path_size.max(path.abs());
            want[r * genes + g] = (base[r * genes + g] as f64 + path) as f32;
        }
    }
    assert!(path_size > 0.1, "the path must contribute: largest term {path_size}");
    close("decoded log-CPM", &got.log_cpm, &want, 1e-4);
    // The counterfactual's control row goes through the same path: the perturbation moves the
    // counterfactual by the difference of the two paths (and of the trunks).
    let cf = predict(&mut s2, &Request::conditioned(refs.clone(), perts()));
    assert_ne!(cf.log_cpm, got.log_cpm);
}

/// The reconstruction R² is that of the decoded control profile, however the request is formed
/// (the counterfactual's control rows, a decoded request listing the control, a separate decode
/// for other requests); a centroid at the reference's encoder μ is at distance 0; `outside`
/// follows each threshold; screens carry the same report; prompt-only requests none.
#[test]
fn familiarity_reports_the_reconstruction_and_the_nearest_context() {
    let v2 = random_model_v2(spec(DType::Q8_0));
    let mut s = Session::cpu(&v2).unwrap();
    let refs = references(&s);
    let lat = v2.config.architecture.latent;
    let width = lat.technical + lat.biological;
    // The decoded control profile and the encoder μ, from a decoded request for the control.
    let ctrl = predict(&mut s, &decoded(Request::conditioned(refs.clone(), vec![control()])));
    let g = ctrl.genes;
    let want_r2: Vec<f32> = refs
        .iter()
        .enumerate()
        .map(|(b, r)| {
            let keep = |v: &[f32]| v.iter().zip(&r.measured).filter(|(_, m)| **m).map(|(v, _)| *v).collect::<Vec<_>>();
            pearson(&keep(&r.log_cpm), &keep(Prediction::row(&ctrl.log_cpm, g, b))).powi(2)
        })
        .collect();
    assert!(want_r2.iter().all(|r2| r2.is_finite() && *r2 > 0.0));
    let mut sampled = Request::conditioned(refs.clone(), perts());
    sampled.sampling = Sampling::Samples { num_samples: 2, seed: 7 };
    for (what, req) in [
        ("counterfactual", Request::conditioned(refs.clone(), perts())),
        ("decoded", decoded(Request::conditioned(refs.clone(), perts()))),
        ("decoded, control listed", ctrl_listed(&refs)),
        ("sampled", sampled),
    ] {
        let f = predict(&mut s, &req).familiarity;
        assert_eq!(f.len(), 2, "{what}");
        for (b, f) in f.iter().enumerate() {
            assert_eq!(f.reference, refs[b].name);
            assert!((f.reconstruction_r2 - want_r2[b]).abs() < 1e-6, "{what}: reference {b}: {} vs {}", f.reconstruction_r2, want_r2[b]);
        }
    }

    // A centroid at reference 0's encoder μ: distance 0, that context nearest.
    let mu: Vec<f64> = ctrl.latents[..width].iter().map(|&v| v as f64).collect();
    let r2 = want_r2[0] as f64;
    let calibrated = |max_distance: f64, min_r2: f64| {
        let mut m = v2.clone();
        let cal = m.config.familiarity.as_mut().unwrap();
        cal.centroids[0].mean = mu.clone();
        cal.centroids[0].context = "the reference's own".into();
        cal.max_distance = max_distance;
        cal.min_reconstruction_r2 = min_r2;
        Session::cpu(&ModelFile::from_bytes(&m.to_bytes().unwrap()).unwrap()).unwrap()
    };
    let mut s = calibrated(0.5, r2 - 0.01);
    let f = predict(&mut s, &Request::conditioned(vec![refs[0].clone()], perts())).familiarity.remove(0);
    assert_eq!(f.nearest_context.as_deref(), Some("the reference's own"));
    assert!(f.distance.unwrap() < 1e-5, "{f:?}");
    assert_eq!((f.outside, f.reasons.len()), (Some(false), 0));
    let screen = pollster::block_on(s.screen(&refs[0], &Metadata::new(), &ScreenOptions::default())).unwrap();
    // The screen decodes the control among other rows: the same numbers to f32 rounding.
    assert_eq!(screen.familiarity.len(), 1);
    let sf = &screen.familiarity[0];
    assert_eq!((&sf.nearest_context, sf.outside), (&f.nearest_context, f.outside));
    close("screen R²", &[sf.reconstruction_r2], &[f.reconstruction_r2], 1e-5);
    // Just above the R² threshold, then just below.
    let mut s = calibrated(0.5, r2 + 0.01);
    let f = predict(&mut s, &Request::conditioned(vec![refs[0].clone()], perts())).familiarity.remove(0);
    assert_eq!(f.outside, Some(true));
    assert!(f.reasons[0].starts_with("the model reconstructs only"), "{:?}", f.reasons);
    // Reference 1 lies away from the centroid: a threshold below its distance puts it outside.
    let f1 = predict(&mut calibrated(1e6, -1.0), &Request::conditioned(vec![refs[1].clone()], perts())).familiarity.remove(0);
    let d1 = f1.distance.unwrap() as f64;
    assert!(d1 > 0.01 && f1.outside == Some(false), "{f1:?}");
    let f1 = predict(&mut calibrated(d1 * 0.99, -1.0), &Request::conditioned(vec![refs[1].clone()], perts())).familiarity.remove(0);
    assert_eq!(f1.outside, Some(true));
    assert!(f1.reasons[0].starts_with("its profile is far from every sample the model was trained on"), "{:?}", f1.reasons);

    let prompt = predict(&mut s, &Request::prompt(vec![], perts()));
    assert!(prompt.familiarity.is_empty());
}

fn ctrl_listed(refs: &[Reference]) -> Request {
    let mut with_control = perts();
    with_control.push(control());
    decoded(Request::conditioned(refs.to_vec(), with_control))
}

/// A format 2 model whose technical prior has a `library_size` field: the reference's depth
/// fills it in unless the context sets it; a log-CPM sample leaves it missing; prompt-only
/// requests use `Request::library_size`.
#[test]
fn the_technical_prior_sees_the_sequencing_depth() {
    let mut file = random_model_v2(spec(DType::Q8_0));
    file.config.priors.technical.numeric.push(library_size_field());
    // One more embedding row: the numeric field's.
    let table = &file.tensors["prior.technical.embedding"];
    let mut values = table.to_f32();
    values.extend((0..table.cols).map(|j| ((j * 37 % 11) as f32 - 5.0) / 5.0));
    let grown = Matrix::encode(table.rows + 1, table.cols, &values, table.dtype);
    file.tensors.insert("prior.technical.embedding".into(), grown);
    let file = ModelFile::from_bytes(&file.to_bytes().unwrap()).unwrap();
    let mut s = Session::cpu(&file).unwrap();
    let refs = references(&s);
    let technical = |s: &mut Session<CpuBackend>, reference: &Reference, context: Metadata| {
        let mut req = decoded(Request::conditioned(vec![reference.clone()], perts()));
        req.condition_on = vec![Group::Biological];
        req.contexts = vec![context];
        predict(s, &req).latents[..3].to_vec()
    };
    let depth = refs[0].library_size as f64;
    let auto = technical(&mut s, &refs[0], Metadata::new());
    assert_eq!(auto, technical(&mut s, &refs[0], metadata! { "library_size" => depth }));
    assert_ne!(auto, technical(&mut s, &refs[0], metadata! { "library_size" => depth * 100.0 }), "an explicit value wins");
    // A log-CPM sample leaves the field missing: the training mean, e¹² − 1 reads (1e-5: the
    // transform of that depth is 0 only to f32 rounding).
    let mean_depth = 12f64.exp_m1();
    let log_cpm = technical(&mut s, &refs[1], Metadata::new());
    close("log-CPM sample", &log_cpm, &technical(&mut s, &refs[1], metadata! { "library_size" => mean_depth }), 1e-5);
    let at_mean = technical(&mut s, &refs[0], metadata! { "library_size" => mean_depth });
    assert!(auto.iter().zip(&at_mean).any(|(a, b)| (a - b).abs() > 1e-3), "the counts sample's depth must matter");
    // Prompt-only: the request's library size.
    let prompt = |s: &mut Session<CpuBackend>, library_size: f32, context: Metadata| {
        let mut req = Request::prompt(vec![context], perts());
        req.library_size = library_size;
        predict(s, &req).latents[..3].to_vec()
    };
    assert_eq!(prompt(&mut s, 5e4, Metadata::new()), prompt(&mut s, 1e6, metadata! { "library_size" => 5e4 }));
    assert_ne!(prompt(&mut s, 5e4, Metadata::new()), prompt(&mut s, 1e6, Metadata::new()));
}

/// The GPU (both kernel styles) gives the CPU's format 2 predictions and familiarity, at the
/// tolerance of the other GPU tests: 1e-4 · (1 + |x|).
#[test]
fn gpu_matches_cpu_on_format2_models() {
    for dtype in [DType::Q8_0, DType::Q4_0] {
        let file = random_model_v2(spec(dtype));
        let mut cpu = Session::cpu(&file).unwrap();
        let refs = references(&cpu);
        let mut sampled = Request::conditioned(refs.clone(), perts());
        sampled.sampling = Sampling::Samples { num_samples: 2, seed: 3 };
        let requests = [
            Request::conditioned(refs.clone(), perts()),
            decoded(Request::conditioned(refs.clone(), perts())),
            sampled,
            Request::prompt(vec![metadata! { "cell_type" => "T" }], perts()),
        ];
        let want: Vec<Prediction> = requests.iter().map(|r| predict(&mut cpu, r)).collect();
        for style in [KernelStyle::Workgroup, KernelStyle::Flat] {
            let Some(mut gpu) = common::gpu_or_skip() else { return };
            gpu.set_kernel_style(style);
            let mut s = Session::new(gpu, &file).unwrap();
            eprintln!("{dtype} {style:?}: {}", s.describe());
            for (i, (req, want)) in requests.iter().zip(&want).enumerate() {
                let got = predict(&mut s, req);
                let what = |x: &str| format!("{dtype} {style:?} request {i}: {x}");
                close(&what("log-CPM"), &got.log_cpm, &want.log_cpm, 1e-4);
                close(&what("counts"), &got.counts, &want.counts, 1e-4);
                close(&what("latents"), &got.latents, &want.latents, 1e-4);
                assert_eq!(got.log_fold_change.is_some(), want.log_fold_change.is_some());
                if let (Some(a), Some(b)) = (&got.log_fold_change, &want.log_fold_change) {
                    close(&what("fold changes"), a, b, 1e-4);
                }
                assert_eq!(got.familiarity.len(), want.familiarity.len(), "{}", what("familiarity"));
                for (a, b) in got.familiarity.iter().zip(&want.familiarity) {
                    close(&what("R²"), &[a.reconstruction_r2], &[b.reconstruction_r2], 1e-4);
                    close(&what("distance"), &[a.distance.unwrap()], &[b.distance.unwrap()], 1e-4);
                    assert_eq!((&a.nearest_context, a.outside), (&b.nearest_context, b.outside), "{}", what("familiarity"));
                }
            }
        }
    }
}

/// The command line on a calibrated format 2 model: a warning line for a sample outside, the
/// `--familiarity` TSV, and `info` describing the covariate and the calibration in words.
#[test]
fn the_command_line_warns_about_samples_outside_the_calibration() {
    let mut file = random_model_v2(spec(DType::Q8_0));
    file.config.familiarity.as_mut().unwrap().max_distance = 0.0;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("v2.safetensors");
    std::fs::write(&model, file.to_bytes().unwrap()).unwrap();
    let sample = dir.path().join("sample.tsv");
    let rows: String = (0..150).map(|g| format!("GENE{g}\t{}\n", (g * 7919) % 97)).collect();
    std::fs::write(&sample, format!("gene\tcount\n{rows}")).unwrap();
    let table = dir.path().join("familiarity.tsv");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_refcast")).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (m, s, t) = (model.to_str().unwrap(), sample.to_str().unwrap(), table.to_str().unwrap());
    for command in ["predict", "screen"] {
        let (_, stderr) = run(&[command, "-m", m, "-s", s, "--backend", "cpu", "--familiarity", t]);
        assert!(
            stderr.contains("warning: sample 'sample' looks unlike anything the model was trained on: its profile is far from every sample the model was trained on (nearest: T cells (10x); distance ")
                && stderr.contains("trained samples reach 0.0)") && stderr.contains("; predictions for it are extrapolations"),
            "{command}: {stderr}"
        );
        let tsv = std::fs::read_to_string(&table).unwrap();
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines[0], "reference\treconstruction_r2\tnearest_context\tdistance\toutside");
        let cells: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!((cells[0], cells[2], cells[4]), ("sample", "T cells (10x)", "true"), "{tsv}");
        assert!(cells[1].parse::<f32>().unwrap() >= 0.0 && cells[3].parse::<f32>().unwrap() > 0.0, "{tsv}");
    }
    let (info, _) = run(&["info", m]);
    assert!(info.contains("encoder      library_size: the sample's sum of counts"), "{info}");
    assert!(info.contains("A sample is flagged as unlike the training data when its encoding is farther than 0 from the") && info.contains("centroid of every one of the 1 training contexts"), "{info}");
    assert!(info.contains("reconstructs less than 50") && info.contains("random centroids of a synthetic model"), "{info}");
}
