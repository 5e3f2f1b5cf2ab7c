//! The `silenced` table: exceptions that were raised, handled, and then
//! neither re-raised nor turned into another exception — the program went on
//! as if nothing happened.
//!
//! One ordered pass follows every exception by its identity (`exc_id`):
//! each `raise`, `reraise`, `unwind` or `throw` of it puts it back in
//! flight; a `handled` lands it in that frame. An exception whose last event
//! is a `handled` was swallowed there, unless another exception raised while
//! it was being handled (its `__context__` or `__cause__`, recorded at the
//! raise since format 1.1) left that same frame: then it was translated, and
//! the new one is judged on its own.
//!
//! How the handler ended (`outcome`) is read from the frame's next events
//! and the recorded source (never from the file system): the first line the
//! frame runs after the handling is the handler's entry — an `except`
//! clause, a `with` statement whose `__exit__` swallowed the exception
//! (`suppressed`), or a line inside a `finally:` block. Then:
//! `returned` — a `return` statement inside the `except` body ended the
//! frame; `finally_return` — a `return` inside the `finally` body did;
//! `continued` — the frame ran a line after the handler (the code after the
//! `try`, a loop's next iteration after `continue`), fell off its end, left
//! by yielding or by an unrelated exception; `unknown` — no line events or
//! no source to tell.
//!
//! The default table (`silenced`) keeps handlers in the program's own code
//! (files outside the recorded interpreter's standard library and
//! site-packages, `library_dirs` in `meta`) and leaves out `StopIteration`,
//! `StopAsyncIteration` and `GeneratorExit`, which Python raises and catches
//! as control flow; `silenced_all` keeps every one.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chronolog_format::{ColumnId, ColumnMask, EventBatch, EventKind, Tables};

use crate::columns;
use crate::pass::Batches;
use crate::source::{SourceLines, TraceSource};

/// The schema of `silenced` and `silenced_all`.
pub fn schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let int64 = |name: &str| Field::new(name, DataType::Int64, false);
    let int32 = |name: &str| Field::new(name, DataType::Int32, false);
    Arc::new(Schema::new(vec![
        Field::new("trace", columns::names_type(), false),
        int64("exc_id"),
        text("type"),
        text("message"),
        text("raise_file"),
        int32("raise_line"),
        text("raise_function"),
        int64("raise_seq"),
        text("handler_file"),
        int32("handler_line"),
        text("handler_function"),
        Field::new("outcome", DataType::Utf8, false),
        int64("frame_id"),
        int32("thread_id"),
        int64("seq"),
        int64("ts_ns"),
    ]))
}

/// The `silenced` rows of a trace: handlers in the program's own code,
/// control-flow exceptions left out.
pub fn default_scope(trace: &Arc<TraceSource>, schema: &SchemaRef) -> Batches {
    batches(trace, schema, true)
}

/// The `silenced_all` rows of a trace: every swallowed exception.
pub fn every_one(trace: &Arc<TraceSource>, schema: &SchemaRef) -> Batches {
    batches(trace, schema, false)
}

fn batches(trace: &Arc<TraceSource>, schema: &SchemaRef, default_scope: bool) -> Batches {
    let trace = Arc::clone(trace);
    let schema = Arc::clone(schema);
    // The pass needs the whole trace before it knows any verdict.
    Box::new(std::iter::once_with(move || {
        let mut pass = Pass::new(trace.reader.tables());
        let mask = ColumnMask::only(&[
            ColumnId::Seq,
            ColumnId::TsNs,
            ColumnId::Thread,
            ColumnId::Kind,
            ColumnId::Frame,
            ColumnId::Code,
            ColumnId::Line,
            ColumnId::Arg,
            ColumnId::ArgType,
            ColumnId::ExcId,
            ColumnId::ExcContext,
            ColumnId::ValueBytes,
        ]);
        for chunk in trace.chunks_in_order(mask) {
            pass.feed(&chunk);
        }
        let scope = default_scope.then(|| Scope::of(trace.reader.tables()));
        pass.finish(&trace, &schema, scope.as_ref())
    }))
}

/// Where an event happened.
#[derive(Clone, Copy, Debug)]
struct Site {
    seq: u64,
    ts_ns: u64,
    thread: u32,
    frame: u64,
    code: u32,
    line: u32,
}

/// How a handler ended, as far as the pass has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Continued,
    Returned,
    FinallyReturn,
    Suppressed,
    Unknown,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Continued => "continued",
            Outcome::Returned => "returned",
            Outcome::FinallyReturn => "finally_return",
            Outcome::Suppressed => "suppressed",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What kind of block the handler's first line belongs to.
