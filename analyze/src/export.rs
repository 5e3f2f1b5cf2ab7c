//! Exports of a trace set: Parquet (one folder per table, the layout DuckDB,
//! Spark and Trino read as one table each), Arrow IPC (one table in one
//! file) and Perfetto (Chrome JSON trace events, one slice per activation
//! segment on its thread's track).
//!
//! Exports write only where they are told. Progress goes to a callback with
//! the table being written and the rows done so far (and the rows expected,
//! where the chunk statistics know them).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chronolog_format::{ColumnId, ColumnMask, EventKind};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::source::TraceSource;
use crate::{AnalyzeError, TABLES, TraceSet};

/// Told about progress: (table, rows written, rows expected or 0).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

fn io_error(path: &Path, error: impl std::fmt::Display) -> AnalyzeError {
    AnalyzeError::new(format!("{}: {error}", path.display()))
}

/// Rows the statistics promise for `table`, 0 when they do not say.
fn expected_rows(set: &TraceSet, table: &str) -> u64 {
    let sum = |f: fn(&TraceSource) -> u64| set.traces().iter().map(|t| f(t)).sum();
    match table {
        "events" => sum(|t| t.reader.event_count()),
        "vars" => sum(|t| t.reader.var_count()),
        _ => 0,
    }
}

/// Writes every table to `dir/<table>/part-N.parquet`, one part per query
/// partition, written in parallel. Earlier `part-*.parquet` files in those
/// folders are replaced, so the folder holds exactly this export.
pub fn parquet(set: &TraceSet, dir: &Path, progress: Progress<'_>) -> Result<(), AnalyzeError> {
    for table in TABLES {
        let folder = dir.join(table);
        fs::create_dir_all(&folder).map_err(|e| io_error(&folder, e))?;
        for entry in fs::read_dir(&folder)
            .map_err(|e| io_error(&folder, e))?
            .flatten()
        {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("part-") && name.ends_with(".parquet") {
                fs::remove_file(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
            }
        }
        let expected = expected_rows(set, table);
        let written = std::sync::atomic::AtomicU64::new(0);
        set.with_streams(
            &format!("SELECT * FROM {table}"),
            async |schema, streams| {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let writers = streams.into_iter().enumerate().map(|(n, mut stream)| {
                    let path = folder.join(format!("part-{n}.parquet"));
                    let (schema, properties, written) =
                        (Arc::clone(&schema), properties.clone(), &written);
                    async move {
                        // Part 0 is written even when empty, so every table has
                        // a readable file; other parts only when they hold rows.
                        let mut writer: Option<ArrowWriter<File>> = None;
                        let open = |path: &Path| -> Result<ArrowWriter<File>, AnalyzeError> {
                            let file = File::create(path).map_err(|e| io_error(path, e))?;
                            ArrowWriter::try_new(
                                file,
                                Arc::clone(&schema),
                                Some(properties.clone()),
                            )
                            .map_err(|e| io_error(path, e))
                        };
                        if n == 0 {
                            writer = Some(open(&path)?);
                        }
                        while let Some(batch) = stream.next().await {
                            let batch =
                                batch.map_err(|e| AnalyzeError::new(crate::describe(&e)))?;
                            if batch.num_rows() == 0 {
                                continue;
                            }
                            if writer.is_none() {
                                writer = Some(open(&path)?);
                            }
                            if let Some(w) = writer.as_mut() {
                                w.write(&batch).map_err(|e| io_error(&path, e))?;
                            }
                            let done = written.fetch_add(
                                batch.num_rows() as u64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            progress(table, done + batch.num_rows() as u64, expected);
                        }
                        if let Some(w) = writer {
                            w.close().map_err(|e| io_error(&path, e))?;
                        }
                        Ok::<(), AnalyzeError>(())
                    }
                });
                for result in futures::future::join_all(writers).await {
                    result?;
                }
                Ok(())
            },
        )?;
        progress(table, written.into_inner(), expected);
    }
    Ok(())
}

/// `schema` with dictionary columns as plain strings: the IPC file format
/// allows one dictionary per column for the whole file, and batches of
/// different chunks and traces carry different ones.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Dictionary(_, value) => {
                    Field::new(f.name(), value.as_ref().clone(), f.is_nullable())
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

fn plain_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, AnalyzeError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AnalyzeError::new(e.to_string()))?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| AnalyzeError::new(e.to_string()))
}

/// Writes table `table` to the Arrow IPC file `path`.
pub fn arrow_ipc(
    set: &TraceSet,
    table: &str,
    path: &Path,
    progress: Progress<'_>,
) -> Result<(), AnalyzeError> {
    crate::session::known_table(table)?;
    let expected = expected_rows(set, table);
    set.with_streams(
        &format!("SELECT * FROM {table}"),
        async |schema, streams| {
            let schema = plain_schema(&schema);
            let file = File::create(path).map_err(|e| io_error(path, e))?;
            let mut writer = arrow::ipc::writer::FileWriter::try_new(BufWriter::new(file), &schema)
                .map_err(|e| io_error(path, e))?;
            let mut written = 0u64;
            let mut merged = futures::stream::select_all(streams);
            while let Some(batch) = merged.next().await {
                let batch = batch.map_err(|e| AnalyzeError::new(crate::describe(&e)))?;
                writer
                    .write(&plain_batch(&batch, &schema)?)
                    .map_err(|e| io_error(path, e))?;
                written += batch.num_rows() as u64;
                progress(table, written, expected);
            }
            writer.finish().map_err(|e| io_error(path, e))
        },
    )
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"?\"".to_string())
}

