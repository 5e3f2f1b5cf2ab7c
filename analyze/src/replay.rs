//! Replay: the recorded run as text, line by line, rebuilt from the trace
//! alone (source lines come from the trace too).
//!
//! `pysnooper` prints what PySnooper prints for the same program: a
//! `Source path:...` line whenever the file changes, `Starting var:..`,
//! `New var:.......` and `Modified var:..` lines before the event they
//! were seen at, `call`/`line`/`return`/`exception` lines with the
//! timestamp, line number and source text, `Return value:..`,
//! `Exception:.....`, `Call ended by exception`, and `Elapsed time:` after
//! each call of a replayed function. As in PySnooper, a generator's resume
//! is a `call` that lists every local again, and its yield a `return` of
//! the yielded value. With `function`, only that function's activations
//! (and callees `depth - 1` levels down) are shown, indented per nesting
//! as PySnooper does; without it every recorded frame is, indented by its
//! depth. Timestamps are the recorded wall-clock times in the recording
//! machine's UTC offset.
//!
//! `plain` prints one line per event — sequence number, thread, kind,
//! function, line and source — with variable changes under it.

use std::collections::HashMap;
use std::sync::Arc;

use chronolog_format::{ChunkStats, ColumnMask, EventBatch, EventKind, Tables, VarChange};

use crate::AnalyzeError;
use crate::source::{SourceLines, TraceSource};

/// Output style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    PySnooper,
    Plain,
}

impl Style {
    pub fn parse(name: &str) -> Result<Style, AnalyzeError> {
        match name {
            "pysnooper" => Ok(Style::PySnooper),
            "plain" => Ok(Style::Plain),
            other => Err(AnalyzeError::new(format!(
                "unknown replay format '{other}' (formats: pysnooper, plain)"
            ))),
        }
    }
}

/// What to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub style: Style,
    /// Code ids of the replayed function; empty: every frame.
    pub functions: Vec<u32>,
    /// Levels shown from a replayed function down (1: the function only).
    pub depth: u32,
    pub thread: Option<u32>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    /// Longest exception text before it is cut (PySnooper's default 100).
    pub max_len: usize,
}

/// PySnooper's cut of a long text: head, `...`, tail.
fn truncate(text: &str, max_len: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max_len || max_len < 3 {
        return text.to_string();
    }
    let left = (max_len - 3) / 2;
    let right = max_len - 3 - left;
    let head: String = chars[..left].iter().collect();
    let tail: String = chars[chars.len() - right..].iter().collect();
    format!("{head}...{tail}")
}

/// `HH:MM:SS.ffffff` of a time of day in nanoseconds.
fn clock(ns: u64) -> String {
    let micros = ns / 1_000;
    let seconds = micros / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        (seconds / 3600) % 24,
        (seconds / 60) % 60,
        seconds % 60,
        micros % 1_000_000
    )
}

/// The UTC offset in seconds of the recording machine, from `meta`'s
/// `start_time` (`...+0100`); 0 when unknown.
fn utc_offset(tables: &Tables) -> i64 {
    let Some((_, start)) = tables.meta().iter().rev().find(|(k, _)| k == "start_time") else {
        return 0;
    };
    let Some(zone) = start.get(start.len().saturating_sub(5)..) else {
        return 0;
    };
    let sign = match zone.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return 0,
    };
    let digits: Option<Vec<i64>> = zone[1..]
        .chars()
        .map(|c| c.to_digit(10).map(i64::from))
        .collect();
    match digits.as_deref() {
        Some([h1, h2, m1, m2]) => sign * ((h1 * 10 + h2) * 3600 + (m1 * 10 + m2) * 60),
        _ => 0,
    }
}

/// A frame on a thread's replay stack.
#[derive(Debug)]
struct Active {
    frame: u64,
    /// Levels below the nearest replayed function, when shown.
    level: Option<u32>,
    /// Whether it is a replayed function's own activation (gets `Elapsed`).
    target: bool,
    started_ns: u64,
    locals: Vec<(String, String)>,
}

/// The replay of one trace, as an iterator of lines.
pub struct Replay {
    trace: Arc<TraceSource>,
    options: ReplayOptions,
    chunks: Box<dyn Iterator<Item = EventBatch> + Send>,
    stacks: HashMap<u32, Vec<Active>>,
    /// Locals of generators and coroutines between a yield and a resume.
    suspended: HashMap<u64, Vec<(String, String)>>,
    last_path: Option<u32>,
    wall_start_ns: i128,
    pending: std::collections::VecDeque<String>,
}

impl Replay {
    pub fn new(trace: Arc<TraceSource>, options: ReplayOptions) -> Replay {
        let (from, to, thread) = (options.from_seq, options.to_seq, options.thread);
        let keep = move |stats: &ChunkStats| {
            from.is_none_or(|f| stats.last_seq >= f)
                && to.is_none_or(|t| stats.first_seq <= t)
                && thread.is_none_or(|t| stats.threads.binary_search(&t).is_ok())
        };
        let chunks = Box::new(trace.chunks_where(ColumnMask::ALL, keep));
        let tables = trace.reader.tables();
        let wall_start_ns = i128::from(trace.reader.header().start_unix_ns)
            + i128::from(utc_offset(tables)) * 1_000_000_000;
        Replay {
            trace,
            options,
            chunks,
            stacks: HashMap::new(),
            suspended: HashMap::new(),
            last_path: None,
            wall_start_ns,
            pending: std::collections::VecDeque::new(),
        }
    }

