//! `SampleTable::parse` and `Reference::from_table` on arbitrary bytes (the first byte picks the
//! value kind).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| refcast_fuzz::bodies::sample_table(data));