/// Microseconds with nanosecond precision, as Chrome's format wants them.
fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// A slice under way on a thread's stack.
struct Segment {
    frame: u64,
    code: u32,
    line: u32,
    start_ns: u64,
}

/// Writes the Perfetto (Chrome JSON) trace of every trace in the set: a
/// process per trace, a track per thread, a complete slice per activation
/// segment (a plain call is one segment; a generator has one per run
/// between its starts and its yields), and an instant event per raise and
/// per handled exception.
pub fn perfetto(set: &TraceSet, path: &Path, progress: Progress<'_>) -> Result<(), AnalyzeError> {
    let file = File::create(path).map_err(|e| io_error(path, e))?;
    let mut out = BufWriter::new(file);
    let fail = |e: std::io::Error| io_error(path, e);
    let expected = expected_rows(set, "events");
    let mut done = 0u64;
    let mut first = true;
    let mut emit = |out: &mut BufWriter<File>, record: String| -> std::io::Result<()> {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        out.write_all(record.as_bytes())
    };
    out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")
        .map_err(fail)?;
    let mask = ColumnMask::only(&[
        ColumnId::TsNs,
        ColumnId::Thread,
        ColumnId::Kind,
        ColumnId::Frame,
        ColumnId::Code,
        ColumnId::Line,
        ColumnId::Arg,
        ColumnId::ArgType,
        ColumnId::ValueBytes,
    ]);
    for (index, trace) in set.traces().iter().enumerate() {
        let pid = index + 1;
        let tables = trace.reader.tables();
        let name = |code: u32| {
            tables
                .code(code)
                .and_then(|c| tables.string(c.qualname))
                .unwrap_or("?")
        };
        emit(
            &mut out,
            format!(
                "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{pid},\"tid\":0,\"args\":{{\"name\":{}}}}}",
                json_string(&trace.name)
            ),
        )
        .map_err(fail)?;
        for (id, thread) in tables.threads() {
            emit(
                &mut out,
                format!(
                    "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{pid},\"tid\":{},\"args\":{{\"name\":{}}}}}",
                    id + 1,
                    json_string(&thread.name)
                ),
            )
            .map_err(fail)?;
        }
        let mut stacks: std::collections::HashMap<u32, Vec<Segment>> = Default::default();
        let mut last_ns = 0u64;
        for chunk in trace.chunks_in_order(mask) {
            for i in 0..chunk.kind.len() {
                let (thread, frame, ts) = (chunk.thread[i], chunk.frame[i], chunk.ts_ns[i]);
                last_ns = last_ns.max(ts);
                let stack = stacks.entry(thread).or_default();
                let tid = thread + 1;
                match EventKind::from_code(chunk.kind[i]) {
                    Some(EventKind::Call | EventKind::Resume | EventKind::Throw)
                        if stack.last().is_none_or(|s| s.frame != frame) =>
                    {
                        stack.push(Segment {
                            frame,
                            code: chunk.code[i],
                            line: chunk.line[i],
                            start_ns: ts,
                        });
                    }
                    Some(EventKind::Return | EventKind::Yield | EventKind::Unwind) => {
                        let Some(position) = stack.iter().rposition(|s| s.frame == frame) else {
                            continue;
                        };
                        // Segments above it lost their end (out of scope):
                        // they end here too, which keeps slices nested.
                        for segment in stack.drain(position..).rev() {
                            let record = slice(
                                pid,
                                tid,
                                &segment,
                                ts,
                                name(segment.code),
                                tables,
                                chunk.kind[i],
                            );
                            emit(&mut out, record).map_err(fail)?;
                        }
                    }
                    Some(kind @ (EventKind::Raise | EventKind::Handled)) => {
                        let exception = tables
                            .optional_string(chunk.arg_type[i])
                            .unwrap_or("exception");
                        let message = chunk.values.get(chunk.arg[i]).unwrap_or("");
                        emit(
                            &mut out,
                            format!(
                                "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"exception\",\"name\":{},\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"args\":{{\"message\":{},\"function\":{},\"line\":{}}}}}",
                                json_string(&format!("{} {exception}", kind.name())),
                                micros(ts),
                                json_string(message),
                                json_string(name(chunk.code[i])),
                                chunk.line[i]
                            ),
                        )
                        .map_err(fail)?;
                    }
                    _ => {}
                }
            }
            done += chunk.kind.len() as u64;
            progress("perfetto", done, expected);
        }
        // Activations still running when the trace ended end with it.
        for (thread, stack) in stacks {
            for segment in stack.into_iter().rev() {
                let record = slice(
                    pid,
                    thread + 1,
                    &segment,
                    last_ns,
                    name(segment.code),
                    tables,
                    u8::MAX,
                );
                emit(&mut out, record).map_err(fail)?;
            }
        }
    }
    out.write_all(b"\n]}\n").map_err(fail)?;
    out.flush().map_err(fail)
}

/// A complete ("X") slice.
fn slice(
    pid: usize,
    tid: u32,
    segment: &Segment,
    end_ns: u64,
    name: &str,
    tables: &chronolog_format::Tables,
    end_kind: u8,
) -> String {
    let file = tables
        .code(segment.code)
        .and_then(|c| tables.string(c.file))
        .unwrap_or("?");
    let ended = EventKind::from_code(end_kind).map_or("running", |k| k.name());
    format!(
        "{{\"ph\":\"X\",\"cat\":\"call\",\"name\":{},\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"dur\":{},\"args\":{{\"file\":{},\"line\":{},\"frame_id\":{},\"end\":\"{ended}\"}}}}",
        json_string(name),
        micros(segment.start_ns),
        micros(end_ns.saturating_sub(segment.start_ns)),
        json_string(file),
        segment.line,
        segment.frame,
    )
}
