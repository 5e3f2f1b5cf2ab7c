//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use chronolog_format::{ColumnMask, Event, TraceReader};

/// Every event of every readable chunk, in order, with its value text.
pub fn all_events(reader: &TraceReader) -> Vec<(Event, Option<String>)> {
    let mut out = Vec::new();
    for i in 0..reader.chunks().len() {
        let Ok(batch) = reader.read_chunk(i, ColumnMask::ALL) else {
            continue;
        };
        for row in 0..batch.len() {
            let event = batch.event(row).expect("row in range");
            let value = batch.values.get(event.arg).map(str::to_string);
            out.push((event, value));
        }
    }
    out
}

/// (event seq, name id, change, value text) of every variable change.
pub fn all_vars(reader: &TraceReader) -> Vec<(u64, u32, u8, Option<String>)> {
    let mut out = Vec::new();
    for i in 0..reader.chunks().len() {
        let Ok(batch) = reader.read_chunk(i, ColumnMask::ALL) else {
            continue;
        };
        for v in 0..batch.var_len() {
            let var = batch.var(v).expect("row in range");
            out.push((
                batch.seq[var.event as usize],
                var.name,
                var.change,
                batch.values.get(var.value).map(str::to_string),
            ));
        }
    }
    out
}
