//! The `calls` table: one row per function activation, pairing its start
//! with its end.
//!
//! An activation starts with a `call` event and ends with the `return` or
//! `unwind` of the same frame. A generator or coroutine is one activation
//! across its `yield`s and `resume`s (its frame id stays the same), so its
//! duration runs from its first start to its last end; a frame first seen
//! at a `resume` or `throw` (it started before recording did) starts there.
//! `parent_frame_id` is the frame below it on its thread's stack when it
//! started. Activations without an end are reported at the end of the trace
//! with `exit = 'running'`.
//!
//! Pairing needs each thread's events in order, so one pass walks each
//! trace's chunks in file order (decoding ahead in parallel), keeping only
//! the open activations: memory grows with stack depth and suspended
//! generators, not with the trace. Rows come out in the order activations
//! end.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, StringDictionaryBuilder,
};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use chronolog_format::{ColumnId, ColumnMask, EventBatch, EventKind, Tables, VarChange};

use crate::columns;
use crate::pass::Batches;
use crate::source::TraceSource;

/// The `calls` schema.
pub fn schema() -> SchemaRef {
    let int64 = DataType::Int64;
    let int32 = DataType::Int32;
    Arc::new(Schema::new(vec![
        Field::new("trace", columns::names_type(), false),
        Field::new("frame_id", int64.clone(), false),
        Field::new("parent_frame_id", int64.clone(), true),
        Field::new("thread_id", int32.clone(), false),
        Field::new("depth", int32.clone(), false),
        Field::new("code_id", int32.clone(), false),
        Field::new("file", columns::names_type(), true),
        Field::new("function", columns::names_type(), true),
        Field::new("line", int32, false),
        Field::new("start_seq", int64.clone(), false),
        Field::new("end_seq", int64.clone(), true),
        Field::new("start_ns", int64.clone(), false),
        Field::new("end_ns", int64.clone(), true),
        Field::new("duration_ns", int64, true),
        Field::new("args", DataType::Utf8, false),
        Field::new("return_value", DataType::Utf8, true),
        Field::new("exit", columns::vocabulary_type(), false),
    ]))
}

/// An activation that has started and not ended.
#[derive(Clone, Debug)]
struct Open {
    frame: u64,
    parent: Option<u64>,
    thread: u32,
    depth: u32,
    code: u32,
    line: u32,
    start_seq: u64,
    start_ns: u64,
    args: String,
}

/// How an activation ended.
#[derive(Clone, Copy, Debug)]
enum Exit {
    Return = 0,
    Unwind = 1,
    Running = 2,
}

const EXIT_NAMES: [&str; 3] = ["return", "unwind", "running"];

/// Column builders of one output batch.
struct Rows {
    frame: Int64Builder,
    parent: Int64Builder,
    thread: Int32Builder,
    depth: Int32Builder,
    code: Vec<u32>,
    line: Int32Builder,
    start_seq: Int64Builder,
    end_seq: Int64Builder,
    start_ns: Int64Builder,
    end_ns: Int64Builder,
    duration: Int64Builder,
    args: StringBuilder,
    value: StringBuilder,
    exit: StringDictionaryBuilder<Int8Type>,
}

impl Rows {
    fn new() -> Rows {
        Rows {
            frame: Int64Builder::new(),
            parent: Int64Builder::new(),
            thread: Int32Builder::new(),
            depth: Int32Builder::new(),
            code: Vec::new(),
            line: Int32Builder::new(),
            start_seq: Int64Builder::new(),
            end_seq: Int64Builder::new(),
            start_ns: Int64Builder::new(),
            end_ns: Int64Builder::new(),
            duration: Int64Builder::new(),
            args: StringBuilder::new(),
            value: StringBuilder::new(),
            exit: StringDictionaryBuilder::new(),
        }
    }

    fn len(&self) -> usize {
        self.code.len()
    }

    fn push(&mut self, open: Open, end: Option<(u64, u64)>, value: Option<&str>, exit: Exit) {
        self.frame.append_value(open.frame as i64);
        self.parent.append_option(open.parent.map(|p| p as i64));
        self.thread.append_value(open.thread as i32);
        self.depth.append_value(open.depth as i32);
        self.code.push(open.code);
        self.line.append_value(open.line as i32);
        self.start_seq.append_value(open.start_seq as i64);
        self.start_ns.append_value(open.start_ns as i64);
        self.end_seq.append_option(end.map(|(seq, _)| seq as i64));
        self.end_ns.append_option(end.map(|(_, ns)| ns as i64));
        self.duration
            .append_option(end.map(|(_, ns)| ns.saturating_sub(open.start_ns) as i64));
        self.args.append_value(&open.args);
        self.value.append_option(value);
        self.exit.append_value(EXIT_NAMES[exit as usize]);
    }

