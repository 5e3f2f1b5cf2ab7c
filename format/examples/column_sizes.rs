//! Bytes each column takes in a trace, summed over its chunks, with the
//! encodings chosen: where a trace's size goes, for work on the format.
//!
//! ```text
//! cargo run --release -p chronolog-format --example column_sizes -- TRACE
//! ```

use std::collections::BTreeMap;

use capnp::message::ReaderOptions;
use chronolog_format::entry;
use chronolog_format::generated::trace_capnp;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: column_sizes TRACE")?;
    let bytes = std::fs::read(&path)?;
    let mut events = 0u64;
    // Column name -> (stored bytes, bytes before compression, chunks by encoding).
    let mut columns: BTreeMap<String, (u64, u64, BTreeMap<String, u32>)> = BTreeMap::new();
    for (kind, body) in entry::blocks(&bytes) {
        if kind != "chunk" {
            continue;
        }
        let message =
            capnp::serialize::read_message_from_flat_slice(&mut &body[..], ReaderOptions::new())?;
        let chunk = message.get_root::<trace_capnp::chunk::Reader<'_>>()?;
        events += u64::from(chunk.get_stats()?.get_event_count());
        for column in chunk.get_columns()? {
            let name = match column.get_id() {
                Ok(id) => format!("{id:?}"),
                Err(_) => "unknown".into(),
            };
            let encoding = match column.get_encoding() {
                Ok(encoding) => format!("{encoding:?}"),
                Err(_) => "unknown".into(),
            };
            let entry = columns.entry(name).or_default();
            entry.0 += column.get_data()?.len() as u64;
            entry.1 += u64::from(column.get_raw_len());
            *entry.2.entry(encoding).or_default() += 1;
        }
    }
    let file = bytes.len() as f64;
    let per_event = |n: u64| n as f64 / events.max(1) as f64;
    println!(
        "{path}: {events} events, {:.3} bytes an event",
        file / events.max(1) as f64
    );
    let mut rows: Vec<_> = columns.into_iter().collect();
    rows.sort_by_key(|(_, (stored, _, _))| std::cmp::Reverse(*stored));
    for (name, (stored, raw, encodings)) in rows {
        println!(
            "{name:>12} {:>7.3} B/event stored, {:>7.3} encoded  {:>5.1}% of the file  {encodings:?}",
            per_event(stored),
            per_event(raw),
            100.0 * stored as f64 / file,
        );
    }
    Ok(())
}
