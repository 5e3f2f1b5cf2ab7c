//! Encode and decode throughput of the trace format, and bytes per event, on
//! a synthetic 10 M-event trace (`CHRONOLOG_BENCH_EVENTS` to change). Run
//! with `make bench`; method and figures are in benches/README.md.

use chronolog_benches::{Decoded, bench_events, synthetic_trace};
use chronolog_format::{ColumnId, ColumnMask, TraceReader};
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use rayon::prelude::*;

fn main() {
    let events = bench_events();
    let path = synthetic_trace(events);
    let reader = TraceReader::open(&path).expect("open");
    let (file, events) = (reader.file_len(), reader.event_count());
    let encoded: u64 = reader.chunks().iter().map(|c| c.stats.raw_bytes).sum();
    println!(
        "trace: {events} events, {} variable changes, {} chunks; {file} bytes on disk = {:.2} bytes/event \
         ({:.2} bytes/event encoded before LZ4)",
        reader.var_count(),
        reader.chunks().len(),
        file as f64 / events as f64,
        encoded as f64 / events as f64,
    );
    divan::main();
}

/// Writes every event through the real writer (background encoding, rayon
/// across chunks) to a file in a temporary directory.
#[divan::bench(sample_count = 5)]
fn encode(bencher: Bencher) {
    let decoded = Decoded::load(&synthetic_trace(bench_events()));
    let events: u64 = decoded.batches.iter().map(|b| b.len() as u64).sum();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("encoded.clog");
    let bytes = decoded.write_to(&out);
    bencher
        .counter(ItemsCount::new(events))
        .counter(BytesCount::new(bytes))
        .bench(|| decoded.write_to(&out));
}

/// Opens the trace (footer, metadata) and decodes every column of every
/// chunk in parallel.
#[divan::bench(sample_count = 5)]
fn decode_all_columns(bencher: Bencher) {
    let path = synthetic_trace(bench_events());
    let reader = TraceReader::open(&path).expect("open");
    bencher
        .counter(ItemsCount::new(reader.event_count()))
        .counter(BytesCount::new(reader.file_len()))
        .bench(|| {
            let reader = TraceReader::open(&path).expect("open");
            (0..reader.chunks().len())
                .into_par_iter()
                .map(|i| reader.read_chunk(i, ColumnMask::ALL).expect("decode").len())
                .sum::<usize>()
        });
}

/// Decodes only the `kind` column (what `SELECT kind, count(*)` needs).
#[divan::bench(sample_count = 5)]
fn decode_one_column(bencher: Bencher) {
    let path = synthetic_trace(bench_events());
    let reader = TraceReader::open(&path).expect("open");
    let mask = ColumnMask::only(&[ColumnId::Kind]);
    bencher
        .counter(ItemsCount::new(reader.event_count()))
        .bench(|| {
            (0..reader.chunks().len())
                .into_par_iter()
                .map(|i| reader.read_chunk(i, mask).expect("decode").kind.len())
                .sum::<usize>()
        });
}
