//! `ModelFile::from_bytes` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| refcast_fuzz::bodies::model_file(data));