#[derive(Clone, Copy, Debug)]
enum Block {
    /// An `except` clause whose body ends at the given line.
    Except { last: u32 },
    /// A `finally:` body spanning these lines.
    Finally { first: u32, last: u32 },
    /// Neither could be told (no source, or an unexpected shape).
    Unknown,
}

/// An exception landed in a frame, with what is known of its handler.
#[derive(Clone, Copy, Debug)]
struct Landing {
    at: Site,
    handler_line: Option<u32>,
    block: Option<Block>,
    outcome: Option<Outcome>,
    translated: bool,
}

#[derive(Debug)]
struct Track {
    type_name: u32,
    message: Option<String>,
    raised: Site,
    context: u64,
    landing: Option<Landing>,
}

/// Indentation of a line (tabs count as one column, as only comparisons
/// within one file matter).
fn indent(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

fn is_code(text: &str) -> bool {
    let trimmed = text.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// Last line (1-based) of the block whose header is line `header`: the line
/// before the next code line indented no deeper than the header.
fn block_end(lines: &[String], header: u32) -> u32 {
    let Some(header_text) = lines.get(header as usize - 1) else {
        return header;
    };
    let depth = indent(header_text);
    let mut last = header;
    for (index, text) in lines.iter().enumerate().skip(header as usize) {
        if !is_code(text) {
            continue;
        }
        if indent(text) <= depth {
            break;
        }
        last = index as u32 + 1;
    }
    last
}

/// The block a handler entered at `line` belongs to.
fn block_of(lines: &[String], line: u32) -> (Block, Option<Outcome>) {
    let Some(text) = line.checked_sub(1).and_then(|i| lines.get(i as usize)) else {
        return (Block::Unknown, None);
    };
    let stripped = text.trim_start();
    if stripped.starts_with("with ") || stripped.starts_with("async with ") {
        return (Block::Unknown, Some(Outcome::Suppressed));
    }
    if stripped.starts_with("except") {
        let last = block_end(lines, line);
        return (Block::Except { last }, None);
    }
    // A line of a `finally:` body (the keyword itself runs no code).
    let depth = indent(text);
    let header = (0..line as usize - 1)
        .rev()
        .find(|&i| is_code(&lines[i]) && indent(&lines[i]) < depth);
    match header {
        Some(i) if lines[i].trim() == "finally:" => {
            let header = i as u32 + 1;
            (
                Block::Finally {
                    first: header + 1,
                    last: block_end(lines, header),
                },
                None,
            )
        }
        _ => (Block::Unknown, None),
    }
}

impl Landing {
    /// Follows the handler through the next event of its frame.
    fn observe(&mut self, kind: EventKind, line: u32, code: u32, source: &mut SourceLines<'_>) {
        match kind {
            EventKind::Line => match (self.handler_line, self.block) {
                (None, _) => {
                    self.handler_line = Some(line);
                    let (block, outcome) = match source.lines(code) {
                        Some(lines) => block_of(lines, line),
                        None => (Block::Unknown, Some(Outcome::Unknown)),
                    };
                    self.block = Some(block);
                    self.outcome = outcome;
                }
                (Some(entry), Some(Block::Except { last })) => {
                    if line < entry || line > last {
                        self.outcome = Some(Outcome::Continued);
                    }
                }
                (Some(_), Some(Block::Finally { first, last })) => {
                    if line < first || line > last {
                        self.outcome = Some(Outcome::Continued);
                    }
                }
                (Some(_), _) => self.outcome = Some(Outcome::Unknown),
            },
            EventKind::Return => {
                // A `return` statement, or falling off the end of the body.
                let is_return = source.line(code, line).is_some_and(|text| {
                    let text = text.trim_start();
                    text == "return" || text.starts_with("return ") || text.starts_with("return(")
                });
                self.outcome = Some(match self.block {
                    Some(Block::Except { .. }) if is_return => Outcome::Returned,
                    Some(Block::Finally { .. }) if is_return => Outcome::FinallyReturn,
                    Some(Block::Except { .. } | Block::Finally { .. }) => Outcome::Continued,
                    Some(Block::Unknown) | None => Outcome::Unknown,
                });
            }
            EventKind::Unwind | EventKind::Yield => self.outcome = Some(Outcome::Continued),
            _ => {}
        }
    }
}

/// The state of one pass over a trace.
struct Pass<'t> {
    tracks: HashMap<u64, Track>,
    /// Frames whose handler is being followed, with the exceptions landed.
    watched: HashMap<u64, Vec<u64>>,
    source: SourceLines<'t>,
}

impl<'t> Pass<'t> {
    fn new(tables: &'t Tables) -> Pass<'t> {
        Pass {
            tracks: HashMap::new(),
            watched: HashMap::new(),
            source: SourceLines::new(tables),
        }
    }

    fn feed(&mut self, chunk: &EventBatch) {
        for i in 0..chunk.kind.len() {
            let Some(kind) = EventKind::from_code(chunk.kind[i]) else {
                continue;
            };
            let site = Site {
                seq: chunk.seq[i],
                ts_ns: chunk.ts_ns[i],
                thread: chunk.thread[i],
                frame: chunk.frame[i],
                code: chunk.code[i],
                line: chunk.line[i],
            };
            if !self.watched.is_empty() {
                self.follow_handlers(kind, site);
            }
            let exc = chunk.exc_id[i];
            if exc == 0 {
                continue;
            }
            match kind {
                EventKind::Handled => self.land(exc, site),
                EventKind::Raise | EventKind::Throw => {
                    let track = self.tracks.entry(exc).or_insert_with(|| Track {
                        type_name: chunk.arg_type[i],
                        message: chunk.values.get(chunk.arg[i]).map(str::to_string),
                        raised: site,
                        context: chunk.exc_context[i],
                        landing: None,
                    });
                    track.landing = None;
                    if track.context == 0 {
                        track.context = chunk.exc_context[i];
                    }
                }
                EventKind::Reraise => {
                    if let Some(track) = self.tracks.get_mut(&exc) {
                        track.landing = None;
                    }
                }
                EventKind::Unwind => {
                    let context = match self.tracks.get_mut(&exc) {
                        Some(track) => {
                            track.landing = None;
                            track.context
                        }
                        None => 0,
                    };
                    // Raised while handling `context` and leaving the frame
                    // that handled it: `context` was translated.
                    if let Some(landing) = self
                        .tracks
                        .get_mut(&context)
                        .and_then(|t| t.landing.as_mut())
                        .filter(|l| l.at.frame == site.frame)
                    {
                        landing.translated = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// An exception handled in `site.frame`: follow the frame from here.
    fn land(&mut self, exc: u64, site: Site) {
        let Some(track) = self.tracks.get_mut(&exc) else {
            return;
        };
        track.landing = Some(Landing {
            at: site,
            handler_line: None,
            block: None,
            outcome: None,
            translated: false,
        });
        let landed = self.watched.entry(site.frame).or_default();
        if !landed.contains(&exc) {
            landed.push(exc);
        }
    }

    fn follow_handlers(&mut self, kind: EventKind, site: Site) {
        let Some(landed) = self.watched.get_mut(&site.frame) else {
            return;
        };
        let tracks = &mut self.tracks;
        let source = &mut self.source;
        landed.retain(|exc| {
            let Some(landing) = tracks.get_mut(exc).and_then(|t| t.landing.as_mut()) else {
                return false;
            };
            // The handled event itself is where following starts.
            if landing.at.seq != site.seq {
                landing.observe(kind, site.line, site.code, source);
            }
            landing.outcome.is_none()
        });
        if landed.is_empty() {
            self.watched.remove(&site.frame);
        }
    }

    fn finish(
        self,
        trace: &TraceSource,
        schema: &SchemaRef,
        scope: Option<&Scope>,
    ) -> arrow::error::Result<RecordBatch> {
        let tables = trace.reader.tables();
        let mut silenced: Vec<(u64, &Track, Landing)> = self
            .tracks
            .iter()
            .filter_map(|(&exc, track)| {
                let landing = track.landing?;
                (!landing.translated).then_some((exc, track, landing))
            })
            .filter(|(_, track, landing)| {
                scope.is_none_or(|scope| scope.counts(tables, track, landing))
            })
            .collect();
        silenced.sort_by_key(|(_, _, landing)| landing.at.seq);

        let file = |code: u32| {
            tables
                .code(code)
                .and_then(|c| tables.string(c.file))
                .map(str::to_string)
        };
        let function = |code: u32| {
            tables
                .code(code)
                .and_then(|c| tables.string(c.qualname))
                .map(str::to_string)
        };
        let mut exc_id = Int64Builder::new();
        let mut type_name = StringBuilder::new();
        let mut message = StringBuilder::new();
        let mut raise_file = StringBuilder::new();
        let mut raise_line = Int32Builder::new();
        let mut raise_function = StringBuilder::new();
        let mut raise_seq = Int64Builder::new();
        let mut handler_file = StringBuilder::new();
        let mut handler_line = Int32Builder::new();
        let mut handler_function = StringBuilder::new();
        let mut outcome = StringBuilder::new();
        let mut frame = Int64Builder::new();
        let mut thread = Int32Builder::new();
        let mut seq = Int64Builder::new();
        let mut ts_ns = Int64Builder::new();
        for (exc, track, landing) in &silenced {
            exc_id.append_value(*exc as i64);
            type_name.append_option(tables.optional_string(track.type_name));
            message.append_option(track.message.as_deref());
            raise_file.append_option(file(track.raised.code));
            raise_line.append_value(track.raised.line as i32);
            raise_function.append_option(function(track.raised.code));
            raise_seq.append_value(track.raised.seq as i64);
            handler_file.append_option(file(landing.at.code));
            handler_line.append_value(landing.handler_line.unwrap_or(landing.at.line) as i32);
            handler_function.append_option(function(landing.at.code));
            // A handler still running when the trace ended went on.
            outcome.append_value(landing.outcome.unwrap_or(Outcome::Continued).name());
            frame.append_value(landing.at.frame as i64);
            thread.append_value(landing.at.thread as i32);
            seq.append_value(landing.at.seq as i64);
            ts_ns.append_value(landing.at.ts_ns as i64);
        }
        let columns: Vec<ArrayRef> = vec![
            columns::constant(silenced.len(), &trace.name_values),
            Arc::new(exc_id.finish()),
            Arc::new(type_name.finish()),
            Arc::new(message.finish()),
            Arc::new(raise_file.finish()),
            Arc::new(raise_line.finish()),
            Arc::new(raise_function.finish()),
            Arc::new(raise_seq.finish()),
            Arc::new(handler_file.finish()),
            Arc::new(handler_line.finish()),
            Arc::new(handler_function.finish()),
            Arc::new(outcome.finish()),
            Arc::new(frame.finish()),
            Arc::new(thread.finish()),
            Arc::new(seq.finish()),
            Arc::new(ts_ns.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

/// The default scope: handlers in the program's own code, control-flow
/// exceptions left out.
struct Scope {
    library_dirs: Vec<String>,
}

const CONTROL_FLOW: [&str; 3] = ["StopIteration", "StopAsyncIteration", "GeneratorExit"];

impl Scope {
    fn of(tables: &Tables) -> Scope {
        let dirs = tables
            .meta()
            .iter()
            .rev()
            .find(|(key, _)| key == "library_dirs")
            .map(|(_, value)| value.clone());
        let library_dirs = match dirs {
            Some(dirs) => dirs
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| format!("{}/", d.trim_end_matches('/')))
                .collect(),
            // Traces written before `library_dirs` was recorded.
            None => Vec::new(),
        };
        Scope { library_dirs }
    }

    fn is_library(&self, file: &str) -> bool {
        if file.starts_with('<') {
            return true;
        }
        if self.library_dirs.is_empty() {
            return file.contains("/lib/python3") || file.contains("-packages/");
        }
        self.library_dirs.iter().any(|dir| file.starts_with(dir))
    }

    fn counts(&self, tables: &Tables, track: &Track, landing: &Landing) -> bool {
        let type_name = tables.optional_string(track.type_name).unwrap_or("");
        let bare = type_name.rsplit('.').next().unwrap_or(type_name);
        if CONTROL_FLOW.contains(&bare) {
            return false;
        }
        let file = tables
            .code(landing.at.code)
            .and_then(|c| tables.string(c.file))
            .unwrap_or("");
        !self.is_library(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn except_body_ends_at_the_next_line_as_shallow() {
        let src = lines(
            "def f():\n    try:\n        g()\n    except KeyError:\n        # note\n        x = 1\n\n        return x\n    return 2\n",
        );
        match block_of(&src, 4) {
            (Block::Except { last }, None) => assert_eq!(last, 8),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_statement_is_a_suppression_and_finally_body_is_found() {
        let src = lines(
            "def f():\n    with suppress(E):\n        g()\n    try:\n        g()\n    finally:\n        return 1\n",
        );
        assert_eq!(block_of(&src, 2).1, Some(Outcome::Suppressed));
        match block_of(&src, 7) {
            (Block::Finally { first, last }, None) => assert_eq!((first, last), (7, 7)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(block_of(&src, 99), (Block::Unknown, None)));
    }
}
