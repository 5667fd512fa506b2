//! The shipped models' familiarity report on real samples: the bundled examples (tissues the model
//! was trained on) are inside what it knows; an LNCaP prostate cancer sample (goseq's Li 2008 data,
//! lane 1, untreated: a tissue absent from training, never trained on) is outside. Both files, CPU.

use refcast::sample::{SampleTable, ValueKind};
use refcast::session::{Request, Session};
use refcast::{Familiarity, ModelConfig, ModelFile};

const MODELS: [&str; 2] = ["models/refcast-q8_0.safetensors", "models/refcast-q4_0.safetensors"];
const INSIDE: [&str; 3] =
    ["examples/kang_cd14_mono_ctrl.tsv", "examples/airway_N61311_untreated.tsv", "examples/tcell_D1_unstimulated_24h.tsv"];
const OUTSIDE: &str = "tests/data/lncap_untreated_lane1.tsv";

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn familiarity(session: &mut Session<refcast::CpuBackend>, sample: &str) -> Familiarity {
    let table = SampleTable::parse(&read(sample)[..], ValueKind::Auto).unwrap();
    let reference = session.reference(&table, 0).unwrap();
    let control = session.config().perturbations.iter().find(|p| ModelConfig::is_control(p)).unwrap().metadata.clone();
    let pred = pollster::block_on(session.predict(&Request::conditioned(vec![reference], vec![control]))).unwrap();
    assert_eq!(pred.familiarity.len(), 1, "{sample}: one report per reference");
    pred.familiarity[0].clone()
}

#[test]
fn bundled_examples_are_inside_and_an_absent_tissue_is_outside() {
    for model in MODELS {
        let file = ModelFile::from_bytes(&read(model)).unwrap();
        assert!(file.config.familiarity.is_some(), "{model}: the shipped model carries a familiarity calibration");
        let mut session = Session::cpu(&file).unwrap();
        for sample in INSIDE {
            let f = familiarity(&mut session, sample);
            assert_eq!(f.outside, Some(false), "{model}, {sample}: {}", f.summary());
            assert!(f.reasons.is_empty(), "{model}, {sample}: {:?}", f.reasons);
            assert!(f.nearest_context.is_some() && f.distance.is_some_and(f32::is_finite), "{model}, {sample}");
        }
        let f = familiarity(&mut session, OUTSIDE);
        assert_eq!(f.outside, Some(true), "{model}, {OUTSIDE}: {}", f.summary());
        assert!(!f.reasons.is_empty(), "{model}: an outside sample says why");
    }
}
