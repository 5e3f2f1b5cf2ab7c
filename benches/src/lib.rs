//! Shared set-up of the chronolog benchmarks: a synthetic trace shaped like
//! a real one (see `chronolog_format::synth`), generated once per size and
//! cached under `target/bench-data/`.

use std::path::PathBuf;

use chronolog_format::synth::{SynthOptions, write_trace};
use chronolog_format::{
    ColumnMask, EventBatch, HeaderInfo, TraceReader, TraceWriter, WriterOptions,
};

/// Number of events of the benchmark trace: `CHRONOLOG_BENCH_EVENTS`, or 10 M.
pub fn bench_events() -> u64 {
    std::env::var("CHRONOLOG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000_000)
}

/// Path of the cached synthetic trace of `events` events, written if absent.
pub fn synthetic_trace(events: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).expect("create target/bench-data");
    let path = dir.join(format!("synth-{events}.clog"));
    if TraceReader::open(&path).is_ok_and(|r| r.event_count() >= events) {
        return path;
    }
    let options = SynthOptions {
        events,
        seed: 42,
        threads: 4,
        batch_events: 1 << 16,
    };
    write_trace(&path, &options, WriterOptions::default()).expect("write the synthetic trace");
    path
}

/// A decoded trace, ready to be written again: the encode benchmark's input.
#[derive(Debug)]
pub struct Decoded {
    pub reader: TraceReader,
    pub batches: Vec<EventBatch>,
}

impl Decoded {
    /// Decodes every chunk of `path`.
    pub fn load(path: &std::path::Path) -> Decoded {
        let reader = TraceReader::open(path).expect("open");
        let batches = (0..reader.chunks().len())
            .map(|i| reader.read_chunk(i, ColumnMask::ALL).expect("decode"))
            .collect();
        Decoded { reader, batches }
    }

    /// Writes the decoded events to `out` through the real writer.
    pub fn write_to(&self, out: &std::path::Path) -> u64 {
        let mut writer = TraceWriter::create(out, &HeaderInfo::default(), WriterOptions::default())
            .expect("create");
        let tables = self.reader.tables();
        for id in 0..tables.string_count() as u32 {
            writer.define_string(tables.string(id).unwrap_or(""));
        }
        for (_, code) in tables.codes() {
            writer.define_code(*code);
        }
        for (_, thread) in tables.threads() {
            writer.define_thread(thread.clone());
        }
        for batch in &self.batches {
            writer.write_batch(batch.clone()).expect("write");
        }
        writer.finish().expect("finish").bytes
    }
}
