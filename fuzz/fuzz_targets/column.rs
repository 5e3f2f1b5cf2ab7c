//! Fuzz target: one column decoder. The first 10 bytes choose the
//! compression, the encoding, the claimed value count and raw length; the
//! rest is the column's data.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let count = u32::from_le_bytes([data[2], data[3], data[4], data[5]]) as usize;
    let raw_len = u32::from_le_bytes([data[6], data[7], data[8], data[9]]) as usize;
    let _ = chronolog_format::entry::column(data[0] % 3, data[1] % 6, count, raw_len, &data[10..]);
});
