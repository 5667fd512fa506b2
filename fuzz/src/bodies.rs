//! The bodies of the fuzz targets, and valid seed inputs. Shared by the `cargo fuzz` targets
//! (fuzz/fuzz_targets/) and the deterministic smoke test in tests/bad_input.rs, which includes
//! this file by path. Each body panics only when refcast breaks a promise: a parser may reject
//! any input, but must not panic, and what it accepts must be consistent.

use refcast::synthetic::{SyntheticSpec, random_model};
use refcast::format::{Gene, Latent, ModelFile, Trunk, expected_tensors};
use refcast::quant::{DType, Matrix};
use refcast::sample::{GeneIndex, Reference, SampleTable, ValueKind};
use refcast::signature::Signature;

/// Genes of the vocabulary samples are matched against (GENE0…, with Ensembl ids).
pub const SAMPLE_VOCABULARY: usize = 40;

/// Small valid model files (a few KiB, so that the fuzzer runs fast): one per weight encoding,
/// with and without residual blocks.
pub fn model_seeds() -> Vec<Vec<u8>> {
    [(DType::F32, 1), (DType::F16, 0), (DType::Q8_0, 1), (DType::Q4_0, 0)]
        .into_iter()
        .map(|(dtype, blocks)| {
            let spec = SyntheticSpec {
                genes: 32,
                hidden: 32,
                ff: 32,
                blocks,
                latent: Latent { technical: 2, biological: 2, perturbation: 2 },
                dtype,
                seed: 7,
            };
            let mut model = random_model(spec);
            // Narrow priors, and weights refilled for the new shapes.
            model.config.architecture.prior = Trunk { hidden: 8, ff: 8, blocks };
            model.tensors = expected_tensors(&model.config)
                .into_iter()
                .map(|(name, (rows, cols))| {
                    let values: Vec<f32> = (0..rows * cols).map(|j| ((j * 37 % 17) as f32 - 8.0) / 16.0).collect();
                    let quantize = name.ends_with(".weight") && rows > 1 && cols % 32 == 0;
                    let matrix = Matrix::encode(rows, cols, &values, if quantize { dtype } else { DType::F32 });
                    (name, matrix)
                })
                .collect();
            model.to_bytes().expect("synthetic models serialise")
        })
        .collect()
}

/// Valid and nearly valid sample files in the shapes people export.
pub fn sample_seeds() -> Vec<Vec<u8>> {
    let mut tsv = String::from("gene\tcount\n");
    let mut csv = String::from("\u{feff}gene_id,sample_a,sample_b\n");
    let mut bare = String::new();
    let mut logcpm = String::from("# log-CPM\ngene\tlog_cpm\n");
    for g in 0..SAMPLE_VOCABULARY {
        tsv += &format!("GENE{g}\t{}\n", g * 13 % 29);
        csv += &format!("\"ENSG{:011}.{}\",{},{}\r\n", 100_000 + g, g % 3 + 1, g % 7, g * 3 % 11 + 1);
        bare += &format!("gene{g}\t{}.{}\n", g % 9, g % 10);
        logcpm += &format!("GENE{g}\t{:.4}\n", (g as f64 * 0.37).sin().abs() * 9.0);
    }
    tsv += "NOT_IN_MODEL\t4\n";
    vec![tsv.into_bytes(), csv.into_bytes(), bare.into_bytes(), logcpm.into_bytes()]
}

/// Model parser: any input is rejected with an error or parses; what parses writes back and
/// reads back identically.
pub fn model_file(data: &[u8]) {
    let Ok(model) = ModelFile::from_bytes(data) else { return };
    let bytes = model.to_bytes().expect("an accepted model serialises");
    let back = ModelFile::from_bytes(&bytes).expect("a re-serialised model parses");
    assert_eq!(back.tensors.len(), model.tensors.len());
    for (name, t) in &model.tensors {
        let b = &back.tensors[name];
        assert_eq!((b.rows, b.cols, b.dtype), (t.rows, t.cols, t.dtype), "{name}");
        assert_eq!(b.bytes, t.bytes, "{name}");
    }
}

