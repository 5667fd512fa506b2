//! The last sample a model read, kept so that calls on the same sample skip reading it again.
//! A page predicts one dropped sample under one perturbation after another, and reading a
//! 15,000-gene table and matching it to the model's genes costs as much as the prediction.
//! "The same" is exact: the same bytes (compared, not hashed), read with the same options.

use std::rc::Rc;

use wasm_bindgen::JsValue;

use super::js::refcast_error;
use super::options::{TenxJs, read_sample};
use crate::engine::Engine;
use crate::sample::{Reference, SampleFile};

/// Samples larger than this are read on every call rather than kept (a 10x matrix can be
/// hundreds of megabytes, and the memo would hold a second copy).
const MAX_KEPT_BYTES: usize = 16 << 20;

/// How a sample's bytes are read: the options that change what a read gives.
#[derive(PartialEq)]
pub(super) struct ReadOptions {
    pub(super) values: Option<String>,
    pub(super) file_name: Option<String>,
    pub(super) gzip: Option<bool>,
    pub(super) tenx: Option<TenxJs>,
}

struct Kept {
    bytes: Vec<u8>,
    how: ReadOptions,
    file: Rc<SampleFile>,
    /// Each column's reference, as columns are asked for.
    references: Vec<Option<Reference>>,
}

/// The last sample read, and the references of its columns.
#[derive(Default)]
pub(super) struct SampleMemo(Option<Kept>);

impl SampleMemo {
    /// The sample file for `bytes` read `how`: the kept one when it is the same, else read now
    /// (and kept, when not too large).
    pub(super) fn file(&mut self, bytes: Vec<u8>, how: ReadOptions) -> Result<Rc<SampleFile>, JsValue> {
        if let Some(kept) = self.0.as_ref().filter(|k| k.bytes == bytes && k.how == how) {
            return Ok(kept.file.clone());
        }
        // A failed read forgets the previous sample: the next call reads afresh either way.
        self.0 = None;
        let file = Rc::new(read_sample(&bytes, how.values.as_deref(), how.file_name.as_deref(), how.gzip, how.tenx.as_ref())?);
        if bytes.len() <= MAX_KEPT_BYTES {
            let references = vec![None; file.table.samples.len()];
            self.0 = Some(Kept { bytes, how, file: file.clone(), references });
        }
        Ok(file)
    }

    /// Column `column` of `file` (the file [`SampleMemo::file`] just gave) matched to the
    /// model's genes.
    pub(super) fn reference(&mut self, engine: &Engine, file: &SampleFile, column: usize) -> Result<Reference, JsValue> {
        let kept = self.0.as_mut().filter(|k| std::ptr::eq(k.file.as_ref(), file));
        if let Some(Some(r)) = kept.as_ref().and_then(|k| k.references.get(column)) {
            return Ok(r.clone());
        }
        let r = engine.reference(&file.table, column).map_err(refcast_error)?;
        if let Some(slot) = kept.and_then(|k| k.references.get_mut(column)) {
            *slot = Some(r.clone());
        }
        Ok(r)
    }
}
