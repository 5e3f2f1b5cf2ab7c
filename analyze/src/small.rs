//! The tables built from a trace's metadata rather than its chunks — `code`,
//! `threads`, `source`, `meta` — small enough to build whole when a session
//! opens (one row per code object, thread, source line or fact).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::columns;
use crate::source::TraceSource;

fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

fn with_trace(fields: Vec<Field>) -> SchemaRef {
    let mut all = vec![field("trace", columns::names_type(), false)];
    all.extend(fields);
    Arc::new(Schema::new(all))
}

/// Name and schema of each metadata table.
pub fn schemas() -> Vec<(&'static str, SchemaRef)> {
    vec![
        (
            "code",
            with_trace(vec![
                field("code_id", DataType::Int32, false),
                field("file", DataType::Utf8, true),
                field("function", DataType::Utf8, true),
                field("name", DataType::Utf8, true),
                field("first_line", DataType::Int32, false),
            ]),
        ),
        (
            "threads",
            with_trace(vec![
                field("thread_id", DataType::Int32, false),
                field("name", DataType::Utf8, false),
                field("native_id", DataType::Int64, false),
                field("ident", DataType::Int64, false),
            ]),
        ),
        (
            "source",
            with_trace(vec![
                field("file", DataType::Utf8, true),
                field("line", DataType::Int32, false),
                field("text", DataType::Utf8, false),
            ]),
        ),
        (
            "meta",
            with_trace(vec![
                field("key", DataType::Utf8, false),
                field("value", DataType::Utf8, false),
            ]),
        ),
    ]
}

/// The rows of metadata table `table` for `trace`.
pub fn batch(
    table: &str,
    schema: &SchemaRef,
    trace: &TraceSource,
) -> arrow::error::Result<RecordBatch> {
    let tables = trace.reader.tables();
    let columns: Vec<ArrayRef> = match table {
        "code" => {
            let codes: Vec<_> = tables.codes().collect();
            let text = |f: fn(&chronolog_format::CodeInfo) -> u32| -> ArrayRef {
                Arc::new(StringArray::from_iter(
                    codes.iter().map(|(_, c)| tables.string(f(c))),
                ))
            };
            vec![
                Arc::new(Int32Array::from_iter_values(
                    codes.iter().map(|(id, _)| *id as i32),
                )),
                text(|c| c.file),
                text(|c| c.qualname),
                text(|c| c.name),
                Arc::new(Int32Array::from_iter_values(
                    codes.iter().map(|(_, c)| c.first_line as i32),
                )),
            ]
        }
        "threads" => {
            let threads: Vec<_> = tables.threads().collect();
            vec![
                Arc::new(Int32Array::from_iter_values(
                    threads.iter().map(|(id, _)| *id as i32),
                )),
                Arc::new(StringArray::from_iter_values(
                    threads.iter().map(|(_, t)| t.name.as_str()),
                )),
                Arc::new(Int64Array::from_iter_values(
                    threads.iter().map(|(_, t)| t.native_id as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    threads.iter().map(|(_, t)| t.ident as i64),
                )),
            ]
        }
        "source" => {
            let (mut files, mut lines, mut texts) = (Vec::new(), Vec::new(), Vec::new());
            for file in tables.source_files() {
                // Undecodable source text is damage the reader reports; the
                // file simply has no lines here.
                let Some(Ok(text)) = tables.source(file) else {
                    continue;
                };
                for (n, line) in text.lines().enumerate() {
                    files.push(tables.string(file));
                    lines.push(n as i32 + 1);
                    texts.push(line.to_string());
                }
            }
            vec![
                Arc::new(StringArray::from_iter(files)),
                Arc::new(Int32Array::from(lines)),
                Arc::new(StringArray::from(texts)),
            ]
        }
        _ => {
            let header = trace.reader.header();
            let (major, minor) = trace.reader.version();
            let mut facts = vec![
                ("writer".to_string(), header.writer.clone()),
                ("format_version".to_string(), format!("{major}.{minor}")),
                (
                    "start_unix_ns".to_string(),
                    header.start_unix_ns.to_string(),
                ),
            ];
            facts.extend(header.meta.iter().cloned());
            facts.extend(tables.meta().iter().cloned());
            vec![
                Arc::new(StringArray::from_iter_values(facts.iter().map(|(k, _)| k))),
                Arc::new(StringArray::from_iter_values(facts.iter().map(|(_, v)| v))),
            ]
        }
    };
    let rows = columns.first().map_or(0, |c| c.len());
    let mut all = vec![columns::constant(rows, &trace.name_values)];
    all.extend(columns);
    RecordBatch::try_new(Arc::clone(schema), all)
}
