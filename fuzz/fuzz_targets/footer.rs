//! Fuzz target: `chronolog_format::entry::footer` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = chronolog_format::entry::footer(data);
});
