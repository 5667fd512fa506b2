//! `Signature::parse`, gene matching and the reversal score on arbitrary bytes (the first byte
//! picks whether the weight column is named).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| refcast_fuzz::bodies::signature_file(data));
