//! Random event streams written through the real writer read back exactly,
//! whatever the batch and chunk sizes.

mod common;

use chronolog_format::{
    CodeInfo, Event, HeaderInfo, RowBatch, ThreadMeta, TraceReader, TraceWriter, VarRecord,
    WriterOptions,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Row {
    event: Event,
    arg: Option<String>,
    vars: Vec<(u32, u8, Option<String>)>,
}

fn value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some("42".to_string())),
        2 => "\\PC{0,12}".prop_map(Some),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        (
            0u32..3,
            0u8..10,
            any::<u64>(),
            0u32..64,
            0u32..5,
            any::<u32>(),
        ),
        (
            value(),
            0u32..4,
            prop_oneof![Just(0u64), any::<u64>()],
            0u64..10_000,
        ),
        prop::collection::vec((0u32..6, 0u8..4, value()), 0..3),
    )
        .prop_map(
            |((thread, kind, frame, depth, code, line), (arg, arg_type, exc_id, dt), vars)| Row {
                event: Event {
                    seq: 0,
                    ts_ns: dt,
                    thread,
                    kind,
                    frame,
                    depth,
                    code,
                    line,
                    arg: 0,
                    arg_type,
                    exc_id,
                    exc_context: exc_id / 2,
                },
                arg,
                vars,
            },
        )
}

fn write(rows: &[Row], batch_size: usize, chunk_events: usize, path: &std::path::Path) {
    let options = WriterOptions {
        max_chunk_events: chunk_events,
        queue_depth: 2,
    };
    let mut writer = TraceWriter::create(path, &HeaderInfo::default(), options).expect("create");
    for i in 0..3 {
        writer.define_thread(ThreadMeta {
            name: format!("t{i}"),
            ..ThreadMeta::default()
        });
    }
    for i in 0..6 {
        writer.define_string(&format!("s{i}"));
    }
    for _ in 0..5 {
        writer.define_code(CodeInfo::default());
    }
    let mut ts = 0;
    for (start, group) in rows.chunks(batch_size).enumerate() {
        // Every other batch goes as rows, in a batch the writer handed back
        // emptied (reusing it must not leak anything written before).
        let as_rows = start % 2 == 1;
        let mut spare = if as_rows {
            writer.spare_rows().unwrap_or_default()
        } else {
            RowBatch::default()
        };
        assert!(spare.is_empty() && spare.vars.is_empty());
        assert!(spare.batch.is_empty() && spare.batch.var_len() == 0);
        assert!(spare.batch.values.is_empty() && spare.batch.checkpoint.is_none());
        for (offset, row) in group.iter().enumerate() {
            ts += row.event.ts_ns;
            let mut event = row.event;
            event.seq = (start * batch_size + offset) as u64;
            event.ts_ns = ts;
            let batch = &mut spare.batch;
            event.arg = row.arg.as_deref().map_or(0, |v| batch.values.push(v));
            let index = if as_rows {
                spare.push_event(event)
            } else {
                spare.batch.push_event(&event)
            };
            for (name, change, value) in &row.vars {
                let value = value.as_deref().map_or(0, |v| spare.batch.values.push(v));
                let var = VarRecord {
                    event: index,
                    name: *name,
                    change: *change,
                    value,
                    type_name: name % 3,
                };
                if as_rows {
                    spare.vars.push(var);
                } else {
                    spare.batch.push_var(&var);
                }
            }
        }
        if as_rows {
            writer.write_rows(spare).expect("write rows");
        } else {
            writer.write_batch(spare.batch).expect("write");
        }
    }
    writer.finish().expect("finish");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_streams_round_trip(
        rows in prop::collection::vec(row(), 0..600),
        batch_size in 1usize..300,
        chunk_events in 1usize..200,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.clog");
        write(&rows, batch_size, chunk_events, &path);
        let reader = TraceReader::open(&path).expect("open");
        prop_assert!(reader.damage().is_empty());
        let events = common::all_events(&reader);
        prop_assert_eq!(events.len(), rows.len());
        let mut ts = 0;
        for (i, ((event, arg), row)) in events.iter().zip(&rows).enumerate() {
            ts += row.event.ts_ns;
            prop_assert_eq!(event.seq, i as u64);
            prop_assert_eq!(event.ts_ns, ts);
            prop_assert_eq!((event.thread, event.kind, event.frame, event.depth, event.code, event.line),
                (row.event.thread, row.event.kind, row.event.frame, row.event.depth, row.event.code, row.event.line));
            prop_assert_eq!((event.arg_type, event.exc_id), (row.event.arg_type, row.event.exc_id));
            prop_assert_eq!(arg, &row.arg);
        }
        let vars = common::all_vars(&reader);
        let expected: Vec<_> = rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.vars.iter().map(move |(n, c, v)| (i as u64, *n, *c, v.clone())))
            .collect();
        prop_assert_eq!(vars, expected);
    }
}

/// A writer into a new trace in `dir`, with `defined` threads and code
/// objects defined.
fn writer_in(dir: &tempfile::TempDir, defined: usize) -> TraceWriter {
    let path = dir.path().join("t.clog");
    let mut writer = TraceWriter::create(&path, &HeaderInfo::default(), WriterOptions::default())
        .expect("create");
    for _ in 0..defined {
        writer.define_thread(ThreadMeta::default());
        writer.define_code(CodeInfo::default());
    }
    writer
}

#[test]
fn written_row_batches_come_back_empty_with_their_allocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = writer_in(&dir, 1);
    let mut rows = RowBatch::with_capacity(1000, 10);
    rows.batch.values.push("a value");
    rows.push_event(Event::default());
    writer.write_rows(rows).expect("write");
    writer.flush().expect("flush");
    let spare = writer.spare_rows().expect("the written batch, emptied");
    assert!(spare.is_empty() && spare.batch.is_empty() && spare.batch.values.is_empty());
    assert!(spare.batch.checkpoint.is_none());
    assert!(spare.events.capacity() >= 1000 && spare.batch.seq.capacity() >= 1);
    assert!(writer.spare_rows().is_none());
    assert_eq!(writer.finish().expect("finish").events, 1);
}

#[test]
fn invalid_rows_stop_the_writer_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Thread 0 is never defined.
    let mut writer = writer_in(&dir, 0);
    let mut rows = RowBatch::default();
    rows.push_event(Event::default());
    writer.write_rows(rows).expect("queued");
    let error = writer.flush().expect_err("the writer stopped");
    assert!(error.to_string().contains("thread id 0"), "{error}");
}

#[test]
fn rows_with_events_in_their_columns_too_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = writer_in(&dir, 1);
    let mut rows = RowBatch::default();
    rows.push_event(Event::default());
    rows.batch.push_event(&Event::default());
    writer.write_rows(rows).expect("queued");
    let error = writer.flush().expect_err("the writer stopped");
    assert!(error.to_string().contains("columns too"), "{error}");
}