fn vocabulary() -> (GeneIndex, Vec<f32>) {
    let genes: Vec<Gene> = (0..SAMPLE_VOCABULARY)
        .map(|i| Gene { symbol: format!("GENE{i}"), ensembl: Some(format!("ENSG{:011}", 100_000 + i)) })
        .collect();
    (GeneIndex::new(&genes), (0..SAMPLE_VOCABULARY).map(|i| 1.0 + i as f32 * 0.1).collect())
}

/// Sample parser and gene matching: the first byte picks the value kind; a parsed table is
/// rectangular and finite, and every column either matches the vocabulary with finite log-CPM or
/// is rejected with an error.
pub fn sample_table(data: &[u8]) {
    let (kind, text) = match data.split_first() {
        Some((k, rest)) => ([ValueKind::Auto, ValueKind::Counts, ValueKind::LogCpm][*k as usize % 3], rest),
        None => (ValueKind::Auto, data),
    };
    let Ok(table) = SampleTable::parse(text, kind) else { return };
    assert!(!table.genes.is_empty());
    assert_eq!(table.samples.len(), table.values.len());
    assert_ne!(table.kind, ValueKind::Auto);
    for column in &table.values {
        assert_eq!(column.len(), table.genes.len());
        assert!(column.iter().all(|v| v.is_finite()));
        if table.kind == ValueKind::Counts {
            assert!(column.iter().all(|&v| v >= 0.0));
        }
    }
    let (index, gene_mean) = vocabulary();
    for s in 0..table.samples.len().min(8) {
        if let Ok(r) = Reference::from_table(&table, s, &index, &gene_mean) {
            assert_eq!(r.log_cpm.len(), SAMPLE_VOCABULARY);
            assert!(r.log_cpm.iter().all(|v| v.is_finite() && *v >= 0.0), "{:?}", r.log_cpm);
            assert!(r.library_size.is_finite() && r.library_size > 0.0);
            assert_eq!(r.report.matched + r.report.missing, SAMPLE_VOCABULARY);
            assert_eq!(r.measured.iter().filter(|&&m| m).count(), r.report.matched);
        }
    }
    let _ = Reference::from_table(&table, table.samples.len(), &index, &gene_mean).expect_err("a column past the end is an error");
}

/// Valid signature files in the forms `screen --signature` reads: a gene set, up/down sets, and
/// weights in a named column among others.
pub fn signature_seeds() -> Vec<Vec<u8>> {
    let set: String = (0..12).map(|g| format!("GENE{g}\n")).collect();
    let mut sets = String::from("gene\tdirection\n");
    let mut weights = String::from("gene,pval,weight\n");
    for g in 0..12 {
        sets += &format!("GENE{g}\t{}\n", if g % 2 == 0 { "up" } else { "down" });
        weights += &format!("\"ENSG{:011}\",{:.3},{}\n", 100_000 + g, 0.01 * g as f64, g as f64 - 5.5);
    }
    vec![set.into_bytes(), sets.into_bytes(), weights.into_bytes()]
}

/// Signature parser and scoring: the first byte picks whether the weight column is named; what
/// parses either matches the vocabulary and scores finite reversals, or is rejected with an error.
pub fn signature_file(data: &[u8]) {
    let (column, text) = match data.split_first() {
        Some((k, rest)) if k % 2 == 1 => (Some("weight"), rest),
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    let Ok(signature) = Signature::parse(text, column) else { return };
    assert!(!signature.genes().is_empty());
    let (index, _) = vocabulary();
    if let Ok(matched) = signature.matched(&index) {
        for lfc in [vec![0.0; SAMPLE_VOCABULARY], (0..SAMPLE_VOCABULARY).map(|g| g as f32 - 20.0).collect()] {
            let r = matched.reversal(&lfc);
            assert!(r.is_finite(), "reversal {r}");
        }
    }
}
