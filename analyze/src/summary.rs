//! `chronolog info`: what a trace holds, computed from the chunk statistics
//! plus one projected column (`kind`), decoded in parallel.

use std::collections::BTreeSet;

use chronolog_format::{ColumnId, ColumnMask, EventKind, TraceReader};
use rayon::prelude::*;

/// Figures about one trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceSummary {
    pub format_version: String,
    pub writer: String,
    pub start_unix_ns: u64,
    /// Time from the first to the last event.
    pub duration_ns: u64,
    pub events: u64,
    /// Events per kind name, in the order of [`EventKind::ALL`], then unknown kinds.
    pub events_by_kind: Vec<(String, u64)>,
    pub var_changes: u64,
    /// (id, name, native id) of every thread.
    pub threads: Vec<(u32, String, u64)>,
    /// Files of the recorded code objects, sorted.
    pub files: Vec<String>,
    /// Files whose source text the trace stores.
    pub sources: usize,
    pub code_objects: usize,
    pub chunks: usize,
    pub file_bytes: u64,
    /// Size of the columns once encoded, before compression.
    pub encoded_bytes: u64,
    /// Size an uncompressed fixed-width layout would take (8 bytes per
    /// integer field), the baseline of `compression_ratio`.
    pub naive_bytes: u64,
    /// `naive_bytes / file_bytes`.
    pub compression_ratio: f64,
    pub bytes_per_event: f64,
    /// "intact", "missing" or "damaged: reason".
    pub footer: String,
    /// Damage found while indexing plus chunks that do not decode.
    pub damage: Vec<String>,
    /// Recording metadata: header facts then later ones.
    pub meta: Vec<(String, String)>,
}

/// Integer fields per event (seq, ts, thread, kind, frame, depth, code, line,
/// arg, arg type, exception id) and per variable change (event, name, change,
/// value, type) in the naive layout.
const NAIVE_EVENT_BYTES: u64 = 11 * 8;
const NAIVE_VAR_BYTES: u64 = 5 * 8;

/// Computes the summary of an open trace.
pub fn summarize(reader: &TraceReader) -> TraceSummary {
    let chunks = reader.chunks();
    let mask = ColumnMask::only(&[ColumnId::Kind]);
    let decoded: Vec<Result<[u64; 256], String>> = (0..chunks.len())
        .into_par_iter()
        .map(|i| {
            let batch = reader.read_chunk(i, mask).map_err(|e| e.to_string())?;
            let mut counts = [0u64; 256];
            for &kind in &batch.kind {
                counts[usize::from(kind)] += 1;
            }
            Ok(counts)
        })
        .collect();
    let mut counts = [0u64; 256];
    let mut damage: Vec<String> = reader.damage().iter().map(ToString::to_string).collect();
    let (mut events, mut var_changes, mut encoded_bytes) = (0u64, 0u64, 0u64);
    let (mut first_ts, mut last_ts) = (u64::MAX, 0u64);
    for (entry, result) in chunks.iter().zip(decoded) {
        match result {
            Ok(chunk_counts) => {
                for (total, n) in counts.iter_mut().zip(chunk_counts) {
                    *total += n;
                }
                events += u64::from(entry.stats.event_count);
                var_changes += u64::from(entry.stats.var_count);
                encoded_bytes += entry.stats.raw_bytes;
                first_ts = first_ts.min(entry.stats.min_ts_ns);
                last_ts = last_ts.max(entry.stats.max_ts_ns);
            }
            Err(reason) => damage.push(reason),
        }
    }
    let mut events_by_kind: Vec<(String, u64)> = EventKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), counts[*k as usize]))
        .collect();
    for (code, &n) in counts.iter().enumerate().skip(EventKind::ALL.len()) {
        if n > 0 {
            events_by_kind.push((format!("kind{code}"), n));
        }
    }
    let tables = reader.tables();
    let files: BTreeSet<String> = tables
        .codes()
        .filter_map(|(_, code)| tables.string(code.file).map(str::to_string))
        .collect();
    let file_bytes = reader.file_len();
    let naive_bytes = events * NAIVE_EVENT_BYTES + var_changes * NAIVE_VAR_BYTES;
    let mut meta = reader.header().meta.clone();
    meta.extend(tables.meta().iter().cloned());
    let (major, minor) = reader.version();
    TraceSummary {
        format_version: format!("{major}.{minor}"),
        writer: reader.header().writer.clone(),
        start_unix_ns: reader.header().start_unix_ns,
        duration_ns: last_ts.saturating_sub(first_ts),
        events,
        events_by_kind,
        var_changes,
        threads: tables
            .threads()
            .map(|(id, t)| (id, t.name.clone(), t.native_id))
            .collect(),
        files: files.into_iter().collect(),
        sources: tables.source_files().count(),
        code_objects: tables.codes().count(),
        chunks: chunks.len(),
        file_bytes,
        encoded_bytes,
        naive_bytes,
        compression_ratio: naive_bytes as f64 / file_bytes.max(1) as f64,
        bytes_per_event: if events == 0 {
            0.0
        } else {
            file_bytes as f64 / events as f64
        },
        footer: reader.footer_status().to_string(),
        damage,
        meta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronolog_format::WriterOptions;
    use chronolog_format::synth::{SynthOptions, write_trace};

    #[test]
    fn the_summary_counts_every_event_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.clog");
        let options = SynthOptions {
            events: 5000,
            ..SynthOptions::default()
        };
        let written = write_trace(&path, &options, WriterOptions::default()).expect("write");
        let reader = TraceReader::open(&path).expect("open");
        let summary = summarize(&reader);
        assert_eq!(summary.events, written.events);
        assert_eq!(
            summary.events_by_kind.iter().map(|(_, n)| n).sum::<u64>(),
            written.events
        );
        assert_eq!(summary.var_changes, written.vars);
        assert_eq!(summary.threads.len(), 2);
        assert_eq!(summary.files.len(), 3);
        assert_eq!(summary.footer, "intact");
        assert!(summary.damage.is_empty());
        assert!(summary.compression_ratio > 1.0);
        let calls = summary
            .events_by_kind
            .iter()
            .find(|(k, _)| k == "call")
            .map(|(_, n)| *n);
        let returns = summary
            .events_by_kind
            .iter()
            .find(|(k, _)| k == "return")
            .map(|(_, n)| *n);
        assert!(calls >= returns && calls > Some(0));
    }
}