    fn timestamp(&self, ts_ns: u64) -> String {
        let wall = (self.wall_start_ns + i128::from(ts_ns)).rem_euclid(86_400 * 1_000_000_000);
        clock(wall as u64)
    }

    /// PySnooper's lines for variable changes (deletions show no line).
    fn push_changes(&mut self, indent: &str, changes: &[(VarChange, String, String)]) {
        for (change, name, repr) in changes {
            let label = match change {
                VarChange::Start => "Starting var:.. ",
                VarChange::New => "New var:....... ",
                VarChange::Modified => "Modified var:.. ",
                VarChange::Deleted => continue,
            };
            self.pending
                .push_back(format!("{indent}{label}{name} = {repr}"));
        }
    }

    /// Renders one chunk into `pending`.
    fn render(&mut self, chunk: &EventBatch) {
        let trace = Arc::clone(&self.trace);
        let tables = trace.reader.tables();
        let mut source = SourceLines::new(tables);
        let mut var = 0;
        for i in 0..chunk.len() {
            let var_start = var;
            while var < chunk.var_event.len() && chunk.var_event[var] as usize == i {
                var += 1;
            }
            let Some(kind) = EventKind::from_code(chunk.kind[i]) else {
                continue;
            };
            let seq = chunk.seq[i];
            let thread = chunk.thread[i];
            let in_range = self.options.from_seq.is_none_or(|f| seq >= f)
                && self.options.to_seq.is_none_or(|t| seq <= t)
                && self.options.thread.is_none_or(|t| thread == t);
            if !in_range {
                continue;
            }
            let changes: Vec<(VarChange, String, String)> = (var_start..var)
                .filter_map(|v| {
                    Some((
                        VarChange::from_code(chunk.var_change[v])?,
                        tables.string(chunk.var_name[v])?.to_string(),
                        chunk
                            .values
                            .get(chunk.var_value[v])
                            .unwrap_or("")
                            .to_string(),
                    ))
                })
                .collect();
            let code = chunk.code[i];
            let frame = chunk.frame[i];
            let stack = self.stacks.entry(thread).or_default();
            // Frames entered before the replayed range start where first seen.
            let position = stack.iter().rposition(|a| a.frame == frame);
            let starts = matches!(kind, EventKind::Call | EventKind::Resume | EventKind::Throw);
            let index = match position {
                Some(index) if !(starts && kind == EventKind::Call) => index,
                _ => {
                    let parent_level = stack.last().and_then(|a| a.level);
                    let target = self.options.functions.contains(&code);
                    let level = if self.options.functions.is_empty() || target {
                        Some(0)
                    } else {
                        parent_level
                            .map(|l| l + 1)
                            .filter(|&l| l < self.options.depth)
                    };
                    stack.push(Active {
                        frame,
                        level,
                        target,
                        started_ns: chunk.ts_ns[i],
                        locals: self.suspended.remove(&frame).unwrap_or_default(),
                    });
                    stack.len() - 1
                }
            };
            if starts {
                stack[index].started_ns = chunk.ts_ns[i];
            }
            // Apply the changes to the frame's locals.
            for (change, name, repr) in &changes {
                let locals = &mut stack[index].locals;
                let slot = locals.iter().position(|(n, _)| n == name);
                match (change, slot) {
                    (VarChange::Deleted, Some(s)) => {
                        locals.remove(s);
                    }
                    (VarChange::Deleted, None) => {}
                    (_, Some(s)) => locals[s].1.clone_from(repr),
                    (_, None) => locals.push((name.clone(), repr.clone())),
                }
            }
            let shown = stack[index].level.is_some();
            let nesting = if self.options.functions.is_empty() {
                chunk.depth[i] as usize
            } else {
                stack[..=index]
                    .iter()
                    .filter(|a| a.level.is_some())
                    .count()
                    .saturating_sub(1)
            };
            let ends = matches!(
                kind,
                EventKind::Return | EventKind::Yield | EventKind::Unwind
            );
            let elapsed = (ends && stack[index].target)
                .then(|| chunk.ts_ns[i].saturating_sub(stack[index].started_ns));
            let starting_locals = if starts && kind != EventKind::Call {
                stack[index].locals.clone()
            } else {
                Vec::new()
            };
            if ends {
                if kind == EventKind::Yield {
                    let locals = std::mem::take(&mut stack[index].locals);
                    self.suspended.insert(frame, locals);
                }
                stack.truncate(index);
            }
            if !shown {
                continue;
            }
            let line = chunk.line[i];
            let file = tables.code(code).map(|c| c.file);
            let text = source.line(code, line).unwrap_or("").to_string();
            let arg = chunk.values.get(chunk.arg[i]).map(str::to_string);
            let arg_type = tables
                .optional_string(chunk.arg_type[i])
                .map(str::to_string);
            match self.options.style {
                Style::PySnooper => {
                    let indent = " ".repeat(4 * nesting);
                    let event = match kind {
                        EventKind::Call | EventKind::Resume | EventKind::Throw => "call",
                        EventKind::Line => "line",
                        EventKind::Return | EventKind::Yield | EventKind::Unwind => "return",
                        EventKind::Raise => "exception",
                        EventKind::Reraise | EventKind::Handled => {
                            // No line of their own in PySnooper's output
                            // (settrace has no such event), but what changed
                            // before them shows, as PySnooper shows it at
                            // its next event.
                            self.push_changes(&indent, &changes);
                            continue;
                        }
                    };
                    if file.is_some() && file != self.last_path {
                        self.last_path = file;
                        let path = file.and_then(|f| tables.string(f)).unwrap_or("?");
                        self.pending
                            .push_back(format!("{indent}Source path:... {path}"));
                    }
                    if starts && kind != EventKind::Call {
                        for (name, repr) in &starting_locals {
                            self.pending
                                .push_back(format!("{indent}Starting var:.. {name} = {repr}"));
                        }
                    } else {
                        self.push_changes(&indent, &changes);
                    }
                    let (line, text) =
                        if kind == EventKind::Call && text.trim_start().starts_with('@') {
                            // PySnooper shows the `def` line, not a decorator.
                            let mut found = (line, text.clone());
                            let mut candidate = line + 1;
                            while let Some(next) = source.line(code, candidate) {
                                if next.trim_start().starts_with("def") {
                                    found = (candidate, next.to_string());
                                    break;
                                }
                                candidate += 1;
                            }
                            found
                        } else {
                            (line, text)
                        };
                    if kind == EventKind::Unwind {
                        self.pending
                            .push_back(format!("{indent}Call ended by exception"));
                    } else {
                        let ts = self.timestamp(chunk.ts_ns[i]);
                        self.pending
                            .push_back(format!("{indent}{ts} {event:9} {line:4} {text}"));
                    }
                    match kind {
                        EventKind::Return | EventKind::Yield => {
                            let value = arg.unwrap_or_else(|| "None".into());
                            self.pending
                                .push_back(format!("{indent}Return value:.. {value}"));
                        }
                        EventKind::Raise => {
                            let name = arg_type.unwrap_or_else(|| "Exception".into());
                            let message = match arg.as_deref() {
                                None | Some("") => name,
                                Some(message) => format!("{name}: {message}"),
                            };
                            let message = truncate(&message, self.options.max_len);
                            self.pending
                                .push_back(format!("{indent}Exception:..... {message}"));
                        }
                        _ => {}
                    }
                    if let Some(ns) = elapsed {
                        self.pending
                            .push_back(format!("{indent}Elapsed time: {}", clock(ns)));
                    }
                }
                Style::Plain => {
                    let indent = "  ".repeat(nesting);
                    let function = tables
                        .code(code)
                        .and_then(|c| tables.string(c.qualname))
                        .unwrap_or("?");
                    let mut row = format!(
                        "{seq:>8} T{thread} {indent}{:<8} {function}:{line}  {}",
                        kind.name(),
                        text.trim()
                    );
                    match (kind, arg) {
                        (EventKind::Return | EventKind::Yield, Some(value)) => {
                            row.push_str(&format!("  -> {value}"));
                        }
                        (
                            EventKind::Raise
                            | EventKind::Reraise
                            | EventKind::Handled
                            | EventKind::Unwind
                            | EventKind::Throw,
                            message,
                        ) => {
                            let name = arg_type.as_deref().unwrap_or("exception");
                            match message {
                                Some(m) if !m.is_empty() => {
                                    row.push_str(&format!("  ! {name}: {m}"))
                                }
                                _ => row.push_str(&format!("  ! {name}")),
                            }
                        }
                        _ => {}
                    }
                    self.pending.push_back(row);
                    for (change, name, repr) in &changes {
                        let shown = match change {
                            VarChange::Deleted => format!("{name} deleted"),
                            _ => format!("{name} = {repr}"),
                        };
                        self.pending.push_back(format!(
                            "{:>8}    {indent}  {:<8} {shown}",
                            "",
                            change.name()
                        ));
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("trace", &self.trace.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Iterator for Replay {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            let chunk = self.chunks.next()?;
            self.render(&chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_like_pysnooper() {
        let long = "x".repeat(50) + &"y".repeat(60);
        let cut = truncate(&long, 100);
        assert_eq!(cut.chars().count(), 100);
        assert!(cut.starts_with(&"x".repeat(48)));
        assert!(cut.ends_with(&"y".repeat(49)));
        assert_eq!(truncate("short", 100), "short");
    }

    #[test]
    fn clock_formats_time_of_day() {
        let ns = ((13 * 3600 + 5 * 60 + 7) * 1_000_000 + 42) * 1_000;
        assert_eq!(clock(ns), "13:05:07.000042");
    }
}
