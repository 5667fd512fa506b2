//! Model files: round trips through refcast's writer and the Python `safetensors` package, and
//! clear errors for damaged files.

use refcast::synthetic::{SyntheticSpec, random_model};
use refcast::format::{ModelFile, TensorSpec};
use refcast::quant::DType;

fn tiny(dtype: DType) -> ModelFile {
    random_model(SyntheticSpec::tiny(dtype))
}

fn error_of(bytes: &[u8]) -> String {
    ModelFile::from_bytes(bytes).expect_err("the file must be rejected").to_string()
}

#[test]
fn writer_output_reads_back_identically() {
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
        let m = tiny(dtype);
        let back = ModelFile::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.tensors.len(), m.tensors.len());
        for (name, t) in &m.tensors {
            let b = &back.tensors[name];
            assert_eq!((b.rows, b.cols, b.dtype), (t.rows, t.cols, t.dtype), "{name}");
            assert_eq!(b.bytes, t.bytes, "{name}");
        }
        assert_eq!(back.config.genes, m.config.genes);
    }
}

/// Rewrites the JSON header of a file (keeping the data section).
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut h = serde_json::to_vec(&header).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&bytes[8 + n..]);
    out
}

fn with_doc(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    with_header(bytes, |h| {
        let doc = h["__metadata__"]["refcast"].as_str().unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(doc).unwrap();
        edit(&mut doc);
        h["__metadata__"]["refcast"] = serde_json::Value::String(doc.to_string());
    })
}

#[test]
fn damaged_files_get_errors_that_name_the_problem() {
    let good = tiny(DType::Q8_0).to_bytes().unwrap();
    assert!(error_of(&good[..5]).contains("too short"));
    assert!(error_of(&good[..good.len() - 10]).contains("safetensors"));
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(error_of(&huge).contains("exceeds"));
    let mut past = good.clone();
    past[..8].copy_from_slice(&((good.len() as u64) + 1).to_le_bytes());
    assert!(error_of(&past).contains("past the end"));

    let e = error_of(&with_doc(&good, |d| d["format_version"] = 99.into()));
    assert!(e.contains("format version 99"), "{e}");
    let e = error_of(&with_header(&good, |h| h["__metadata__"] = serde_json::json!({})));
    assert!(e.contains("refcast"), "{e}");
    let e = error_of(&with_doc(&good, |d| d["architecture"]["genes"] = 161.into()));
    assert!(e.contains("161"), "{e}");
    let e = error_of(&with_doc(&good, |d| d["priors"]["biological"]["categorical"][0]["values"][0] = "B".into()));
    assert!(e.contains("unknown"), "{e}");
    let e = error_of(&with_doc(&good, |d| {
        d["tensors"].as_object_mut().unwrap().remove("decoder.head.weight");
    }));
    assert!(e.contains("decoder.head.weight"), "{e}");
    let e = error_of(&with_doc(&good, |d| {
        d["tensors"]["decoder.head.weight"] = serde_json::to_value(TensorSpec { dtype: DType::Q4_0, shape: vec![160, 96] }).unwrap()
    }));
    assert!(e.contains("decoder.head.weight") && e.contains("bytes"), "{e}");
    let e = error_of(&with_header(&good, |h| {
        let t = h.as_object_mut().unwrap().remove("decoder.logvar").unwrap();
        h["decoder.logvar_renamed"] = t;
    }));
    assert!(e.contains("decoder.logvar"), "{e}");
    let e = error_of(&with_header(&good, |h| h["input.gene_mean"]["data_offsets"][1] = (1u64 << 40).into()));
    assert!(e.contains("safetensors"), "{e}");
}

#[test]
fn python_safetensors_reads_refcast_files_and_refcast_reads_its_files() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_package = std::process::Command::new(&python)
        .args(["-c", "import safetensors.numpy, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_package {
        assert!(std::env::var("CI").is_err(), "CI must have Python with safetensors and numpy installed");
        eprintln!("SKIPPED: python3 with safetensors and numpy is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("refcast.safetensors");
    let theirs = dir.path().join("python.safetensors");
    let model = tiny(DType::Q4_0);
    std::fs::write(&ours, model.to_bytes().unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/resave.py"))
        .args([&ours, &theirs])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = ModelFile::from_bytes(&std::fs::read(&theirs).unwrap()).unwrap();
    for (name, t) in &model.tensors {
        assert_eq!(back.tensors[name].bytes, t.bytes, "{name}");
    }
}
