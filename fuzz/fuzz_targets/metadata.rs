//! Fuzz target: `chronolog_format::entry::metadata` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = chronolog_format::entry::metadata(data);
});