    fn finish(
        &mut self,
        trace: &TraceSource,
        schema: &SchemaRef,
    ) -> arrow::error::Result<RecordBatch> {
        let codes = std::mem::take(&mut self.code);
        let len = codes.len();
        let columns: Vec<ArrayRef> = vec![
            columns::constant(len, &trace.name_values),
            Arc::new(self.frame.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.thread.finish()),
            Arc::new(self.depth.finish()),
            columns::int32(codes.clone()),
            columns::ids(codes.clone(), &trace.files),
            columns::ids(codes, &trace.functions),
            Arc::new(self.line.finish()),
            Arc::new(self.start_seq.finish()),
            Arc::new(self.end_seq.finish()),
            Arc::new(self.start_ns.finish()),
            Arc::new(self.end_ns.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.args.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.exit.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

/// The pairing state of one pass over a trace.
#[derive(Default)]
struct Pairing {
    /// Running activations of each thread, innermost last.
    stacks: HashMap<u32, Vec<Open>>,
    /// Generators and coroutines between a `yield` and their next start.
    suspended: HashMap<u64, Open>,
}

impl Pairing {
    /// Feeds one chunk; finished activations go to `rows`.
    fn feed(&mut self, chunk: &EventBatch, tables: &Tables, rows: &mut Rows) {
        // Arguments: the `start` changes of each call event, in order.
        let mut var = 0usize;
        for i in 0..chunk.kind.len() {
            let kind = EventKind::from_code(chunk.kind[i]);
            let frame = chunk.frame[i];
            let thread = chunk.thread[i];
            let mut args = String::new();
            while var < chunk.var_event.len() && chunk.var_event[var] as usize <= i {
                if chunk.var_event[var] as usize == i
                    && VarChange::from_code(chunk.var_change[var]) == Some(VarChange::Start)
                    && kind == Some(EventKind::Call)
                {
                    if !args.is_empty() {
                        args.push_str(", ");
                    }
                    args.push_str(tables.string(chunk.var_name[var]).unwrap_or("?"));
                    args.push('=');
                    args.push_str(chunk.values.get(chunk.var_value[var]).unwrap_or(""));
                }
                var += 1;
            }
            let stack = self.stacks.entry(thread).or_default();
            let parent = stack.last().map(|o| o.frame);
            // An activation starting at this event.
            let starting_here = |args: String| Open {
                frame,
                parent,
                thread,
                depth: chunk.depth[i],
                code: chunk.code[i],
                line: chunk.line[i],
                start_seq: chunk.seq[i],
                start_ns: chunk.ts_ns[i],
                args,
            };
            match kind {
                Some(EventKind::Call) => stack.push(starting_here(args)),
                Some(EventKind::Resume | EventKind::Throw) => {
                    if parent == Some(frame) {
                        continue;
                    }
                    let open = self
                        .suspended
                        .remove(&frame)
                        .unwrap_or_else(|| starting_here(String::new()));
                    stack.push(open);
                }
                Some(kind @ (EventKind::Return | EventKind::Unwind | EventKind::Yield)) => {
                    let Some(position) = stack.iter().rposition(|o| o.frame == frame) else {
                        continue;
                    };
                    // Frames above it ended without an event we saw (they
                    // were out of scope or the trace lost events): they are
                    // left running in the report rather than guessed.
                    let open = stack.remove(position);
                    if kind == EventKind::Yield {
                        self.suspended.insert(frame, open);
                        continue;
                    }
                    let exit = if kind == EventKind::Return {
                        Exit::Return
                    } else {
                        Exit::Unwind
                    };
                    // An unwind's arg is the exception, not a return value.
                    let value = match exit {
                        Exit::Return => chunk.values.get(chunk.arg[i]),
                        _ => None,
                    };
                    rows.push(open, Some((chunk.seq[i], chunk.ts_ns[i])), value, exit);
                }
                _ => {}
            }
        }
    }

    /// Every activation still open, by start.
    fn still_running(&mut self) -> Vec<Open> {
        let mut open: Vec<Open> = self
            .stacks
            .drain()
            .flat_map(|(_, stack)| stack)
            .chain(self.suspended.drain().map(|(_, o)| o))
            .collect();
        open.sort_by_key(|o| o.start_seq);
        open
    }
}

/// Every `calls` row of `trace`, in batches, in the order activations end.
pub fn call_batches(trace: &Arc<TraceSource>, schema: &SchemaRef) -> Batches {
    let mask = ColumnMask::only(&[
        ColumnId::Seq,
        ColumnId::TsNs,
        ColumnId::Thread,
        ColumnId::Kind,
        ColumnId::Frame,
        ColumnId::Depth,
        ColumnId::Code,
        ColumnId::Line,
        ColumnId::Arg,
        ColumnId::VarEvent,
        ColumnId::VarName,
        ColumnId::VarChange,
        ColumnId::VarValue,
        ColumnId::ValueBytes,
    ]);
    let mut chunks = trace.chunks_in_order(mask);
    let trace = Arc::clone(trace);
    let schema = Arc::clone(schema);
    let mut pairing = Pairing::default();
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        while !done {
            let mut rows = Rows::new();
            match chunks.next() {
                Some(chunk) => pairing.feed(&chunk, trace.reader.tables(), &mut rows),
                None => {
                    for open in pairing.still_running() {
                        rows.push(open, None, None, Exit::Running);
                    }
                    done = true;
                }
            }
            if rows.len() > 0 {
                return Some(rows.finish(&trace, &schema));
            }
        }
        None
    }))
}
